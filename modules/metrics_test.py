"""Tests of the protocol's metrics on hand-computed cases (DESIGN 5 and 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modules import metrics

# ---------------------------------------------------------------- queries and metrics


def test_lists_for_queries_shares_a_visitor_list_among_its_queries():
    lists = np.array([[1, 2], [3, 4]])
    # Visitors 70 and 50 own rows 0 and 1; queries of 50, 70, 50 get rows 1, 0, 1.
    out = metrics.lists_for_queries(lists, np.array([70, 50]), np.array([50, 70, 50]))
    assert out.tolist() == [[3, 4], [1, 2], [3, 4]]
    with pytest.raises(ValueError, match="no list"):
        metrics.lists_for_queries(lists, np.array([70, 50]), np.array([60]))


def _lists(*heads):
    """[n, 50] lists whose first entries are `heads` and the rest distinct filler ids >= 1000."""
    out = np.arange(1000, 1000 + 50 * len(heads)).reshape(len(heads), 50)
    for row, head in enumerate(heads):
        out[row, : len(head)] = head
    return out


def test_evaluate_hand_computed():
    # Query 1: target 7 at rank 1; query 2: target 8 at rank 3; query 3: target 9 absent.
    recommended = _lists([7, 1, 2], [1, 2, 8], [1, 2, 3])
    values = metrics.evaluate(recommended, np.array([7, 8, 9]), n_train_items=1000)
    assert list(values) == list(metrics.metric_names())
    assert values["recall@1"] == pytest.approx(1 / 3)  # only query 1
    assert values["recall@5"] == pytest.approx(2 / 3)  # queries 1 and 2
    assert values["recall@50"] == pytest.approx(2 / 3)
    # NDCG: (1/log2(2) + 1/log2(4) + 0) / 3 = (1 + 0.5) / 3 = 0.5.
    assert values["ndcg@50"] == pytest.approx(0.5)
    # Distinct ids: row 0 has 7, 1, 2 + 47 fillers; row 1 has 1, 2, 8 + 47; row 2 has 1, 2, 3 + 47:
    # {1, 2, 3, 7, 8} + 141 fillers = 146 distinct of 1000 train items.
    assert values["coverage@50"] == pytest.approx(146 / 1000)


def test_evaluate_rank_50_counts_and_rank_51_does_not():
    row = np.arange(100, 160)  # 60 ids; target 149 is at rank 50, 150 at rank 51
    values = metrics.evaluate(np.stack([row, row]), np.array([149, 150]), n_train_items=60)
    assert values["recall@50"] == pytest.approx(0.5)
    assert values["recall@20"] == 0.0
    assert values["ndcg@50"] == pytest.approx(0.5 / math.log2(51))
    assert values["coverage@50"] == pytest.approx(50 / 60)  # only the first 50 positions count


def test_evaluate_padding_never_matches_and_is_not_covered():
    recommended = np.full((2, 50), -1)
    recommended[0, 0] = 5
    values = metrics.evaluate(recommended, np.array([5, -1]), n_train_items=4)
    assert values["recall@1"] == pytest.approx(0.5)  # a -1 target never hits a -1 slot
    assert values["coverage@50"] == pytest.approx(1 / 4)


def test_evaluate_rejects_short_lists_and_no_queries():
    with pytest.raises(ValueError, match="positions"):
        metrics.evaluate(np.zeros((1, 10), int), np.array([1]), n_train_items=5)
    with pytest.raises(ValueError, match="no queries"):
        metrics.evaluate(np.zeros((0, 50), int), np.zeros(0, int), n_train_items=5)


def test_recall_curve_agrees_with_evaluate():
    recommended = _lists([7, 1, 2], [1, 2, 8], [1, 2, 3])
    targets = np.array([7, 8, 9])
    curve = metrics.recall_curve(recommended, targets)
    assert curve.shape == (50,)
    # Recall@1 = 1/3, Recall@2 = 1/3, Recall@3 onwards = 2/3.
    assert curve[:3].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    values = metrics.evaluate(recommended, targets, n_train_items=10)
    for k in (1, 5, 10, 20, 50):
        assert curve[k - 1] == pytest.approx(values[f"recall@{k}"])


def test_metric_names_are_design_section_8():
    assert metrics.metric_names() == (
        "recall@1",
        "recall@5",
        "recall@10",
        "recall@20",
        "recall@50",
        "ndcg@50",
        "coverage@50",
    )


# ---------------------------------------------------------------- slices and intervals


def _queries():
    # Train: visitor 1 has 1 event (item 10); visitor 2 has 6 events (items 10, 11 x5).
    train_visitors = np.array([1, 2, 2, 2, 2, 2, 2])
    train_items = np.array([10, 10, 11, 11, 11, 11, 11])
    # Queries: (1, 10) seen; (1, 12) new and cold; (2, 11) seen; (2, 10) seen.
    return metrics.describe_queries(
        np.array([1, 1, 2, 2]),
        np.array([10, 12, 11, 10]),
        np.array(["view", b"transaction", "addtocart", "view"], dtype=object),
        train_visitors,
        train_items,
    )


def test_slices_partition_the_queries():
    queries = _queries()
    s = queries.slices
    assert list(s) == list(metrics.slice_names())
    assert s["target_seen"].tolist() == [True, False, True, True]
    assert s["target_cold"].tolist() == [False, True, False, False]
    assert s["history_1"].tolist() == [True, True, False, False]
    assert s["history_6_20"].tolist() == [False, False, True, True]
    assert s["event_view"].tolist() == [True, False, False, True]
    groups = (
        ("target_seen", "target_new"),
        ("history_1", "history_2_5", "history_6_20", "history_21_100", "history_over_100"),
        ("event_view", "event_addtocart", "event_transaction"),
    )
    for group in groups:
        assert (sum(s[name].astype(int) for name in group) == 1).all(), group
    assert not (s["target_cold"] & s["target_seen"]).any()


def test_slice_metrics_count_queries_and_recall():
    queries = _queries()
    ranks = np.array([1, 0, 30, 60])
    out = metrics.slice_metrics(ranks, queries.slices)
    assert out["target_seen"] == {"queries": 3, "recall@10": 1 / 3, "recall@50": 2 / 3}
    assert out["history_21_100"] == {"queries": 0, "recall@10": None, "recall@50": None}


def test_bootstrap_over_visitors_hand_computed():
    # Visitor A: 2 queries, both hits; visitor B: 1 query, a miss. Resamples of 2 visitors:
    # {A, A} -> 1.0 (p 1/4), {A, B} -> 2/3 (p 1/2), {B, B} -> 0.0 (p 1/4).
    ranks = {"m": np.array([1, 5, 0])}
    visitors = np.array([7, 7, 9])
    samples = metrics.bootstrap_recalls(ranks, visitors, resamples=4000, seed=3)["m"]
    values, counts = np.unique(np.round(samples, 6), return_counts=True)
    assert values.tolist() == [0.0, round(2 / 3, 6), 1.0]
    assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    assert metrics.interval(samples) == [0.0, 1.0]
    # The same draws for every model and every call with the same seed: paired and repeatable.
    again = metrics.bootstrap_recalls(
        {"x": ranks["m"], "y": ranks["m"]}, visitors, resamples=4000, seed=3
    )
    assert np.array_equal(again["x"], samples) and np.array_equal(again["y"], samples)


def test_compare_identical_models_has_zero_difference_and_unit_ratio():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 80, size=500)
    visitors = rng.integers(0, 60, size=500)
    samples = metrics.bootstrap_recalls({"a": ranks, "b": ranks}, visitors, resamples=200)
    recall = float(((ranks >= 1) & (ranks <= 50)).mean())
    out = metrics.compare(recall, samples["a"], recall, samples["b"])
    assert out["diff"] == 0.0 and out["diff_ci"] == [0.0, 0.0]
    assert out["ratio"] == 1.0 and out["ratio_ci"] == pytest.approx([1.0, 1.0])


def test_report_adds_interval_and_slices():
    queries = _queries()
    lists = np.full((4, 50), -1)
    lists[:, 0] = [10, 12, 11, 99]
    values, ranks = metrics.report(lists, queries, n_train_items=2)
    assert ranks.tolist() == [1, 1, 1, 0]
    assert values["recall@50"] == 0.75
    low, high = values["recall@50_ci"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    assert values["slices"]["event_view"]["queries"] == 2
