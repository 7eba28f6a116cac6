"""The ScaNN index as plain logic: exact search (the oracle), building a searcher, tuning it.

Everything here is numpy + ScaNN's pybind searcher, no TFX and no TensorFlow graph code, so it is
tested on random vectors against the exact oracle (STYLE 9). The serving model
(``components.scann_index.serving``) builds the TensorFlow-op twin of the same searcher from the
same text config (`scann_config`), so what `tune` measured is what is served.

A configuration is a plain JSON-able dict (it travels in ``ann.json``):

* ``num_leaves``: k-means tree leaves (0: no tree, every item is scored);
* ``leaves_to_search``: leaves searched per query;
* ``training_sample_size``: items the tree and the quantizer are trained on (ScaNN samples them
  with a fixed seed, so a build is deterministic);
* ``scoring``: ``"ah"`` (asymmetric hashing, 4-bit codes per block of ``dims_per_block``
  dimensions, anisotropic loss with ``anisotropic_quantization_threshold``) or ``"brute_force"``
  (exact float32 dot products);
* ``reorder``: candidates re-scored exactly after AH scoring (0: none).

Score = dot product (the two-tower's score), higher is better; ties go to the lower row.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import numpy as np

# Catalogues below this size are scored exactly inside ScaNN: a tree over a few leaves of
# ~50 items gains nothing, and exact scoring keeps recall at 1.0.
SMALL_CATALOGUE = 2_000
ANISOTROPIC_THRESHOLD = 0.2
CLUSTERING_SEED = 1
GRID_LEAF_SHARES = (0.02, 0.04, 0.06, 0.08, 0.12, 0.16)  # leaves searched / leaves
GRID_REORDER = (100, 200)
FINAL_ROUND_BAND = 0.75  # contenders within this share of the fastest are timed again
_EXACT_CHUNK_CELLS = 1 << 24  # query x item scores per matmul chunk (float32: 64 MiB)


def exact_config() -> dict[str, Any]:
    """The exact configuration: no tree, exact float32 scoring (the brute-force result)."""
    return {
        "num_leaves": 0,
        "leaves_to_search": 0,
        "training_sample_size": 0,
        "scoring": "brute_force",
        "dims_per_block": 0,
        "anisotropic_quantization_threshold": ANISOTROPIC_THRESHOLD,
        "reorder": 0,
    }


def tree_ah_config(
    num_leaves: int,
    leaves_to_search: int,
    reorder: int,
    dims_per_block: int = 2,
    training_sample_size: int = 100_000,
) -> dict[str, Any]:
    """A tree + asymmetric hashing (+ exact reordering) configuration."""
    return {
        "num_leaves": int(num_leaves),
        "leaves_to_search": int(leaves_to_search),
        "training_sample_size": int(training_sample_size),
        "scoring": "ah",
        "dims_per_block": int(dims_per_block),
        "anisotropic_quantization_threshold": ANISOTROPIC_THRESHOLD,
        "reorder": int(reorder),
    }


def describe(config: dict[str, Any]) -> str:
    """A short human-readable name, e.g. ``tree 480/24 + AH d2 + reorder 200`` or ``exact``."""
    if config["scoring"] == "brute_force" and not config["num_leaves"]:
        return "exact (brute force)"
    parts = []
    if config["num_leaves"]:
        parts.append(f"tree {config['num_leaves']}/{config['leaves_to_search']}")
    parts.append(f"AH d{config['dims_per_block']}" if config["scoring"] == "ah" else "brute force")
    if config["reorder"]:
        parts.append(f"reorder {config['reorder']}")
    return " + ".join(parts)


# ---------------------------------------------------------------- exact search (the oracle)


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows of ``vectors`` by dot product with each query.

    Args:
      queries: float [n, d].
      vectors: float [m, d].
      k: list length (cut to m).

    Returns:
      (rows int64 [n, k], scores float32 [n, k]), best first; equal scores go to the lower row.
    """
    queries = np.asarray(queries, dtype=np.float32)
    vectors = np.asarray(vectors, dtype=np.float32)
    n, m = queries.shape[0], vectors.shape[0]
    k = min(k, m)
    rows = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=np.float32)
    chunk = max(1, _EXACT_CHUNK_CELLS // max(m, 1))
    for start in range(0, n, chunk):
        scores = queries[start : start + chunk] @ vectors.T
        r, v = _top_k_rows(scores, k)
        rows[start : start + chunk], values[start : start + chunk] = r, v
    return rows, values


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of each row of a dense score matrix, ties to the lower column.

    A full-width partition per row is the slow part of exact search (slower than the matmul), so
    the candidates are first cut by a threshold: the k-th largest score of every ``stride``-th
    column is a lower bound of the row's k-th largest score, so every column at or above it is a
    candidate (about ``k * stride`` per row) and nothing of the exact top k, ties included, is
    lost. The candidates are then ranked by (score descending, column ascending).
    """
    n, m = scores.shape
    stride = max(1, min(16, m // (4 * k)))
    if stride > 1:
        threshold = np.partition(scores[:, ::stride], -k, axis=1)[:, -k]
        rows, cols = np.nonzero(scores >= threshold[:, None])  # row-major: rows ascending
    else:
        rows, cols = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    counts = np.bincount(rows, minlength=n)
    width = int(counts.max()) if n else 0
    position = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    candidates = np.full((n, width), m, dtype=np.int64)  # m: after every real column
    values = np.full((n, width), -np.inf, dtype=np.float64)
    candidates[rows, position] = cols
    values[rows, position] = scores[rows, cols]
    order = np.lexsort((candidates, -values), axis=1)[:, :k]
    best = np.take_along_axis(candidates, order, axis=1)
    return best, np.take_along_axis(scores, best, axis=1).astype(np.float32)


def recall_vs_exact(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k rows that the approximate top-k contains."""
    k = exact.shape[1]
    if k == 0 or len(exact) == 0:
        return 1.0
    hits = sum(len(np.intersect1d(f[:k], e)) for f, e in zip(found, exact, strict=True))
    return hits / float(exact.size)


# ---------------------------------------------------------------- building a searcher


def scann_config(
    vectors: np.ndarray, config: dict[str, Any], num_neighbors: int, builder_module: Any = None
) -> str:
    """The ScaNN text config (a ``ScannConfig`` proto) of ``config`` over ``vectors``.

    Args:
      vectors: the item vectors [m, d] (float32).
      config: a configuration dict (module docstring).
      num_neighbors: the searcher's default number of neighbours.
      builder_module: ``scann.scann_ops_pybind`` (default) or ``scann.scann_ops`` (TensorFlow):
        only their builder's text is used, so the two searchers are configured identically.

    Returns:
      The text proto, with the tree's k-means seed pinned.
    """
    if builder_module is None:
        from scann import scann_ops_pybind as builder_module
    m = vectors.shape[0]
    builder = builder_module.builder(vectors, int(num_neighbors), "dot_product")
    leaves = int(config["num_leaves"])
    if leaves > 1:
        builder = builder.tree(
            num_leaves=min(leaves, m),
            num_leaves_to_search=min(int(config["leaves_to_search"]), leaves, m),
            training_sample_size=min(int(config["training_sample_size"]) or m, m),
            # k-means++ initialisation follows the pinned seed; random initialisation does not.
            random_init=False,
        )
    if config["scoring"] == "ah":
        builder = builder.score_ah(
            int(config["dims_per_block"]),
            anisotropic_quantization_threshold=float(config["anisotropic_quantization_threshold"]),
            training_sample_size=min(int(config["training_sample_size"]) or m, m),
        )
    elif config["scoring"] == "brute_force":
        builder = builder.score_brute_force()
    else:
        raise ValueError(f"scoring must be 'ah' or 'brute_force'; got {config['scoring']!r}")
    if int(config["reorder"]) > 0:
        builder = builder.reorder(int(config["reorder"]))
    builder.params["extra"] = {"mutable": False}
    text = builder.create_config()
    # Pin the tree's seed (k-means++ initialisation and its training sample): a build is
    # reproducible, and the TensorFlow twin in the serving model is the same index.
    return text.replace(
        "partitioning {", f"partitioning {{\n clustering_seed: {CLUSTERING_SEED}", 1
    )


def build_searcher(
    vectors: np.ndarray, config: dict[str, Any], num_neighbors: int = 50, threads: int = 0
) -> Any:
    """Builds a pybind ScaNN searcher over ``vectors`` (dot product).

    Args:
      vectors: float [m, d] item vectors; row i is returned as neighbour i.
      config: a configuration dict (module docstring), e.g. `exact_config()`.
      num_neighbors: default number of neighbours of a search.
      threads: training and search threads (0: ScaNN's default).

    Returns:
      A ``scann.scann_ops_pybind.ScannSearcher``.

    Raises:
      ValueError: vectors are not a non-empty 2-D array, or the config is malformed.
    """
    from scann import scann_ops_pybind

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"item vectors must be a non-empty [m, d] array; got {vectors.shape}")
    text = scann_config(vectors, config, num_neighbors)
    searcher = scann_ops_pybind.create_searcher(vectors, text, threads)
    if threads:
        searcher.set_num_threads(threads)
    return searcher


