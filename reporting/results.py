"""Reads a run's results back from ML Metadata and writes ``metrics.json`` (DESIGN section 8).

ML Metadata is the record of what ran: the latest pipeline run's executions (cached ones included),
their output artifacts and timings. Nothing here trusts a path that the run did not record.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import artifacts
from components.pusher.component import PUSH_RECORD
from modules import constants, metrics, row_counts
from pipeline import pipeline as P

_OUTPUT_EVENTS = (
    metadata_store_pb2.Event.OUTPUT,
    metadata_store_pb2.Event.DECLARED_OUTPUT,
    # What a resolver resolved (e.g. an earlier run's HyperParameters under --no-tune).
    metadata_store_pb2.Event.INTERNAL_OUTPUT,
)
_STATES = {
    metadata_store_pb2.Execution.COMPLETE: "complete",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


@dataclass
class NodeResult:
    """One component's execution in a run."""

    state: str
    seconds: float
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = field(default_factory=dict)
    started_ms: int = 0  # when ML Metadata recorded the execution (orders the DAG's steps)


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """Opens the SQLite ML Metadata store of a local run (read only use)."""
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(f"{metadata_path}: no ML Metadata store (has the pipeline run?)")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def latest_run(store: metadata_store.MetadataStore, pipeline_name: str) -> dict[str, NodeResult]:
    """Returns ``{node id: NodeResult}`` of the latest run of ``pipeline_name``."""
    runs = [
        c for c in store.get_contexts_by_type("pipeline_run") if _belongs(store, c, pipeline_name)
    ]
    if not runs:
        return {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = store.get_executions_by_context(run.id)
    results: dict[str, NodeResult] = {}
    events = store.get_events_by_execution_ids([e.id for e in executions])
    by_execution: dict[int, list] = defaultdict(list)
    for event in events:
        if event.type in _OUTPUT_EVENTS:
            by_execution[event.execution_id].append(event)
    artifact_ids = sorted({e.artifact_id for evs in by_execution.values() for e in evs})
    artifacts = {a.id: a for a in store.get_artifacts_by_id(artifact_ids)} if artifact_ids else {}
    for execution in executions:
        node = _node_id(store, execution, pipeline_name)
        outputs: dict[str, list] = defaultdict(list)
        for event in by_execution[execution.id]:
            key = event.path.steps[0].key if event.path.steps else ""
            outputs[key].append(artifacts[event.artifact_id])
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
        results[node] = NodeResult(
            state=_STATES.get(execution.last_known_state, "unknown"),
            seconds=round(seconds, 2),
            outputs=dict(outputs),
            started_ms=int(execution.create_time_since_epoch),
        )
    return results


def _belongs(store, run_context, pipeline_name: str) -> bool:
    parents = store.get_parent_contexts_by_context(run_context.id)
    return any(p.name == pipeline_name for p in parents) or not parents


def _node_id(store, execution, pipeline_name: str) -> str:
    for context in store.get_contexts_by_execution(execution.id):
        prefix = f"{pipeline_name}."
        if context.name.startswith(prefix):
            return context.name[len(prefix) :]
    return str(execution.id)


@dataclass
class RunResults:
    """What a run produced: metrics.json's content and what the report adds to it."""

    metrics: dict
    curves: dict[str, list[float]]
    lineage: dict[str, dict[str, list[str]]]
    gate_reasons: list[str]
    ann_curve: list[dict] | None = None
    order: list[str] = field(default_factory=list)  # node ids in the order they started
    training: dict | None = None  # the Trainer's training_summary.json (settings, validation)
    tuning: dict | None = None  # metrics.json's "tuning" (collect_tuning)


def _json_at(uri: str, name: str) -> dict:
    with open(os.path.join(uri, name)) as fh:
        return json.load(fh)


def _first_uri(nodes: dict[str, NodeResult], node: str, key: str) -> str | None:
    result = nodes.get(node)
    if result and result.outputs.get(key):
        return result.outputs[key][0].uri
    return None


def _pushed_destination(nodes: dict[str, NodeResult], node: str) -> str | None:
    result = nodes.get(node)
    if result and result.outputs.get("pushed_model"):
        pushed = result.outputs["pushed_model"][0]
        if pushed.custom_properties["pushed"].int_value == 1:
            return pushed.custom_properties["pushed_destination"].string_value
    return None


def _pushed_new_version(nodes: dict[str, NodeResult], node: str) -> bool | None:
    """Whether the push wrote a new version (False: the model was already served), when pushed."""
    uri = _first_uri(nodes, node, "pushed_model")
    if uri is None or _pushed_destination(nodes, node) is None:
        return None
    if not os.path.isfile(os.path.join(uri, PUSH_RECORD)):
        return True  # a stock TFX push
    return bool(_json_at(uri, PUSH_RECORD)["new_version"])


def collect(nodes: dict[str, NodeResult], export_summary: dict, exclude_seen: bool) -> RunResults:
    """Assembles ``metrics.json`` (DESIGN 8) from the export summary and the run's artifacts."""
    split = export_summary["split"]
    models: dict[str, dict] = {}
    curves: dict[str, list[float]] = {}
    reasons: list[str] = []
    best = None
    comparisons: dict = {}
    if uri := _first_uri(nodes, P.BASELINES, "baseline_metrics"):
        baseline = artifacts.read_baselines(uri)
        models.update(baseline["models"])
        curves.update(baseline.get("recall_curves", {}))
        best = baseline.get("best_baseline")
    blessed = False
    if uri := _first_uri(nodes, P.EVALUATOR, "evaluation"):
        evaluation_ = artifacts.read_evaluation(uri)
        models["two_tower"] = evaluation_["metrics"]
        curves["two_tower"] = evaluation_.get("recall_curve", [])
        reasons = evaluation_.get("reasons", [])
        blessed = bool(evaluation_.get("blessed"))
        comparisons = evaluation_.get("comparisons") or {}
        if evaluation_.get("previous_comparison"):
            comparisons["two_tower_vs_latest_blessed"] = evaluation_["previous_comparison"]
    ann = ann_curve = None
    if uri := _first_uri(nodes, P.SCANN_INDEX, "index_metrics"):
        index = artifacts.read_ann(uri)
        models[artifacts.SCANN_MODEL_ENTRY] = index[artifacts.SCANN_MODEL_ENTRY]
        curves[artifacts.SCANN_MODEL_ENTRY] = index.get(
            f"{artifacts.SCANN_MODEL_ENTRY}_recall_curve", []
        )
        ann = {key: index[key] for key in artifacts.ANN_SUMMARY_KEYS if key in index}
        ann_curve = [
            {**c, "chosen": c.get("name") == index.get("config_name")}
            for c in index.get("curve", [])
        ]
    pushed_to = _pushed_destination(nodes, P.PUSHER)
    metrics = {
        "protocol": {
            "cutoff": split["cutoff"],
            "n_train": split["n_train"],
            "n_eval_queries": split["n_eval_queries"],
            "n_items": split["n_items"],
            "exclude_seen": exclude_seen,
        },
        "models": models,
        "comparisons": comparisons,
        "best_baseline": best,
        "ann": ann,
        "blessed": blessed,
        "pushed_to": pushed_to,
        "pushed_scann_to": _pushed_destination(nodes, P.SCANN_PUSHER),
        "pushed_new_version": _pushed_new_version(nodes, P.PUSHER),
        "pushed_scann_new_version": _pushed_new_version(nodes, P.SCANN_PUSHER),
        "counts": collect_counts(nodes, split),
        "tuning": collect_tuning(nodes),
        "timings_s": {node: r.seconds for node, r in sorted(nodes.items())},
        "cached": sorted(node for node, r in nodes.items() if r.state == "cached"),
    }
    lineage = {
        node: {key: [a.uri for a in artifacts] for key, artifacts in r.outputs.items()}
        for node, r in nodes.items()
    }
    order = sorted(nodes, key=lambda n: (nodes[n].started_ms, n))
    training = None
    if uri := _first_uri(nodes, P.TRAINER, "model_run"):
        path = os.path.join(uri, constants.TRAINING_SUMMARY_FILE)
        if os.path.isfile(path):
            training = artifacts.read_json(uri, constants.TRAINING_SUMMARY_FILE)
    return RunResults(
        metrics, curves, lineage, reasons, ann_curve, order, training, metrics["tuning"]
    )


def _hyperparameters_at(uri: str) -> dict:
    """The JSON of a HyperParameters artifact (TFX writes one file; the Trainer reads it)."""
    (name,) = [n for n in sorted(os.listdir(uri)) if not n.startswith(".")]
    return _json_at(uri, name)


def collect_tuning(nodes: dict[str, NodeResult]) -> dict | None:
    """``metrics.json``'s ``tuning``: the Tuner's trials and choice, or where the settings came from.

    With the Tuner (``modules.tuner``): ``{"source": "tuner", "objective": "validation-window
    Recall@50", "trials": [{"trial", "hyperparameters", "validation_recall@50" (None: no window),
    "epochs", "seconds", "status"}, ...], "best_trial", "best", "chosen" (= best: what the Trainer
    got), "space", "defaults", "artifact"}``. Without it (``--no-tune``): ``{"source":
    "earlier_run", "chosen": {...}, "artifact": uri}`` (the latest HyperParameters of an earlier run,
    its trials under ``earlier_trials``) or ``{"source": "defaults", "chosen": {}}``. None when the
    run has neither node (a pipeline without them).
    """
    if uri := _first_uri(nodes, P.TUNER, "best_hyperparameters"):
        config = _hyperparameters_at(uri)
        log = config.get(constants.TUNE_LOG_KEY) or {}
        values = config.get("values", {})
        return {
            "source": "tuner",
            "objective": log.get("objective", "validation-window Recall@50"),
            "trials": log.get("trials", []),
            "best_trial": log.get("best_trial"),
            "best": values,
            "chosen": values,
            "space": log.get("space", {}),
            "defaults": log.get("defaults", {}),
            "artifact": uri,
        }
    if P.HYPERPARAMETERS_RESOLVER not in nodes:
        return None
    if uri := _first_uri(nodes, P.HYPERPARAMETERS_RESOLVER, "hyperparameters"):
        config = _hyperparameters_at(uri)
        log = config.get(constants.TUNE_LOG_KEY) or {}
        return {
            "source": "earlier_run",
            "objective": log.get("objective", "validation-window Recall@50"),
            "chosen": config.get("values", {}),
            "earlier_trials": log.get("trials", []),
            "artifact": uri,
        }
    return {"source": "defaults", "chosen": {}}


def format_tuning(tuning: dict | None) -> str:
    """Lines for the terminal: each trial's settings and validation Recall@50, and the choice."""
    if not tuning:
        return ""
    if tuning["source"] == "defaults":
        return "[tuning] no Tuner (--no-tune) and no earlier run's choice: the default settings"
    if tuning["source"] == "earlier_run":
        chosen = ", ".join(f"{k}={v}" for k, v in sorted(tuning["chosen"].items()))
        return f"[tuning] no Tuner (--no-tune): an earlier run's choice: {chosen}"
    lines = []
    for trial in tuning["trials"]:
        recall = trial.get("validation_recall@50")
        shown = ", ".join(f"{k}={v}" for k, v in sorted(trial["hyperparameters"].items()))
        figure = (
            "no validation window (objective 0)"
            if recall is None
            else f"validation Recall@50 {recall:.4f}"
        )
        mark = "  <- chosen" if trial["trial"] == tuning.get("best_trial") else ""
        lines.append(
            f"[tuning] trial {trial['trial']}: {shown or '(nothing searched)'}: {figure} "
            f"({trial.get('seconds') or 0:.0f} s){mark}"
        )
    return "\n".join(lines)


# Where each component's count checks are: (node, output key, file in the artifact).
_CHECK_SOURCES = (
    (P.VALIDATION_GATE, "counts", row_counts.COUNTS_FILE),
    (P.BASELINES, "baseline_metrics", artifacts.BASELINES_FILE),
    (P.SCANN_INDEX, "index_metrics", artifacts.ANN_FILE),
    (P.EVALUATOR, "evaluation", artifacts.EVALUATION_FILE),
)


def collect_counts(nodes: dict[str, NodeResult], split: dict) -> dict:
    """``metrics.json``'s ``counts``: the export's rows and every boundary's check, in DAG order.

    The Trainer's and Transform's checks come through the RetrievalEvaluator, which verified them.
    """
    checks: list[dict] = []
    for node, key, name in _CHECK_SOURCES:
        if uri := _first_uri(nodes, node, key):
            path = os.path.join(uri, name)
            if os.path.isfile(path):
                checks += artifacts.read_json(uri, name).get(row_counts.CHECKS_KEY, [])
    return {
        "export": {
            "train": split["n_train"],
            "eval": split["n_eval_queries"],
            "items": split["n_items"],
            "eval_visitors": split["eval_visitors"],
        },
        "checks": checks,
        "all_equal": bool(checks) and all(c["expected"] == c["found"] for c in checks),
    }


def format_counts(counts: dict) -> str:
    """One line per split: the export's rows and how many boundaries read exactly that."""
    lines = []
    by_split: dict[str, list[dict]] = defaultdict(list)
    for check in counts.get("checks", []):
        by_split[check["split"]].append(check)
    for split, rows in counts["export"].items():
        if split == "eval_visitors":
            continue
        ok = sum(c["expected"] == c["found"] for c in by_split.get(split, []))
        lines.append(
            f"[counts] {split}: {rows:,} rows in the export; {ok} of "
            f"{len(by_split.get(split, []))} reads equal ({', '.join(sorted({c['component'] for c in by_split.get(split, [])}))})"
        )
    return "\n".join(lines)


def write_json(path: str, payload: dict) -> None:
    """Writes JSON through a temporary file and a rename: readers never see half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def format_table(models: dict[str, dict]) -> str:
    """The results table printed by ``retailrec run``: every model's Recall@K, NDCG@50, coverage
    and the 95% interval of its Recall@50."""
    names = metrics.metric_names()
    header = f"{'model':<18}" + "".join(f"{n:>12}" for n in names) + f"{'R@50 95% CI':>18}"
    rows = [header, "-" * len(header)]
    ordered = sorted(models.items(), key=lambda kv: -kv[1].get("recall@50", 0.0))
    for name, values in ordered:
        ci = values.get("recall@50_ci")
        interval = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
        rows.append(
            f"{name:<18}"
            + "".join(f"{values.get(n, float('nan')):>12.4f}" for n in names)
            + f"{interval:>18}"
        )
    return "\n".join(rows)


def format_slices(models: dict[str, dict]) -> str:
    """The compact second table: Recall@50 of every model per slice (queries in the header)."""
    order = [n for n in ("two_tower", *sorted(models)) if n in models]
    order = list(dict.fromkeys(n for n in order if models[n].get("slices")))
    if not order:
        return ""
    first = models[order[0]]["slices"]
    width = max(len(n) for n in order) + 2
    header = f"{'Recall@50 by slice':<20}{'queries':>9}" + "".join(
        f"{n[: width - 2]:>{width}}" for n in order
    )
    rows = [header, "-" * len(header)]
    for name in metrics.slice_names():
        if name not in first:
            continue
        cells = []
        for model in order:
            value = models[model]["slices"].get(name, {}).get("recall@50")
            cells.append(f"{'-' if value is None else f'{value:.4f}':>{width}}")
        rows.append(f"{name:<20}{first[name]['queries']:>9,}" + "".join(cells))
    return "\n".join(rows)


def format_comparisons(comparisons: dict) -> str:
    """One line per paired comparison of the two-tower: difference and ratio with intervals."""
    lines = []
    for name, c in comparisons.items():
        ratio = ""
        if c.get("ratio") is not None:
            ratio = f"; ratio {c['ratio']:.2f}x"
            if c.get("ratio_ci"):
                ratio += f" [{c['ratio_ci'][0]:.2f}x, {c['ratio_ci'][1]:.2f}x]"
        lines.append(
            f"[compare] {name}: Recall@50 difference {c['diff']:+.4f} "
            f"[{c['diff_ci'][0]:+.4f}, {c['diff_ci'][1]:+.4f}]{ratio} (95% paired bootstrap)"
        )
    return "\n".join(lines)
