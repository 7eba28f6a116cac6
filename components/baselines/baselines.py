"""The protocol's classic baselines (DESIGN section 5) on numpy and scipy.sparse; no TFX, no TensorFlow.

Five recommenders, fit on train events only, each returning one top-k list per eval visitor:

* `most_popular`: items by number of train events of any type.
* `recently_viewed`: the visitor's distinct train items, latest first.
* `user_user_cf`: cosine on the binary visitor x item matrix; the visitor plus up to 9 most similar
  visitors (similarity > 0); items scored by the sum of those visitors' binary rows.
* `item_item_cf`: cosine on the binary item x visitor matrix; each seen item contributes itself
  (similarity 1) and up to 9 most similar items (similarity > 0); candidates scored by summed similarity.
* `svd`: truncated SVD (rank min(50, min(shape) - 1)) of the binary matrix; scores from the reconstruction.

Beyond the five, `item_knn_recency` (item-item CF whose seen items fade with age) is a stronger
optional baseline, run by name (`EXTRA_BASELINE_NAMES`).

CF baselines never recommend items with score 0. Ties (within TIE_EPSILON) go to the ascending item id,
neighbour ties to the ascending visitor or item id (`modules.ranking.top_k_from_candidates`).

Layout: this module runs and scores them all (`evaluate_all`) and holds the two simplest;
`matrix.py` indexes the train events, `neighbours.py` holds the CF baselines, `factorised.py` SVD.

Scale: the full RetailRocket log (1.4M visitors x 235k items) fits in a few hundred MB as CSR. Every
similarity product is restricted to what the eval visitors need (their rows for user-user CF, the items
they have seen for item-item CF) and computed in chunks sized by an upper bound of the product's
non-zeros, so there is no Python loop over visitors or items and no dense visitor x visitor matrix.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence

import numpy as np

from components.baselines.factorised import svd, svd_factors  # noqa: F401 (part of the API)
from components.baselines.matrix import (  # noqa: F401 (part of the API)
    TrainMatrix,
    build_train_matrix,
    eval_rows,
    follow_ranking,
)
from components.baselines.neighbours import item_item_cf, item_knn_recency, user_user_cf
from modules import metrics, progress, ranking

# The protocol's five baselines (DESIGN 5), the names of metrics.json (DESIGN 8).
BASELINE_NAMES = ("most_popular", "recently_viewed", "user_user_cf", "item_item_cf", "svd")
# Stronger classic baselines beyond the original five; run by name (`run_baseline`, `names=`).
EXTRA_BASELINE_NAMES = ("item_knn_recency",)
# Run in a thread beside the others (`evaluate_all`): the SVD (ARPACK, scipy's sparse products,
# OpenBLAS) spends most of its time outside the GIL and the other baselines kept about one core
# of two busy (docs/benchmarks.md). Each baseline's lists are the same either way.
_BESIDE_THE_OTHERS = ("svd",)


# ---------------------------------------------------------------- the two simplest baselines


def most_popular(
    train: TrainMatrix, eval_visitors: np.ndarray, k: int = 50, exclude_seen: bool = False
) -> np.ndarray:
    """Items by number of train events (any type), ties by ascending item id.

    Args:
      train: the indexed train events.
      eval_visitors: [n] visitor ids to recommend to.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k.

    Returns:
      int64 array [n, k] of item ids, padded with -1.
    """
    rows = eval_rows(train, eval_visitors)
    n_items = train.n_items
    popular_order = ranking.top_k_from_candidates(
        np.zeros(n_items, np.int64), np.arange(n_items), train.item_events, 1, n_items
    )[0]
    seen = train.seen[rows] if exclude_seen else None
    return follow_ranking(popular_order, train.item_ids, seen, rows.size, k)


def recently_viewed(
    train: TrainMatrix, eval_visitors: np.ndarray, k: int = 50, exclude_seen: bool = False
) -> np.ndarray:
    """The visitor's distinct train items, most recent first (equal timestamps: ascending item id).

    With `exclude_seen` every candidate is a seen item, so the lists are empty (all -1) by design.

    Args:
      train: the indexed train events.
      eval_visitors: [n] visitor ids to recommend to.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k.

    Returns:
      int64 array [n, k] of item ids, padded with -1.
    """
    rows = eval_rows(train, eval_visitors)
    exclude = train.seen[rows] if exclude_seen else None
    return ranking.top_k_items(train.last_seen[rows], train.item_ids, k, exclude=exclude)


# ---------------------------------------------------------------- running and scoring all of them

_BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "most_popular": most_popular,
    "recently_viewed": recently_viewed,
    "user_user_cf": user_user_cf,
    "item_item_cf": item_item_cf,
    "svd": svd,
    "item_knn_recency": item_knn_recency,
}


def run_baseline(
    name: str,
    train: TrainMatrix,
    eval_visitors: np.ndarray,
    k: int = 50,
    exclude_seen: bool = False,
) -> np.ndarray:
    """Runs one baseline by name.

    Args:
      name: one of `BASELINE_NAMES` or `EXTRA_BASELINE_NAMES`.
      train: the indexed train events.
      eval_visitors: [n] visitor ids.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k.

    Returns:
      int64 array [n, k] of item ids, padded with -1.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in _BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(_BASELINES)}")
    return _BASELINES[name](train, eval_visitors, k=k, exclude_seen=exclude_seen)