def search(
    searcher: Any, queries: np.ndarray, k: int, config: dict[str, Any], parallel: bool = True
) -> np.ndarray:
    """Batched search with the config's leaves and reordering; returns rows int64 [n, k]."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    kwargs = _search_kwargs(config, k)
    call = searcher.search_batched_parallel if parallel else searcher.search_batched
    rows, _ = call(queries, final_num_neighbors=k, **kwargs)
    return np.asarray(rows, dtype=np.int64)


def search_one(searcher: Any, query: np.ndarray, k: int, config: dict[str, Any]) -> np.ndarray:
    """One query [d] with the config's leaves and reordering; returns rows int64 [k]."""
    rows, _ = searcher.search(
        np.asarray(query, dtype=np.float32), final_num_neighbors=k, **_search_kwargs(config, k)
    )
    return np.asarray(rows, dtype=np.int64)


def _search_kwargs(config: dict[str, Any], k: int) -> dict[str, int]:
    kwargs = {}
    if int(config["num_leaves"]) > 1:
        kwargs["leaves_to_search"] = int(config["leaves_to_search"])
    if int(config["reorder"]) > 0:
        kwargs["pre_reorder_num_neighbors"] = max(int(config["reorder"]), k)
    return kwargs


# ---------------------------------------------------------------- tuning


