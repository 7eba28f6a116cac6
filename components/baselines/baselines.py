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

Scale: the full RetailRocket log (1.4M visitors x 235k items) fits in a few hundred MB as CSR. Every
similarity product is restricted to what the eval visitors need (their rows for user-user CF, the items
they have seen for item-item CF) and computed in chunks sized by an upper bound of the product's
non-zeros, so there is no Python loop over visitors or items and no dense visitor x visitor matrix.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from modules import metrics, progress, ranking
from modules.constants import TIE_EPSILON

# The protocol's five baselines (DESIGN 5), the names of metrics.json (DESIGN 8).
BASELINE_NAMES = ("most_popular", "recently_viewed", "user_user_cf", "item_item_cf", "svd")
# Stronger classic baselines beyond the original five; run by name (`run_baseline`, `names=`).
EXTRA_BASELINE_NAMES = ("item_knn_recency",)

N_NEIGHBOURS = 9  # DESIGN 5: the visitor (or item) itself plus up to 9 most similar ones
_SVD_MAX_RANK = 50  # DESIGN 5: k = min(50, min(shape) - 1)
# item_knn_recency: a seen item counts half after 7 days. Picked among 1 h, 6 h, 1 d and 7 d on the
# project's generated full-scale log (Recall@50 0.223, 0.246, 0.267, 0.278; plain item-item 0.253),
# i.e. a light look at eval data: re-check on real data before reading much into its margin.
RECENCY_HALF_LIFE_MS = 7 * 24 * 3600 * 1000
_SVD_SEED = 0  # fixes ARPACK's start vector, so the factorisation is reproducible
# Below this many cells the exact dense SVD is cheaper than ARPACK and has no start-vector dependence.
_DENSE_SVD_MAX_CELLS = 250_000
# Upper bound on the non-zeros of one chunk's similarity product: about 0.5 GiB of working memory
# (indices, float64 similarities and the sort permutation), whatever the size of the data.
_CHUNK_NNZ_BUDGET = 8_000_000
# Eval visitors x items reconstruction cells scored at once (float64: 128 MiB).
_SVD_CHUNK_CELLS = 1 << 24
# Items (by decreasing factor norm) every visitor is scored against before the exactness check.
_SVD_HEAD_ITEMS = 4096


@dataclasses.dataclass(frozen=True)
class TrainMatrix:
    """Train interactions indexed for the baselines.

    Attributes:
      visitor_ids: sorted distinct visitor ids; row r of the matrices is visitor_ids[r].
      item_ids: sorted distinct item ids; column c is item_ids[c]. Sorting makes "ascending column"
        and "ascending id" the same order, which the tie rule relies on.
      seen: binary [n_visitors, n_items] CSR (float32): 1 where the visitor had any train event.
      seen_by_item: the transpose of `seen` as CSR [n_items, n_visitors] (item rows are sliced).
      last_seen: [n_visitors, n_items] CSR with the same pattern as `seen`; value is the latest train
        timestamp (ms, float64) of the pair.
      item_events: [n_items] number of train events of any type per item.
    """

    visitor_ids: np.ndarray
    item_ids: np.ndarray
    seen: sp.csr_matrix
    seen_by_item: sp.csr_matrix
    last_seen: sp.csr_matrix
    item_events: np.ndarray

    @property
    def n_items(self) -> int:
        """Number of distinct items in train (the coverage denominator)."""
        return int(self.item_ids.size)


