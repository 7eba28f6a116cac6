"""Times the baselines (and their metrics) at full RetailRocket scale, one process per baseline.

Usage (from the repository root):

    python -m benchmarks.bench_baselines                      # synthetic, full scale (2.76M events)
    python -m benchmarks.bench_baselines --events 300000 --visitors 150000 --items 30000 \
        --eval-visitors 3000                                  # smaller synthetic run
    python -m benchmarks.bench_baselines --raw DIR [--cutoff 2015-08-01]   # a RetailRocket folder

The synthetic log mimics RetailRocket's shape: 1.4M visitors of whom ~70% have one event and a few
(bots) thousands, Zipf-like item popularity over 235k items, repeat views and category-local browsing.
All its events are train events (the real train split is ~70% of the log, so this is conservative);
the eval visitors are drawn among train visitors proportionally to their activity (returning visitors
are the active ones) and get 1 + Geometric queries each, half of them repeat items.

Each baseline runs in its own subprocess so that its peak resident memory (`ru_maxrss`, which
includes the interpreter, the loaded arrays and the indexed train matrix) is its own. Wall times
cover fitting and ranking for all eval visitors; "index" is the shared `build_train_matrix` step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from components.baselines import baselines
from modules import features, metrics, ranking

FULL_SCALE = {"events": 2_756_101, "visitors": 1_407_580, "items": 235_061, "eval_visitors": 32_000}
_SPAN_MS = 138 * 24 * 3600 * 1000  # 2015-05-03 .. 2015-09-18
_START_MS = 1_430_611_200_000  # 2015-05-03 00:00 UTC


def synthesize(
    n_events: int, n_visitors: int, n_items: int, n_eval_visitors: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Generates a power-law train log and eval queries in RetailRocket's proportions.

    Args:
      n_events: train events (>= n_visitors: every visitor has at least one).
      n_visitors: distinct train visitors.
      n_items: item catalogue size (not every item is necessarily drawn).
      n_eval_visitors: visitors with eval queries (drawn among train visitors).
      seed: random seed.

    Returns:
      {"train_visitors", "train_items", "train_timestamps", "query_visitors", "query_items"}.
    """
    if n_events < n_visitors or n_eval_visitors > n_visitors:
        raise ValueError(
            f"need events >= visitors >= eval visitors; got {n_events}, {n_visitors}, {n_eval_visitors}"
        )
    rng = np.random.default_rng(seed)
    # Visitor activity: 1 + floor(Lomax(1.6, 0.89)) events, so ~70% of visitors have one event and
    # the busiest a few thousand (RetailRocket: 70% and 7,757), then trimmed or topped up to n_events.
    extra_counts = np.floor(0.89 * rng.pareto(1.6, n_visitors)).astype(np.int64)
    owners = np.repeat(np.arange(n_visitors), extra_counts)
    target = n_events - n_visitors
    if owners.size >= target:
        owners = owners[rng.choice(owners.size, target, replace=False)]
    else:
        topped_up = rng.choice(
            n_visitors, target - owners.size, p=(extra_counts + 1) / (extra_counts + 1).sum()
        )
        owners = np.concatenate([owners, topped_up])
    visitors = np.sort(np.concatenate([np.arange(n_visitors), owners]))
    # Item popularity (p ~ (rank + 100)^-1.1: the top item holds ~0.2% of events, the tail ~1 event),
    # popularity rank independent of the "catalogue order" in which categories are contiguous.
    popularity = (np.arange(n_items) + 100.0) ** -1.1
    popularity /= popularity.sum()
    catalogue = rng.permutation(n_items)  # catalogue position -> item index
    position_of = np.argsort(catalogue)
    first = np.ones(visitors.size, dtype=bool)
    first[1:] = visitors[1:] != visitors[:-1]
    kind = rng.random(visitors.size)
    fresh = first | (kind >= 0.3)  # 30% of follow-up events repeat the previous item
    base = rng.choice(n_items, visitors.size, p=popularity)
    # 30% of fresh follow-ups browse near the previous fresh item in the catalogue (same category).
    last_fresh = np.maximum.accumulate(np.where(fresh, np.arange(visitors.size), 0))
    near = fresh & ~first & (kind < 0.6)
    prev_fresh = np.maximum.accumulate(np.where(fresh & ~near, np.arange(visitors.size), 0))
    offsets = rng.integers(-20, 21, visitors.size)
    base[near] = catalogue[(position_of[base[prev_fresh[near]]] + offsets[near]) % n_items]
    items = base[last_fresh]
    # Timestamps: a start per visitor, then gaps of minutes with occasional returns days later.
    gaps = rng.exponential(120_000, visitors.size)
    gaps[rng.random(visitors.size) < 0.05] *= 2_000
    gaps[first] = 0
    group_start = np.flatnonzero(first)
    cumulative = np.cumsum(gaps)
    offset_in_visitor = cumulative - np.repeat(
        cumulative[group_start], np.diff(np.r_[group_start, visitors.size])
    )
    start = rng.uniform(0, _SPAN_MS, n_visitors)
    timestamps = (_START_MS + np.minimum(start[visitors] + offset_in_visitor, _SPAN_MS)).astype(
        np.int64
    )
    # Real item ids are sparse in [0, 466k): keep that so nothing relies on dense ids.
    item_ids = np.sort(rng.choice(2 * n_items, n_items, replace=False))
    visitor_ids = np.sort(rng.choice(2 * n_visitors, n_visitors, replace=False))
    # Eval visitors: proportional to activity, without replacement (Gumbel top-k).
    counts = np.bincount(visitors, minlength=n_visitors)
    keys = np.log(counts) + rng.gumbel(size=n_visitors)
    eval_rows = np.sort(np.argpartition(-keys, n_eval_visitors - 1)[:n_eval_visitors])
    n_queries = rng.geometric(0.385, n_eval_visitors)
    query_rows = np.repeat(eval_rows, n_queries)
    starts = np.searchsorted(visitors, query_rows)
    own = items[starts + (rng.random(query_rows.size) * counts[query_rows]).astype(np.int64)]
    fresh_query = rng.choice(n_items, query_rows.size, p=popularity)
    query_items = np.where(rng.random(query_rows.size) < 0.5, own, fresh_query)
    return {
        "train_visitors": visitor_ids[visitors],
        "train_items": item_ids[items],
        "train_timestamps": timestamps,
        "query_visitors": visitor_ids[query_rows],
        "query_items": item_ids[query_items],
    }


