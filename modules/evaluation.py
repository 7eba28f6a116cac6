"""Ranking metrics and top-K selection of the evaluation protocol (DESIGN section 5).

Every model (the baselines and the two-tower) produces its recommendation lists through `top_k_items`
or `top_k_from_candidates` and is scored by `evaluate`, so that all of them obey the same tie rule and
the same metric definitions:

* Ties: scores within `TIE_EPSILON` of each other are equal and are ordered by ascending item id.
  "Within epsilon" is made an equivalence by chaining: sort a list by descending score; a new tie class
  starts wherever the gap to the previous score exceeds `TIE_EPSILON`. Inside a class, ascending id.
* Recall@K = mean over queries of 1[target in the top K]; NDCG@50 = mean of 1/log2(rank + 1) (one
  relevant item, rank 1-based, 0 when absent); coverage@50 = distinct items in all top-50 lists / items
  in train.
* Lists are padded with -1 when a model has fewer than K candidates; -1 never counts as an item.

This module is plain numpy/scipy (no TensorFlow) so it can be unit-tested on hand-computed cases.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.configs import COVERAGE_K, EVAL_KS, NDCG_K, TIE_EPSILON

PAD_ID = -1
# Every metric of the protocol reads at most this many positions of a list.
LIST_LENGTH = max(max(EVAL_KS), NDCG_K, COVERAGE_K)
# Dense scores are processed in row chunks of about this many cells (float32: 64 MiB) so that the
# whole (queries x catalogue) matrix never has to exist at once.
_DENSE_CHUNK_CELLS = 1 << 24


def metric_names() -> tuple[str, ...]:
    """Returns the metric keys of `evaluate`, in the order of DESIGN section 8."""
    return (*(f"recall@{k}" for k in EVAL_KS), f"ndcg@{NDCG_K}", f"coverage@{COVERAGE_K}")


# ---------------------------------------------------------------- top-K selection


def top_k_from_candidates(
    rows: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
    n_rows: int,
    k: int,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Ranks candidate (row, id, score) triples into one top-k list per row.

    This is the single implementation of the tie rule; the dense and sparse paths of `top_k_items`
    and the neighbour selection of the CF baselines all end here.

    Args:
      rows: int array [n] of row numbers in [0, n_rows).
      ids: int array [n] of candidate ids (item ids, or column indices when the caller ranks
        neighbours). A (row, id) pair must appear at most once. Ties are ordered by ascending id.
      scores: float array [n]; higher is better. Compared in float64.
      n_rows: number of output rows (rows without candidates come back as all `PAD_ID`).
      k: list length.
      return_scores: also return the scores of the listed candidates.

    Returns:
      int64 array [n_rows, k] of ids padded with `PAD_ID`; with `return_scores`, also a float64 array
      [n_rows, k] of their scores padded with NaN.
    """
    rows = np.asarray(rows, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    values = np.asarray(scores, dtype=np.float64)
    out = np.full((n_rows, k), PAD_ID, dtype=np.int64)
    out_scores = np.full((n_rows, k), np.nan) if return_scores else None
    if rows.size and k > 0:
        # Sort by row, then descending score, then ascending id (lexsort: last key is primary).
        order = np.lexsort((ids, -values, rows))
        rows, ids, values = rows[order], ids[order], values[order]
        same_row = rows[1:] == rows[:-1]
        gap = values[:-1] - values[1:]
        # Scores that differ by no more than epsilon but are not identical were sorted by score, not
        # by id: re-sort inside their tie class. Identical scores are already in id order.
        near_ties = same_row & (gap <= TIE_EPSILON) & (gap > 0)
        if near_ties.any():
            new_class = np.ones(rows.size, dtype=bool)
            new_class[1:] = ~same_row | (gap > TIE_EPSILON)
            tie_class = np.cumsum(new_class)
            order = np.lexsort((ids, tie_class))
            rows, ids, values = rows[order], ids[order], values[order]
        position = _position_in_group(rows, n_rows)
        keep = position < k
        out[rows[keep], position[keep]] = ids[keep]
        if return_scores:
            out_scores[rows[keep], position[keep]] = values[keep]
    return (out, out_scores) if return_scores else out


def top_k_items(
    scores: np.ndarray | sp.spmatrix,
    item_ids: np.ndarray,
    k: int,
    exclude: np.ndarray | sp.spmatrix | None = None,
    min_score: float | None = None,
) -> np.ndarray:
    """Returns the k best items of every row of a score matrix, with the protocol's tie rule.

    Dense scores: every item is a candidate. Sparse scores (scipy.sparse): only stored entries are
    candidates (an implicit zero means "not scored", as for collaborative filtering).

    Args:
      scores: [n_users, n_items] scores, numpy array or scipy.sparse matrix; higher is better.
        NaN counts as "not a candidate".
      item_ids: [n_items] item id of every column; ties are broken by ascending id.
      k: list length.
      exclude: optional [n_users, n_items] mask (bool array or sparse matrix whose stored entries
        mark the excluded cells), e.g. the items a visitor had in train under `exclude_seen`.
      min_score: when given, only items scoring more than `min_score + TIE_EPSILON` are candidates
        (the CF baselines do not recommend items with score 0).

    Returns:
      int64 array [n_users, k] of item ids, best first, padded with -1 when a row has fewer than k
      candidates.

    Raises:
      ValueError: when shapes do not agree.
    """
    item_ids = np.asarray(item_ids)
    n_users, n_items = scores.shape
    if item_ids.shape != (n_items,):
        raise ValueError(f"item_ids has shape {item_ids.shape}; scores have {n_items} columns")
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}; scores have shape {scores.shape}")
        exclude = sp.csr_matrix(exclude) if sp.issparse(exclude) else np.asarray(exclude, bool)
    if sp.issparse(scores):
        return _top_k_sparse(sp.csr_matrix(scores), item_ids, k, exclude, min_score)
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    chunk = max(1, _DENSE_CHUNK_CELLS // max(n_items, 1))
    parts = []
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        block_exclude = None if exclude is None else exclude[start:stop]
        parts.append(_top_k_dense_block(scores[start:stop], item_ids, k, block_exclude, min_score))
    if not parts:
        return np.full((0, k), PAD_ID, dtype=np.int64)
    return np.concatenate(parts)


def _top_k_sparse(
    scores: sp.csr_matrix,
    item_ids: np.ndarray,
    k: int,
    exclude: np.ndarray | sp.spmatrix | None,
    min_score: float | None,
) -> np.ndarray:
    n_users, n_items = scores.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(scores.indptr))
    cols = scores.indices.astype(np.int64)
    values = scores.data.astype(np.float64)
    keep = ~np.isnan(values)
    if min_score is not None:
        keep &= values > min_score + TIE_EPSILON
    if exclude is not None:
        excluded = sp.csr_matrix(exclude, copy=True)
        excluded.eliminate_zeros()
        ex_rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(excluded.indptr))
        ex_keys = ex_rows * n_items + excluded.indices
        keep &= ~np.isin(rows * n_items + cols, ex_keys)
    rows, cols, values = rows[keep], cols[keep], values[keep]
    return top_k_from_candidates(rows, item_ids[cols], values, n_users, k)


