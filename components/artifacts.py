"""The project's artifact types and the files inside them: one place for names, keys and readers.

Executors write and read their artifacts' files only through this module, and so does
``reporting/results.py``; no component imports another component's executor.

==================  ===============================  =============================================
artifact type       file in the artifact's URI       written by / read by
==================  ===============================  =============================================
RowCounts           ``row_counts.json``              ValidationGate / Baselines, ScannIndex,
                    (``modules.row_counts``)         RetrievalEvaluator
BaselineMetrics     ``metrics.json``                 Baselines / RetrievalEvaluator, results
AnnMetrics          ``ann.json``                     ScannIndex / RetrievalEvaluator, results
ModelEvaluation     ``metrics.json``                 RetrievalEvaluator / results
==================  ===============================  =============================================
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfx.types import artifact, artifact_utils

from modules import constants, row_counts

BASELINES_FILE = "metrics.json"
ANN_FILE = "ann.json"
EVALUATION_FILE = "metrics.json"
PER_QUERY_FILE = "per_query.npz"  # hit ranks per eval query, for slices and intervals

# Keys of ann.json that metrics.json's "ann" section carries (DESIGN section 8).
FIDELITY_KEY = f"recall_vs_exact@{constants.SCANN_RECALL_K}"
ANN_SUMMARY_KEYS = (
    FIDELITY_KEY,
    "scann_queries_per_s",
    "exact_queries_per_s",
    "single_query_scann_per_s",
    "single_query_exact_per_s",
    "speedup",
    "single_query_speedup",
    "config_name",
    "meets_target",
    "target_recall",
    "n_items",
    "build_s",
    "cost",
    "exact_cost",
)
SCANN_MODEL_ENTRY = "two_tower_scann"  # the ScaNN model's metrics in ann.json and metrics.json


class RowCounts(artifact.Artifact):
    """The ValidationGate's verified rows per split (``modules.row_counts``: ``row_counts.json``).

    ``{"splits": {"train": n, "eval": n, "items": n, "eval_visitors": n}, "count_checks": [...]}``;
    the Baselines, ScannIndex and RetrievalEvaluator check what they read against it.
    """

    TYPE_NAME = "retailrec.RowCounts"


class BaselineMetrics(artifact.Artifact):
    """Per-baseline Recall@K, NDCG@50 and coverage@50 (``metrics.json`` in the artifact URI)."""

    # The best baseline goes to custom properties ("best_baseline", "best_recall_at_50"): KFP v2
    # compiles custom artifact types only without declared properties.
    TYPE_NAME = "retailrec.BaselineMetrics"


class AnnMetrics(artifact.Artifact):
    """Index fidelity and speed (``ann.json`` in the artifact URI).

    Headline figures also go to custom properties (``recall_vs_exact_at_50``, ``meets_target``,
    ``scann_queries_per_s``, ``exact_queries_per_s``): KFP v2 compiles custom artifact types only
    without declared properties.
    """

    TYPE_NAME = "retailrec.AnnMetrics"


def verified_counts(input_dict: dict, key: str = "row_counts") -> dict[str, int] | None:
    """The RowCounts input of an executor as ``{split: rows, ...}``; None when not wired."""
    if not input_dict.get(key):
        return None
    return row_counts.splits(artifact_utils.get_single_instance(input_dict[key]).uri)


def write_json(uri: str, name: str, payload: dict) -> None:
    """Writes ``<uri>/<name>`` (through a temporary file, so a reader never sees half of it)."""
    os.makedirs(uri, exist_ok=True)
    path = os.path.join(uri, name)
    with open(path + ".tmp", "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def read_json(uri: str, name: str) -> dict:
    """Reads ``<uri>/<name>``."""
    with open(os.path.join(uri, name)) as fh:
        return json.load(fh)


# ---------------------------------------------------------------- BaselineMetrics


def write_baselines(output: artifact.Artifact, result: dict) -> None:
    """Writes ``metrics.json`` and the best baseline to the artifact's custom properties."""
    write_json(output.uri, BASELINES_FILE, result)
    output.set_string_custom_property("best_baseline", result["best_baseline"])
    output.set_float_custom_property("best_recall_at_50", float(result["best_recall@50"]))


def read_baselines(uri: str) -> dict:
    """The ``metrics.json`` of a BaselineMetrics artifact (``models``, ``best_baseline``, ...)."""
    return read_json(uri, BASELINES_FILE)


# ---------------------------------------------------------------- AnnMetrics


def write_ann(output: artifact.Artifact, payload: dict[str, Any]) -> None:
    """Writes ``ann.json`` and the headline figures as custom properties."""
    write_json(output.uri, ANN_FILE, payload)
    output.set_float_custom_property(
        f"recall_vs_exact_at_{constants.SCANN_RECALL_K}", payload[FIDELITY_KEY]
    )
    output.set_int_custom_property("meets_target", int(payload["meets_target"]))
    output.set_float_custom_property("target_recall", payload["target_recall"])
    output.set_float_custom_property("scann_queries_per_s", payload["scann_queries_per_s"])
    output.set_float_custom_property("exact_queries_per_s", payload["exact_queries_per_s"])


def read_ann(uri: str) -> dict[str, Any]:
    """The ``ann.json`` of an AnnMetrics artifact."""
    return read_json(uri, ANN_FILE)


# ---------------------------------------------------------------- ModelEvaluation


def write_evaluation(uri: str, payload: dict) -> None:
    """Writes the RetrievalEvaluator's ``metrics.json`` into a ModelEvaluation artifact."""
    write_json(uri, EVALUATION_FILE, payload)


def read_evaluation(uri: str) -> dict:
    """The ``metrics.json`` of a ModelEvaluation written by the RetrievalEvaluator."""
    return read_json(uri, EVALUATION_FILE)


# ---------------------------------------------------------------- per-query hit ranks


def write_per_query(uri: str, visitors, targets, ranks: dict) -> None:
    """Writes every model's hit rank per eval query (``per_query.npz``), with the query keys.

    The RetrievalEvaluator pairs the two-tower's ranks with the baselines' on the same queries
    (``modules.metrics.compare``), so both must list the queries in the same order; the visitors
    and targets stored here let the reader check that.
    """
    import numpy as np

    os.makedirs(uri, exist_ok=True)
    path = os.path.join(uri, PER_QUERY_FILE)
    with open(path + ".tmp", "wb") as fh:
        np.savez_compressed(
            fh,
            visitors=np.asarray(visitors, np.int64),
            targets=np.asarray(targets, np.int64),
            **{f"rank_{name}": np.asarray(r, np.int16) for name, r in ranks.items()},
        )
    os.replace(path + ".tmp", path)


def read_per_query(uri: str):
    """``(visitors, targets, {model: ranks})`` of a ``per_query.npz``; None when there is none."""
    import numpy as np

    path = os.path.join(uri, PER_QUERY_FILE)
    if not os.path.isfile(path):
        return None
    with np.load(path) as data:
        ranks = {k[len("rank_") :]: data[k].astype(np.int64) for k in data if k.startswith("rank_")}
        return data["visitors"], data["targets"], ranks