def run_all(
    visitor_ids: np.ndarray,
    item_ids: np.ndarray,
    timestamps: np.ndarray,
    eval_visitors: np.ndarray,
    k: int = 50,
    exclude_seen: bool = False,
    names: Sequence[str] = BASELINE_NAMES,
) -> dict[str, np.ndarray]:
    """Fits every baseline on the train events and ranks for the eval visitors.

    Args:
      visitor_ids: [n_events] visitor id of every train event.
      item_ids: [n_events] item id of every train event.
      timestamps: [n_events] time in ms of every train event.
      eval_visitors: [n] distinct visitor ids that have eval queries.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k (applies to all baselines).
      names: the baselines to run.

    Returns:
      {name: int64 array [n, k] of item ids padded with -1}, row i for eval_visitors[i].
    """
    train = build_train_matrix(visitor_ids, item_ids, timestamps)
    return {name: run_baseline(name, train, eval_visitors, k, exclude_seen) for name in names}


def evaluate_all(
    visitor_ids: np.ndarray,
    item_ids: np.ndarray,
    timestamps: np.ndarray,
    query_visitors: np.ndarray,
    query_items: np.ndarray,
    exclude_seen: bool = False,
    names: Sequence[str] = BASELINE_NAMES,
    query_events: np.ndarray | None = None,
) -> dict:
    """Fits, ranks and scores every baseline under the protocol.

    Args:
      visitor_ids: [n_events] visitor id of every train event.
      item_ids: [n_events] item id of every train event.
      timestamps: [n_events] time in ms of every train event.
      query_visitors: [n_queries] visitor of every eval event (one query per eval event).
      query_items: [n_queries] the item of every eval event (the query's relevant item).
      exclude_seen: drop each visitor's train items before cutting to the list length.
      names: the baselines to run.
      query_events: [n_queries] the eval event's type, for the per-event slices (optional).

    Returns:
      {"models": {name: metrics of `metrics.report` (with the Recall@50 interval and the
      slices)}, "per_query": {name: [n_queries] hit ranks} (for paired comparisons; not JSON),
      "best_baseline": name with the highest
      recall@50 (ties: the earlier name in `names`), "best_recall@50": its value,
      "timings_s": {name: seconds to fit and rank (the SVD's while the others ran beside
      it)}, "n_queries", "n_eval_visitors",
      "n_train_items"}.

    Raises:
      ValueError: with no queries or a query visitor without train events.
    """
    query_visitors = np.asarray(query_visitors, dtype=np.int64)
    query_items = np.asarray(query_items, dtype=np.int64)
    if query_visitors.size == 0 or query_visitors.shape != query_items.shape:
        raise ValueError(
            f"need one item per query; got {query_visitors.shape} visitors, {query_items.shape} items"
        )
    train = build_train_matrix(visitor_ids, item_ids, timestamps)
    eval_visitors = np.unique(query_visitors)
    eval_rows(train, eval_visitors)  # fail before any model runs
    queries = metrics.describe_queries(
        query_visitors, query_items, query_events, visitor_ids, item_ids
    )
    models, timings, curves, ranks = {}, {}, {}, {}

    def timed(name: str) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        lists = run_baseline(name, train, eval_visitors, ranking.LIST_LENGTH, exclude_seen)
        return lists, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        beside = {name: pool.submit(timed, name) for name in names if name in _BESIDE_THE_OTHERS}
        for name in names:
            lists, timings[name] = beside[name].result() if name in beside else timed(name)
            per_query = metrics.lists_for_queries(lists, eval_visitors, query_visitors)
            models[name], ranks[name] = metrics.report(per_query, queries, train.n_items)
            progress.report(
                "%s Recall@50 %.4f (%.1f s)", name, models[name]["recall@50"], timings[name]
            )
            curves[name] = [float(x) for x in metrics.recall_curve(per_query, query_items)]
    best = max(names, key=lambda name: (models[name]["recall@50"], -list(names).index(name)))
    return {
        "models": models,
        "recall_curves": curves,
        "per_query": ranks,
        "exclude_seen": bool(exclude_seen),
        "best_baseline": best,
        "best_recall@50": models[best]["recall@50"],
        "timings_s": timings,
        "n_queries": int(query_visitors.size),
        "n_eval_visitors": int(eval_visitors.size),
        "n_train_items": train.n_items,
    }
