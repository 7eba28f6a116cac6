"""Ranking: the protocol's top-K selection, its tie rule, exclude-seen and the repeat bonus.

Every list of the project is selected here or by the SavedModel's TF ops, which give the same lists
(``modules/ranking_test.py`` proves it on ties): the baselines (`top_k_items`,
`top_k_from_candidates`), early stopping and the repeat calibration, the offline scorer, the ScaNN
tuner's exact reference, and the evaluator's exclude-seen (`drop_seen`).

* Ties: scores within `TIE_EPSILON` of each other are equal and are ordered by ascending item id.
  "Within epsilon" is made an equivalence by chaining: sort a list by descending score; a new tie class
  starts wherever the gap to the previous score exceeds `TIE_EPSILON`. Inside a class, ascending id.
  For float32 scores of magnitude above about 0.01 (every model here) two different values are
  more than epsilon apart, so the rule is "equal scores: ascending id", which is what
  ``tf.math.top_k`` over a catalogue sorted by id does.
* Lists are padded with `PAD_ID` (-1) when a model has fewer than K candidates; -1 never counts as an
  item.
* The two-tower's score of an item is its dot product with the query vector plus, for items in the
  visitor's history, the repeat bonus (`add_repeat_bonus`).

Plain numpy/scipy (no TensorFlow), unit-tested on hand-computed cases.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from modules.constants import COVERAGE_K, EVAL_KS, NDCG_K, TIE_EPSILON

PAD_ID = -1
# Every metric of the protocol reads at most this many positions of a list.
LIST_LENGTH = max(max(EVAL_KS), NDCG_K, COVERAGE_K)
# Dense scores are processed in row chunks of about this many cells (float32: 64 MiB) so that the
# whole (queries x catalogue) matrix never has to exist at once.
_DENSE_CHUNK_CELLS = 1 << 24


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
      scores: finite float array [n]; higher is better. Compared in float64.
      n_rows: number of output rows (rows without candidates come back as all `PAD_ID`).
      k: list length.
      return_scores: also return the scores of the listed candidates.

    Returns:
      int64 array [n_rows, k] of ids padded with `PAD_ID`; with `return_scores`, also a float64 array
      [n_rows, k] of their scores padded with NaN.

    Raises:
      ValueError: on arrays of different lengths, rows out of range or non-finite scores.
    """
    out, out_scores, _, _ = _top_k_with_bounds(rows, ids, scores, n_rows, k)
    return (out, out_scores) if return_scores else out


