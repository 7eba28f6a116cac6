"""exclude_seen for model lists: seen items dropped, order kept, padded."""

import numpy as np

from components.retrieval_evaluator import evaluate


def test_drop_seen_keeps_order_and_pads():
    # Visitor 1 saw items 5 and 7 in train, visitor 2 saw 9.
    seen = evaluate.seen_codes(np.array([1, 1, 2]), np.array([5, 7, 9]))
    lists = np.array([[7, 3, 5, 8], [7, 9, -1, -1]])
    out = evaluate.drop_seen(lists, np.array([1, 2]), seen, k=3)
    # Visitor 1: [7, 3, 5, 8] - {5, 7} = [3, 8] + pad; visitor 2: [7, 9] - {9} = [7] + pads.
    assert out.tolist() == [[3, 8, -1], [7, -1, -1]]
