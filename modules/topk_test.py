"""The evaluator's fast selection is TF's top-k, and both follow the protocol's tie rule."""

import numpy as np

from modules import ranking, topk


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
            assert np.array_equal(topk.top_rows(scores, k), _tf_top_k(scores, k)), (n_cols, k)
    smooth = rng.standard_normal((32, 16 * 500 + 5)).astype(np.float32)
    assert np.array_equal(topk.top_rows(smooth, 100), _tf_top_k(smooth, 100))
    uniform = rng.random((64, 400_000), dtype=np.float32)  # float32: exact ties near the top
    assert np.array_equal(topk.top_rows(uniform, 100), _tf_top_k(uniform, 100))


def test_tf_selection_follows_the_protocols_tie_rule():
    # Catalogue columns are ascending item ids (the SavedModel's catalogue order), so TF's
    # "equal scores: lower column" is the protocol's "equal scores: ascending id".
    rng = np.random.default_rng(1)
    item_ids = np.sort(rng.choice(10_000, size=16 * 60 + 3, replace=False))
    scores = (rng.integers(0, 8, size=(40, item_ids.size)) * 0.25 + 0.5).astype(np.float32)
    scores[0] = 0.75  # one tie class over the whole row
    for k in (1, 10, 50):
        expected = ranking.top_k_items(scores, item_ids, k)
        assert np.array_equal(item_ids[_tf_top_k(scores, k)], expected)
        assert np.array_equal(item_ids[topk.top_rows(scores, k)], expected)