def _top_k_with_bounds(
    rows: np.ndarray, ids: np.ndarray, scores: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`top_k_from_candidates` plus the lowest and highest score of the tie class at position k.

    Rows with fewer than k candidates get -inf for both bounds.
    """
    rows = np.asarray(rows, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    values = np.asarray(scores, dtype=np.float64)
    if not rows.shape == ids.shape == values.shape or rows.ndim != 1:
        raise ValueError(
            f"rows, ids and scores must be 1-D of one length; got {rows.shape}, {ids.shape}, "
            f"{values.shape}"
        )
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"rows must lie in [0, {n_rows}); got [{rows.min()}, {rows.max()}]")
    if not np.isfinite(values).all():
        raise ValueError("candidate scores must be finite")
    k = max(k, 0)
    if rows.size == 0 or k == 0:
        no_bound = np.full(n_rows, -np.inf)
        return (
            np.full((n_rows, k), PAD_ID, dtype=np.int64),
            np.full((n_rows, k), np.nan),
            no_bound,
            no_bound.copy(),
        )
    keep, dropped_max = _prefilter(rows, values, n_rows, k)
    out, out_scores, low, high = _rank(rows[keep], ids[keep], values[keep], n_rows, k)
    # The prefilter only drops values below everything it keeps; that is exact unless a dropped
    # value is within epsilon of the lowest member of the tie class straddling position k, because
    # chaining would have pulled it in. Such rows are ranked again from all their candidates.
    redo = (dropped_max > -np.inf) & (dropped_max >= low - TIE_EPSILON)
    if redo.any():
        again = redo[rows]
        redone = _rank(rows[again], ids[again], values[again], n_rows, k)
        for result, replacement in zip((out, out_scores, low, high), redone, strict=True):
            result[redo] = replacement[redo]
    return out, out_scores, low, high


def _prefilter(
    rows: np.ndarray, values: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drops candidates that cannot reach the top k, in linear time, before the exact sort.

    Neighbour search produces rows of tens of thousands of candidates of which 9 are kept; sorting
    them all dominated the run time. Per long row, a histogram of the scores (B equal-width buckets
    between the row's min and max) finds the bucket holding the k-th largest score; candidates in
    lower buckets are dropped. The bucket index is a monotone function of the score, so what is kept
    is always an upper set of each row holding at least k candidates. Repeated while it still helps.

    Returns:
      keep: bool [n] mask of the surviving candidates.
      dropped_max: [n_rows] largest dropped score per row (-inf when nothing was dropped).
    """
    keep = np.ones(rows.size, dtype=bool)
    dropped_max = np.full(n_rows, -np.inf)
    for _ in range(3):
        live = np.flatnonzero(keep)
        counts = np.bincount(rows[live], minlength=n_rows)
        long_rows = counts > 4 * k + 64  # short rows are cheaper to sort than to bucket
        if not long_rows.any():
            break
        live = live[long_rows[rows[live]]]
        compact = np.cumsum(long_rows) - 1  # row -> index among the long rows
        r, v = compact[rows[live]], values[live]
        n_long = int(long_rows.sum())
        low = np.full(n_long, np.inf)
        high = np.full(n_long, -np.inf)
        np.minimum.at(low, r, v)
        np.maximum.at(high, r, v)
        n_buckets = int(np.clip((1 << 22) // n_long, 16, 1024))
        with np.errstate(over="ignore", invalid="ignore"):  # spans beyond float64: one bucket
            span = high - low
            scale = np.divide(
                n_buckets, span, out=np.zeros(n_long), where=(span > 0) & np.isfinite(span)
            )
            position = (v - low[r]) * scale[r]
        position[~np.isfinite(position)] = 0.0
        bucket = np.minimum(position.astype(np.int64), n_buckets - 1)
        hist = np.bincount(r * n_buckets + bucket, minlength=n_long * n_buckets)
        at_or_above = np.cumsum(hist.reshape(n_long, n_buckets)[:, ::-1], axis=1)[:, ::-1]
        kth_bucket = (at_or_above >= k).sum(axis=1) - 1
        dropped = bucket < kth_bucket[r]
        if not dropped.any():
            break
        keep[live[dropped]] = False
        np.maximum.at(dropped_max, rows[live[dropped]], v[dropped])
    return keep, dropped_max


def _rank(
    rows: np.ndarray, ids: np.ndarray, values: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact ranking of candidates by the tie rule.

    Returns:
      ids [n_rows, k] (padded), their scores [n_rows, k] (NaN padded), and per row the lowest and
      the highest score of the tie class that holds position k (-inf for rows with fewer than k
      candidates).
    """
    out = np.full((n_rows, k), PAD_ID, dtype=np.int64)
    out_scores = np.full((n_rows, k), np.nan)
    low, high = np.full(n_rows, -np.inf), np.full(n_rows, -np.inf)
    if rows.size == 0:
        return out, out_scores, low, high
    # Sort by row, then descending score, then ascending id (lexsort: last key is primary).
    order = np.lexsort((ids, -values, rows))
    rows, ids, values = rows[order], ids[order], values[order]
    same_row = rows[1:] == rows[:-1]
    gap = values[:-1] - values[1:]
    new_class = np.ones(rows.size, dtype=bool)
    new_class[1:] = ~same_row | (gap > TIE_EPSILON)
    tie_class = np.cumsum(new_class) - 1
    # Scores that differ by no more than epsilon but are not identical were sorted by score, not
    # by id: re-sort inside their tie class. Identical scores are already in id order.
    if (same_row & (gap <= TIE_EPSILON) & (gap > 0)).any():
        order = np.lexsort((ids, tie_class))
        rows, ids, values, tie_class = rows[order], ids[order], values[order], tie_class[order]
    position = _position_in_group(rows, n_rows)
    listed = position < k
    out[rows[listed], position[listed]] = ids[listed]
    out_scores[rows[listed], position[listed]] = values[listed]
    at_k = position == k - 1
    n_classes = int(tie_class.max()) + 1
    lowest_in_class, highest_in_class = np.full(n_classes, np.inf), np.full(n_classes, -np.inf)
    np.minimum.at(lowest_in_class, tie_class, values)
    np.maximum.at(highest_in_class, tie_class, values)
    low[rows[at_k]] = lowest_in_class[tie_class[at_k]]
    high[rows[at_k]] = highest_in_class[tie_class[at_k]]
    return out, out_scores, low, high


def top_k_items(
    scores: np.ndarray | sp.spmatrix,
    item_ids: np.ndarray,
    k: int,
    exclude: np.ndarray | sp.spmatrix | None = None,
    min_score: float | None = None,
    return_bounds: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns the k best items of every row of a score matrix, with the protocol's tie rule.

    Dense scores: every item is a candidate. Sparse scores (scipy.sparse): only stored entries are
    candidates (an implicit zero means "not scored", as for collaborative filtering). Non-finite
    scores are never candidates.

    Args:
      scores: [n_users, n_items] scores, numpy array or scipy.sparse matrix; higher is better.
      item_ids: [n_items] item id of every column; ties are broken by ascending id.
      k: list length.
      exclude: optional [n_users, n_items] mask (bool array or sparse matrix whose stored entries
        mark the excluded cells), e.g. the items a visitor had in train under `exclude_seen`.
      min_score: when given, only items scoring more than `min_score + TIE_EPSILON` are candidates
        (the CF baselines do not recommend items with score 0).
      return_bounds: dense scores only; also return, per row, `lower` and `upper`: the tie class
        straddling position k spans scores [lower + TIE_EPSILON, upper]; every eligible item
        scoring at least `lower` was a candidate, and none scoring below it can enter the list.
        A caller that scored only part of the catalogue checks with them that the rest could not
        change the list (both -inf when a row has fewer than k eligible items).

    Returns:
      int64 array [n_users, k] of item ids, best first, padded with -1 when a row has fewer than k
      candidates; with `return_bounds`, also the float64 arrays `lower` and `upper` [n_users].

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
        if return_bounds:
            raise ValueError("return_bounds needs dense scores")
        return _top_k_sparse(sp.csr_matrix(scores), item_ids, k, exclude, min_score)
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    chunk = max(1, _DENSE_CHUNK_CELLS // max(n_items, 1))
    parts = [(np.full((0, k), PAD_ID, dtype=np.int64), np.zeros(0), np.zeros(0))]
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        block_exclude = None if exclude is None else exclude[start:stop]
        parts.append(_top_k_dense_block(scores[start:stop], item_ids, k, block_exclude, min_score))
    lists, lower, upper = (np.concatenate(column) for column in zip(*parts, strict=True))
    return (lists, lower, upper) if return_bounds else lists


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
    keep = np.isfinite(values)
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_rows, n_items = block.shape
    scores = np.array(block, copy=True)  # ineligible cells are overwritten with -inf
    scores[~np.isfinite(scores)] = -np.inf
    if exclude is not None:
        if sp.issparse(exclude):
            ex = sp.coo_matrix(exclude)
            scores[ex.row[ex.data != 0], ex.col[ex.data != 0]] = -np.inf
        else:
            scores[np.asarray(exclude, dtype=bool)] = -np.inf
    if min_score is not None:
        scores[~_exceeds(scores, np.float64(min_score) + TIE_EPSILON)] = -np.inf
    chained = np.zeros(0, dtype=np.int64)
    if n_items <= k:
        threshold = np.full(n_rows, -np.inf)
    else:
        # The k-th largest score of each row; every item within epsilon of it may belong to the tie
        # class that straddles position k, so those items are candidates too.
        kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k].astype(np.float64)
        threshold = kth - TIE_EPSILON
        # Chaining: the class straddling position k may continue below kth - epsilon. Where the
        # largest non-candidate is within epsilon of the lowest candidate, sort the row and walk
        # down to the first gap wider than epsilon (rare, except for near-constant rows).
        eligible = _at_least(scores, threshold[:, None])
        lowest = np.where(eligible, scores, np.inf).min(axis=1).astype(np.float64)
        below = np.where(eligible, -np.inf, scores).max(axis=1).astype(np.float64)
        with np.errstate(invalid="ignore"):  # -inf - -inf when a row has < k finite scores
            chained = (below > -np.inf) & (lowest - below <= TIE_EPSILON)
        # Many candidates mean a large class straddling position k (all of them lie within
        # epsilon of the k-th score): same treatment, so that they are not all sorted.
        crowded = (eligible & (scores > -np.inf)).sum(axis=1) > 4 * k + 64
        chained = np.flatnonzero(chained | crowded)
    candidates = _at_least(scores, threshold[:, None]) & (scores > -np.inf)
    extra_rows, extra_ids, extra_values = [], [], []
    if n_items > k and chained.size:
        sub = scores[chained]
        descending = -np.sort(-sub.astype(np.float64), axis=1)
        with np.errstate(invalid="ignore"):  # -inf - -inf: NaN, not wide; finite - -inf: wide
            wide = descending[:, :-1] - descending[:, 1:] > TIE_EPSILON
        after = wide[:, k - 1 :]
        last = np.where(after.any(axis=1), k - 1 + after.argmax(axis=1), n_items - 1)
        before = wide[:, : k - 1]
        first = np.zeros(chained.size, dtype=np.int64)
        if k > 1:  # the class starts after the last wide gap above position k
            first = np.where(before.any(axis=1), k - 1 - before[:, ::-1].argmax(axis=1), 0)
        at = np.arange(chained.size)
        class_top, class_low = descending[at, first], descending[at, last]
        threshold[chained] = class_low - TIE_EPSILON
        # The straddling class can hold a whole near-constant row. Pass the classes above it as
        # they are, and of the class itself only its k smallest ids, all at the class's top score
        # so that the ranking below orders them by id (the tie rule) in linear time.
        top = class_top.astype(sub.dtype)[:, None]  # exact: read from these very values
        members = (sub <= top) & _at_least(sub, class_low[:, None])
        candidates[chained] = sub > top
        member_ids = np.where(members, item_ids.astype(np.int64)[None, :], np.iinfo(np.int64).max)
        smallest = np.partition(member_ids, k - 1, axis=1)[:, :k]
        found = smallest != np.iinfo(np.int64).max
        extra_rows.append(np.repeat(chained, found.sum(axis=1)))
        extra_ids.append(smallest[found])
        extra_values.append(np.repeat(class_top, found.sum(axis=1)))
    cand_rows, cand_cols = np.nonzero(candidates)
    lists, _, low, upper = _top_k_with_bounds(
        np.concatenate([cand_rows, *extra_rows]),
        np.concatenate([item_ids[cand_cols], *extra_ids]),
        np.concatenate([scores[cand_rows, cand_cols].astype(np.float64), *extra_values]),
        n_rows,
        k,
    )
    # Every candidate lies in the straddling class or above it, so its lowest member is the lowest
    # candidate, except in chained rows, where members were given the class's top score and the
    # walk down the sorted row found the class's end. Rows with fewer than k eligible items have no
    # straddling class: both bounds stay -inf.
    lower = low - TIE_EPSILON
    lower[chained] = threshold[chained]
    return lists, lower, upper


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


# ---------------------------------------------------------------- the two-tower's score and exclusions


def add_repeat_bonus(scores: np.ndarray, rows: np.ndarray, bonus: np.ndarray) -> np.ndarray:
    """Adds each query's repeat bonus to the catalogue columns of its history items, in place.

    The SavedModel computes the same sum with TF ops (``modules.serving``); a history item that
    appears twice gets its bonus twice there too (``tf.tensor_scatter_nd_add``).

    Args:
      scores: [Q, M] query . item scores (float32 or float64), modified in place.
      rows: [Q, N] catalogue column of every history item, -1 for padding or items without one.
      bonus: [Q, N] the repeat bonus of every history item.

    Returns:
      ``scores``.
    """
    rows = np.asarray(rows)
    valid = rows >= 0
    query = np.broadcast_to(np.arange(rows.shape[0])[:, None], rows.shape)
    np.add.at(scores, (query[valid], rows[valid]), np.asarray(bonus)[valid].astype(scores.dtype))
    return scores


def pair_codes(visitors: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 per (visitor, item) pair: ``visitor * n_items + item``, for membership tests.

    Raises:
      ValueError: on negative ids, an item id not below ``n_items``, or codes beyond int64.
    """
    visitors = np.asarray(visitors, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if visitors.size and (visitors.min() < 0 or items.min() < PAD_ID or items.max() >= n_items):
        raise ValueError(f"ids must be non-negative and items below {n_items}")
    if visitors.size and int(visitors.max()) >= np.iinfo(np.int64).max // max(n_items, 1):
        raise ValueError("visitor ids too large to pack with item ids into int64")
    return visitors * n_items + items


def drop_seen(
    lists: np.ndarray,
    visitors: np.ndarray,
    seen_visitors: np.ndarray,
    seen_items: np.ndarray,
    k: int,
) -> np.ndarray:
    """Removes each row's seen items (exclude_seen) from its list, keeping the order.

    Args:
      lists: [Q, L] item ids, best first, padded with `PAD_ID`.
      visitors: [Q] the visitor of every row.
      seen_visitors, seen_items: [P] the (visitor, item) pairs to drop (e.g. the train events).
      k: length of the result.

    Returns:
      int64 [Q, k]: the first k kept items of every row, padded with `PAD_ID`.
    """
    lists = np.asarray(lists, dtype=np.int64)
    n_items = int(max(lists.max(initial=0), np.max(seen_items, initial=0))) + 1
    seen = np.unique(pair_codes(seen_visitors, seen_items, n_items))
    codes = pair_codes(np.repeat(np.asarray(visitors), lists.shape[1]), lists.ravel(), n_items)
    hit = np.isin(codes, seen).reshape(lists.shape)
    keep = ~hit & (lists != PAD_ID)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept first, in list order
    out = np.take_along_axis(lists, order, axis=1)
    out[~np.take_along_axis(keep, order, axis=1)] = PAD_ID
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=PAD_ID)
    return out
