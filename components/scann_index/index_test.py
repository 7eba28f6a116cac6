"""The index logic against the exact oracle: exact search by hand, exact ScaNN, tuning."""

from __future__ import annotations

import numpy as np
import pytest

from components.scann_index import index


def _random(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d)) * 3
    return (centres[rng.integers(0, 40, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_exact_top_k_by_hand_with_ties():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
    queries = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
    rows, scores = index.exact_top_k(queries, vectors, k=3)
    # Query 1 scores rows 0..4: 1, 1, 2, 2, 2 -> 2, 3, 4 (the three 2s, lower row first).
    # Query 2: 1, 0, 1, 2, 0 -> row 3 (2), then the 1s: rows 0 and 2 (row 0 first).
    assert rows.tolist() == [[2, 3, 4], [3, 0, 2]]
    assert scores.tolist() == [[2.0, 2.0, 2.0], [2.0, 1.0, 1.0]]
    # k above the catalogue size: every row, ranked.
    rows, _ = index.exact_top_k(queries[:1], vectors, k=10)
    assert rows.tolist() == [[2, 3, 4, 0, 1]]


def test_exact_top_k_equals_a_full_stable_sort():
    # Many ties (integer-valued vectors) and a catalogue large enough for the threshold path.
    rng = np.random.default_rng(3)
    vectors = rng.integers(-2, 3, size=(5000, 4)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(40, 4)).astype(np.float32)
    rows, scores = index.exact_top_k(queries, vectors, k=25)
    expected = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(scores, np.take_along_axis(queries @ vectors.T, expected, 1))


def test_recall_vs_exact_by_hand():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 1], [5, 6, 7, 8]])
    # Query 1 finds 3 of 4, query 2 all 4: 7 / 8.
    assert index.recall_vs_exact(found, exact) == 7 / 8


@pytest.mark.parametrize(
    "config",
    [
        index.exact_config(),
        # One leaf searched out of one... and a real tree searched whole with every item
        # reordered: approximate scoring, exact result.
        index.tree_ah_config(num_leaves=8, leaves_to_search=8, reorder=3000),
    ],
    ids=["brute_force", "tree_all_leaves_reorder_all"],
)
def test_exact_configurations_return_the_brute_force_top_k(config):
    vectors, queries = _random(3000, 16, 0), _random(100, 16, 1)
    expected, _ = index.exact_top_k(queries, vectors, 50)
    searcher = index.build_searcher(vectors, config, num_neighbors=50)
    np.testing.assert_array_equal(index.search(searcher, queries, 50, config), expected)


def test_a_build_is_deterministic():
    vectors, queries = _clustered(4000, 8, 0), _clustered(50, 8, 1)
    config = index.tree_ah_config(40, 4, 100, training_sample_size=2000)
    first = index.search(index.build_searcher(vectors, config), queries, 20, config)
    second = index.search(index.build_searcher(vectors, config), queries, 20, config)
    np.testing.assert_array_equal(first, second)


def test_tune_picks_the_fastest_configuration_meeting_the_target():
    vectors, queries = _clustered(6000, 16, 0), _clustered(200, 16, 1)
    grid = [index.tree_ah_config(60, share, 100) for share in (1, 3, 12, 60)]
    chosen, curve = index.tune(
        vectors, queries, k=20, target_recall=0.9, grid=grid, repeats=1, min_seconds=0.01
    )
    assert [point["config"] for point in curve] == grid
    assert set(curve[0]) >= {
        "config",
        "recall_vs_exact",
        "queries_per_s",
        "single_query_per_s",
        "build_s",
        "meets_target",
    }
    # Searching every leaf with 100 reordered candidates finds the exact top 20.
    assert curve[-1]["recall_vs_exact"] > 0.99
    meeting = [p for p in curve if p["recall_vs_exact"] >= 0.9]
    assert chosen == max(meeting, key=lambda p: p["queries_per_s"])["config"]
    # Recall grows with the leaves searched.
    recalls = [p["recall_vs_exact"] for p in curve]
    assert recalls == sorted(recalls)


def test_tune_reports_an_unreachable_target():
    vectors, queries = _clustered(3000, 8, 0), _clustered(50, 8, 1)
    grid = [index.tree_ah_config(30, 2, 100), index.exact_config()]
    chosen, curve = index.tune(
        vectors, queries, k=10, target_recall=1.01, grid=grid, repeats=1, min_seconds=0.01
    )
    assert not any(point["meets_target"] for point in curve)
    # Nothing meets it: the most accurate configuration (exact, recall 1.0) is returned.
    assert chosen == index.exact_config()
    assert curve[1]["recall_vs_exact"] == 1.0


def test_small_catalogues_are_scored_exactly():
    vectors, queries = _random(500, 8, 0), _random(30, 8, 1)
    assert index.default_grid(len(vectors)) == [index.exact_config()]
    chosen, curve = index.tune(vectors, queries, k=50, repeats=1, min_seconds=0.01)
    assert chosen == index.exact_config()
    assert curve[0]["recall_vs_exact"] == 1.0 and curve[0]["meets_target"]


def test_default_grid_scales_with_the_catalogue():
    grid = index.default_grid(235_000)
    trees, fallback = grid[:-1], grid[-1]
    leaves = sorted({c["num_leaves"] for c in trees})
    assert leaves == [485, 970]  # sqrt(235,000) = 484.8 and twice that
    assert all(1 < c["leaves_to_search"] < c["num_leaves"] and c["reorder"] >= 100 for c in trees)
    # Exact search last: the target is always reachable.
    assert fallback == index.exact_config()


def test_unstructured_vectors_fall_back_to_exact_scoring():
    # Isotropic noise: no tree of the grid reaches Recall@50 0.95, the exact fallback does.
    vectors, queries = _random(2500, 16, 0), _random(60, 16, 1)
    chosen, curve = index.tune(vectors, queries, k=50, repeats=1, min_seconds=0.01)
    assert not any(p["meets_target"] for p in curve[:-1])
    assert chosen == index.exact_config() and curve[-1]["recall_vs_exact"] == 1.0


def test_choose_prefers_speed_among_configurations_meeting_the_target():
    curve = [
        {"config": {"n": 1}, "recall_vs_exact": 0.99, "queries_per_s": 10.0, "meets_target": True},
        {"config": {"n": 2}, "recall_vs_exact": 0.96, "queries_per_s": 30.0, "meets_target": True},
        {"config": {"n": 3}, "recall_vs_exact": 0.90, "queries_per_s": 90.0, "meets_target": False},
    ]
    assert index.choose(curve) == {"n": 2}
    for point in curve:
        point["meets_target"] = False
    assert index.choose(curve) == {"n": 1}  # none meets it: the most accurate


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-empty"):
        index.build_searcher(np.zeros((0, 4), np.float32), index.exact_config())
    with pytest.raises(ValueError, match="scoring"):
        index.build_searcher(_random(10, 4, 0), {**index.exact_config(), "scoring": "magic"})
