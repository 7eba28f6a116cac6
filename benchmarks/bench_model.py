"""Two-tower variants chosen on the validation window, then reported next to the baselines on eval.

Runs the pipeline's own code outside the pipeline: the analysis of ``modules.transform`` through
tf.Transform on Beam's DirectRunner (in-process, ``modules.testing.analyze``),
``modules.training.train``, and the offline scoring that mirrors the serving model
(``modules.offline``); the baselines are ``components.baselines.baselines``. Metrics follow DESIGN
section 5 (every eval row a query, the whole catalogue, ties by ascending item id).

Choose by the validation table: each variant's Recall@50 on the Trainer's own validation window
(the last ``validation_days`` of train, evaluated like eval; ``Trained.validation_recall``). The
eval table is the final report and must not be used to pick a setting (DESIGN 5.6).

Usage::

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/bench_model.py EXPORT_DIR [EXPORT_DIR ...] \\
        [--set encoder=gru --set epochs=8] [--variants "encoder=mean;encoder=gru"] [--exclude-seen]

Each ``--variants`` entry (``;``-separated, each a ``,``-separated list of key=value) trains one more
model on top of the ``--set`` settings. Prints one table per export folder and, with ``--json``,
writes every figure to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from components.baselines import baselines  # noqa: E402
from modules import columns, metrics, offline, ranking, testing, training  # noqa: E402
from modules import features as F  # noqa: E402


def _parse_settings(text: str) -> dict:
    settings = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        settings[key.strip()] = _value(value.strip())
    return settings


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def seen_mask(train: dict, query_visitors: np.ndarray, catalogue_ids: np.ndarray) -> sp.csr_matrix:
    """[Q, M] sparse mask of the catalogue items each query's visitor had in train."""
    rows = np.searchsorted(catalogue_ids, train[F.ITEM_ID])
    rows = np.clip(rows, 0, len(catalogue_ids) - 1)
    in_catalogue = catalogue_ids[rows] == train[F.ITEM_ID]
    visitors, visitor_row = np.unique(train[F.VISITOR_ID], return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(in_catalogue.sum()), (visitor_row[in_catalogue], rows[in_catalogue])),
        shape=(len(visitors), len(catalogue_ids)),
    )
    matrix.data[:] = 1
    query_rows = np.searchsorted(visitors, query_visitors)
    return matrix[query_rows]


def run_export(export_dir: Path, base: dict, variants: list[dict], args) -> dict:
    """Baselines and every model variant on one export folder."""
    started = time.perf_counter()
    train = columns.read_csv_columns(str(export_dir / F.TRAIN_SPLIT / F.INTERACTIONS_FILE))
    queries = columns.read_csv_columns(str(export_dir / F.EVAL_SPLIT / F.INTERACTIONS_FILE))
    items = columns.read_csv_columns(str(export_dir / F.ITEMS_SPLIT / F.ITEMS_FILE))
    n_train_items = int(np.unique(train[F.ITEM_ID]).size)
    result = {
        "export": str(export_dir),
        "n_train": int(train[F.ITEM_ID].size),
        "n_queries": int(queries[F.ITEM_ID].size),
        "n_items": int(items[F.ITEM_ID].size),
        "models": {},
        "validation": {},
        "timings_s": {},
    }
    print(
        f"\n== {export_dir}: {result['n_train']:,} train events, {result['n_queries']:,} queries, "
        f"{result['n_items']:,} catalogue items",
        flush=True,
    )
    seen = _seen_targets(train, queries)
    result["repeat_query_share"] = float(seen.mean())
    if not args.no_baselines:
        base_started = time.perf_counter()
        names = args.baselines.split(",")
        eval_visitors = np.unique(queries[F.VISITOR_ID])
        lists = baselines.run_all(
            train[F.VISITOR_ID],
            train[F.ITEM_ID],
            train[F.TIMESTAMP],
            eval_visitors,
            k=ranking.LIST_LENGTH,
            exclude_seen=args.exclude_seen,
            names=names,
        )
        for name in names:
            per_query = metrics.lists_for_queries(lists[name], eval_visitors, queries[F.VISITOR_ID])
            result["models"][name] = _metrics(per_query, queries[F.ITEM_ID], n_train_items, seen)
        result["timings_s"]["baselines"] = time.perf_counter() - base_started

    analysis_started = time.perf_counter()
    transform_dir = Path(args.work_dir) / (export_dir.name + "-" + _key(base))
    if (transform_dir / "transform_fn").is_dir():
        import tensorflow_transform as tft

        tft_output = tft.TFTransformOutput(str(transform_dir))
    else:
        transform_dir.mkdir(parents=True, exist_ok=True)
        tft_output = testing.analyze(train, str(transform_dir), base)
    result["timings_s"]["analyze"] = time.perf_counter() - analysis_started

    for variant in variants:
        cfg = {**base, **variant}
        name = "two_tower" + ("" if not variant else "[" + _key(variant) + "]")
        trained = training.train(train, items, tft_output, cfg)
        score_started = time.perf_counter()
        exclude = (
            seen_mask(train, queries[F.VISITOR_ID], trained.catalogue_ids)
            if args.exclude_seen
            else None
        )
        lists = offline.recommend(
            trained, tft_output, queries, k=ranking.LIST_LENGTH, exclude=exclude
        )
        values = _metrics(lists, queries[F.ITEM_ID], n_train_items, seen)
        result["models"][name] = values
        result["validation"][name] = {
            "recall@50": trained.validation_recall,
            "best_epoch": trained.best_epoch,
            "repeat_boost": trained.repeat_boost,
            "queries": trained.validation.get("queries", 0),
            "refit": trained.validation.get("refit", False),
        }
        result["timings_s"][name] = {
            "train": trained.seconds,
            "score": time.perf_counter() - score_started,
            "examples": trained.n_examples,
            "validation_recalls": trained.validation_recalls,
            "best_epoch": trained.best_epoch,
            "repeat_boost": trained.repeat_boost,
            "boost_recalls": trained.boost_recalls,
            "losses": [round(x, 1) for x in trained.history],
            "repeat_weights": [
                round(float(w), 3) for w in trained.model.repeat.weights_by_bucket.numpy()
            ]
            + [round(float(trained.model.repeat.weight_of_count.numpy()), 3)],
        }
        chosen = _format(trained.validation_recall)
        print(
            f"  {name}: VALIDATION recall@50 {chosen} (choose by this)  train "
            f"{trained.seconds:.0f}s ({trained.n_examples:,} examples)  "
            f"repeat {result['timings_s'][name]['repeat_weights']}  "
            f"validation per epoch {trained.validation_recalls} -> epoch {trained.best_epoch}; "
            f"boost {trained.boost_recalls} -> {trained.repeat_boost}",
            flush=True,
        )
    result["timings_s"]["total"] = time.perf_counter() - started
    _print_table(result)
    return result


