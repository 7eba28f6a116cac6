"""Executor of the ScannIndex component: artifact plumbing around ``index`` and ``serving``.

``build_index`` does the work on plain paths (tune on held-out queries, time exact search, export
the ScaNN SavedModel, check the served lists); ``Executor.Do`` maps artifacts to those paths and
also scores the served model on the eval split exactly like the RetrievalEvaluator does
(``evaluate.evaluate_model``: same lists, same ``modules.evaluation`` metrics).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import examples_io
from components.artifacts import verified_counts
from components.retrieval_evaluator import evaluate
from components.scann_index import index
from components.scann_index import serving as scann_serving
from modules import constants, memory, ranking, row_counts, serving
from modules import features as F

ANN_FILE = "ann.json"
MODEL_ENTRY = "two_tower_scann"


def build_index(
    brute_force_dir: str,
    eval_files: list[str],
    out_dir: str,
    *,
    target_recall: float = constants.SCANN_TARGET_RECALL,
    k: int = constants.SCANN_RECALL_K,
    n_queries: int = constants.SCANN_TUNE_QUERIES,
    seed: int = constants.SCANN_TUNE_SEED,
    threads: int = constants.SCANN_THREADS,
    repeats: int = constants.SCANN_TIMING_REPEATS,
    single_queries: int = constants.SCANN_SINGLE_QUERIES,
    grid: list[dict[str, Any]] | None = None,
    min_seconds: float = 0.1,
) -> dict[str, Any]:
    """Tunes the index on held-out queries, exports the ScaNN SavedModel, returns the ann figures.

    Args:
      brute_force_dir: the Trainer's serving SavedModel (``modules.serving``).
      eval_files: gzipped TFRecords of the eval split (raw user columns); a seeded sample of
        ``n_queries`` of them are the held-out queries.
      out_dir: where the ScaNN SavedModel goes.
      target_recall: Recall@k against exact search the chosen configuration must reach.
      k: the recall cut.
      n_queries: held-out queries to tune and time on.
      seed: the sample's seed.
      threads: ScaNN search threads (exact search uses the process's BLAS/TF threads).
      repeats: timing repeats (medians are reported).
      single_queries: queries timed one at a time.
      grid: configurations to try (default ``index.default_grid``).
      min_seconds: the shortest timing run.

    Returns:
      The ``ann.json`` payload (without the eval-split metrics; ``Executor.Do`` adds them).
    """
    brute_force = scann_serving.load_brute_force(brute_force_dir)
    catalogue = brute_force.signatures[serving.CATALOGUE_SIGNATURE]()
    vectors = catalogue["item_vectors"].numpy().astype(np.float32)
    queries, examples = scann_serving.query_vectors(brute_force, eval_files, n_queries, seed)
    logging.info("ScaNN: tuning over %d items on %d held-out queries", len(vectors), len(queries))

    chosen, curve = index.tune(
        vectors,
        queries,
        k=k,
        target_recall=target_recall,
        grid=grid,
        repeats=repeats,
        single_queries=single_queries,
        threads=threads,
        min_seconds=min_seconds,
    )
    point = next(p for p in curve if p["config"] == chosen)
    exact = _exact_speeds(vectors, queries, k, repeats, single_queries, min_seconds)

    start = time.perf_counter()
    scann_serving.export_scann_model(brute_force_dir, out_dir, chosen)
    export_s = time.perf_counter() - start
    served = _served_agreement(brute_force, out_dir, examples)

    best_exact = max(exact.values(), key=lambda e: e["queries_per_s"])
    best_single = max(exact.values(), key=lambda e: e["single_query_per_s"])
    payload = {
        f"recall_vs_exact@{k}": point["recall_vs_exact"],
        "scann_queries_per_s": point["queries_per_s"],
        "exact_queries_per_s": best_exact["queries_per_s"],
        "single_query_scann_per_s": point["single_query_per_s"],
        "single_query_exact_per_s": best_single["single_query_per_s"],
        "speedup": point["queries_per_s"] / best_exact["queries_per_s"],
        "single_query_speedup": point["single_query_per_s"] / best_single["single_query_per_s"],
        "exact": exact,
        "config": chosen,
        "config_name": index.describe(chosen),
        "served_config": scann_serving.served_config(chosen, _n_candidates(brute_force)),
        "meets_target": bool(point["meets_target"]),
        "target_recall": float(target_recall),
        "k": int(k),
        "build_s": point["build_s"],
        "export_s": export_s,
        "n_items": int(len(vectors)),
        "n_queries": int(len(queries)),
        "threads": int(threads),
        f"served_recall_vs_brute_force@{ranking.LIST_LENGTH}": served,
        "curve": curve,
    }
    logging.info(
        "ScaNN: chose %s, Recall@%d %.4f (target %.2f), %.0f q/s vs exact %.0f q/s",
        payload["config_name"],
        k,
        point["recall_vs_exact"],
        target_recall,
        point["queries_per_s"],
        best_exact["queries_per_s"],
    )
    return payload


def _n_candidates(brute_force: Any) -> int:
    """K + N: what a request asks the index for (the longest list plus the history length)."""
    serve = brute_force.signatures[serving.SERVING_SIGNATURE]
    evaluate_fn = brute_force.signatures[serving.EVAL_SIGNATURE]
    query = brute_force.signatures[serving.QUERY_SIGNATURE]
    k = max(
        int(serve.structured_outputs[serving.OUTPUT_ITEM_IDS].shape[1]),
        int(evaluate_fn.structured_outputs[serving.OUTPUT_CLASSES].shape[1]),
    )
    return k + int(query.structured_outputs["history_rows"].shape[1])


def _exact_speeds(vectors, queries, k, repeats, single_queries, min_seconds) -> dict:
    """Exact search two ways (numpy matmul + threshold top-k; TensorFlow matmul + top_k)."""
    numpy_batched, numpy_single = index.measure_exact_speed(
        vectors, queries, k, repeats=repeats, single_queries=single_queries, min_seconds=min_seconds
    )
    tf_batched, tf_single = scann_serving.exact_speed_tf(
        vectors, queries, k, repeats=repeats, single_queries=single_queries
    )
    return {
        "numpy": {"queries_per_s": numpy_batched, "single_query_per_s": numpy_single},
        "tensorflow": {"queries_per_s": tf_batched, "single_query_per_s": tf_single},
    }


def _served_agreement(brute_force: Any, scann_dir: str, examples: list[bytes]) -> float:
    """Mean share of the brute-force model's eval top 50 that the served ScaNN model's top 50 holds.

    Both lists include the repeat bonus of history items: this is the index's fidelity as served.
    """
    import tensorflow as tf

    if not examples:
        return float("nan")
    scann_model = scann_serving.load(scann_dir)
    records = tf.constant(examples)
    exact = brute_force.signatures[serving.EVAL_SIGNATURE](examples=records)
    approx = scann_model.signatures[serving.EVAL_SIGNATURE](examples=records)
    n = ranking.LIST_LENGTH
    return index.recall_vs_exact(
        approx[serving.OUTPUT_CLASSES].numpy()[:, :n], exact[serving.OUTPUT_CLASSES].numpy()[:, :n]
    )


class Executor(base_executor.BaseExecutor):
    """Tunes the index, writes the ScaNN model and ``ann.json`` (with ``two_tower_scann``)."""

    def Do(  # noqa: N802 (the TFX executor interface)
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        scann_model = artifact_utils.get_single_instance(output_dict["scann_model"])
        metrics = artifact_utils.get_single_instance(output_dict["index_metrics"])

        out_dir = path_utils.serving_model_dir(scann_model.uri)
        payload = build_index(
            path_utils.serving_model_path(model.uri),
            examples_io.split_files(examples.uri, exec_properties["eval_split"]),
            out_dir,
            target_recall=float(exec_properties["target_recall"]),
            k=int(exec_properties["k"]),
        )
        scores, curve, read = evaluate.evaluate_model(
            out_dir,
            examples.uri,
            exclude_seen=bool(exec_properties["exclude_seen"]),
            train_split=exec_properties["train_split"],
            eval_split=exec_properties["eval_split"],
        )
        payload[MODEL_ENTRY] = scores
        payload[row_counts.CHECKS_KEY] = read_checks(input_dict, exec_properties, payload, read)
        payload[f"{MODEL_ENTRY}_recall_curve"] = [float(x) for x in curve]
        logging.info("ScaNN model on %s: %s", exec_properties["eval_split"], scores)
        write_metrics(metrics, payload)
        scann_model.set_string_custom_property("index_config", json.dumps(payload["config"]))
        scann_model.set_int_custom_property("meets_target", int(payload["meets_target"]))
        memory.release()


COMPONENT = "ScannIndex"


def read_checks(input_dict, exec_properties, payload: dict, read: dict) -> list[dict]:
    """Items indexed and rows scored, checked against the ValidationGate's counts (if wired)."""
    expected = verified_counts(input_dict)
    if expected is None:
        return []
    return row_counts.check_reads(
        COMPONENT,
        expected,
        [
            (F.ITEMS_SPLIT, "items indexed", payload["n_items"]),
            (exec_properties["train_split"], evaluate.TRAIN_EVENTS, read[evaluate.TRAIN_EVENTS]),
            (exec_properties["eval_split"], evaluate.EVAL_QUERIES, read[evaluate.EVAL_QUERIES]),
        ],
    )


def write_metrics(output: types.Artifact, payload: dict[str, Any]) -> None:
    """Writes ``<uri>/ann.json`` and the headline figures as custom properties."""
    os.makedirs(output.uri, exist_ok=True)
    with open(os.path.join(output.uri, ANN_FILE), "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
    k = payload["k"]
    output.set_float_custom_property(f"recall_vs_exact_at_{k}", payload[f"recall_vs_exact@{k}"])
    output.set_int_custom_property("meets_target", int(payload["meets_target"]))
    output.set_float_custom_property("target_recall", payload["target_recall"])
    output.set_float_custom_property("scann_queries_per_s", payload["scann_queries_per_s"])
    output.set_float_custom_property("exact_queries_per_s", payload["exact_queries_per_s"])


def read_metrics(uri: str) -> dict[str, Any]:
    """Reads the ``ann.json`` of an AnnMetrics artifact."""
    with open(os.path.join(uri, ANN_FILE)) as fh:
        return json.load(fh)