def build_train_matrix(
    visitor_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray
) -> TrainMatrix:
    """Indexes train events (one row per event, any type) into sparse matrices.

    Args:
      visitor_ids: [n_events] int visitor id of every train event.
      item_ids: [n_events] int item id.
      timestamps: [n_events] event time in ms.

    Returns:
      A `TrainMatrix`.

    Raises:
      ValueError: when the arrays differ in length or are empty.
    """
    visitor_ids = np.asarray(visitor_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    timestamps = np.asarray(timestamps, dtype=np.int64)
    if not visitor_ids.shape == item_ids.shape == timestamps.shape or visitor_ids.ndim != 1:
        raise ValueError(
            "visitor_ids, item_ids and timestamps must be 1-D of one length; got shapes "
            f"{visitor_ids.shape}, {item_ids.shape}, {timestamps.shape}"
        )
    if visitor_ids.size == 0:
        raise ValueError("no train events")
    visitors, v_idx = np.unique(visitor_ids, return_inverse=True)
    items, i_idx = np.unique(item_ids, return_inverse=True)
    item_events = np.bincount(i_idx, minlength=items.size).astype(np.int64)
    # One entry per (visitor, item) pair: sort by visitor, item, time and keep each run's last row,
    # which carries the pair's latest timestamp.
    order = np.lexsort((timestamps, i_idx, v_idx))
    v_sorted, i_sorted = v_idx[order], i_idx[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (v_sorted[1:] != v_sorted[:-1]) | (i_sorted[1:] != i_sorted[:-1])
    pair_v, pair_i, pair_t = v_sorted[last], i_sorted[last], timestamps[order][last]
    shape = (visitors.size, items.size)
    indptr = np.zeros(visitors.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_v, minlength=visitors.size), out=indptr[1:])
    indices = pair_i.astype(np.int32)
    # Built from (data, indices, indptr) so that no entry is summed or dropped, not even a
    # timestamp of 0.
    seen = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=shape)
    last_seen = sp.csr_matrix((pair_t.astype(np.float64), indices, indptr), shape=shape)
    return TrainMatrix(
        visitor_ids=visitors,
        item_ids=items,
        seen=seen,
        seen_by_item=seen.T.tocsr(),
        last_seen=last_seen,
        item_events=item_events,
    )


def eval_rows(train: TrainMatrix, eval_visitors: np.ndarray) -> np.ndarray:
    """Row numbers of the eval visitors in the train matrices.

    Args:
      train: the indexed train events.
      eval_visitors: [n] visitor ids.

    Returns:
      int64 array [n].

    Raises:
      ValueError: when a visitor has no train event (the protocol only evaluates visitors with one).
    """
    eval_visitors = np.asarray(eval_visitors, dtype=np.int64)
    pos = np.searchsorted(train.visitor_ids, eval_visitors)
    known = pos < train.visitor_ids.size
    known[known] = train.visitor_ids[pos[known]] == eval_visitors[known]
    if not known.all():
        missing = np.unique(eval_visitors[~known])
        raise ValueError(
            f"{missing.size} eval visitors have no train event, e.g. {missing[:5].tolist()}; "
            "the protocol evaluates only visitors seen before the cutoff"
        )
    return pos.astype(np.int64)


# ---------------------------------------------------------------- the five baselines


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
    return _follow_ranking(popular_order, train.item_ids, seen, rows.size, k)


def _follow_ranking(
    order: np.ndarray, item_ids: np.ndarray, seen: sp.csr_matrix | None, n_rows: int, k: int
) -> np.ndarray:
    """Lists that follow one global ranking of columns, minus each row's seen columns.

    A row with s seen items finds its k best unseen ones among the first k + s of the ranking, so
    only n * k + nnz(seen) candidates are materialised; their (negated) rank is their score.
    """
    if seen is None:
        head = order[:k]
        lists = np.full((n_rows, k), ranking.PAD_ID, dtype=np.int64)
        lists[:, : head.size] = item_ids[head]
        return lists
    n_items = order.size
    length = np.minimum(k + np.diff(seen.indptr), n_items)
    cand_rows = np.repeat(np.arange(n_rows, dtype=np.int64), length)
    rank = np.arange(cand_rows.size, dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
    cand_cols = order[rank]
    seen_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(seen.indptr))
    keep = ~np.isin(cand_rows * n_items + cand_cols, seen_rows * n_items + seen.indices)
    return ranking.top_k_from_candidates(
        cand_rows[keep], item_ids[cand_cols[keep]], -rank[keep].astype(np.float64), n_rows, k
    )


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


