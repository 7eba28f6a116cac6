"""The five baselines on a toy log whose rankings are computed by hand in the comments (DESIGN 5).

Toy train log (visitor, item, timestamp), items A=10, B=20, C=30, D=40, E=50:

    v1 = 101: A@1, B@2, A@3          -> {A, B}      (A has two events)
    v2 = 102: A@4, C@5               -> {A, C}
    v3 = 103: B@6, C@6, D@7          -> {B, C, D}   (B and C share a timestamp)
    v4 = 104: E@8                    -> {E}

Binary matrix X (rows v1..v4, columns A B C D E):

    v1  1 1 0 0 0
    v2  1 0 1 0 0
    v3  0 1 1 1 0
    v4  0 0 0 0 1
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from components.baselines import baselines, factorised
from modules import ranking

A, B, C, D, E = 10, 20, 30, 40, 50
V1, V2, V3, V4 = 101, 102, 103, 104
EVENTS = [
    (V1, A, 1),
    (V1, B, 2),
    (V1, A, 3),
    (V2, A, 4),
    (V2, C, 5),
    (V3, B, 6),
    (V3, C, 6),
    (V3, D, 7),
    (V4, E, 8),
]
EVAL_VISITORS = np.array([V1, V2, V3, V4])
_ = -1  # padding, to keep the expected tables readable


@pytest.fixture(scope="module")
def train():
    visitors, items, timestamps = (np.array(column) for column in zip(*EVENTS, strict=True))
    return baselines.build_train_matrix(visitors, items, timestamps)


def test_build_train_matrix_indexes_pairs_and_counts(train):
    assert train.visitor_ids.tolist() == [V1, V2, V3, V4]
    assert train.item_ids.tolist() == [A, B, C, D, E]
    assert train.seen.toarray().tolist() == [
        [1, 1, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ]
    assert train.item_events.tolist() == [3, 2, 2, 1, 1]  # A: v1 twice + v2
    assert train.last_seen[0, 0] == 3  # v1 saw A at 1 and 3: the latest counts


def test_most_popular(train):
    # Events per item: A 3, B 2, C 2, D 1, E 1 -> A, then B/C tie (ascending id: B, C), then D/E.
    lists = baselines.most_popular(train, EVAL_VISITORS, k=5)
    assert lists.tolist() == [[A, B, C, D, E]] * 4


def test_most_popular_exclude_seen(train):
    # The same ranking minus each visitor's items: v1 drops A, B; v2 drops A, C; v3 drops B, C, D;
    # v4 drops E.
    lists = baselines.most_popular(train, EVAL_VISITORS, k=5, exclude_seen=True)
    assert lists.tolist() == [
        [C, D, E, _, _],
        [B, D, E, _, _],
        [A, E, _, _, _],
        [A, B, C, D, _],
    ]


def test_recently_viewed(train):
    # v1: A (last at 3), B (2). v2: C (5), A (4). v3: D (7), then B and C both at 6 -> B, C.
    lists = baselines.recently_viewed(train, EVAL_VISITORS, k=4)
    assert lists.tolist() == [
        [A, B, _, _],
        [C, A, _, _],
        [D, B, C, _],
        [E, _, _, _],
    ]


def test_recently_viewed_exclude_seen_is_empty(train):
    # Every candidate is a seen item, so nothing is left: correct, not a bug.
    lists = baselines.recently_viewed(train, EVAL_VISITORS, k=3, exclude_seen=True)
    assert (lists == -1).all()


def test_user_user_cf(train):
    # Cosine = overlap / sqrt(deg * deg'), degrees v1 2, v2 2, v3 3, v4 1:
    #   v1-v2 = 1/sqrt(4) = 0.5, v1-v3 = v2-v3 = 1/sqrt(6) = 0.408, v4: 0 with everyone.
    # With 9 neighbours every similar visitor is kept. v1: own row + v2 + v3 ->
    #   A 2 (v1, v2), B 2 (v1, v3), C 2 (v2, v3), D 1, E 0 -> A, B, C tie -> A, B, C, D; E unlisted.
    # v2 and v3 select the same three visitors -> the same list. v4: only its own row -> E.
    lists = baselines.user_user_cf(train, EVAL_VISITORS, k=5)
    assert lists.tolist() == [
        [A, B, C, D, _],
        [A, B, C, D, _],
        [A, B, C, D, _],
        [E, _, _, _, _],
    ]


def test_user_user_cf_neighbour_ties_go_to_the_smaller_visitor_id(train):
    # One neighbour instead of nine, so that the cut falls inside this toy.
    # v1: v2 (0.5) beats v3 (0.408) -> v1 + v2: A 2, B 1, C 1 -> A, B, C.
    # v2: v1 (0.5) -> A 2, B 1, C 1 -> A, B, C.
    # v3: v1 and v2 tie at 1/sqrt(6) -> v1 (smaller id): v3 + v1: B 2, A 1, C 1, D 1 -> B, A, C, D.
    #     (Choosing v2 would have put C first.)
    lists = baselines.user_user_cf(train, EVAL_VISITORS, k=4, n_neighbours=1)
    assert lists.tolist() == [
        [A, B, C, _],
        [A, B, C, _],
        [B, A, C, D],
        [E, _, _, _],
    ]


def test_user_user_cf_exclude_seen(train):
    # The 9-neighbour scores above minus own items: v1 keeps C, D; v2 keeps B, D; v3 keeps A;
    # v4 has nothing left.
    lists = baselines.user_user_cf(train, EVAL_VISITORS, k=3, exclude_seen=True)
    assert lists.tolist() == [[C, D, _], [B, D, _], [A, _, _], [_, _, _]]


def test_item_item_cf(train):
    # Item degrees (distinct visitors): A 2, B 2, C 2, D 1, E 1. Co-visits: A-B (v1), A-C (v2),
    # B-C, B-D, C-D (v3). Cosine: A-B = A-C = B-C = 1/sqrt(4) = 0.5; B-D = C-D = 1/sqrt(2) = 0.707.
    # v1 {A, B}: A adds A 1, B .5, C .5; B adds B 1, D .707, A .5, C .5
    #   -> A 1.5, B 1.5, C 1.0, D 0.707 -> A/B tie -> A, B, C, D.
    # v2 {A, C}: A 1.5, C 1.5, B 1.0, D 0.707 -> A, C, B, D.
    # v3 {B, C, D}: B 1 + .5 + .707, C .5 + 1 + .707 (equal sums added in another order: a tie
    #   within epsilon -> B, C), D .707 + .707 + 1 = 2.414, A .5 + .5 = 1 -> D, B, C, A.
    # v4 {E}: E 1 (no co-visits) -> E.
    lists = baselines.item_item_cf(train, EVAL_VISITORS, k=5)
    assert lists.tolist() == [
        [A, B, C, D, _],
        [A, C, B, D, _],
        [D, B, C, A, _],
        [E, _, _, _, _],
    ]


def test_item_item_cf_neighbour_ties_go_to_the_smaller_item_id(train):
    # One neighbour per item: A: B and C tie at 0.5 -> B. B: D (0.707). C: D. D: B and C tie -> B.
    # v1 {A, B}: A 1 + B .5; B 1 + D .707 -> B 1.5, A 1, D .707 -> B, A, D.
    # v2 {A, C}: A 1 + B .5; C 1 + D .707 -> A 1, C 1, D .707, B .5 -> A, C, D, B.
    # v3 {B, C, D}: B 1 + D .707; C 1 + D .707; D 1 + B .707 -> D 2.414, B 1.707, C 1 -> D, B, C.
    lists = baselines.item_item_cf(train, EVAL_VISITORS, k=4, n_neighbours=1)
    assert lists.tolist() == [
        [B, A, D, _],
        [A, C, D, B],
        [D, B, C, _],
        [E, _, _, _],
    ]


def test_item_item_cf_exclude_seen(train):
    # From the 9-neighbour scores: v1 keeps C, D; v2 keeps B, D; v3 keeps A; v4 nothing.
    lists = baselines.item_item_cf(train, EVAL_VISITORS, k=3, exclude_seen=True)
    assert lists.tolist() == [[C, D, _], [B, D, _], [A, _, _], [_, _, _]]


def test_item_knn_recency(train):
    # Half-life 1 ms: an item last seen 1 ms before the visitor's latest event counts 0.5.
    # v1: latest 3; A age 0 (w 1), B age 1 (w .5). A adds A 1, B .5, C .5; B adds .5 x (B 1, D .707,
    #   A .5, C .5) -> A 1.25, B 1.0, C .75, D .354 -> A, B, C, D.
    # v2: latest 5; C w 1, A w .5. A adds .5 x (A 1, B .5, C .5); C adds C 1, D .707, A .5, B .5
    #   -> C 1.25, A 1.0, B .75, D .707 -> C, A, B, D (plain item-item CF had A, C, B, D).
    # v3: latest 7; D w 1, B and C w .5 -> D 1 + .354 + .354 = 1.707, B .5 + .25 + .707 = 1.457,
    #   C .25 + .5 + .707 = 1.457 (tie -> B, C), A .25 + .25 = .5 -> D, B, C, A.
    lists = baselines.item_knn_recency(train, EVAL_VISITORS, k=5, half_life_ms=1.0)
    assert lists.tolist() == [
        [A, B, C, D, _],
        [C, A, B, D, _],
        [D, B, C, A, _],
        [E, _, _, _, _],
    ]
    # A very long half-life weighs every seen item 1: plain item-item CF.
    assert np.array_equal(
        baselines.item_knn_recency(train, EVAL_VISITORS, k=5, half_life_ms=1e15),
        baselines.item_item_cf(train, EVAL_VISITORS, k=5),
    )


def test_svd_rank_one_reconstruction_ties():
    # X = [[1, 1, 0], [0, 1, 1]] (2 visitors, items 1, 2, 3): rank = min(50, 2 - 1) = 1.
    # X X^T = [[2, 1], [1, 2]]: top eigenvalue 3 with u = (1, 1)/sqrt(2), sigma = sqrt(3);
    # v = X^T u / sigma = (1, 2, 1)/sqrt(6); sigma u v^T = (1, 1)^T (1, 2, 1) / 2: both rows become
    # [0.5, 1, 0.5]. Item 2 first, then 1 and 3 tie -> ascending id, for both visitors (visitor
    # 8's own item 3 scores no more than the unseen item 1).
    train = baselines.build_train_matrix(
        np.array([7, 7, 8, 8]), np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])
    )
    lists = baselines.svd(train, np.array([7, 8]), k=3)
    assert lists.tolist() == [[2, 1, 3], [2, 1, 3]]


def test_svd_exact_when_rank_deficient(train):
    # The toy X has rank 4 > min(50, 4 - 1) = 3, so use a rank-2 matrix instead: visitors 1 and 2
    # saw {A, B}, visitor 3 saw {C}; rank = min(50, 3 - 1) = 2 reproduces X exactly. Seen items
    # score 1 (ascending id), unseen items ~0 (rounding noise far below epsilon: ascending id).
    train = baselines.build_train_matrix(
        np.array([1, 1, 2, 2, 3]), np.array([A, B, A, B, C]), np.arange(5)
    )
    lists = baselines.svd(train, np.array([1, 3]), k=3)
    assert lists.tolist() == [[A, B, C], [C, A, B]]
    lists = baselines.svd(train, np.array([1, 3]), k=3, exclude_seen=True)
    assert lists.tolist() == [[C, _, _], [A, B, _]]


def test_svd_arpack_and_dense_reconstructions_agree(monkeypatch):
    rng = np.random.default_rng(0)
    matrix = baselines.build_train_matrix(
        rng.integers(0, 120, 900), rng.integers(0, 80, 900), np.arange(900)
    ).seen
    users, items = factorised.svd_factors(matrix)  # dense path (small)
    monkeypatch.setattr(factorised, "_DENSE_SVD_MAX_CELLS", 0)
    users_arpack, items_arpack = factorised.svd_factors(matrix)
    assert users.shape[1] == 50
    np.testing.assert_allclose(users @ items, users_arpack @ items_arpack, atol=1e-8)
    # Same seed, same start vector: bit-for-bit the same factors on a second call.
    again_users, again_items = factorised.svd_factors(matrix)
    assert np.array_equal(users_arpack @ items_arpack, again_users @ again_items)


def test_pruned_factorised_top_k_equals_scoring_everything():
    # The SVD scores only a prefix of items by decreasing factor norm and checks with the
    # Cauchy-Schwarz bound; with a tiny head most users need longer prefixes or all items. Users
    # with zero vectors have every score 0 (one tie class: the smallest ids).
    rng = np.random.default_rng(4)
    users = rng.standard_normal((60, 5)) * rng.random((60, 1)) ** 3
    users[:3] = 0.0
    items = rng.standard_normal((5, 700)) * rng.random(700) ** 4
    item_ids = np.sort(rng.permutation(5000)[:700])
    exclude = (rng.random((60, 700)) < 0.05).astype(float)
    for mask in (None, sp.csr_matrix(exclude)):
        got = factorised._top_k_factorised(users, items, item_ids, 10, mask, head_items=16)
        expected = ranking.top_k_items(users @ items, item_ids, 10, exclude=mask)
        assert np.array_equal(got, expected)


def test_pruned_factorised_top_k_merges_unscored_items_into_the_near_zero_class(monkeypatch):
    # 10 items with unit-size factors score O(1) (distinct, some negative); 690 items with factors
    # of 1e-11 .. 1e-13 score |s| <= 1e-11: one near-zero tie class. k=20 lists the positive big
    # items by score, then near-zero items by ascending id, most of them never scored (head of 16
    # items): the unscored ones must be merged into the class by id, the big ones kept above it.
    rng = np.random.default_rng(5)
    users = rng.standard_normal((8, 5))
    items = rng.standard_normal((5, 700))
    items[:, 10:] *= np.geomspace(1e-11, 1e-13, 690)
    item_ids = np.sort(rng.permutation(5000)[:700])
    merged = []
    join = factorised._join_straddling_class
    monkeypatch.setattr(
        factorised, "_join_straddling_class", lambda *a: merged.append(1) or join(*a)
    )
    for mask in (None, sp.csr_matrix(rng.random((8, 700)) < 0.2)):
        got = factorised._top_k_factorised(users, items, item_ids, 20, mask, head_items=16)
        expected = ranking.top_k_items(users @ items, item_ids, 20, exclude=mask)
        assert np.array_equal(got, expected)
    assert merged  # the shortcut was taken, not only the full-catalogue fallback


def test_run_all_is_deterministic_and_shaped(train):
    visitors, items, timestamps = (np.array(column) for column in zip(*EVENTS, strict=True))
    first = baselines.run_all(visitors, items, timestamps, EVAL_VISITORS, k=50)
    second = baselines.run_all(visitors, items, timestamps, EVAL_VISITORS, k=50)
    assert list(first) == list(baselines.BASELINE_NAMES)
    names = baselines.BASELINE_NAMES + baselines.EXTRA_BASELINE_NAMES
    first = baselines.run_all(visitors, items, timestamps, EVAL_VISITORS, k=50, names=names)
    second = baselines.run_all(visitors, items, timestamps, EVAL_VISITORS, k=50, names=names)
    for name in names:
        assert first[name].shape == (4, 50)
        assert np.array_equal(first[name], second[name])


def test_evaluate_all_scores_every_baseline_and_picks_the_best():
    visitors, items, timestamps = (np.array(column) for column in zip(*EVENTS, strict=True))
    # Queries: v1 -> C, v3 -> A, v3 -> B, v4 -> 99 (never in train: a miss for everyone).
    # Most popular lists A B C D E for all: hits for C (rank 3), A (rank 1), B (rank 2) -> 3/4.
    # Recently viewed: v1 [A, B] misses C; v3 [D, B, C] misses A, hits B at 2 -> 1/4.
    result = baselines.evaluate_all(
        visitors, items, timestamps, np.array([V1, V3, V3, V4]), np.array([C, A, B, 99])
    )
    assert set(result["models"]) == set(baselines.BASELINE_NAMES)
    assert result["models"]["most_popular"]["recall@50"] == pytest.approx(3 / 4)
    assert result["models"]["most_popular"]["recall@1"] == pytest.approx(1 / 4)
    # NDCG of most popular: (1/log2(4) + 1/log2(2) + 1/log2(3) + 0) / 4.
    assert result["models"]["most_popular"]["ndcg@50"] == pytest.approx(
        (0.5 + 1 + 1 / np.log2(3)) / 4
    )
    assert result["models"]["recently_viewed"]["recall@50"] == pytest.approx(1 / 4)
    # Coverage of most popular: 5 distinct items of 5 in train.
    assert result["models"]["most_popular"]["coverage@50"] == pytest.approx(1.0)
    best = max(m["recall@50"] for m in result["models"].values())
    assert result["best_recall@50"] == best
    assert result["models"][result["best_baseline"]]["recall@50"] == best
    # Ties for best go to the earlier name: most popular (3/4) is first in BASELINE_NAMES.
    assert result["best_baseline"] == "most_popular"
    assert result["n_queries"] == 4 and result["n_eval_visitors"] == 3
    assert result["n_train_items"] == 5


def test_eval_visitor_without_train_events_is_an_error(train):
    with pytest.raises(ValueError, match="no train event"):
        baselines.most_popular(train, np.array([V1, 999]))


def test_unknown_baseline_and_bad_input_are_errors(train):
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.run_baseline("nope", train, EVAL_VISITORS)
    with pytest.raises(ValueError, match="one length"):
        baselines.build_train_matrix(np.array([1, 2]), np.array([1]), np.array([1, 2]))