def _seen_targets(train: dict, queries: dict) -> np.ndarray:
    """[Q] whether each query's target is among its visitor's train items (a repeat)."""
    pairs = set(zip(train[F.VISITOR_ID].tolist(), train[F.ITEM_ID].tolist(), strict=True))
    return np.array(
        [
            (v, i) in pairs
            for v, i in zip(
                queries[F.VISITOR_ID].tolist(), queries[F.ITEM_ID].tolist(), strict=True
            )
        ]
    )


def _metrics(lists: np.ndarray, targets: np.ndarray, n_train_items: int, seen: np.ndarray) -> dict:
    """The protocol's values plus Recall@50 split into repeat and new-item queries."""
    values = metrics.evaluate(lists, targets, n_train_items)
    hits = metrics.hit_ranks(lists, targets) > 0
    values["recall@50_repeat"] = float(hits[seen].mean()) if seen.any() else 0.0
    values["recall@50_new"] = float(hits[~seen].mean()) if (~seen).any() else 0.0
    return values


def _key(settings: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(settings.items())) or "default"


def _format(value: float | None) -> str:
    return "n/a (window too small)" if value is None else f"{value:.4f}"


def _print_table(result: dict) -> None:
    if result["validation"]:
        print("  VALIDATION WINDOW (the Trainer's own; choose settings by this column):")
        width = max(len(n) for n in result["validation"]) + 2
        print(
            "  "
            + "model".ljust(width)
            + f"{'recall@50':>24}{'epochs':>8}{'boost':>8}{'queries':>9}"
        )
        for model, v in result["validation"].items():
            print(
                "  " + model.ljust(width) + f"{_format(v['recall@50']):>24}{v['best_epoch']:>8}"
                f"{v['repeat_boost']:>8.1f}{v['queries']:>9}"
            )
    print("  EVAL SPLIT (final report only; never choose settings on it):")
    names = (*metrics.metric_names(), "recall@50_repeat", "recall@50_new")
    print(
        f"  repeat queries (target seen by the visitor in train): {result['repeat_query_share']:.3f}"
    )
    width = max(len(n) for n in result["models"]) + 2
    print("  " + "model".ljust(width) + " ".join(f"{n[:16]:>16}" for n in names))
    for model, values in result["models"].items():
        print("  " + model.ljust(width) + " ".join(f"{values[n]:>16.4f}" for n in names))
    best = max(
        (m for m in result["models"] if not m.startswith("two_tower")),
        key=lambda m: result["models"][m]["recall@50"],
        default=None,
    )
    if best:
        bar = result["models"][best]["recall@50"]
        for model, values in result["models"].items():
            if model.startswith("two_tower") and bar > 0:
                print(f"  {model}: {values['recall@50'] / bar:.3f}x best baseline ({best}) on eval")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("exports", nargs="+", type=Path, help="export folders (retailrec export)")
    parser.add_argument("--set", action="append", default=[], help="key=value training setting")
    parser.add_argument("--variants", default="", help="';'-separated variants of key=value,...")
    parser.add_argument("--exclude-seen", action="store_true", help="DESIGN 5 exclude_seen")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--baselines", default=",".join(baselines.BASELINE_NAMES))
    parser.add_argument("--work-dir", default="/tmp/bench_model", help="transform outputs cache")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    args = parser.parse_args(argv)
    base = {}
    for item in args.set:
        base.update(_parse_settings(item))
    variants = [_parse_settings(v) for v in args.variants.split(";")] if args.variants else [{}]
    # Transform settings key the analysis cache; training settings do not.
    transform_keys = {"history_length", "text_hash_buckets", "text_max_tokens", "visitor_min_count"}
    transform_base = {k: v for k, v in base.items() if k in transform_keys}
    # A training setting Transform also reads: the visitor vocabulary is built for any variant
    # with a visitor embedding (modules.transform.settings).
    if any(cfg.get("use_visitor") for cfg in (base, *variants)):
        transform_base["use_visitor"] = True
    results = []
    for export_dir in args.exports:
        results.append(
            run_export(
                export_dir,
                transform_base,
                [
                    {**{k: v for k, v in base.items() if k not in transform_keys}, **v}
                    for v in variants
                ],
                args,
            )
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