def _top_k_dense_block(
    block: np.ndarray,
    item_ids: np.ndarray,
    k: int,
    exclude: np.ndarray | sp.spmatrix | None,
    min_score: float | None,
) -> np.ndarray:
    n_rows, n_items = block.shape
    scores = np.array(block, copy=True)  # ineligible cells are overwritten with -inf
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        if sp.issparse(exclude):
            ex = sp.coo_matrix(exclude)
            scores[ex.row[ex.data != 0], ex.col[ex.data != 0]] = -np.inf
        else:
            scores[np.asarray(exclude, dtype=bool)] = -np.inf
    if min_score is not None:
        scores[~_exceeds(scores, np.float64(min_score) + TIE_EPSILON)] = -np.inf
    if n_items <= k:
        cand_rows, cand_cols = np.nonzero(scores > -np.inf)
    else:
        # The k-th largest score of each row; every item within epsilon of it may belong to the tie
        # class that straddles position k, so those items are candidates too.
        kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k].astype(np.float64)
        threshold = kth - TIE_EPSILON
        while True:
            eligible = _at_least(scores, threshold[:, None]) & (scores > -np.inf)
            # Chaining: a class reaching down to the lowest candidate may continue below the
            # threshold; extend until the lowest candidate has no neighbour within epsilon below.
            lowest = np.where(eligible, scores, np.inf).min(axis=1).astype(np.float64)
            lowered = np.isfinite(lowest) & (lowest - TIE_EPSILON < threshold)
            if not lowered.any():
                break
            threshold = np.where(lowered, lowest - TIE_EPSILON, threshold)
        cand_rows, cand_cols = np.nonzero(eligible)
    values = scores[cand_rows, cand_cols]
    return top_k_from_candidates(cand_rows, item_ids[cand_cols], values, n_rows, k)


def _at_least(scores: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Exact `scores >= threshold` for a float64 threshold and float32 or float64 scores.

    Rounding the threshold to float32 would admit or reject scores that are a hair off; the smallest
    float32 not below the threshold gives the exact answer without converting the whole block.
    """
    threshold = np.asarray(threshold, dtype=np.float64)
    cast = threshold.astype(scores.dtype)
    cast = np.where(cast < threshold, np.nextafter(cast, np.inf, dtype=scores.dtype), cast)
    return scores >= cast.astype(scores.dtype)


def _exceeds(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Exact `scores > threshold` for a float64 scalar threshold (see `_at_least`)."""
    cast = np.asarray(threshold, dtype=np.float64).astype(scores.dtype)
    return scores >= cast if cast > threshold else scores > cast


def _position_in_group(sorted_groups: np.ndarray, n_groups: int) -> np.ndarray:
    """0-based position of each element inside its run of equal values in a sorted array."""
    counts = np.bincount(sorted_groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    return np.arange(sorted_groups.size, dtype=np.int64) - starts[sorted_groups]


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
