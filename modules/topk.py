"""The exact top k of every row of a wide score matrix, as ``tf.math.top_k`` selects it, faster.

``top_rows`` is the selection of the RetrievalEvaluator's exact scorer (``components.scoring``),
of the exact-search timing (``components.scann_index.speed``) and of the validation window's
repeat calibration (``modules.validation.grid_hits``): column indices of the k best scores of
every row, best first, equal scores to the lower column, which over a catalogue sorted by item id
is the protocol's tie rule (``modules/topk_test.py`` proves both on ties).
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

# Columns per group of the exact top-k's prefilter (``top_rows``); 16 was fastest on 400k columns.
_GROUP = 16


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores of every row, best first; equal scores: lower column.

    Exactly ``tf.math.top_k(scores, k).indices`` (the serving signature's selection), in about
    40% of its time on a wide matrix. The columns of a row form G groups of ``_GROUP`` columns
    each (group g: columns g, g + G, g + 2G, ...; their maxima are a fast elementwise max of
    ``_GROUP`` contiguous slices). The k groups with the highest maxima hold the k best scores
    unless a score outside them could tie the k-th: each outside score is at most the (k+1)-th
    group maximum, so where that is below the k-th best candidate the candidates' top k (in
    column order, so ties still go to the lower column) is the row's; the other rows (only
    possible with exactly equal scores) are ranked over all columns. A width that is not a
    multiple of ``_GROUP`` (``padded_width``) is padded with -inf first (a copy).
    """
    import tensorflow as tf

    n_rows, n_cols = scores.shape
    if n_cols % _GROUP:
        padded = np.full((n_rows, padded_width(n_cols)), -np.inf, dtype=scores.dtype)
        padded[:, :n_cols] = scores
        scores = padded
    n_groups = scores.shape[1] // _GROUP
    if n_groups <= k or n_rows == 0:
        return tf.math.top_k(scores, k=min(k, n_cols)).indices.numpy().astype(np.int64)
    maxima = _group_maxima(scores, n_groups)
    top_groups = tf.math.top_k(maxima, k=k + 1)
    groups = np.sort(top_groups.indices.numpy()[:, :k], axis=1).astype(np.int64)
    # Column order: member i of every chosen group, for i = 0, 1, ...: ascending columns.
    columns = (np.arange(_GROUP)[None, :, None] * n_groups + groups[:, None, :]).reshape(n_rows, -1)
    best = tf.math.top_k(np.take_along_axis(scores, columns, axis=1), k=k)
    result = np.take_along_axis(columns, best.indices.numpy(), axis=1)
    unsure = top_groups.values.numpy()[:, k] >= best.values.numpy()[:, k - 1]
    if unsure.any():
        result[unsure] = tf.math.top_k(scores[unsure], k=k).indices.numpy()
    return result


# Threads of the group maxima (numpy's elementwise max runs on one core; the product on all).
_THREADS = 2
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _group_maxima(scores: np.ndarray, n_groups: int) -> np.ndarray:
    """[rows, n_groups] every group's maximum, the rows split over ``_THREADS`` threads (numpy
    releases the GIL: the pass over the wide matrix takes about half the time on 2 cores)."""
    global _POOL
    n_rows = scores.shape[0]
    maxima = np.empty((n_rows, n_groups), dtype=scores.dtype)

    def part(rows: slice) -> None:
        np.max(scores[rows].reshape(-1, _GROUP, n_groups), axis=1, out=maxima[rows])

    if n_rows < 2 * _THREADS:
        part(slice(0, n_rows))
        return maxima
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(_THREADS)
    bounds = np.linspace(0, n_rows, _THREADS + 1).astype(int)
    list(_POOL.map(part, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]))
    return maxima


def padded_width(n_cols: int) -> int:
    """``n_cols`` rounded up to a whole number of ``top_rows`` groups."""
    return -(-n_cols // _GROUP) * _GROUP
