"""Two ablations of a finished run's evaluation (issue 13): where does the two-tower's win come from?

1. **Query time at the cutoff.** Every eval query carries its own timestamp (the eval event's
   time), which the two-tower reads (time since the visitor's last event, hour, weekday) and the
   baselines never see. Here every query's timestamp is replaced by the cutoff and the same
   model is scored again.
2. **exclude_seen on/off for every model.** The protocol's default keeps items the visitor had in
   train (repeats are most of the wins in some shops); here both settings are scored for the
   two-tower and every baseline.

It reads the run from ML Metadata (the Trainer's model, ExampleGen's examples), scores with the
evaluator's own code (``components.scoring``, ``components.baselines``) and prints Recall@50 with
the 95% paired bootstrap interval, and the two-tower's ratio to the best baseline of the same
setting with its interval. Nothing is chosen from these figures; they are on the eval split.

    python benchmarks/bench_ablations.py --output output/default [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfx.utils import path_utils  # noqa: E402

from components import examples_io, scoring  # noqa: E402
from components.baselines import baselines  # noqa: E402
from modules import features as F  # noqa: E402
from modules import metrics  # noqa: E402
from pipeline import configs, local_runner  # noqa: E402
from reporting import results  # noqa: E402


def _run_artifacts(output: str) -> tuple[str, str, int]:
    """(model dir, examples uri, cutoff in ms) of the latest run in ``output``."""
    where = local_runner.paths(output)
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    model = nodes["Trainer"].outputs["model"][0].uri
    examples = nodes["CsvExampleGen"].outputs["examples"][0].uri
    summary = json.loads(Path(where["export"], F.EXPORT_SUMMARY_FILE).read_text())
    cutoff = datetime.fromisoformat(summary["split"]["cutoff"]).astimezone(timezone.utc)
    return path_utils.serving_model_path(model), examples, int(cutoff.timestamp() * 1000)


def _baselines(examples: str, exclude_seen: bool) -> dict:
    columns = {F.VISITOR_ID: "int64", F.ITEM_ID: "int64", F.TIMESTAMP: "int64"}
    train = examples_io.read_columns(examples, F.TRAIN_SPLIT, columns)
    queries = examples_io.read_columns(examples, F.EVAL_SPLIT, {**columns, F.EVENT: "string"})
    return baselines.evaluate_all(
        train[F.VISITOR_ID],
        train[F.ITEM_ID],
        train[F.TIMESTAMP],
        queries[F.VISITOR_ID],
        queries[F.ITEM_ID],
        exclude_seen=exclude_seen,
        query_events=queries[F.EVENT],
    )


def _row(name: str, scored: scoring.Scored, base: dict) -> dict:
    best = base["best_baseline"]
    samples = metrics.bootstrap_recalls(
        {"m": scored.ranks, "b": base["per_query"][best]}, scored.queries.visitors
    )
    compared = metrics.compare(
        scored.metrics["recall@50"], samples["m"], base["best_recall@50"], samples["b"]
    )
    return {
        "setting": name,
        "two_tower_recall@50": scored.metrics["recall@50"],
        "two_tower_recall@50_ci": scored.metrics["recall@50_ci"],
        "best_baseline": best,
        "best_baseline_recall@50": base["best_recall@50"],
        "ratio": compared["ratio"],
        "ratio_ci": compared["ratio_ci"],
        "baselines": {n: m["recall@50"] for n, m in base["models"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=configs.DEFAULT_OUTPUT_DIR, help="a finished run")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    model, examples, cutoff_ms = _run_artifacts(args.output)
    rows = []
    for exclude_seen in (False, True):
        base = _baselines(examples, exclude_seen)
        settings = [("protocol" + (", exclude_seen" if exclude_seen else ""), None)]
        if not exclude_seen:
            settings.append(("query time := cutoff", cutoff_ms))
        for name, query_time in settings:
            scored = scoring.score_model(
                model,
                examples,
                exclude_seen=exclude_seen,
                train_split=F.TRAIN_SPLIT,
                eval_split=F.EVAL_SPLIT,
                exact_vectors=True,
                query_time_ms=query_time,
            )
            rows.append(_row(name, scored, base))
    print(
        f"{'setting':<26}{'two_tower R@50':>16}{'95% CI':>18}  {'best baseline':<16}"
        f"{'R@50':>8}{'ratio':>8}{'95% CI':>16}"
    )
    for r in rows:
        ci, rci = r["two_tower_recall@50_ci"], r["ratio_ci"] or [float("nan")] * 2
        print(
            f"{r['setting']:<26}{r['two_tower_recall@50']:>16.4f}"
            f"{f'[{ci[0]:.4f}, {ci[1]:.4f}]':>18}  {r['best_baseline']:<16}"
            f"{r['best_baseline_recall@50']:>8.4f}{r['ratio'] or float('nan'):>8.2f}"
            f"{f'[{rci[0]:.2f}, {rci[1]:.2f}]':>16}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
