"""Metrics of the evaluation protocol (DESIGN section 5), for every model alike.

* Recall@K = mean over queries of 1[target in the top K]; NDCG@50 = mean of 1/log2(rank + 1) (one
  relevant item, rank 1-based, 0 when absent); coverage@50 = distinct items in all top-50 lists / items
  in train.
* Lists come from ``modules.ranking`` (or the SavedModel's equal TF selection), padded with
  ``ranking.PAD_ID``, which never counts as an item.

Plain numpy (no TensorFlow), unit-tested on hand-computed cases.
"""

from __future__ import annotations

import numpy as np

from modules.constants import COVERAGE_K, EVAL_KS, NDCG_K
from modules.ranking import LIST_LENGTH, PAD_ID


def metric_names() -> tuple[str, ...]:
    """Returns the metric keys of `evaluate`, in the order of DESIGN section 8."""
    return (*(f"recall@{k}" for k in EVAL_KS), f"ndcg@{NDCG_K}", f"coverage@{COVERAGE_K}")


# ---------------------------------------------------------------- from visitors to queries


def lists_for_queries(
    lists: np.ndarray, list_visitors: np.ndarray, query_visitors: np.ndarray
) -> np.ndarray:
    """Gives every query the list of its visitor.

    A visitor's state is frozen at the cutoff, so all its eval queries share one list; models rank
    once per visitor and this expands the lists to one row per query.

    Args:
      lists: [n_visitors, k] recommendation lists.
      list_visitors: [n_visitors] distinct visitor id of every row of `lists`.
      query_visitors: [n_queries] visitor id of every query.

    Returns:
      [n_queries, k] array: row q is the list of query q's visitor.

    Raises:
      ValueError: when a query's visitor has no list, or `list_visitors` has duplicates.
    """
    list_visitors = np.asarray(list_visitors)
    query_visitors = np.asarray(query_visitors)
    if len(list_visitors) != len(lists):
        raise ValueError(f"{len(list_visitors)} visitors for {len(lists)} lists")
    sorter = np.argsort(list_visitors, kind="stable")
    ordered = list_visitors[sorter]
    if ordered.size and (ordered[1:] == ordered[:-1]).any():
        raise ValueError("list_visitors has duplicate visitor ids")
    pos = np.searchsorted(ordered, query_visitors)
    found = pos < ordered.size
    found[found] = ordered[pos[found]] == query_visitors[found]
    if not found.all():
        missing = np.unique(query_visitors[~found])
        raise ValueError(f"{missing.size} query visitors have no list, e.g. {missing[:5].tolist()}")
    return lists[sorter[pos]]


# ---------------------------------------------------------------- metrics


def hit_ranks(recommended: np.ndarray, targets: np.ndarray, max_k: int = LIST_LENGTH) -> np.ndarray:
    """1-based rank of each query's target in its list (first max_k positions), 0 when absent.

    Args:
      recommended: [n_queries, >= max_k] item ids.
      targets: [n_queries] the relevant item of every query.
      max_k: positions to look at.

    Returns:
      int64 array [n_queries].

    Raises:
      ValueError: on shape mismatch or lists shorter than max_k.
    """
    recommended = np.asarray(recommended)
    targets = np.asarray(targets)
    if recommended.ndim != 2 or recommended.shape[0] != targets.shape[0]:
        raise ValueError(
            f"recommended has shape {recommended.shape}; expected ({targets.shape[0]}, >= {max_k})"
        )
    if recommended.shape[1] < max_k:
        raise ValueError(f"lists have {recommended.shape[1]} positions; metrics need {max_k}")
    hits = recommended[:, :max_k] == targets[:, None]
    hits &= recommended[:, :max_k] != PAD_ID  # a padded slot never matches, whatever the target
    # Ids are distinct within a list, so argmax finds the only hit; rows without one get 0.
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0).astype(np.int64)


def recall_curve(
    recommended: np.ndarray, targets: np.ndarray, max_k: int = LIST_LENGTH
) -> np.ndarray:
    """Recall@K for every K in 1..max_k (for the report's plot).

    Args:
      recommended: [n_queries, >= max_k] item ids.
      targets: [n_queries] relevant items.
      max_k: largest K.

    Returns:
      float64 array [max_k]; element K-1 is Recall@K.
    """
    ranks = hit_ranks(recommended, targets, max_k)
    if ranks.size == 0:
        raise ValueError("no queries to evaluate")
    hits_at = np.bincount(ranks, minlength=max_k + 1)[1:]
    return np.cumsum(hits_at) / ranks.size


def evaluate(recommended: np.ndarray, targets: np.ndarray, n_train_items: int) -> dict[str, float]:
    """Computes the protocol's metrics for one model.

    Args:
      recommended: [n_queries, >= 50] item ids per query (see `lists_for_queries`), padded with -1.
      targets: [n_queries] the relevant item of every query; targets never seen in train count as
        misses, they are not dropped.
      n_train_items: number of distinct items in train (the coverage denominator).

    Returns:
      {"recall@1", "recall@5", "recall@10", "recall@20", "recall@50", "ndcg@50", "coverage@50"}
      mapped to Python floats.

    Raises:
      ValueError: with no queries, a non-positive item count or malformed lists.
    """
    if n_train_items <= 0:
        raise ValueError(f"n_train_items must be positive; got {n_train_items}")
    ranks = hit_ranks(recommended, targets, LIST_LENGTH)
    if ranks.size == 0:
        raise ValueError("no queries to evaluate")
    metrics = {f"recall@{k}": float(np.mean((ranks >= 1) & (ranks <= k))) for k in EVAL_KS}
    gains = np.zeros(ranks.size)
    in_list = (ranks >= 1) & (ranks <= NDCG_K)
    gains[in_list] = 1.0 / np.log2(ranks[in_list] + 1.0)
    metrics[f"ndcg@{NDCG_K}"] = float(gains.mean())
    top = np.asarray(recommended)[:, :COVERAGE_K]
    metrics[f"coverage@{COVERAGE_K}"] = float(np.unique(top[top != PAD_ID]).size / n_train_items)
    return metrics