def user_user_cf(
    train: TrainMatrix,
    eval_visitors: np.ndarray,
    k: int = 50,
    exclude_seen: bool = False,
    n_neighbours: int = N_NEIGHBOURS,
) -> np.ndarray:
    """User-user collaborative filtering with cosine similarity on binary rows.

    Each eval visitor keeps itself plus up to 9 other visitors with the highest cosine similarity
    (> 0; ties by ascending visitor id); an item's score is the number of those visitors who had it.

    Args:
      train: the indexed train events.
      eval_visitors: [n] visitor ids to recommend to.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k.
      n_neighbours: similar visitors or items kept besides the one itself (the protocol's 9).

    Returns:
      int64 array [n, k] of item ids, padded with -1 (items with score 0 are never listed).
    """
    rows = eval_rows(train, eval_visitors)
    x = train.seen
    visitor_degree = np.diff(x.indptr).astype(np.float64)
    item_degree = np.diff(train.seen_by_item.indptr).astype(np.float64)
    # Non-zeros of a row of X @ X.T are at most the summed degrees of the visitor's items.
    cost = x[rows] @ item_degree
    lists = np.full((rows.size, k), ranking.PAD_ID, dtype=np.int64)
    for start, stop in _chunks_by_cost(cost, _CHUNK_NNZ_BUDGET):
        block = rows[start:stop]
        co = (x[block] @ train.seen_by_item).tocoo()  # co-occurrence counts, exact in float32
        other = co.col != block[co.row]
        local, neighbour = co.row[other], co.col[other]
        similarity = co.data[other] / np.sqrt(
            visitor_degree[block[local]] * visitor_degree[neighbour]
        )
        neighbours = ranking.top_k_from_candidates(
            local, neighbour, similarity, block.size, n_neighbours
        )
        selection = _selection_matrix(block, neighbours, x.shape[0])
        scores = selection @ x  # number of selected visitors who had each item
        exclude = x[block] if exclude_seen else None
        lists[start:stop] = ranking.top_k_items(
            scores, train.item_ids, k, exclude=exclude, min_score=0.0
        )
    return lists


def item_item_cf(
    train: TrainMatrix,
    eval_visitors: np.ndarray,
    k: int = 50,
    exclude_seen: bool = False,
    n_neighbours: int = N_NEIGHBOURS,
) -> np.ndarray:
    """Item-item collaborative filtering with cosine similarity on binary item columns.

    Every item the visitor had in train contributes itself (similarity 1) and its up to 9 most
    similar items (similarity > 0, ties by ascending item id); candidates are scored by the sum of
    the contributed similarities.

    Args:
      train: the indexed train events.
      eval_visitors: [n] visitor ids to recommend to.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k.
      n_neighbours: similar visitors or items kept besides the one itself (the protocol's 9).

    Returns:
      int64 array [n, k] of item ids, padded with -1 (items with score 0 are never listed).
    """
    rows = eval_rows(train, eval_visitors)
    weights = _item_neighbour_weights(train, rows, n_neighbours)
    return _score_seen_items(train, rows, train.seen[rows], weights, k, exclude_seen)


def _item_neighbour_weights(
    train: TrainMatrix, rows: np.ndarray, n_neighbours: int
) -> sp.csr_matrix:
    """[n_items, n_items] CSR: row l holds what seen item l adds to each candidate.

    1 on the diagonal (the item itself) and the cosine similarity of its up to n_neighbours most
    similar items (> 0, ties by ascending item id); only rows of items the eval visitors have seen
    are filled, since only those are ever read.
    """
    x, xt = train.seen, train.seen_by_item
    visitor_degree = np.diff(x.indptr).astype(np.float64)
    item_degree = np.diff(xt.indptr).astype(np.float64)
    needed = np.unique(x[rows].indices).astype(np.int64)
    # Non-zeros of a row of X.T @ X are at most the summed degrees of the item's visitors.
    cost = xt[needed] @ visitor_degree
    parts_rows, parts_cols, parts_values = [needed], [needed], [np.ones(needed.size)]
    for start, stop in _chunks_by_cost(cost, _CHUNK_NNZ_BUDGET):
        block = needed[start:stop]
        co = (xt[block] @ x).tocoo()  # item x item co-occurrence counts, exact in float32
        other = co.col != block[co.row]
        local, neighbour = co.row[other], co.col[other]
        similarity = co.data[other] / np.sqrt(item_degree[block[local]] * item_degree[neighbour])
        neighbours, weights = ranking.top_k_from_candidates(
            local, neighbour, similarity, block.size, n_neighbours, return_scores=True
        )
        found = neighbours != ranking.PAD_ID
        parts_rows.append(np.repeat(block, found.sum(axis=1)))
        parts_cols.append(neighbours[found])
        parts_values.append(weights[found])
    return sp.csr_matrix(
        (np.concatenate(parts_values), (np.concatenate(parts_rows), np.concatenate(parts_cols))),
        shape=(train.n_items, train.n_items),
    )