def default_grid(n_items: int) -> list[dict[str, Any]]:
    """Configurations `tune` tries for a catalogue of ``n_items``, roughly cheapest first.

    Small catalogues get the exact configuration only. Otherwise trees of about sqrt(n) and
    2 sqrt(n) leaves (ScaNN's rule of thumb), searching 2 to 16 % of the leaves, 2-dimension AH
    blocks (4-bit codes: the fast LUT16 kernel) and 100 or 200 reordered candidates (the two-tower
    vectors of the default run needed about 8 % of the leaves for Recall@50 0.95; more than 200
    reordered candidates gained under 0.005 there). The exact configuration comes last: on
    vectors no partitioning suits (e.g. isotropic noise) it is what reaches the target, so the
    served index is never less faithful than promised, only as slow as exact search.
    """
    if n_items < SMALL_CATALOGUE:
        return [exact_config()]
    grid = []
    root = math.sqrt(n_items)
    for leaves in sorted({int(round(root)), int(round(2 * root))}):
        for share in GRID_LEAF_SHARES:
            for reorder in GRID_REORDER:
                grid.append(tree_ah_config(leaves, max(2, int(round(leaves * share))), reorder))
    return [*grid, exact_config()]


def tune(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int = 50,
    target_recall: float = 0.95,
    grid: list[dict[str, Any]] | None = None,
    repeats: int = 3,
    single_queries: int = 200,
    threads: int = 0,
    min_seconds: float = 0.1,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measures every configuration of ``grid`` and picks the cheapest that reaches the target.

    Configurations that differ only in leaves searched or reordering share one built searcher
    (ScaNN takes both per search), so a grid costs a few builds. The configurations meeting the
    target within 25 % of the fastest are timed again, interleaved (`_final_round`), before
    the choice.

    Args:
      vectors: float [m, d] item vectors.
      queries: float [n, d] held-out query vectors (e.g. the eval split's users).
      k: the recall cut (Recall@k against `exact_top_k`).
      target_recall: the fidelity target.
      grid: configurations (default `default_grid(m)`).
      repeats: timing repeats; the median is kept.
      single_queries: queries timed one at a time (the first ones of ``queries``).
      threads: ScaNN threads (0: its default).
      min_seconds: each timing run lasts at least this long.

    Returns:
      (chosen configuration, curve). The curve has one dict per configuration: ``config``,
      ``name``, ``recall_vs_exact``, ``queries_per_s`` (batched), ``single_query_per_s``,
      ``build_s`` and ``meets_target``. The chosen configuration is the one with the highest
      batched queries/s among those meeting the target; when none does, the most accurate one
      (fastest among equals), and its curve entry says ``meets_target: False``.

    Raises:
      ValueError: empty vectors or queries.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0 or queries.ndim != 2 or len(queries) == 0:
        raise ValueError(
            f"tune needs non-empty [m, d] vectors and [n, d] queries; got {vectors.shape} "
            f"and {queries.shape}"
        )
    k = min(k, len(vectors))
    grid = list(grid if grid is not None else default_grid(len(vectors)))
    exact_rows, _ = exact_top_k(queries, vectors, k)
    curve = []
    searchers: dict[tuple, tuple[Any, float]] = {}
    for config in grid:
        key = _build_key(config)
        if key not in searchers:
            start = time.perf_counter()
            build_config = dict(config)
            if int(config["reorder"]) > 0:  # built with the largest reordering of its group
                build_config["reorder"] = max(
                    int(c["reorder"]) for c in grid if _build_key(c) == key
                )
            searcher = build_searcher(vectors, build_config, num_neighbors=k, threads=threads)
            searchers[key] = (searcher, time.perf_counter() - start)
        searcher, build_s = searchers[key]
        found = search(searcher, queries, k, config)
        qps, single = measure_speed(
            searcher,
            queries,
            k,
            config,
            repeats=repeats,
            single_queries=single_queries,
            min_seconds=min_seconds,
        )
        recall = recall_vs_exact(found, exact_rows)
        curve.append(
            {
                "config": dict(config),
                "name": describe(config),
                "recall_vs_exact": recall,
                "queries_per_s": qps,
                "single_query_per_s": single,
                "build_s": build_s,
                "meets_target": bool(recall >= target_recall),
            }
        )
    _final_round(curve, searchers, queries, k, repeats, min_seconds)
    return choose(curve), curve


def _final_round(curve, searchers, queries, k, repeats, min_seconds) -> None:
    """Re-times the close contenders for the choice, interleaved, and keeps the medians.

    On a shared machine one configuration's timing can catch a burst of load; the configurations
    meeting the target within ``FINAL_ROUND_BAND`` of the fastest are timed ``repeats`` more
    times each, round-robin, so the choice rests on comparable measurements.
    """
    meeting = [p for p in curve if p["meets_target"]]
    if len(meeting) < 2:
        return
    fastest = max(p["queries_per_s"] for p in meeting)
    contenders = [p for p in meeting if p["queries_per_s"] >= FINAL_ROUND_BAND * fastest]
    if len(contenders) < 2:
        return
    samples = {id(p): [p["queries_per_s"]] for p in contenders}
    for _ in range(max(1, repeats)):
        for point in contenders:
            searcher, _ = searchers[_build_key(point["config"])]
            kwargs = _search_kwargs(point["config"], k)

            def run(searcher=searcher, kwargs=kwargs):
                searcher.search_batched_parallel(queries, final_num_neighbors=k, **kwargs)
                return len(queries)

            samples[id(point)].append(_rate(run, 1, min_seconds))
    for point in contenders:
        point["queries_per_s"] = statistics.median(samples[id(point)])


def choose(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest (batched) configuration meeting the target, else the most accurate one."""
    meeting = [point for point in curve if point["meets_target"]]
    if meeting:
        best = max(meeting, key=lambda p: p["queries_per_s"])
    else:
        best = max(curve, key=lambda p: (p["recall_vs_exact"], p["queries_per_s"]))
    return dict(best["config"])


def _build_key(config: dict[str, Any]) -> tuple:
    """What needs a new build: everything but the leaves searched and the reorder count."""
    return (
        config["num_leaves"],
        config["training_sample_size"],
        config["scoring"],
        config["dims_per_block"],
        config["anisotropic_quantization_threshold"],
        int(config["reorder"]) > 0,
    )


def measure_speed(
    searcher: Any,
    queries: np.ndarray,
    k: int,
    config: dict[str, Any],
    repeats: int = 3,
    single_queries: int = 200,
    min_seconds: float = 0.1,
) -> tuple[float, float]:
    """(batched queries/s, one-query-at-a-time queries/s), medians of ``repeats`` runs.

    Each run repeats its searches for at least ``min_seconds`` (a shared machine's noise hides
    runs of a few milliseconds).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    kwargs = _search_kwargs(config, k)
    one = queries[: max(1, min(single_queries, len(queries)))]

    def batched():
        searcher.search_batched_parallel(queries, final_num_neighbors=k, **kwargs)
        return len(queries)

    def single():
        for q in one:
            searcher.search(q, final_num_neighbors=k, **kwargs)
        return len(one)

    return _rate(batched, repeats, min_seconds), _rate(single, repeats, min_seconds)


def _rate(run, repeats: int, min_seconds: float) -> float:
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


def measure_exact_speed(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    repeats: int = 3,
    single_queries: int = 200,
    min_seconds: float = 0.1,
) -> tuple[float, float]:
    """(batched, one-at-a-time) queries/s of `exact_top_k`, medians of ``repeats`` runs."""
    one = queries[: max(1, min(single_queries, len(queries)))]

    def batched():
        exact_top_k(queries, vectors, k)
        return len(queries)

    def single():
        for q in one:
            exact_top_k(q[None, :], vectors, k)
        return len(one)

    return _rate(batched, repeats, min_seconds), _rate(single, repeats, min_seconds)
