"""The ScaNN index as plain logic: exact search (the oracle), building a searcher, tuning it.

Everything here is numpy + ScaNN's pybind searcher, no TFX and no TensorFlow graph code, so it is
tested on random vectors against the exact oracle (STYLE 9). The serving model
(``components.scann_index.serving``) builds the TensorFlow-op twin of the same searcher from the
same text config (`scann_config`), so what `tune` measured is what is served. Timings live in
``components.scann_index.speed``: they are reported, never used to choose.

A configuration is a plain JSON-able dict (it travels in ``ann.json``):

* ``num_leaves``: k-means tree leaves (0: no tree, every item is scored);
* ``leaves_to_search``: leaves searched per query;
* ``training_sample_size``: items the tree and the quantizer are trained on (ScaNN samples them
  with fixed seeds, `scann_config` pins the tree's, so a build is deterministic);
* ``scoring``: ``"ah"`` (asymmetric hashing, 4-bit codes per block of ``dims_per_block``
  dimensions, anisotropic loss with ``anisotropic_quantization_threshold``) or ``"brute_force"``
  (exact float32 dot products);
* ``reorder``: candidates re-scored exactly after AH scoring (0: none).

Score = dot product (the two-tower's score), higher is better; ties go to the lower row.

The choice (`tune`, `choose`) is deterministic: the cheapest configuration by `cost` (distance
computations per query, a function of the configuration and the catalogue's shape only) among
those whose Recall@k against `exact_top_k` reaches the target on the given queries.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from modules import topk

# Catalogues below this size are scored exactly inside ScaNN: a tree over a few leaves of
# ~50 items gains nothing, and exact scoring keeps recall at 1.0.
SMALL_CATALOGUE = 2_000
ANISOTROPIC_THRESHOLD = 0.2
CLUSTERING_SEED = 1
GRID_LEAF_SHARES = (0.02, 0.04, 0.06, 0.08, 0.12, 0.16)  # leaves searched / leaves
GRID_REORDER = (100, 200, 500, 1000)
# `cost`: one 4-bit AH code lookup-and-add counted as one float multiply-add; AH codebooks have
# 16 centres per block (ScaNN's LUT16).
AH_LOOKUP_COST = 1.0
AH_CENTRES_PER_BLOCK = 16
_EXACT_CHUNK_CELLS = 1 << 26  # query x item scores per matmul chunk (float32: 256 MiB)


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


def exact_search(vectors: np.ndarray, k: int):
    """queries [b, d] -> their exact top-k rows of ``vectors`` (int64 [b, min(k, m)], best first).

    A numpy (OpenBLAS) matrix product and ``modules.topk.top_rows`` (equal scores: the lower
    row): the RetrievalEvaluator's exact scorer (``components.scoring``). The catalogue is held
    transposed and padded to whole ``top_rows`` groups with zero vectors, whose scores are set to
    -inf: never selected.
    """
    n_items = len(vectors)
    width = topk.padded_width(n_items)
    vectors_t = np.zeros((vectors.shape[1], width), dtype=np.float32)
    vectors_t[:, :n_items] = np.asarray(vectors, dtype=np.float32).T
    k = min(k, n_items)

    def top(queries: np.ndarray) -> np.ndarray:
        scores = np.asarray(queries, dtype=np.float32) @ vectors_t
        scores[:, n_items:] = -np.inf
        return topk.top_rows(scores, k)

    return top


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows of ``vectors`` by dot product with each query: the tuner's reference.

    `exact_search` over row chunks, so that the whole score matrix never exists.

    Args:
      queries: float [n, d].
      vectors: float [m, d].
      k: list length (cut to m).

    Returns:
      rows int64 [n, min(k, m)], best first.
    """
    queries = np.asarray(queries, dtype=np.float32)
    n, m = queries.shape[0], len(vectors)
    rows = np.empty((n, min(k, m)), dtype=np.int64)
    top = exact_search(vectors, k)
    chunk = max(1, _EXACT_CHUNK_CELLS // max(m, 1))
    for start in range(0, n, chunk):
        rows[start : start + chunk] = top(queries[start : start + chunk])
    return rows


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


def cost(config: dict[str, Any], n_items: int, dim: int, k: int) -> float:
    """Distance computations per query of ``config``: the machine-independent cost `tune` minimises.

    The unit is one exact dot product of ``dim`` float32 values (``dim`` multiply-adds):

    * the tree's root: every leaf centre is scored exactly (``num_leaves``);
    * AH: the query's lookup table (``16 x dim`` multiply-adds: 16 centres per block), then
      ``ceil(dim / dims_per_block)`` lookup-adds (`AH_LOOKUP_COST` each) per scored item; exact
      scoring: one dot product per scored item. Scored items: the catalogue without a tree, else
      leaves searched x average items per leaf (``leaves_to_search x n_items / num_leaves``);
    * reordering: one dot product per re-scored candidate (``max(reorder, k)``, as searched).

    Exact search (`exact_config`) costs ``n_items``. The figures use the same caps as
    `scann_config`, so the cost is that of the index as built.

    Args:
      config: a configuration dict (module docstring).
      n_items: catalogue size.
      dim: vector dimension.
      k: neighbours returned per query.

    Returns:
      The expected number of exact-dot-product equivalents per query.
    """
    leaves = min(int(config["num_leaves"]), n_items)
    if leaves > 1:
        searched = min(int(config["leaves_to_search"]), leaves)
        root, scored = float(leaves), searched * n_items / leaves
    else:
        root, scored = 0.0, float(n_items)
    if config["scoring"] == "ah":
        blocks = math.ceil(dim / max(1, int(config["dims_per_block"])))
        scoring = AH_CENTRES_PER_BLOCK + scored * blocks * AH_LOOKUP_COST / dim
    else:
        scoring = scored
    reorder = min(max(int(config["reorder"]), k), scored) if int(config["reorder"]) > 0 else 0.0
    return root + scoring + reorder


def default_grid(n_items: int) -> list[dict[str, Any]]:
    """Configurations `tune` tries for a catalogue of ``n_items``, roughly cheapest first.

    Small catalogues get the exact configuration only. Otherwise trees of about sqrt(n) and
    2 sqrt(n) leaves (ScaNN's rule of thumb), searching 2 to 16 % of the leaves, 2-dimension AH
    blocks (4-bit codes: the fast LUT16 kernel) and 100 to 1,000 reordered candidates. The
    two-tower vectors of the default run needed about 8 % of the leaves and 200 reordered
    candidates for Recall@50 0.95; at RetailRocket scale (398,546 items) AH's quantisation error
    capped recall at 0.88 with 200 reordered, whatever the leaves, and 1,000 reordered reached
    0.95-0.96 with 4-6 % of the leaves (docs/benchmarks.md). The exact configuration comes last: on
    vectors no partitioning suits (e.g. isotropic noise) it is what reaches the target, so the
    served index is never less faithful than promised, only as slow as exact search. The order is
    also `choose`'s tie-break.
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
    threads: int = 0,
    keep: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measures the recall of every configuration of ``grid``; picks the cheapest meeting the target.

    Configurations that differ only in leaves searched or reordering share one built searcher
    (ScaNN takes both per search), so a grid costs a few builds. Nothing is timed: the choice
    depends on the vectors, the queries and the grid only, so the same inputs give the same
    choice on any machine under any load.

    Args:
      vectors: float [m, d] item vectors.
      queries: float [n, d] held-out query vectors (e.g. the eval split's users).
      k: the recall cut (Recall@k against `exact_top_k`).
      target_recall: the fidelity target.
      grid: configurations (default `default_grid(m)`).
      threads: ScaNN training and search threads (0: its default; the built index does not
        depend on it).
      keep: if given, gets ``searcher`` (the built searcher that answered the chosen
        configuration, searched with its leaves and reordering by `search`) and ``build_s`` (its
        build's seconds), so that the chosen index need not be built again to be timed.

    Returns:
      (chosen configuration, curve). The curve has one dict per configuration, in grid order:
      ``config``, ``name``, ``recall_vs_exact``, ``cost`` (`cost`) and ``meets_target``. The
      choice is `choose`'s.

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
    exact_rows = exact_top_k(queries, vectors, k)
    curve = []
    searchers: dict[tuple, Any] = {}
    build_s: dict[tuple, float] = {}
    for config in grid:
        key = _build_key(config)
        if key not in searchers:
            build_config = dict(config)
            if int(config["reorder"]) > 0:  # built with the largest reordering of its group
                build_config["reorder"] = max(
                    int(c["reorder"]) for c in grid if _build_key(c) == key
                )
            start = time.perf_counter()
            searchers[key] = build_searcher(vectors, build_config, num_neighbors=k, threads=threads)
            build_s[key] = time.perf_counter() - start
        recall = recall_vs_exact(search(searchers[key], queries, k, config), exact_rows)
        curve.append(
            {
                "config": dict(config),
                "name": describe(config),
                "recall_vs_exact": recall,
                "cost": cost(config, len(vectors), vectors.shape[1], k),
                "meets_target": bool(recall >= target_recall),
            }
        )
    chosen = choose(curve)
    if keep is not None:
        keep.update(searcher=searchers[_build_key(chosen)], build_s=build_s[_build_key(chosen)])
    return chosen, curve


def choose(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The cheapest configuration meeting the target, else the most accurate one.

    Among the configurations meeting the target: the lowest ``cost``; equal costs go to the one
    listed first. When none meets it: the highest ``recall_vs_exact``, then the lowest cost, then
    the first listed. Timings, if a curve carries any, play no part.
    """
    meeting = [i for i, point in enumerate(curve) if point["meets_target"]]
    if meeting:
        best = min(meeting, key=lambda i: (curve[i]["cost"], i))
    else:
        best = min(
            range(len(curve)),
            key=lambda i: (-curve[i]["recall_vs_exact"], curve[i]["cost"], i),
        )
    return dict(curve[best]["config"])


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
