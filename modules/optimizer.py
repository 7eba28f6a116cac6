"""The optimiser of the two-tower model: Adam whose embedding updates touch only the batch's rows.

Keras's Adam decays the moments of every row of an embedding table at every step, even for a
sparse gradient, and moves every row by its momentum (``tf_keras/src/optimizers/adam.py``:
``m.assign_add(-m * (1 - beta_1))`` and ``variable.assign_sub(...)`` over the whole table). At
RetailRocket's catalogue (398,546 items x 64) that update cost 141 ms of a ~176 ms training step on
2 cores; here the step's optimiser work takes 49 ms (`benchmarks/bench_optimizer.py`).

`CatchUpAdam` gives the same result as Keras's Adam while updating only the rows a batch names. A
row that no batch named for k steps would, under Adam, have taken k steps of zero gradient: its
moments decay to ``beta_1**k m`` and ``beta_2**k v`` and it moves by
``sum_j alpha(s + j) m beta_1**j / (sqrt(v) beta_2**(j/2) + eps)`` (s: the step it was last
updated, ``alpha`` the bias-corrected learning rate). Each row keeps the step it was last
updated. Before a batch reads a row (`CatchUpEmbedding`, the model's embedding layer), and for
every row at `catch_up` (the end of every epoch, before anything reads the model), those k steps
are applied at once; the batch's own step follows as Adam's. The sum comes
from a table over steps (`_drift_table`), with ``eps / beta_2**(j/2)`` taken as ``eps`` (it
matters only for rows that barely move).

Plain lazy Adam (the rows a batch does not name stay still, TensorFlow Addons' ``LazyAdam``) was
tried first: 5x faster at full scale, but the repeat-heavy preset fell from 0.681 to 0.643
validation Recall@50 (``benchmarks/bench_model.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Tables with fewer rows get Keras's update: one step on a table of 10,000 / 38,259 / 398,546 rows x
# 64 took 7.5 / 15.2 / 150.6 ms with Keras's Adam and 11.2 / 24.8 / 49.3 ms here (catch-up before
# the read, update after; `benchmarks/bench_optimizer.py`, 2 cores).
SPARSE_MIN_ROWS = 100_000
# `_drift_table`: terms of each sum (r**400 < 1e-18) and steps tabulated: from step 21,000 on,
# beta_2**t < 1e-9 and the bias-corrected learning rate is the learning rate.
_DRIFT_TERMS = 400
_DRIFT_STEPS = 21_000


def _drift_table(beta_1: float, beta_2: float) -> np.ndarray:
    """D(s) / lr = sum_{j=1..400} a(s + j) r^j for s = 0 .. _DRIFT_STEPS, with a(t) the
    bias correction of step t and r = beta_1 / sqrt(beta_2): how far a row with moments m, v at
    step s moves over all later zero-gradient steps, in units of lr m / sqrt(v)."""
    steps = np.arange(1, _DRIFT_STEPS + _DRIFT_TERMS + 1, dtype=np.float64)
    correction = np.sqrt(1 - beta_2**steps) / (1 - beta_1**steps)
    powers = (beta_1 / np.sqrt(beta_2)) ** np.arange(1, _DRIFT_TERMS + 1)
    return np.correlate(correction, powers, "valid").astype(np.float32)


class CatchUpAdam(tf.keras.optimizers.Adam):
    """Keras's Adam; `tf.IndexedSlices` gradients of tables of ``min_rows`` rows or more update
    only their rows, with the steps missed. Smaller tables get Keras's update (it is faster there:
    `SPARSE_MIN_ROWS`)."""

    def __init__(self, learning_rate=0.001, min_rows: int | None = None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.min_rows = SPARSE_MIN_ROWS if min_rows is None else int(min_rows)

    def get_config(self):
        return super().get_config() | {"min_rows": self.min_rows}

    @tf.autograph.experimental.do_not_convert
    def apply_gradients(self, grads_and_vars, *args, **kwargs):
        """Keras's, traced without AutoGraph: its branches (and ours in `update_step`) are on
        variables' shapes and dtypes, not on tensors, so the graph is the same and the fit's first
        step comes sooner (``modules.model.TwoTowerModel.user_vectors``)."""
        return super().apply_gradients(grads_and_vars, *args, **kwargs)

    def _sparse(self, variable: tf.Variable) -> bool:
        return variable.shape.rank >= 1 and variable.shape[0] >= self.min_rows

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_last_built", False):
            return
        self._last_built = True
        # The step each row (or the whole variable, if it has no rows) was last brought up to date.
        self._last_steps = [
            self.add_variable(shape=var.shape[:1], dtype=tf.float32, name="last_step")
            for var in var_list
        ]
        self._drift = _drift_table(float(self.beta_1), float(self.beta_2))
        # Keys of the variables updated sparsely (a set: tf.Module would track a dict's variables).
        self._sparse_keys = set()

    def _alpha(self, step: tf.Tensor) -> tf.Tensor:
        """The bias-corrected learning rate of (1-based) ``step``."""
        beta_1, beta_2 = tf.cast(self.beta_1, tf.float32), tf.cast(self.beta_2, tf.float32)
        lr = tf.cast(self.learning_rate, tf.float32)
        return lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))

    def _missed(self, m, v, last, now):
        """(the change of rows with moments m, v at step ``last`` over the zero-gradient steps
        last+1 .. now, and their moments at ``now``).

        The change is -W m / (sqrt(v) + eps) with W = sum_{j=1..now-last} alpha(last+j) r^j,
        r = beta_1 / sqrt(beta_2), = D(last) - r^(now-last) D(now) with
        D(s) = sum_{j>=1} alpha(s+j) r^j (`_drift_table`).
        """
        beta_1, beta_2 = tf.cast(self.beta_1, tf.float32), tf.cast(self.beta_2, tf.float32)
        drift = tf.constant(self._drift)
        top = len(self._drift) - 1
        drift_last = tf.gather(drift, tf.minimum(tf.cast(last, tf.int32), top))
        drift_now = tf.gather(drift, tf.minimum(tf.cast(now, tf.int32), top))
        missed = now - last  # [n]
        weight = tf.cast(self.learning_rate, tf.float32) * (
            drift_last - tf.pow(beta_1 / tf.sqrt(beta_2), missed) * drift_now
        )
        shape = [-1] + [1] * (len(m.shape) - 1)
        change = -tf.reshape(weight, shape) * m / (tf.sqrt(v) + self.epsilon)
        return (
            change,
            m * tf.reshape(tf.pow(beta_1, missed), shape),
            v * tf.reshape(tf.pow(beta_2, missed), shape),
        )

    def update_step(self, gradient, variable):
        slot = self._index_dict[self._var_key(variable)]
        last = self._last_steps[slot]
        step = tf.cast(self.iterations + 1, tf.float32)
        sparse = isinstance(gradient, tf.IndexedSlices) and variable.dtype == tf.float32
        if not sparse or not self._sparse(variable):
            super().update_step(gradient, variable)
            if self._sparse(variable):  # a large table's dense gradient: every row is now current
                last.assign(tf.fill(tf.shape(last), step))
            return
        self._sparse_keys.add(self._var_key(variable))
        m, v = self._momentums[slot], self._velocities[slot]
        rows = gradient.indices  # unique: Optimizer._deduplicate_sparse_grad summed duplicates
        change, m_rows, v_rows = self._missed(
            tf.gather(m, rows), tf.gather(v, rows), tf.gather(last, rows), step - 1
        )
        beta_1, beta_2 = tf.cast(self.beta_1, tf.float32), tf.cast(self.beta_2, tf.float32)
        m_rows = beta_1 * m_rows + (1 - beta_1) * gradient.values
        v_rows = beta_2 * v_rows + (1 - beta_2) * tf.square(gradient.values)
        change -= self._alpha(step) * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        last.scatter_update(tf.IndexedSlices(tf.fill(tf.shape(rows), step), rows))
        variable.scatter_add(tf.IndexedSlices(change, rows))

    def catch_up_rows(self, variable: tf.Variable, ids: tf.Tensor) -> None:
        """Brings the rows ``ids`` of ``variable`` up to the last step (`CatchUpEmbedding`, before
        a batch reads them). A no-op before the optimiser is built."""
        slot = getattr(self, "_index_dict", {}).get(self._var_key(variable))
        if slot is None or not self._sparse(variable):
            return
        m, v, last = self._momentums[slot], self._velocities[slot], self._last_steps[slot]
        rows, _ = tf.unique(tf.reshape(tf.cast(ids, tf.int32), [-1]))
        now = tf.cast(self.iterations, tf.float32)
        change, m_rows, v_rows = self._missed(
            tf.gather(m, rows), tf.gather(v, rows), tf.gather(last, rows), now
        )
        variable.scatter_add(tf.IndexedSlices(change, rows))
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        last.scatter_update(tf.IndexedSlices(tf.fill(tf.shape(rows), now), rows))

    def catch_up(self, var_list) -> None:
        """Brings every sparsely updated row of ``var_list`` up to the last step (as Keras's Adam
        has it)."""
        now = tf.cast(self.iterations, tf.float32)
        for variable in var_list:
            key = self._var_key(variable)
            if key not in getattr(self, "_sparse_keys", ()):
                continue
            slot = self._index_dict[key]
            m, v, last = self._momentums[slot], self._velocities[slot], self._last_steps[slot]
            change, m_now, v_now = self._missed(m, v, last, now)
            variable.assign_add(change)
            m.assign(m_now)
            v.assign(v_now)
            last.assign(tf.fill(tf.shape(last), now))


class CatchUpEmbedding(tf.keras.layers.Embedding):
    """An Embedding whose looked-up rows a `CatchUpAdam` brings up to date before they are read
    (while `CatchUp` attaches it, i.e. in training steps only)."""

    catch_up = None  # CatchUpAdam.catch_up_rows while attached

    def call(self, inputs):
        if self.catch_up is not None:
            self.catch_up(self.embeddings, inputs)
        return super().call(inputs)


class CatchUp(tf.keras.callbacks.Callback):
    """Attaches a `CatchUpAdam` to the model's `CatchUpEmbedding` layers during every epoch, and
    brings every row up to date at its end. Put it before any callback that reads the model
    (validation, best-epoch weights): they then see Keras's Adam's model, and serving
    signatures traced later carry no optimiser step."""

    def _attach(self, on: bool) -> None:
        optimizer = self.model.optimizer
        if not isinstance(optimizer, CatchUpAdam):
            return
        for layer in self.model.submodules:
            if isinstance(layer, CatchUpEmbedding):
                layer.catch_up = optimizer.catch_up_rows if on else None

    def on_epoch_begin(self, epoch, logs=None):
        self._attach(True)

    def on_epoch_end(self, epoch, logs=None):
        self._attach(False)
        if isinstance(self.model.optimizer, CatchUpAdam):
            self.model.optimizer.catch_up(self.model.trainable_variables)

    def on_train_end(self, logs=None):
        self._attach(False)