def _score_seen_items(
    train: TrainMatrix,
    rows: np.ndarray,
    seen_weights: sp.csr_matrix,
    weights: sp.csr_matrix,
    k: int,
    exclude_seen: bool,
) -> np.ndarray:
    """Lists from scores = seen_weights @ weights (summed contributions of each visitor's items)."""
    cost = (seen_weights != 0) @ np.diff(weights.indptr).astype(np.float64)
    lists = np.full((rows.size, k), ranking.PAD_ID, dtype=np.int64)
    for start, stop in _chunks_by_cost(cost, _CHUNK_NNZ_BUDGET):
        scores = seen_weights[start:stop] @ weights
        exclude = train.seen[rows[start:stop]] if exclude_seen else None
        lists[start:stop] = ranking.top_k_items(
            scores, train.item_ids, k, exclude=exclude, min_score=0.0
        )
    return lists


def item_knn_recency(
    train: TrainMatrix,
    eval_visitors: np.ndarray,
    k: int = 50,
    exclude_seen: bool = False,
    n_neighbours: int = N_NEIGHBOURS,
    half_life_ms: float = RECENCY_HALF_LIFE_MS,
) -> np.ndarray:
    """Item-item CF in which older seen items count less (a stronger, optional baseline).

    Exactly `item_item_cf`, except that each seen item's contribution is multiplied by
    2^(-age / half_life), age = the visitor's latest train event time minus the last time it had
    that item. It blends the two strongest original baselines (recently viewed, item-item CF): the
    latest session dominates, older interests still contribute. The age is measured from the
    visitor's own latest event, not from the cutoff: a visitor idle for months keeps weights in
    (0, 1] instead of underflowing to 0, and the ranking is unchanged by a common factor anyway.

    Args:
      train: the indexed train events.
      eval_visitors: [n] visitor ids to recommend to.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k.
      n_neighbours: similar items kept besides the item itself.
      half_life_ms: age (ms) at which a seen item counts half.

    Returns:
      int64 array [n, k] of item ids, padded with -1 (items with score 0 are never listed).
    """
    rows = eval_rows(train, eval_visitors)
    weights = _item_neighbour_weights(train, rows, n_neighbours)
    last = train.last_seen[rows].tocsr()
    # Every eval visitor has train events, so no row is empty (reduceat needs non-empty segments).
    latest = np.maximum.reduceat(last.data, last.indptr[:-1]) if last.nnz else np.zeros(0)
    age = np.repeat(latest, np.diff(last.indptr)) - last.data
    decayed = sp.csr_matrix(
        (np.exp2(-age / half_life_ms), last.indices, last.indptr), shape=last.shape
    )
    return _score_seen_items(train, rows, decayed, weights, k, exclude_seen)


