"""The whole pipeline on several generated shop regimes and seeds: where does the two-tower win?

For every (preset, generator seed) this generates a raw RetailRocket folder (``retailrec generate``),
runs ``retailrec run`` on it in a fresh process (TF_USE_LEGACY_KERAS=1) and reads the run's
``metrics.json`` (reporting/results.py): every model's Recall@50, the best baseline, the paired
two_tower / best-baseline ratio with its 95% bootstrap interval, the blessing, and the slices. It
prints and writes two markdown tables: one row per run, and the slices where the two-tower wins or
loses against that run's best baseline.

    python -m benchmarks.bench_regimes                                  # 5 presets x seeds 1 2 3
    python -m benchmarks.bench_regimes --presets never-return --seeds 1 --extra-args "--epochs 2"
    python -m benchmarks.bench_regimes --work /tmp/regimes --no-run     # only tabulate what is there

Layout of the work folder (resumable: a raw folder with its generator.json is not generated again,
a run whose metrics.json exists is not run again; delete ``out`` to rerun)::

    WORK/<preset>/seed<seed>/raw/        the generated raw files
    WORK/<preset>/seed<seed>/out/        the run's output folder (metrics.json, report.html, ...)
    WORK/<preset>/seed<seed>/run.log     the run's terminal output
    WORK/<preset>/seed<seed>/bench.json  generation and run wall times, the run's exit status
    WORK/regimes.md, WORK/regimes.json   the tables (``--output-md`` moves the markdown)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRESETS = ("default", "repeat-heavy", "discovery-heavy", "repeat-purchase", "never-return")
DEFAULT_SEEDS = (1, 2, 3)
METRICS_FILE = "metrics.json"
PROVENANCE_FILE = "generator.json"  # data.generator.PROVENANCE_FILE, written last
BENCH_FILE = "bench.json"
TWO_TOWER = "two_tower"
# Models listed first in the table (then any other model the runs report, by name).
MODEL_ORDER = (
    TWO_TOWER,
    "two_tower_scann",
    "most_popular",
    "recently_viewed",
    "user_user_cf",
    "item_item_cf",
    "svd",
)
# cli.py's exit statuses: 0 blessed, 3 ran but not blessed (both write metrics.json).
_EXIT_NOT_BLESSED = 3


def _env() -> dict[str, str]:
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def _read_bench(case: Path) -> dict:
    path = case / BENCH_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_bench(case: Path, **values) -> None:
    record = {**_read_bench(case), **values}
    (case / BENCH_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def generate(case: Path, preset: str, seed: int) -> None:
    """Writes case/raw unless a complete raw folder is there (its generator.json is written last)."""
    raw = case / "raw"
    if (raw / PROVENANCE_FILE).is_file():
        return
    case.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cmd = _cli("generate", "--preset", preset, "--seed", str(seed), "--out", str(raw))
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"generate {preset} seed {seed} failed:\n{done.stderr[-3000:]}")
    _write_bench(case, generate_s=round(time.perf_counter() - started, 1))


def run(case: Path, extra: list[str]) -> None:
    """Runs the pipeline on case/raw into case/out unless case/out/metrics.json exists."""
    out = case / "out"
    if (out / METRICS_FILE).is_file():
        return
    cmd = _cli("run", "--raw", str(case / "raw"), "--output", str(out), *extra)
    print(f"[regimes] {shlex.join(cmd[1:])}  (log: {case / 'run.log'})", flush=True)
    started = time.perf_counter()
    with open(case / "run.log", "w") as log:
        rc = subprocess.run(
            cmd, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT
        ).returncode
    wall = round(time.perf_counter() - started, 1)
    _write_bench(case, run_s=wall, returncode=rc, extra_args=extra)
    state = "done" if (out / METRICS_FILE).is_file() else "FAILED (no metrics.json)"
    print(f"[regimes] {case.parent.name} {case.name}: exit {rc}, {wall:.0f} s, {state}", flush=True)


def best_baseline(metrics: dict) -> str | None:
    """The run's best baseline: metrics.json's own choice, else the highest Recall@50 of the rest."""
    models = metrics.get("models", {})
    best = metrics.get("best_baseline")
    if best in models:
        return best
    rest = {n: m for n, m in models.items() if not n.startswith(TWO_TOWER)}
    return max(rest, key=lambda n: rest[n].get("recall@50", -1.0)) if rest else None


def summarise(metrics: dict) -> dict:
    """The figures of one run that the tables need (None where the run has no such figure)."""
    models = metrics.get("models", {})
    best = best_baseline(metrics)
    comparison = metrics.get("comparisons", {}).get(f"{TWO_TOWER}_vs_{best}", {})
    slices = []
    ours = models.get(TWO_TOWER, {}).get("slices", {})
    theirs = models.get(best, {}).get("slices", {}) if best else {}
    for name, values in ours.items():
        if name not in theirs:
            continue
        a, b = values.get("recall@50"), theirs[name].get("recall@50")
        if a is None or b is None:
            continue
        slices.append({"slice": name, "queries": values.get("queries"), TWO_TOWER: a, "best": b})
    return {
        "eval_queries": metrics.get("protocol", {}).get("n_eval_queries"),
        "recall@50": {name: m.get("recall@50") for name, m in models.items()},
        "best_baseline": best,
        "ratio": comparison.get("ratio"),
        "ratio_ci": comparison.get("ratio_ci"),
        "blessed": metrics.get("blessed"),
        "slices": slices,
    }


def collect(work: Path, presets: list[str], seeds: list[int]) -> list[dict]:
    """One row per (preset, seed) in that order; ``summary`` is None where no metrics.json exists."""
    rows = []
    for preset in presets:
        for seed in seeds:
            case = work / preset / f"seed{seed}"
            path = case / "out" / METRICS_FILE
            summary = summarise(json.loads(path.read_text())) if path.is_file() else None
            rows.append({"preset": preset, "seed": seed, "summary": summary, **_read_bench(case)})
    return rows


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(summary: dict) -> str:
    if summary["ratio"] is None:
        return "-"
    text = f"{summary['ratio']:.2f}x"
    if summary["ratio_ci"]:
        low, high = summary["ratio_ci"]
        text += f" [{low:.2f}x, {high:.2f}x]"
    return text


def _wall(row: dict) -> str:
    run_s = row.get("run_s")
    if run_s is None:
        return "-"
    return f"{run_s / 60:.1f} min"


def markdown(rows: list[dict]) -> str:
    """The two tables (runs, then slices) and a per-preset line of the ratio across seeds."""
    done = [r for r in rows if r["summary"]]
    names = {n for r in done for n in r["summary"]["recall@50"]}
    models = [n for n in MODEL_ORDER if n in names] + sorted(names - set(MODEL_ORDER))
    head = ["preset", "seed", "eval queries", *(f"{n} R@50" for n in models)]
    head += ["best baseline", "two_tower / best [95% CI]", "blessed", "wall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["summary"]
        if s is None:
            status = (
                "not run" if r.get("returncode") is None else f"failed (exit {r['returncode']})"
            )
            cells = [r["preset"], str(r["seed"]), status] + ["-"] * (len(head) - 4) + [_wall(r)]
        else:
            recall = s["recall@50"]
            best = s["best_baseline"]
            cells = [r["preset"], str(r["seed"]), f"{s['eval_queries']:,}"]
            for n in models:
                value = _num(recall.get(n))
                cells.append(f"**{value}**" if n == best else value)
            cells += [best or "-", _ratio(s), "yes" if s["blessed"] else "no", _wall(r)]
        lines.append("| " + " | ".join(cells) + " |")

    ratios: dict[str, list[float]] = {}
    for r in done:
        if r["summary"]["ratio"] is not None:
            ratios.setdefault(r["preset"], []).append(r["summary"]["ratio"])
    if ratios:
        lines += ["", "two_tower / best baseline by preset (mean over seeds; min, max):", ""]
        for preset, values in ratios.items():
            mean = sum(values) / len(values)
            lines.append(
                f"- {preset}: {mean:.2f}x over {len(values)} seed(s) "
                f"({min(values):.2f}x .. {max(values):.2f}x)"
            )

    lines += [
        "",
        "Slices: two_tower vs the run's best baseline (Recall@50)",
        "",
        "| preset | seed | slice | queries | two_tower | best baseline | difference | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in done:
        s = r["summary"]
        for c in sorted(s["slices"], key=lambda c: c[TWO_TOWER] - c["best"]):
            diff = c[TWO_TOWER] - c["best"]
            verdict = "wins" if diff > 0 else "loses" if diff < 0 else "tie"
            queries = "-" if c["queries"] is None else f"{c['queries']:,}"
            lines.append(
                f"| {r['preset']} | {r['seed']} | {c['slice']} | {queries} | {c[TWO_TOWER]:.4f} | "
                f"{s['best_baseline']} {c['best']:.4f} | {diff:+.4f} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def _words(values: list[str]) -> list[str]:
    """Accepts both ``--presets a b`` and ``--presets a,b``."""
    return [w for v in values for w in v.split(",") if w]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", nargs="+", default=list(DEFAULT_PRESETS), help="generator presets"
    )
    parser.add_argument(
        "--seeds", nargs="+", default=[str(s) for s in DEFAULT_SEEDS], help="generator seeds"
    )
    parser.add_argument(
        "--work", default="/tmp/bench_regimes", help="folder of the raw data and runs"
    )
    parser.add_argument("--output-md", help="the markdown tables (default: WORK/regimes.md)")
    parser.add_argument(
        "--extra-args",
        default="",
        help='flags passed on to `retailrec run`, one string (e.g. "--epochs 2 --set seed=1")',
    )
    parser.add_argument(
        "--no-run", action="store_true", help="generate and run nothing: tabulate the runs found"
    )
    args = parser.parse_args(argv)
    presets = _words(args.presets)
    seeds = [int(s) for s in _words(args.seeds)]
    work = Path(args.work).resolve()
    extra = shlex.split(args.extra_args)

    if not args.no_run:
        from data import generator  # only to check the preset names before hours of work

        unknown = sorted(set(presets) - set(generator.PRESETS))
        if unknown:
            parser.error(f"unknown preset(s) {unknown}; choose from {sorted(generator.PRESETS)}")
        for preset in presets:
            for seed in seeds:
                case = work / preset / f"seed{seed}"
                generate(case, preset, seed)
                run(case, extra)

    rows = collect(work, presets, seeds)
    table = markdown(rows)
    work.mkdir(parents=True, exist_ok=True)
    md_path = Path(args.output_md) if args.output_md else work / "regimes.md"
    md_path.write_text(table)
    (work / "regimes.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)
    print(f"markdown: {md_path}")
    missing = [r for r in rows if r["summary"] is None]
    return 1 if missing and not args.no_run else 0


if __name__ == "__main__":
    sys.exit(main())
