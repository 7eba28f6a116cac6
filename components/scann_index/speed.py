"""Queries per second of the chosen ScaNN configuration and of exact search: reported, not used.

The index configuration is chosen by recall and a machine-independent cost
(``components.scann_index.index.tune``); the figures here describe the machine that ran the
component (batched and one query at a time, medians of ``repeats`` runs) and go to ``ann.json``
and the run report only.

Exact search is timed two ways, each the selection of a real scorer:

* ``numpy``: ``index.exact_search``, an OpenBLAS matmul + ``modules.topk.top_rows`` (the
  RetrievalEvaluator's exact scorer, equal to ``tf.math.top_k``);
* ``tensorflow``: ``tf.matmul`` + ``tf.math.top_k``, what the brute-force serving model does per
  request, minus the user tower.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from components.scann_index import index

_EXACT_BATCH = 512  # queries per exact-search call (the evaluator's batch size)
# Exact search timed one query at a time on at most this many queries: it costs the same for any
# query. At RetailRocket size 200 of them took 6 s more than 50: numpy 205 against 204 queries/s,
# TensorFlow 120 against 147 (one timing each).
_EXACT_SINGLE = 50


def scann_speed(
    vectors: np.ndarray,
    queries: np.ndarray,
    config: dict[str, Any],
    k: int,
    *,
    threads: int = 0,
    repeats: int = 3,
    single_queries: int = 200,
    min_seconds: float = 0.1,
    built: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Builds ``config`` over ``vectors`` (unless ``built``) and times its searches.

    Args:
      vectors: float [m, d] item vectors.
      queries: float [n, d] query vectors; the first ``single_queries`` are also timed one at a
        time.
      config: an index configuration (``index``).
      k: neighbours per query.
      threads: ScaNN threads (0: its default).
      repeats: timing repeats (the median is kept).
      single_queries: queries timed one at a time.
      min_seconds: each timing run lasts at least this long.
      built: ``index.tune``'s ``keep`` of this very configuration (``searcher``, ``build_s``):
        timed as it is instead of built again (at RetailRocket scale a build took 13 s).

    Returns:
      ``{"build_s", "queries_per_s", "single_query_per_s"}``.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if built is not None:
        searcher, build_s = built["searcher"], float(built["build_s"])
    else:
        start = time.perf_counter()
        searcher = index.build_searcher(vectors, config, num_neighbors=k, threads=threads)
        build_s = time.perf_counter() - start
    one = queries[: max(1, min(single_queries, len(queries)))]

    def batched():
        index.search(searcher, queries, k, config)
        return len(queries)

    def single():
        for q in one:
            index.search_one(searcher, q, k, config)
        return len(one)

    return {
        "build_s": build_s,
        "queries_per_s": rate(batched, repeats, min_seconds),
        "single_query_per_s": rate(single, repeats, min_seconds),
    }


def exact_speeds(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    repeats: int = 3,
    single_queries: int = 200,
    min_seconds: float = 0.1,
) -> dict[str, dict[str, float]]:
    """Exact search's queries/s, ``{"numpy": {...}, "tensorflow": {...}}`` (module docstring).

    Each entry has ``queries_per_s`` (one batch of 512, the first of ``queries``: exact search
    costs the same for any query, and at RetailRocket size timing all 2,000 took about 15 s more)
    and ``single_query_per_s`` (at most ``_EXACT_SINGLE`` of the ``single_queries``).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    batch = queries[:_EXACT_BATCH]
    one = queries[: max(1, min(single_queries, _EXACT_SINGLE, len(queries)))]
    out = {}
    for name, top in (
        ("numpy", index.exact_search(vectors, k)),
        ("tensorflow", tf_exact(vectors, k)),
    ):
        top(queries[:1])  # warm-up: tracing, thread pools

        def batched(top=top):
            top(batch)
            return len(batch)

        def single(top=top):
            for q in one:
                top(q[None, :])
            return len(one)

        out[name] = {
            "queries_per_s": rate(batched, repeats, min_seconds),
            "single_query_per_s": rate(single, repeats, min_seconds),
        }
    return out


def tf_exact(vectors: np.ndarray, k: int):
    """queries [b, d] -> top-k rows, by ``tf.matmul`` + ``tf.math.top_k`` (the SavedModel's ops)."""
    import tensorflow as tf

    table = tf.constant(vectors, tf.float32)
    k = min(k, len(vectors))

    @tf.function(input_signature=[tf.TensorSpec([None, vectors.shape[1]], tf.float32)])
    def top_k(q):
        return tf.math.top_k(tf.matmul(q, table, transpose_b=True), k=k).indices

    return lambda queries: top_k(tf.constant(queries)).numpy()


def rate(run, repeats: int, min_seconds: float) -> float:
    """Median over ``repeats`` of (queries answered / seconds), each run at least min_seconds."""
    rates = []
    for _ in range(max(1, repeats)):
        done, start = 0, time.perf_counter()
        while True:
            done += run()
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(done / elapsed)
    return statistics.median(rates)