def svd(
    train: TrainMatrix, eval_visitors: np.ndarray, k: int = 50, exclude_seen: bool = False
) -> np.ndarray:
    """Truncated SVD of the binary visitor x item matrix; scores are the rank-r reconstruction.

    r = min(50, min(shape) - 1). Large matrices use ARPACK (`scipy.sparse.linalg.svds`) with a
    seeded start vector, small ones the exact dense SVD; both give the same reconstruction up to
    rounding.

    Args:
      train: the indexed train events.
      eval_visitors: [n] visitor ids to recommend to.
      k: list length.
      exclude_seen: drop each visitor's train items before cutting to k.

    Returns:
      int64 array [n, k] of item ids, padded with -1 only when fewer than k items are eligible.
    """
    rows = eval_rows(train, eval_visitors)
    user_factors, item_factors = svd_factors(train.seen)
    exclude = train.seen[rows] if exclude_seen else None
    return _top_k_factorised(user_factors[rows], item_factors, train.item_ids, k, exclude)


def _top_k_factorised(
    users: np.ndarray,
    items: np.ndarray,
    item_ids: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
    head_items: int = _SVD_HEAD_ITEMS,
) -> np.ndarray:
    """Exact top-k of users @ items without scoring the whole catalogue for every user.

    Scoring 32k visitors against 235k items is ~7.5e9 float64 cells, most of the SVD's run time. By
    Cauchy-Schwarz, |score| <= |u| * |v_j|. Items are ordered by decreasing |v_j| (a binary
    matrix's right singular vectors load on few items), each visitor is scored against a prefix of
    them, and `top_k_items` reports the tie class straddling position k as [lower, upper]. With b
    bounding the unscored items' |score|, a visitor is done when
      * b < lower: no unscored item can enter the list; or
      * lower + epsilon <= -b and b <= upper: every unscored item falls inside the straddling
        class (its interval only grows), so it competes by id alone; the k smallest eligible
        unscored ids join the ranking at the class's top score (near-zero visitors, whose scores
        are all rounding-sized, end here instead of scoring the whole catalogue).
    Other visitors are scored against a longer prefix, finally against everything, so the result
    is the same as scoring the full matrix.
    """
    n_users, n_items = users.shape[0], items.shape[1]
    norms = np.sqrt(np.einsum("ij,ij->j", items, items))
    order = np.argsort(-norms, kind="stable")
    items, norms, item_ids = items[:, order], norms[order], item_ids[order]
    if exclude is not None:
        exclude = exclude[:, order]
    # Relative slack over the bound for rounding in the products and norms (float64, rank <= 50).
    user_norms = np.sqrt(np.einsum("ij,ij->i", users, users)) * (1 + 1e-9)
    lists = np.full((n_users, k), ranking.PAD_ID, dtype=np.int64)
    pending = np.arange(n_users)
    prefix = min(n_items, max(head_items, k))
    while pending.size:
        chunk = max(1, _SVD_CHUNK_CELLS // prefix)
        unresolved = []
        # The unscored items by ascending id: the order in which they join a straddling class.
        rest_by_id = prefix + np.argsort(item_ids[prefix:], kind="stable")
        for start in range(0, pending.size, chunk):
            block = pending[start : start + chunk]
            scores = users[block] @ items[:, :prefix]
            block_exclude = None if exclude is None else exclude[block][:, :prefix]
            block_lists, lower, upper = ranking.top_k_items(
                scores, item_ids[:prefix], k, exclude=block_exclude, return_bounds=True
            )
            bound = user_norms[block] * (norms[prefix] if prefix < n_items else 0.0)
            below = (prefix == n_items) | (bound < lower)
            inside = ~below & (lower + TIE_EPSILON <= -bound) & (bound <= upper)
            lists[block[below]] = block_lists[below]
            if inside.any():
                lists[block[inside]] = _join_straddling_class(
                    scores[inside],
                    block_lists[inside],
                    upper[inside],
                    item_ids,
                    prefix,
                    rest_by_id,
                    None if exclude is None else exclude[block[inside]],
                    k,
                )
            unresolved.append(block[~below & ~inside])
        pending = np.concatenate(unresolved)
        prefix = n_items if prefix * 4 >= n_items else prefix * 4
    return lists


def _join_straddling_class(
    scores: np.ndarray,
    prefix_lists: np.ndarray,
    class_top: np.ndarray,
    item_ids: np.ndarray,
    prefix: int,
    rest_by_id: np.ndarray,
    exclude: sp.csr_matrix | None,
    k: int,
) -> np.ndarray:
    """Merges the unscored items into the class straddling position k (see `_top_k_factorised`).

    Candidates: the prefix's own top k (the classes above the straddling one with their scores, and
    the class's smallest-id members) plus each row's k smallest eligible unscored ids; every class
    member is given the class's top score, so the tie rule orders them by id.
    """
    n_rows = scores.shape[0]
    # Scores of the listed prefix items, found back through their column in the prefix.
    columns_by_id = np.argsort(item_ids[:prefix], kind="stable")
    listed = prefix_lists != ranking.PAD_ID
    rows = np.repeat(np.arange(n_rows), listed.sum(axis=1))
    ids = prefix_lists[listed]
    columns = columns_by_id[np.searchsorted(item_ids[:prefix], ids, sorter=columns_by_id)]
    # Listed members of the straddling class also move to its top score: with only some members
    # among the candidates, their own scores could chain into separate classes.
    values = np.maximum(scores[rows, columns], class_top[rows])
    seen_rest = None if exclude is None else exclude[:, prefix:]
    rest = _follow_ranking(rest_by_id - prefix, item_ids[prefix:], seen_rest, n_rows, k)
    found = rest != ranking.PAD_ID
    return ranking.top_k_from_candidates(
        np.concatenate([rows, np.repeat(np.arange(n_rows), found.sum(axis=1))]),
        np.concatenate([ids, rest[found]]),
        np.concatenate([values, np.repeat(class_top, found.sum(axis=1))]),
        n_rows,
        k,
    )


def svd_factors(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Rank-r factors (U * s, V^T) of a sparse matrix, r = min(50, min(shape) - 1).

    Args:
      matrix: [m, n] sparse matrix.

    Returns:
      ([m, r] float64, [r, n] float64) whose product is the truncated reconstruction; r = 0 (empty
      factors, all-zero reconstruction) when min(shape) < 2.
    """
    m, n = matrix.shape
    rank = min(_SVD_MAX_RANK, min(m, n) - 1)
    if rank < 1:
        return np.zeros((m, 0)), np.zeros((0, n))
    if m * n <= _DENSE_SVD_MAX_CELLS:
        u, s, vt = np.linalg.svd(matrix.toarray().astype(np.float64), full_matrices=False)
        u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    else:
        rng = np.random.default_rng(_SVD_SEED)
        v0 = rng.standard_normal(min(m, n))
        u, s, vt = svds(matrix.astype(np.float64), k=rank, v0=v0, random_state=_SVD_SEED)
    return u * s, vt


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
      "timings_s": {name: seconds to fit and rank}, "n_queries", "n_eval_visitors",
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
    for name in names:
        started = time.perf_counter()
        lists = run_baseline(name, train, eval_visitors, ranking.LIST_LENGTH, exclude_seen)
        timings[name] = time.perf_counter() - started
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


# ---------------------------------------------------------------- helpers


def _selection_matrix(own_rows: np.ndarray, neighbours: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Sparse [len(own_rows), n_cols]: 1 at each row's own index and at its neighbours (-1 = none)."""
    found = neighbours != ranking.PAD_ID
    local = np.arange(own_rows.size, dtype=np.int64)
    rows = np.concatenate([local, np.repeat(local, found.sum(axis=1))])
    cols = np.concatenate([own_rows, neighbours[found]])
    return sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, cols)), shape=(own_rows.size, n_cols)
    )


def _chunks_by_cost(costs: np.ndarray, budget: float) -> Iterator[tuple[int, int]]:
    """Consecutive [start, stop) ranges whose summed cost stays within budget (at least one item)."""
    total = np.cumsum(np.asarray(costs, dtype=np.float64))
    start = 0
    while start < total.size:
        before = total[start - 1] if start else 0.0
        stop = int(np.searchsorted(total, before + budget, side="right"))
        stop = max(stop, start + 1)
        yield start, stop
        start = stop
