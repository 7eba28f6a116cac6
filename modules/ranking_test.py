"""Tests of the protocol's top-K selection, tie rule and exclusions on hand-computed cases (DESIGN 5)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from modules import ranking
from modules.constants import TIE_EPSILON


def _reference_top_k(ids, scores, k):
    """The tie rule written the slow, obvious way: sort by score, chain classes, ids inside."""
    order = sorted(range(len(ids)), key=lambda j: -scores[j])
    classes = []
    for j in order:
        if classes and scores[classes[-1][-1]] - scores[j] <= TIE_EPSILON:
            classes[-1].append(j)
        else:
            classes.append([j])
    ranked = [ids[j] for tie_class in classes for j in sorted(tie_class, key=lambda j: ids[j])]
    return (ranked + [ranking.PAD_ID] * k)[:k]


# ---------------------------------------------------------------- top_k_items


def test_top_k_items_breaks_exact_ties_by_ascending_id_not_column():
    # Columns hold ids 30, 10, 20, 40 with scores 0.5, 0.9, 0.5, 0.1:
    # 10 (0.9) first; 20 and 30 tie at 0.5 -> 20 before 30 although 30 is the earlier column.
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])
    assert ranking.top_k_items(scores, np.array([30, 10, 20, 40]), 3).tolist() == [[10, 20, 30]]


def test_top_k_items_ties_within_epsilon_count_as_equal():
    # 0.5 and 0.5 + 0.5e-9 differ by less than 1e-9: one class, ids ascending (7 then 9) although
    # id 9 scores a hair higher. 0.5 + 2e-9 is a real difference: id 8 stays first.
    scores = np.array([[0.5, 0.5 + 0.5e-9, 0.5 + 2e-9]])
    assert ranking.top_k_items(scores, np.array([7, 9, 8]), 3).tolist() == [[8, 7, 9]]


def test_top_k_items_chains_near_ties_across_the_cut():
    # Scores 1.0, 1.0 - 0.6e-9, 1.0 - 1.2e-9: each within epsilon of the next, so one class by
    # chaining (first and last differ by 1.2e-9 > epsilon). k=1 takes the smallest id of the whole
    # class, 3, which is the lowest score of the three.
    scores = np.array([[1.0, 1.0 - 0.6e-9, 1.0 - 1.2e-9, 0.2]])
    assert ranking.top_k_items(scores, np.array([5, 4, 3, 1]), 1).tolist() == [[3]]


def test_top_k_items_pads_with_minus_one_and_honours_min_score():
    # Sparse CF scores: row 0 has two positive items, row 1 only a stored 0 (not a candidate with
    # min_score=0) -> [[12, 11, -1], [-1, -1, -1]].
    # data, indices, indptr: row 0 stores 1.0 at column 1 and 2.0 at column 2, row 1 a 0.0.
    scores = sp.csr_matrix(([1.0, 2.0, 0.0], [1, 2, 0], [0, 2, 3]), shape=(2, 3))
    lists = ranking.top_k_items(scores, np.array([10, 11, 12]), 3, min_score=0.0)
    assert lists.tolist() == [[12, 11, -1], [-1, -1, -1]]


def test_top_k_items_dense_catalogue_smaller_than_k_is_padded():
    assert ranking.top_k_items(np.array([[0.1, 0.3]]), np.array([1, 2]), 4).tolist() == [
        [2, 1, -1, -1]
    ]


@pytest.mark.parametrize("as_sparse", [False, True])
def test_top_k_items_exclude_mask(as_sparse):
    # Row 0 excludes id 2 (its best) -> [3, 1]; row 1 excludes nothing -> [2, 3].
    scores = np.array([[0.2, 0.9, 0.5], [0.2, 0.9, 0.5]])
    exclude = np.array([[False, True, False], [False, False, False]])
    if as_sparse:
        exclude = sp.csr_matrix(exclude)
    lists = ranking.top_k_items(scores, np.array([1, 2, 3]), 2, exclude=exclude)
    assert lists.tolist() == [[3, 1], [2, 3]]


def test_top_k_items_float32_threshold_is_exact():
    # In float32, 0.1 and its next representable value differ by ~7.5e-9 > epsilon: not a tie, so
    # the higher one (id 2) wins even though id 1 is smaller.
    low = np.float32(0.1)
    high = np.nextafter(low, np.float32(1))
    scores = np.array([[low, high, 0.0]], dtype=np.float32)
    assert ranking.top_k_items(scores, np.array([1, 2, 3]), 1).tolist() == [[2]]


def test_top_k_items_nonfinite_scores_are_never_candidates():
    scores = np.array([[np.nan, 0.3, -np.inf, np.inf]])
    assert ranking.top_k_items(scores, np.array([1, 2, 3, 4]), 3).tolist() == [[2, -1, -1]]


def test_top_k_items_near_constant_row_lists_smallest_ids():
    # 1,000 scores spaced 0.5e-9 apart form one chained class: the list is the 5 smallest ids.
    rng = np.random.default_rng(0)
    ids = rng.permutation(5000)[:1000]
    scores = (np.arange(1000) * 0.5e-9)[None, :]
    assert ranking.top_k_items(scores, ids, 5).tolist() == [np.sort(ids)[:5].tolist()]


def test_top_k_items_return_bounds():
    # k=2 of [0.9, 0.5, 0.1]: the k-th score 0.5 is a class of its own -> lower = 0.5 - epsilon,
    # upper = 0.5. Row 2, k=2 of [0.9, 0.7 + 0.5e-9, 0.7, 0.1]: the class {0.7 + 0.5e-9, 0.7}
    # straddles position 2 -> lower = 0.7 - epsilon, upper = 0.7 + 0.5e-9.
    # Row 3 has one eligible item only: no straddling class, both bounds -inf.
    scores = np.array(
        [[0.9, 0.5, 0.1, 0.0], [0.9, 0.7 + 0.5e-9, 0.7, 0.1], [0.3, -np.inf, np.nan, -np.inf]]
    )
    lists, lower, upper = ranking.top_k_items(scores, np.array([1, 2, 3, 4]), 2, return_bounds=True)
    assert lists.tolist() == [[1, 2], [1, 2], [1, -1]]
    assert lower[:2] == pytest.approx([0.5 - TIE_EPSILON, 0.7 - TIE_EPSILON], abs=1e-15)
    assert upper[:2] == pytest.approx([0.5, 0.7 + 0.5e-9], abs=1e-15)
    assert lower[2] == upper[2] == -np.inf


def test_top_k_items_matches_reference_on_random_near_ties():
    rng = np.random.default_rng(1)
    for trial in range(40):
        n_items, k = int(rng.integers(1, 300)), int(rng.integers(1, 20))
        # Few distinct levels plus sub-epsilon jitter: exact ties, near ties and chains.
        scores = rng.integers(0, 6, (3, n_items)) * 0.1 + rng.integers(-1, 2, (3, n_items)) * 6e-10
        if trial % 2:
            scores = scores.astype(np.float32)
        ids = rng.permutation(10 * n_items)[:n_items]
        lists = ranking.top_k_items(scores, ids, k)
        for row in range(3):
            expected = _reference_top_k(list(ids), [float(s) for s in scores[row]], k)
            assert lists[row].tolist() == expected


def test_top_k_items_rejects_misaligned_ids():
    with pytest.raises(ValueError, match="item_ids"):
        ranking.top_k_items(np.zeros((1, 3)), np.array([1, 2]), 2)


# ---------------------------------------------------------------- top_k_from_candidates


def test_top_k_from_candidates_per_row_with_scores():
    # Row 0: ids 5 (0.2), 3 (0.7), 9 (0.7) -> 3 and 9 tie -> [3, 9]; row 1 empty; row 2: [4].
    lists, scores = ranking.top_k_from_candidates(
        rows=[0, 0, 0, 2],
        ids=[5, 3, 9, 4],
        scores=[0.2, 0.7, 0.7, 1.0],
        n_rows=3,
        k=2,
        return_scores=True,
    )
    assert lists.tolist() == [[3, 9], [-1, -1], [4, -1]]
    assert scores[0].tolist() == [0.7, 0.7] and np.isnan(scores[1]).all()


def test_top_k_from_candidates_long_chained_row_falls_back_to_exact_ranking():
    # 2,000 candidates (long enough for the histogram prefilter) whose scores step by 0.5e-9 over
    # a range of 1e-6: the buckets are narrower than epsilon, the prefilter drops low buckets that
    # still chain into the top class, and the exact re-ranking must list the 3 smallest ids.
    rng = np.random.default_rng(2)
    ids = rng.permutation(100_000)[:2000]
    scores = np.arange(2000) * 0.5e-9
    lists = ranking.top_k_from_candidates(np.zeros(2000, int), ids, scores, 1, 3)
    assert lists.tolist() == [np.sort(ids)[:3].tolist()]


def test_top_k_from_candidates_matches_reference_on_long_rows():
    rng = np.random.default_rng(3)
    for trial in range(12):
        n, k = 3000, int(rng.integers(1, 12))
        rows = rng.integers(0, 4, n)
        ids = rng.permutation(10 * n)[:n]
        if trial % 3 == 0:
            scores = rng.integers(0, 5, n).astype(float)  # massive exact ties
        elif trial % 3 == 1:
            scores = rng.random(n)  # no ties: the prefilter does all the work
        else:
            scores = np.round(rng.random(n) * 20) / 20 + rng.integers(-2, 3, n) * 4e-10
        lists = ranking.top_k_from_candidates(rows, ids, scores, 4, k)
        for row in range(4):
            mine = rows == row
            assert lists[row].tolist() == _reference_top_k(list(ids[mine]), list(scores[mine]), k)


def test_top_k_from_candidates_rejects_non_finite_scores():
    with pytest.raises(ValueError, match="finite"):
        ranking.top_k_from_candidates([0], [1], [np.nan], 1, 1)


# ---------------------------------------------------------------- score and exclusions


def test_add_repeat_bonus_adds_at_history_columns_and_skips_padding():
    scores = np.zeros((2, 4), dtype=np.float32)
    rows = np.array([[1, 3, -1], [2, 2, 0]])
    bonus = np.array([[1.0, 2.0, 9.0], [0.5, 0.25, -1.0]])
    ranking.add_repeat_bonus(scores, rows, bonus)
    assert scores.tolist() == [[0, 1, 0, 2], [-1, 0, 0.75, 0]]


def test_drop_seen_keeps_order_and_pads():
    lists = np.array([[5, 6, 7, 8], [5, 6, -1, -1]])
    out = ranking.drop_seen(
        lists, np.array([10, 11]), np.array([10, 10, 11]), np.array([6, 8, 5]), 3
    )
    assert out.tolist() == [[5, 7, -1], [6, -1, -1]]


def test_drop_seen_longer_k_than_lists_pads():
    out = ranking.drop_seen(np.array([[1, 2]]), np.array([0]), np.array([0]), np.array([2]), 4)
    assert out.tolist() == [[1, -1, -1, -1]]
