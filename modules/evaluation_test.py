"""Tests of the protocol's top-K selection and metrics on hand-computed cases (DESIGN 5 and 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from modules import evaluation
from pipeline.configs import TIE_EPSILON


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
    return (ranked + [evaluation.PAD_ID] * k)[:k]


# ---------------------------------------------------------------- top_k_items


def test_top_k_items_breaks_exact_ties_by_ascending_id_not_column():
    # Columns hold ids 30, 10, 20, 40 with scores 0.5, 0.9, 0.5, 0.1:
    # 10 (0.9) first; 20 and 30 tie at 0.5 -> 20 before 30 although 30 is the earlier column.
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])
    assert evaluation.top_k_items(scores, np.array([30, 10, 20, 40]), 3).tolist() == [[10, 20, 30]]


def test_top_k_items_ties_within_epsilon_count_as_equal():
    # 0.5 and 0.5 + 0.5e-9 differ by less than 1e-9: one class, ids ascending (7 then 9) although
    # id 9 scores a hair higher. 0.5 + 2e-9 is a real difference: id 8 stays first.
    scores = np.array([[0.5, 0.5 + 0.5e-9, 0.5 + 2e-9]])
    assert evaluation.top_k_items(scores, np.array([7, 9, 8]), 3).tolist() == [[8, 7, 9]]


def test_top_k_items_chains_near_ties_across_the_cut():
    # Scores 1.0, 1.0 - 0.6e-9, 1.0 - 1.2e-9: each within epsilon of the next, so one class by
    # chaining (first and last differ by 1.2e-9 > epsilon). k=1 takes the smallest id of the whole
    # class, 3, which is the lowest score of the three.
    scores = np.array([[1.0, 1.0 - 0.6e-9, 1.0 - 1.2e-9, 0.2]])
    assert evaluation.top_k_items(scores, np.array([5, 4, 3, 1]), 1).tolist() == [[3]]


def test_top_k_items_pads_with_minus_one_and_honours_min_score():
    # Sparse CF scores: row 0 has two positive items, row 1 only a stored 0 (not a candidate with
    # min_score=0) -> [[12, 11, -1], [-1, -1, -1]].
    # data, indices, indptr: row 0 stores 1.0 at column 1 and 2.0 at column 2, row 1 a 0.0.
    scores = sp.csr_matrix(([1.0, 2.0, 0.0], [1, 2, 0], [0, 2, 3]), shape=(2, 3))
    lists = evaluation.top_k_items(scores, np.array([10, 11, 12]), 3, min_score=0.0)
    assert lists.tolist() == [[12, 11, -1], [-1, -1, -1]]


def test_top_k_items_dense_catalogue_smaller_than_k_is_padded():
    assert evaluation.top_k_items(np.array([[0.1, 0.3]]), np.array([1, 2]), 4).tolist() == [
        [2, 1, -1, -1]
    ]


@pytest.mark.parametrize("as_sparse", [False, True])
def test_top_k_items_exclude_mask(as_sparse):
    # Row 0 excludes id 2 (its best) -> [3, 1]; row 1 excludes nothing -> [2, 3].
    scores = np.array([[0.2, 0.9, 0.5], [0.2, 0.9, 0.5]])
    exclude = np.array([[False, True, False], [False, False, False]])
    if as_sparse:
        exclude = sp.csr_matrix(exclude)
    lists = evaluation.top_k_items(scores, np.array([1, 2, 3]), 2, exclude=exclude)
    assert lists.tolist() == [[3, 1], [2, 3]]


def test_top_k_items_float32_threshold_is_exact():
    # In float32, 0.1 and its next representable value differ by ~7.5e-9 > epsilon: not a tie, so
    # the higher one (id 2) wins even though id 1 is smaller.
    low = np.float32(0.1)
    high = np.nextafter(low, np.float32(1))
    scores = np.array([[low, high, 0.0]], dtype=np.float32)
    assert evaluation.top_k_items(scores, np.array([1, 2, 3]), 1).tolist() == [[2]]


def test_top_k_items_nonfinite_scores_are_never_candidates():
    scores = np.array([[np.nan, 0.3, -np.inf, np.inf]])
    assert evaluation.top_k_items(scores, np.array([1, 2, 3, 4]), 3).tolist() == [[2, -1, -1]]


def test_top_k_items_near_constant_row_lists_smallest_ids():
    # 1,000 scores spaced 0.5e-9 apart form one chained class: the list is the 5 smallest ids.
    rng = np.random.default_rng(0)
    ids = rng.permutation(5000)[:1000]
    scores = (np.arange(1000) * 0.5e-9)[None, :]
    assert evaluation.top_k_items(scores, ids, 5).tolist() == [np.sort(ids)[:5].tolist()]


def test_top_k_items_return_bounds():
    # k=2 of [0.9, 0.5, 0.1]: the k-th score 0.5 is a class of its own -> lower = 0.5 - epsilon,
    # upper = 0.5. Row 2, k=2 of [0.9, 0.7 + 0.5e-9, 0.7, 0.1]: the class {0.7 + 0.5e-9, 0.7}
    # straddles position 2 -> lower = 0.7 - epsilon, upper = 0.7 + 0.5e-9.
    # Row 3 has one eligible item only: no straddling class, both bounds -inf.
    scores = np.array(
        [[0.9, 0.5, 0.1, 0.0], [0.9, 0.7 + 0.5e-9, 0.7, 0.1], [0.3, -np.inf, np.nan, -np.inf]]
    )
    lists, lower, upper = evaluation.top_k_items(
        scores, np.array([1, 2, 3, 4]), 2, return_bounds=True
    )
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
        lists = evaluation.top_k_items(scores, ids, k)
        for row in range(3):
            expected = _reference_top_k(list(ids), [float(s) for s in scores[row]], k)
            assert lists[row].tolist() == expected


def test_top_k_items_rejects_misaligned_ids():
    with pytest.raises(ValueError, match="item_ids"):
        evaluation.top_k_items(np.zeros((1, 3)), np.array([1, 2]), 2)


# ---------------------------------------------------------------- top_k_from_candidates


def test_top_k_from_candidates_per_row_with_scores():
    # Row 0: ids 5 (0.2), 3 (0.7), 9 (0.7) -> 3 and 9 tie -> [3, 9]; row 1 empty; row 2: [4].
    lists, scores = evaluation.top_k_from_candidates(
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
    lists = evaluation.top_k_from_candidates(np.zeros(2000, int), ids, scores, 1, 3)
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
        lists = evaluation.top_k_from_candidates(rows, ids, scores, 4, k)
        for row in range(4):
            mine = rows == row
            assert lists[row].tolist() == _reference_top_k(list(ids[mine]), list(scores[mine]), k)


def test_top_k_from_candidates_rejects_non_finite_scores():
    with pytest.raises(ValueError, match="finite"):
        evaluation.top_k_from_candidates([0], [1], [np.nan], 1, 1)


# ---------------------------------------------------------------- queries and metrics


def test_lists_for_queries_shares_a_visitor_list_among_its_queries():
    lists = np.array([[1, 2], [3, 4]])
    # Visitors 70 and 50 own rows 0 and 1; queries of 50, 70, 50 get rows 1, 0, 1.
    out = evaluation.lists_for_queries(lists, np.array([70, 50]), np.array([50, 70, 50]))
    assert out.tolist() == [[3, 4], [1, 2], [3, 4]]
    with pytest.raises(ValueError, match="no list"):
        evaluation.lists_for_queries(lists, np.array([70, 50]), np.array([60]))


def _lists(*heads):
    """[n, 50] lists whose first entries are `heads` and the rest distinct filler ids >= 1000."""
    out = np.arange(1000, 1000 + 50 * len(heads)).reshape(len(heads), 50)
    for row, head in enumerate(heads):
        out[row, : len(head)] = head
    return out


def test_evaluate_hand_computed():
    # Query 1: target 7 at rank 1; query 2: target 8 at rank 3; query 3: target 9 absent.
    recommended = _lists([7, 1, 2], [1, 2, 8], [1, 2, 3])
    metrics = evaluation.evaluate(recommended, np.array([7, 8, 9]), n_train_items=1000)
    assert list(metrics) == list(evaluation.metric_names())
    assert metrics["recall@1"] == pytest.approx(1 / 3)  # only query 1
    assert metrics["recall@5"] == pytest.approx(2 / 3)  # queries 1 and 2
    assert metrics["recall@50"] == pytest.approx(2 / 3)
    # NDCG: (1/log2(2) + 1/log2(4) + 0) / 3 = (1 + 0.5) / 3 = 0.5.
    assert metrics["ndcg@50"] == pytest.approx(0.5)
    # Distinct ids: row 0 has 7, 1, 2 + 47 fillers; row 1 has 1, 2, 8 + 47; row 2 has 1, 2, 3 + 47:
    # {1, 2, 3, 7, 8} + 141 fillers = 146 distinct of 1000 train items.
    assert metrics["coverage@50"] == pytest.approx(146 / 1000)


def test_evaluate_rank_50_counts_and_rank_51_does_not():
    row = np.arange(100, 160)  # 60 ids; target 149 is at rank 50, 150 at rank 51
    metrics = evaluation.evaluate(np.stack([row, row]), np.array([149, 150]), n_train_items=60)
    assert metrics["recall@50"] == pytest.approx(0.5)
    assert metrics["recall@20"] == 0.0
    assert metrics["ndcg@50"] == pytest.approx(0.5 / math.log2(51))
    assert metrics["coverage@50"] == pytest.approx(50 / 60)  # only the first 50 positions count


def test_evaluate_padding_never_matches_and_is_not_covered():
    recommended = np.full((2, 50), -1)
    recommended[0, 0] = 5
    metrics = evaluation.evaluate(recommended, np.array([5, -1]), n_train_items=4)
    assert metrics["recall@1"] == pytest.approx(0.5)  # a -1 target never hits a -1 slot
    assert metrics["coverage@50"] == pytest.approx(1 / 4)


def test_evaluate_rejects_short_lists_and_no_queries():
    with pytest.raises(ValueError, match="positions"):
        evaluation.evaluate(np.zeros((1, 10), int), np.array([1]), n_train_items=5)
    with pytest.raises(ValueError, match="no queries"):
        evaluation.evaluate(np.zeros((0, 50), int), np.zeros(0, int), n_train_items=5)


def test_recall_curve_agrees_with_evaluate():
    recommended = _lists([7, 1, 2], [1, 2, 8], [1, 2, 3])
    targets = np.array([7, 8, 9])
    curve = evaluation.recall_curve(recommended, targets)
    assert curve.shape == (50,)
    # Recall@1 = 1/3, Recall@2 = 1/3, Recall@3 onwards = 2/3.
    assert curve[:3].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    metrics = evaluation.evaluate(recommended, targets, n_train_items=10)
    for k in (1, 5, 10, 20, 50):
        assert curve[k - 1] == pytest.approx(metrics[f"recall@{k}"])


def test_metric_names_are_design_section_8():
    assert evaluation.metric_names() == (
        "recall@1",
        "recall@5",
        "recall@10",
        "recall@20",
        "recall@50",
        "ndcg@50",
        "coverage@50",
    )
