"""The SVD baseline: truncated SVD of the binary visitor x item matrix, exact top-K lists."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from components.baselines.matrix import TrainMatrix, eval_rows, follow_ranking
from modules import ranking
from modules.constants import TIE_EPSILON

_SVD_MAX_RANK = 50  # DESIGN 5: k = min(50, min(shape) - 1)
_SVD_SEED = 0  # fixes ARPACK's start vector, so the factorisation is reproducible
# Below this many cells the exact dense SVD is cheaper than ARPACK and has no start-vector dependence.
_DENSE_SVD_MAX_CELLS = 250_000
# Eval visitors x items reconstruction cells scored at once (float64: 128 MiB).
_SVD_CHUNK_CELLS = 1 << 24
# Items (by decreasing factor norm) every visitor is scored against before the exactness check.
_SVD_HEAD_ITEMS = 4096


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
    rest = follow_ranking(rest_by_id - prefix, item_ids[prefix:], seen_rest, n_rows, k)
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
