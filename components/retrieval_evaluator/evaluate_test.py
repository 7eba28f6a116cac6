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


def _tf_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    import tensorflow as tf

    return tf.math.top_k(scores, k=k).indices.numpy()


def test_top_rows_is_tf_top_k_ties_included():
    rng = np.random.default_rng(0)
    # Coarse values: many exact ties inside and across blocks, at and around the k-th score;
    # widths with and without a partial last block.
    for n_cols in (16 * 400, 16 * 400 + 7, 16 * 101, 130):
        scores = rng.integers(0, 6, size=(64, n_cols)).astype(np.float32)
        scores[0] = 1.0  # a row of equal scores: the lowest columns win
        scores[1, -3:] = 9.0  # the best ones in the partial block
        for k in (1, 10, 37):
            assert np.array_equal(evaluate.top_rows(scores, k), _tf_top_k(scores, k)), (n_cols, k)
    smooth = rng.standard_normal((32, 16 * 500 + 5)).astype(np.float32)
    assert np.array_equal(evaluate.top_rows(smooth, 100), _tf_top_k(smooth, 100))
    uniform = rng.random((64, 400_000), dtype=np.float32)  # float32: exact ties near the top
    assert np.array_equal(evaluate.top_rows(uniform, 100), _tf_top_k(uniform, 100))
