"""The index logic against the exact oracle: exact search by hand, exact ScaNN, cost, tuning."""

from __future__ import annotations

import os

import numpy as np
import pytest

from components.scann_index import index
from modules import ranking


def _random(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d)) * 3
    return (centres[rng.integers(0, 40, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_exact_top_k_by_hand_with_ties():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
    queries = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
    rows = index.exact_top_k(queries, vectors, k=3)
    # Query 1 scores rows 0..4: 1, 1, 2, 2, 2 -> 2, 3, 4 (the three 2s, lower row first).
    # Query 2: 1, 0, 1, 2, 0 -> row 3 (2), then the 1s: rows 0 and 2 (row 0 first).
    assert rows.tolist() == [[2, 3, 4], [3, 0, 2]]
    # k above the catalogue size: every row, ranked.
    assert index.exact_top_k(queries[:1], vectors, k=10).tolist() == [[2, 3, 4, 0, 1]]


def test_exact_top_k_is_the_shared_ranking_rule(monkeypatch):
    # Many ties (integer-valued vectors), a catalogue padded to whole top_rows groups, and chunks
    # of 7 queries: the reference is modules.ranking's list (equal scores: lower row), which here
    # is a full stable sort.
    monkeypatch.setattr(index, "_EXACT_CHUNK_CELLS", 5001 * 7)
    rng = np.random.default_rng(3)
    vectors = rng.integers(-2, 3, size=(5001, 4)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(40, 4)).astype(np.float32)
    scores = queries @ vectors.T
    rows = index.exact_top_k(queries, vectors, k=25)
    np.testing.assert_array_equal(rows, ranking.top_k_items(scores, np.arange(5001), 25))
    np.testing.assert_array_equal(rows, np.argsort(-scores, axis=1, kind="stable")[:, :25])


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
    expected = index.exact_top_k(queries, vectors, 50)
    searcher = index.build_searcher(vectors, config, num_neighbors=50)
    np.testing.assert_array_equal(index.search(searcher, queries, 50, config), expected)


def _serialized(searcher, path) -> dict[str, bytes]:
    path.mkdir()
    searcher.serialize(str(path))
    # scann_assets.pbtxt lists the absolute paths of the other files: it differs by folder.
    names = sorted(set(os.listdir(path)) - {"scann_assets.pbtxt"})
    return {name: (path / name).read_bytes() for name in names}


def test_a_build_is_deterministic_whatever_the_threads(tmp_path):
    # Pinned seeds (tree, AH sample and codebook): the same vectors and configuration give the
    # same index files, byte for byte, with 1 or 2 training threads.
    vectors = _clustered(4000, 8, 0)
    config = index.tree_ah_config(40, 4, 100, training_sample_size=2000)
    first = _serialized(index.build_searcher(vectors, config, threads=1), tmp_path / "a")
    second = _serialized(index.build_searcher(vectors, config, threads=2), tmp_path / "b")
    assert {"serialized_partitioner.pb", "ah_codebook.pb", "hashed_dataset.npy"} <= set(first)
    assert first == second


def test_cost_by_hand():
    # 10,000 items of 8 dimensions, k = 50.
    # Exact: every item is one dot product.
    assert index.cost(index.exact_config(), 10_000, 8, 50) == 10_000
    # Tree 100 leaves, 5 searched (100 items each: 500 scored); AH over 2-dim blocks: 4 lookups
    # per item = 0.5 dot products, plus the 16-centre lookup table; reorder 200.
    # 100 (root) + 16 + 500 * 4 / 8 + 200 = 566.
    assert index.cost(index.tree_ah_config(100, 5, 200), 10_000, 8, 50) == 566
    # Reordering fewer than k still re-scores k (the search asks for max(reorder, k)).
    assert index.cost(index.tree_ah_config(100, 5, 10), 10_000, 8, 50) == 100 + 16 + 250 + 50
    # No reordering; 9 dimensions make 5 blocks (the last of 1 dimension): 500 * 5 / 9.
    assert index.cost(index.tree_ah_config(100, 5, 0), 10_000, 9, 50) == pytest.approx(
        100 + 16 + 500 * 5 / 9
    )
    # More leaves searched or more reordering cost more.
    costs = [index.cost(c, 235_000, 65, 50) for c in index.default_grid(235_000)]
    assert costs[-1] == 235_000 and max(costs[:-1]) < 235_000 / 5


def test_tune_picks_the_cheapest_configuration_meeting_the_target():
    vectors, queries = _clustered(6000, 16, 0), _clustered(200, 16, 1)
    # Listed most expensive first: the choice follows the cost, not the order.
    grid = [index.tree_ah_config(60, share, 100) for share in (60, 12, 3, 1)]
    chosen, curve = index.tune(vectors, queries, k=20, target_recall=0.9, grid=grid)
    assert [point["config"] for point in curve] == grid
    assert set(curve[0]) == {"config", "name", "recall_vs_exact", "cost", "meets_target"}
    # Searching every leaf with 100 reordered candidates finds the exact top 20.
    assert curve[0]["recall_vs_exact"] > 0.99
    # Recall and cost grow with the leaves searched.
    recalls = [p["recall_vs_exact"] for p in curve]
    costs = [p["cost"] for p in curve]
    assert recalls == sorted(recalls, reverse=True) and costs == sorted(costs, reverse=True)
    meeting = [p for p in curve if p["recall_vs_exact"] >= 0.9]
    assert 1 < len(meeting) < len(curve)
    assert chosen == min(meeting, key=lambda p: p["cost"])["config"]


def test_tune_keeps_the_searcher_of_its_choice():
    # The kept searcher (built with its group's largest reordering) answers the chosen
    # configuration exactly as one built for it alone: the timing needs no second build.
    vectors, queries = _clustered(6000, 16, 0), _clustered(200, 16, 1)
    grid = [index.tree_ah_config(60, share, reorder) for share in (12, 3) for reorder in (40, 100)]
    kept = {}
    chosen, _ = index.tune(vectors, queries, k=20, target_recall=0.9, grid=grid, keep=kept)
    assert kept["build_s"] > 0
    alone = index.build_searcher(vectors, chosen, num_neighbors=20)
    np.testing.assert_array_equal(
        index.search(kept["searcher"], queries, 20, chosen),
        index.search(alone, queries, 20, chosen),
    )


def test_tune_is_deterministic():
    # The same inputs: the same curve and the same choice, whatever the threads.
    vectors, queries = _clustered(5000, 16, 2), _clustered(150, 16, 3)
    first = index.tune(vectors, queries, k=50, threads=1)
    second = index.tune(vectors, queries, k=50, threads=2)
    assert first == second
    assert first[0] != index.exact_config()  # a tree was chosen: the test is not trivial


def test_tune_reports_an_unreachable_target():
    vectors, queries = _clustered(3000, 8, 0), _clustered(50, 8, 1)
    grid = [index.tree_ah_config(30, 2, 100), index.exact_config()]
    chosen, curve = index.tune(vectors, queries, k=10, target_recall=1.01, grid=grid)
    assert not any(point["meets_target"] for point in curve)
    # Nothing meets it: the most accurate configuration (exact, recall 1.0) is returned.
    assert chosen == index.exact_config()
    assert curve[1]["recall_vs_exact"] == 1.0


def test_small_catalogues_are_scored_exactly():
    vectors, queries = _random(500, 8, 0), _random(30, 8, 1)
    assert index.default_grid(len(vectors)) == [index.exact_config()]
    chosen, curve = index.tune(vectors, queries, k=50)
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
    chosen, curve = index.tune(vectors, queries, k=50)
    assert not any(p["meets_target"] for p in curve[:-1])
    assert chosen == index.exact_config() and curve[-1]["recall_vs_exact"] == 1.0


def test_choose_takes_the_cheapest_meeting_the_target_and_ignores_timings():
    curve = [
        {"config": {"n": 1}, "recall_vs_exact": 0.99, "cost": 900.0, "meets_target": True},
        {"config": {"n": 2}, "recall_vs_exact": 0.96, "cost": 300.0, "meets_target": True},
        {"config": {"n": 3}, "recall_vs_exact": 0.97, "cost": 300.0, "meets_target": True},
        {"config": {"n": 4}, "recall_vs_exact": 0.90, "cost": 100.0, "meets_target": False},
    ]
    # n=2 and n=3 cost the same: the first listed wins.
    assert index.choose(curve) == {"n": 2}
    # Queries/s on a curve (a caller's, or a busy machine's) change nothing.
    timed = [{**p, "queries_per_s": 1000.0 / (i + 1)} for i, p in enumerate(curve)]
    assert index.choose(timed) == {"n": 2}
    for point in curve:
        point["meets_target"] = False
    assert index.choose(curve) == {"n": 1}  # none meets it: the most accurate
    curve[0]["recall_vs_exact"] = 0.97  # equal recall: the cheaper, then the first listed
    assert index.choose(curve) == {"n": 3}


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-empty"):
        index.build_searcher(np.zeros((0, 4), np.float32), index.exact_config())
    with pytest.raises(ValueError, match="scoring"):
        index.build_searcher(_random(10, 4, 0), {**index.exact_config(), "scoring": "magic"})
