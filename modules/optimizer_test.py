"""CatchUpAdam: Keras's Adam, with embedding rows updated only when a batch reads them."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from modules.optimizer import CatchUpAdam  # noqa: E402


def _batches(steps: int) -> list[list[int]]:
    rng = np.random.default_rng(1)
    # Rows 0-9 are read often, rows 10-39 rarely (gaps of up to hundreds of steps), row 39 once.
    return [
        sorted({*rng.choice(10, 3), *rng.choice(39, 2)} | ({39} if i == 5 else set()))
        for i in range(steps)
    ]


def _train(optimizer, batches: list[list[int]], epoch_ends: set[int]) -> tuple[np.ndarray, ...]:
    """A nonlinear loss over a table's rows and a dense weight; a CatchUpAdam brings the rows a
    batch reads up to date before the batch (as `CatchUpEmbedding` does) and all rows at the
    epoch ends."""
    rng = np.random.default_rng(0)
    table = tf.Variable(rng.normal(size=(40, 3)).astype(np.float32))
    dense = tf.Variable(rng.normal(size=3).astype(np.float32))
    targets = rng.normal(size=(40, 3)).astype(np.float32)
    optimizer.build([table, dense])
    lazy = isinstance(optimizer, CatchUpAdam)
    for i, rows in enumerate(batches):
        if lazy:
            optimizer.catch_up_rows(table, tf.constant(rows))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table, rows) * dense - targets[rows]))
        grads = tape.gradient(loss, [table, dense])
        assert isinstance(grads[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(grads, [table, dense], strict=True))
        if lazy and i in epoch_ends:
            optimizer.catch_up([table, dense])
    return table.numpy(), dense.numpy()


def test_catch_up_adam_follows_keras_adam():
    batches = _batches(300)
    adam = _train(tf.keras.optimizers.Adam(0.05), batches, set())
    catch_up = _train(CatchUpAdam(0.05, min_rows=0), batches, {99, 199, 299})
    np.testing.assert_allclose(catch_up[1], adam[1], rtol=1e-3)
    np.testing.assert_allclose(catch_up[0], adam[0], rtol=1e-3, atol=1e-4)
    # Row 39 was read once, at step 6: Adam kept moving it by its momentum afterwards.
    once = _train(CatchUpAdam(0.05, min_rows=0), batches[:6], {5})[0][39]
    assert np.abs(adam[0][39] - once).max() > 1e-3


def test_rows_no_batch_read_stay_still_until_the_epoch_ends():
    batches = [[0, 1], [0], [0], [1]]
    start = _train(CatchUpAdam(0.1, min_rows=0), [], set())[0]
    after = _train(CatchUpAdam(0.1, min_rows=0), batches, set())[0]
    np.testing.assert_array_equal(after[2:], start[2:])  # never read: never moved
    ended = _train(CatchUpAdam(0.1, min_rows=0), batches, {3})[0]
    assert not np.allclose(ended[0], after[0])  # row 0's momentum over step 4, applied at the end
    np.testing.assert_array_equal(ended[2:], start[2:])


def test_small_tables_get_keras_adam():
    batches = _batches(50)
    adam = _train(tf.keras.optimizers.Adam(0.05), batches, set())
    small = _train(CatchUpAdam(0.05), batches, set())  # 40 rows < SPARSE_MIN_ROWS: no catch-up
    np.testing.assert_allclose(small[0], adam[0], rtol=1e-5, atol=1e-6)
