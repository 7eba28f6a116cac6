"""The train events as sparse matrices, and helpers the baselines share (DESIGN section 5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from modules import ranking

# Upper bound on the non-zeros of one chunk's similarity product: about 0.5 GiB of working memory
# (indices, float64 similarities and the sort permutation), whatever the size of the data.
CHUNK_NNZ_BUDGET = 8_000_000


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


def follow_ranking(
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


def selection_matrix(own_rows: np.ndarray, neighbours: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Sparse [len(own_rows), n_cols]: 1 at each row's own index and at its neighbours (-1 = none)."""
    found = neighbours != ranking.PAD_ID
    local = np.arange(own_rows.size, dtype=np.int64)
    rows = np.concatenate([local, np.repeat(local, found.sum(axis=1))])
    cols = np.concatenate([own_rows, neighbours[found]])
    return sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, cols)), shape=(own_rows.size, n_cols)
    )


def chunks_by_cost(costs: np.ndarray, budget: float) -> Iterator[tuple[int, int]]:
    """Consecutive [start, stop) ranges whose summed cost stays within budget (at least one item)."""
    total = np.cumsum(np.asarray(costs, dtype=np.float64))
    start = 0
    while start < total.size:
        before = total[start - 1] if start else 0.0
        stop = int(np.searchsorted(total, before + budget, side="right"))
        stop = max(stop, start + 1)
        yield start, stop
        start = stop