def load_raw(raw_dir: str, cutoff: str) -> dict[str, np.ndarray]:
    """Reads a RetailRocket `events.csv` and applies protocol steps 1-2 (dedupe, split at cutoff).

    Args:
      raw_dir: folder holding events.csv.
      cutoff: date; train = events at or before it (UTC), queries = later events of train visitors.

    Returns:
      The same dictionary as `synthesize`.
    """
    import pandas as pd

    path = os.path.join(raw_dir, features.RAW_EVENTS_FILE)
    events = pd.read_csv(path, usecols=list(features.RAW_EVENT_COLUMNS))
    events = events.drop_duplicates()
    cut_ms = int(pd.Timestamp(cutoff, tz="UTC").value // 1_000_000)
    ts = events[features.TIMESTAMP].to_numpy(np.int64)
    visitors = events[features.VISITOR_ID].to_numpy(np.float64).astype(np.int64)
    items = events[features.ITEM_ID].to_numpy(np.float64).astype(np.int64)
    train = ts <= cut_ms
    query = ~train & np.isin(visitors, visitors[train])
    return {
        "train_visitors": visitors[train],
        "train_items": items[train],
        "train_timestamps": ts[train],
        "query_visitors": visitors[query],
        "query_items": items[query],
    }


def _worker(data_path: str, name: str, exclude_seen: bool) -> dict:
    data = dict(np.load(data_path))
    started = time.perf_counter()
    train = baselines.build_train_matrix(
        data["train_visitors"], data["train_items"], data["train_timestamps"]
    )
    index_s = time.perf_counter() - started
    eval_visitors = np.unique(data["query_visitors"])
    started = time.perf_counter()
    lists = baselines.run_baseline(name, train, eval_visitors, ranking.LIST_LENGTH, exclude_seen)
    rank_s = time.perf_counter() - started
    started = time.perf_counter()
    per_query = metrics.lists_for_queries(lists, eval_visitors, data["query_visitors"])
    values = metrics.evaluate(per_query, data["query_items"], train.n_items)
    evaluate_s = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {
        "baseline": name,
        "index_s": index_s,
        "rank_s": rank_s,
        "evaluate_s": evaluate_s,
        "peak_rss_mib": peak_mib,
        **values,
    }


def main(argv: list[str] | None = None) -> None:
    """Parses arguments, prepares the data once and runs one subprocess per baseline."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=FULL_SCALE["events"])
    parser.add_argument("--visitors", type=int, default=FULL_SCALE["visitors"])
    parser.add_argument("--items", type=int, default=FULL_SCALE["items"])
    parser.add_argument("--eval-visitors", type=int, default=FULL_SCALE["eval_visitors"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--raw", help="RetailRocket folder with events.csv instead of synthetic data"
    )
    parser.add_argument("--cutoff", default="2015-08-01")
    parser.add_argument("--exclude-seen", action="store_true")
    parser.add_argument(
        "--baselines",
        default=",".join(baselines.BASELINE_NAMES),
        help=f"comma-separated; extra: {','.join(baselines.EXTRA_BASELINE_NAMES)}",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(args.data, args.worker, args.exclude_seen)))
        return

    started = time.perf_counter()
    if args.raw:
        data = load_raw(args.raw, args.cutoff)
    else:
        data = synthesize(args.events, args.visitors, args.items, args.eval_visitors, args.seed)
    prepare_s = time.perf_counter() - started
    n_train = data["train_visitors"].size
    print(
        f"data: {n_train:,} train events, {np.unique(data['train_visitors']).size:,} visitors, "
        f"{np.unique(data['train_items']).size:,} items; {data['query_visitors'].size:,} queries of "
        f"{np.unique(data['query_visitors']).size:,} eval visitors (prepared in {prepare_s:.1f} s); "
        f"exclude_seen={args.exclude_seen}; {os.cpu_count()} CPUs"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.npz")
        np.savez(data_path, **data)
        for name in args.baselines.split(","):
            command = [sys.executable, "-m", "benchmarks.bench_baselines", "--worker", name]
            command += ["--data", data_path] + (["--exclude-seen"] if args.exclude_seen else [])
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = results[-1]
            print(
                f"{name:16s} rank {row['rank_s']:7.1f} s  index {row['index_s']:5.1f} s  "
                f"evaluate {row['evaluate_s']:4.1f} s  peak RSS {row['peak_rss_mib']:7.0f} MiB  "
                f"recall@50 {row['recall@50']:.4f}  coverage@50 {row['coverage@50']:.4f}",
                flush=True,
            )
    total = sum(r["rank_s"] + r["evaluate_s"] for r in results) + results[0]["index_s"]
    print(f"total (index once + rank + evaluate of every baseline above): {total:.1f} s")
    five = [r for r in results if r["baseline"] in baselines.BASELINE_NAMES]
    if len(five) != len(results) and five:
        total_five = sum(r["rank_s"] + r["evaluate_s"] for r in five) + five[0]["index_s"]
        print(f"total of the protocol's {len(five)} baselines: {total_five:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "total_s": total}, f, indent=2)


if __name__ == "__main__":
    main()
