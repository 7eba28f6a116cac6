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
