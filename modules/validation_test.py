"""Tests of the validation scorer: hits by the protocol's tie rule, decided fast."""

from __future__ import annotations

import numpy as np
import pytest

from modules import metrics, ranking
from modules import validation as V
from modules.constants import TIE_EPSILON


def _reference(scores, ids, targets, k):
    return metrics.hit_ranks(ranking.top_k_items(scores, ids, k), targets, k) > 0


def test_ties_go_to_the_smaller_id_by_hand():
    # Items 10, 20, 30, 40 (columns in id order); k = 2.
    ids = np.array([10, 20, 30, 40])
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 0.0],  # top 2: 20, 30 (tie at 3.0: ascending id) -> 30 is a hit
            [3.0, 1.0, 3.0, 3.0],  # top 2: 10, 30 -> 40 (tied at 3.0, larger id) is a miss
            [3.0, 1.0, 3.0, 3.0],  # target 99 is not in the catalogue: a miss
            [5.0, 2.0, 2.0 + TIE_EPSILON / 2, 0.0],  # 20 and 30 tie within epsilon: 20 wins
        ],
        dtype=np.float32,
    ).astype(np.float64)
    targets = np.array([30, 40, 99, 20])
    assert V.hits_at_k(scores, ids, targets, 2).tolist() == [True, False, False, True]
    assert _reference(scores, ids, targets, 2).tolist() == [True, False, False, True]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_the_full_ranking_on_tie_heavy_scores(dtype):
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(10_000, 600, replace=False))
    # Few distinct values: most targets share their score with dozens of items.
    coarse = rng.integers(0, 40, (300, ids.size)).astype(dtype)
    # Chains of near-ties (gaps of half an epsilon) around the targets.
    fine = (rng.integers(0, 3, (300, ids.size)) * (TIE_EPSILON / 2) + 1.0).astype(np.float64)
    for scores in (coarse, fine, rng.normal(size=(300, ids.size)).astype(dtype)):
        targets = ids[rng.integers(0, ids.size, 300)]
        targets[::17] = -5  # not in the catalogue
        for k in (1, 10, 50):
            np.testing.assert_array_equal(
                V.hits_at_k(scores, ids, targets, k), _reference(scores, ids, targets, k)
            )


def _grid_reference(dots, bias, rows, bonus, ids, targets, weights, boosts, k):
    out = np.zeros((len(weights), len(boosts)), dtype=np.int64)
    for i, weight in enumerate(weights):
        for j, boost in enumerate(boosts):
            scores = (dots * np.float32(weight) + bias[None, :].astype(np.float32)).astype(
                np.float64
            )
            ranking.add_repeat_bonus(scores, rows, np.where(rows >= 0, bonus + boost, 0.0))
            out[i, j] = _reference(scores, ids, targets, k).sum()
    return out


@pytest.mark.parametrize("coarse", [False, True])
# 400 items: TF's top k; 2,003: the grouped selection of `topk.top_rows`, with a padded last group.
@pytest.mark.parametrize("n_items", [400, 2_003])
def test_grid_hits_equal_the_full_ranking_of_every_pair(coarse, n_items):
    rng = np.random.default_rng(1)
    n_queries, width, k = 200, 30, 10
    ids = np.sort(rng.choice(5_000, n_items, replace=False))
    if coarse:  # many exact ties, also at the last item of the reduced top
        dots = rng.integers(0, 6, (n_queries, n_items)).astype(np.float32)
        bias = rng.integers(0, 3, n_items).astype(np.float32)
    else:
        dots = rng.normal(size=(n_queries, n_items)).astype(np.float32)
        bias = rng.normal(size=n_items).astype(np.float32)
    # Distinct profile items per query, padded with -1; half the targets are profile items.
    rows = np.stack([rng.permutation(n_items)[:width] for _ in range(n_queries)])
    rows[rng.integers(0, width, n_queries)[:, None] <= np.arange(width)] = -1
    rows[7] = np.random.default_rng(2).permutation(n_items)[
        :width
    ]  # a whole profile: top k + width
    bonus = np.where(rows >= 0, rng.normal(size=rows.shape), 0.0)
    targets = ids[rng.integers(0, n_items, n_queries)]
    seen = (rows[:, 0] >= 0) & (np.arange(n_queries) % 2 == 0)
    targets[seen] = ids[rows[seen, 0]]
    targets[::23] = -5  # not in the catalogue
    weights, boosts = (1.0, 0.5, 0.0), (0.0, -4.0, 1.0, 2.0)
    got = V.grid_hits(dots, bias, rows, bonus, ids, targets, weights, boosts, k)
    want = _grid_reference(dots, bias, rows, bonus, ids, targets, weights, boosts, k)
    np.testing.assert_array_equal(got, want)
    # A scratch buffer with room for more queries, holding an earlier call's scores.
    buffer = V.grid_buffer(n_queries + 3, n_items)
    V.grid_hits(dots[::-1] * 3, bias, rows, bonus, ids, targets, weights, boosts, k, buffer=buffer)
    again = V.grid_hits(dots, bias, rows, bonus, ids, targets, weights, boosts, k, buffer=buffer)
    np.testing.assert_array_equal(again, want)
    assert want.max() > 0 and want.min() < n_queries and np.unique(want).size > 2  # not trivial
