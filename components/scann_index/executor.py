"""Executor of the ScannIndex component: artifact plumbing around ``index`` and ``serving``.

``build_index`` does the work on plain paths (choose the configuration on held-out queries by
recall and cost, time it and exact search, export the ScaNN SavedModel, check the served lists);
``Executor.Do`` maps artifacts to those paths, also scores the served model on the eval split
exactly like the RetrievalEvaluator does (``scoring.score_model``: same lists, same
``modules.metrics``) and writes ``ann.json`` through ``components.artifacts``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import artifacts, examples_io, scoring
from components.scann_index import index, speed
from components.scann_index import serving as scann_serving
from modules import constants, memory, progress, ranking, row_counts, serving
from modules import features as F

COMPONENT = "ScannIndex"


def build_index(
    brute_force_dir: str,
    eval_files: list[str],
    out_dir: str,
    *,
    target_recall: float = constants.SCANN_TARGET_RECALL,
    n_queries: int = constants.SCANN_TUNE_QUERIES,
    seed: int = constants.SCANN_TUNE_SEED,
    threads: int = constants.SCANN_THREADS,
    repeats: int = constants.SCANN_TIMING_REPEATS,
    single_queries: int = constants.SCANN_SINGLE_QUERIES,
    grid: list[dict[str, Any]] | None = None,
    min_seconds: float = 0.1,
) -> dict[str, Any]:
    """Chooses the index on held-out queries, exports the ScaNN SavedModel, returns the ann figures.

    The configuration is ``index.tune``'s: the cheapest (``index.cost``) reaching
    ``target_recall`` of Recall@``constants.SCANN_RECALL_K`` against exact search, a function of
    the inputs only. Queries/s are measured afterwards, for the chosen configuration and for
    exact search, and only reported.

    Args:
      brute_force_dir: the Trainer's serving SavedModel (``modules.serving``).
      eval_files: gzipped TFRecords of the eval split (raw user columns); a seeded sample of
        ``n_queries`` of them are the held-out queries.
      out_dir: where the ScaNN SavedModel goes.
      target_recall: Recall@``SCANN_RECALL_K`` against exact search the choice must reach.
      n_queries: held-out queries to tune and time on.
      seed: the sample's seed.
      threads: ScaNN training and search threads.
      repeats: timing repeats (medians are reported).
      single_queries: queries timed one at a time.
      grid: configurations to try (default ``index.default_grid``).
      min_seconds: the shortest timing run.

    Returns:
      The ``ann.json`` payload (without the eval-split metrics; ``Executor.Do`` adds them).
    """
    k = constants.SCANN_RECALL_K
    brute_force = scann_serving.load_brute_force(brute_force_dir)
    catalogue = brute_force.signatures[serving.CATALOGUE_SIGNATURE]()
    vectors = catalogue["item_vectors"].numpy().astype(np.float32)
    queries, examples = scann_serving.query_vectors(brute_force, eval_files, n_queries, seed)
    logging.info("ScaNN: tuning over %d items on %d held-out queries", len(vectors), len(queries))

    built: dict[str, Any] = {}
    chosen, curve = index.tune(
        vectors, queries, k=k, target_recall=target_recall, grid=grid, threads=threads, keep=built
    )
    point = next(p for p in curve if p["config"] == chosen)
    progress.report(
        "%d configurations tried; chose %s: Recall@%d vs exact %.4f at cost %.0f per query",
        len(curve),
        index.describe(chosen),
        k,
        point["recall_vs_exact"],
        point["cost"],
    )
    timing = dict(repeats=repeats, single_queries=single_queries, min_seconds=min_seconds)
    scann = speed.scann_speed(vectors, queries, chosen, k, threads=threads, built=built, **timing)
    del built
    exact = speed.exact_speeds(vectors, queries, k, **timing)

    start = time.perf_counter()
    scann_serving.export_scann_model(brute_force_dir, out_dir, chosen, training_threads=threads)
    export_s = time.perf_counter() - start
    served = _served_agreement(brute_force, out_dir, examples)

    best_exact = max(exact.values(), key=lambda e: e["queries_per_s"])
    best_single = max(exact.values(), key=lambda e: e["single_query_per_s"])
    payload = {
        artifacts.FIDELITY_KEY: point["recall_vs_exact"],
        "cost": point["cost"],
        "exact_cost": index.cost(index.exact_config(), len(vectors), vectors.shape[1], k),
        "scann_queries_per_s": scann["queries_per_s"],
        "exact_queries_per_s": best_exact["queries_per_s"],
        "single_query_scann_per_s": scann["single_query_per_s"],
        "single_query_exact_per_s": best_single["single_query_per_s"],
        "speedup": scann["queries_per_s"] / best_exact["queries_per_s"],
        "single_query_speedup": scann["single_query_per_s"] / best_single["single_query_per_s"],
        "exact": exact,
        "config": chosen,
        "config_name": index.describe(chosen),
        "served_config": scann_serving.served_config(chosen, _n_candidates(brute_force)),
        "meets_target": bool(point["meets_target"]),
        "target_recall": float(target_recall),
        "k": k,
        "build_s": scann["build_s"],
        "export_s": export_s,
        "n_items": int(len(vectors)),
        "n_queries": int(len(queries)),
        "threads": int(threads),
        f"served_recall_vs_brute_force@{ranking.LIST_LENGTH}": served,
        "curve": curve,
    }
    logging.info(
        "ScaNN: chose %s (cost %.0f vs exact %.0f per query), Recall@%d %.4f (target %.2f), "
        "%.0f q/s vs exact %.0f q/s",
        payload["config_name"],
        point["cost"],
        payload["exact_cost"],
        k,
        point["recall_vs_exact"],
        target_recall,
        scann["queries_per_s"],
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


def _served_agreement(brute_force: Any, scann_dir: str, examples: list[bytes]) -> float:
    """Mean share of the brute-force model's exact top 50 that the served ScaNN model's top 50 holds.

    Both lists include the repeat bonus of history items: this is the index's fidelity as served.
    The exact lists are the RetrievalEvaluator's (``scoring.ExactLists``: the brute-force model's
    vectors, scored in numpy; its TensorFlow signature took 16 s on these 2,000 queries at
    RetailRocket scale).
    """
    import tensorflow as tf

    if not examples:
        return float("nan")
    scann_model = scann_serving.load(scann_dir)
    records = tf.constant(examples)
    n = ranking.LIST_LENGTH
    exact = scoring.ExactLists(brute_force, k=n)(records)
    approx = scann_model.signatures[serving.EVAL_SIGNATURE](examples=records)
    return index.recall_vs_exact(approx[serving.OUTPUT_CLASSES].numpy()[:, :n], exact)


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
        )
        scored = scoring.score_model(
            out_dir,
            examples.uri,
            exclude_seen=bool(exec_properties["exclude_seen"]),
            train_split=exec_properties["train_split"],
            eval_split=exec_properties["eval_split"],
        )
        scores, curve = scored.metrics, scored.curve
        payload[artifacts.SCANN_MODEL_ENTRY] = scores
        payload[row_counts.CHECKS_KEY] = read_checks(
            input_dict, exec_properties, payload, scored.read
        )
        payload[f"{artifacts.SCANN_MODEL_ENTRY}_recall_curve"] = [float(x) for x in curve]
        logging.info("ScaNN model on %s: %s", exec_properties["eval_split"], scores)
        artifacts.write_ann(metrics, payload)
        scann_model.set_string_custom_property("index_config", json.dumps(payload["config"]))
        scann_model.set_int_custom_property("meets_target", int(payload["meets_target"]))
        memory.release()


def read_checks(input_dict, exec_properties, payload: dict, read: dict) -> list[dict]:
    """Items indexed and rows scored, checked against the ValidationGate's counts (if wired)."""
    expected = artifacts.verified_counts(input_dict)
    if expected is None:
        return []
    return row_counts.check_reads(
        COMPONENT,
        expected,
        [
            (F.ITEMS_SPLIT, "items indexed", payload["n_items"]),
            (exec_properties["train_split"], scoring.TRAIN_EVENTS, read[scoring.TRAIN_EVENTS]),
            (exec_properties["eval_split"], scoring.EVAL_QUERIES, read[scoring.EVAL_QUERIES]),
        ],
    )
