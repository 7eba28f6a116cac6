"""Test helpers of the ScaNN component: a toy brute-force serving model and its requests.

The toy has exactly the contract of ``modules.serving`` (the four signatures, their names, dtypes
and shapes, the repeat bonus of history items) but a trivial user tower, so the ScaNN tests take
seconds, not the minute a trained model takes. Used by ``serving_test`` and ``executor_test``;
nothing of the pipeline imports it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from modules import features as F
from modules import serving

TOY_K = 10
TOY_HISTORY = 5
TOY_VISITORS = 97


class ToyBruteForce(tf.Module):
    """modules.serving's signatures over random vectors; query = a visitor embedding."""

    def __init__(self, n_items: int, dim: int, seed: int, clusters: int = 0):
        super().__init__(name="toy_brute_force")
        rng = np.random.default_rng(seed)
        items, visitors = rng.normal(size=(n_items, dim)), rng.normal(size=(TOY_VISITORS, dim))
        if clusters:  # items and visitors around a few centres: a tree index suits them
            centres = 3 * rng.normal(size=(clusters, dim))
            items += centres[rng.integers(0, clusters, n_items)]
            visitors += centres[rng.integers(0, clusters, TOY_VISITORS)]
        self.item_ids = tf.Variable(1000 + 7 * np.arange(n_items, dtype=np.int64), trainable=False)
        self.vectors = tf.Variable(items.astype(np.float32))
        self.visitors = tf.Variable(visitors.astype(np.float32))
        self._k = min(TOY_K, n_items)
        self._eval_k = min(serving.EVAL_TOP_K, n_items)

    def _query(self, raw):
        query = tf.gather(self.visitors, raw[F.VISITOR_ID] % TOY_VISITORS)
        query += 0.01 * tf.cast(raw[F.USER_VIEWS], tf.float32)[:, None]
        tokens = tf.strings.split(raw[F.HISTORY]).to_tensor("", shape=[None, TOY_HISTORY])
        ids = tf.strings.to_number(tf.where(tokens == "", "-1", tokens), tf.int64)
        slot = tf.searchsorted(self.item_ids, tf.reshape(ids, [-1]), out_type=tf.int64)
        slot = tf.reshape(tf.minimum(slot, tf.size(self.item_ids, tf.int64) - 1), tf.shape(ids))
        rows = tf.where(tf.gather(self.item_ids, slot) == ids, slot, -tf.ones_like(slot))
        # Bonus 2 / (1 + position) at an item's most recent position, 0 at its repeats.
        same = tf.equal(rows[:, :, None], rows[:, None, :]) & (rows >= 0)[:, None, :]
        earlier = tf.cast(tf.linalg.band_part(tf.ones([TOY_HISTORY] * 2), -1, 0), tf.bool)
        earlier &= ~tf.eye(TOY_HISTORY, dtype=tf.bool)
        first = (rows >= 0) & ~tf.reduce_any(same & earlier[None], axis=2)
        weight = 2.0 / (1.0 + tf.range(TOY_HISTORY, dtype=tf.float32))
        bonus = tf.where(first, tf.broadcast_to(weight, tf.shape(rows)), 0.0)
        return query, rows, bonus

    def _top(self, raw, k):
        query, rows, bonus = self._query(raw)
        scores = tf.matmul(query, self.vectors, transpose_b=True)
        scores = serving.add_repeat_bonus(scores, rows, bonus)
        best = tf.math.top_k(scores, k=k)
        return tf.gather(self.item_ids, best.indices), best.values

    @tf.function(
        input_signature=[
            {n: tf.TensorSpec([None], d, name=n) for n, d in serving.REQUEST_COLUMNS.items()}
        ]
    )
    def serve(self, request):
        ids, scores = self._top(request, self._k)
        return {serving.OUTPUT_ITEM_IDS: ids, serving.OUTPUT_SCORES: scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        spec = {n: tf.io.VarLenFeature(d) for n, d in serving.REQUEST_COLUMNS.items()}
        raw = {  # scalar columns; an empty one (no history) reads as "" or 0
            n: tf.strings.reduce_join(tf.sparse.to_dense(v), axis=1)
            if v.dtype == tf.string
            else tf.reduce_sum(tf.sparse.to_dense(v), axis=1)
            for n, v in tf.io.parse_example(examples, spec).items()
        }
        ids, scores = self._top(raw, self._eval_k)
        return {serving.OUTPUT_CLASSES: ids, serving.OUTPUT_SCORES: scores}

    @tf.function(
        input_signature=[
            {n: tf.TensorSpec([None], d, name=n) for n, d in serving.REQUEST_COLUMNS.items()}
        ]
    )
    def user_vectors(self, request):
        query, rows, bonus = self._query(request)
        return {"query": query, "history_rows": rows, "repeat_bonus": bonus}

    @tf.function(input_signature=[])
    def catalogue(self):
        return {"item_ids": tf.identity(self.item_ids), "item_vectors": tf.identity(self.vectors)}


def write_toy_brute_force(
    path: str, n_items: int = 600, dim: int = 9, seed: int = 0, clusters: int = 0
) -> str:
    """Saves a toy brute-force serving model with modules.serving's four signatures.

    ``clusters`` > 0 draws the item and visitor vectors around that many centres (else isotropic
    noise, which no tree index suits).
    """
    module = ToyBruteForce(n_items, dim, seed, clusters)
    tf.saved_model.save(
        module,
        path,
        signatures={
            serving.SERVING_SIGNATURE: module.serve.get_concrete_function(),
            serving.EVAL_SIGNATURE: module.serve_examples.get_concrete_function(),
            serving.QUERY_SIGNATURE: module.user_vectors.get_concrete_function(),
            serving.CATALOGUE_SIGNATURE: module.catalogue.get_concrete_function(),
        },
    )
    return path


def toy_requests(n: int, n_items: int, seed: int) -> dict[str, np.ndarray]:
    """REST-shaped raw user columns; histories mix catalogue ids, repeats, unknown ids and none."""
    rng = np.random.default_rng(seed)
    histories = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            histories.append("")  # a new visitor
        else:
            ids = 1000 + 7 * rng.integers(0, n_items, size=rng.integers(1, TOY_HISTORY + 2))
            if kind == 2:
                ids = np.concatenate([ids[:1], ids[:1], ids])  # repeats
            if kind == 3:
                ids = np.concatenate([[3], ids])  # an id the catalogue lacks
            histories.append(" ".join(str(x) for x in ids))
    return {
        F.VISITOR_ID: rng.integers(0, 10_000, n),
        F.HISTORY: np.array(histories, dtype=object),
        # The toy model reads the history; the profile is a request input it ignores.
        F.PROFILE: np.array(
            [
                " ".join(f"{x}:1:view:1438387000000" for x in dict.fromkeys(h.split()))
                for h in histories
            ],
            dtype=object,
        ),
        F.USER_VIEWS: rng.integers(0, 50, n),
        F.USER_ADDTOCARTS: rng.integers(0, 3, n),
        F.USER_TRANSACTIONS: np.zeros(n, np.int64),
        F.USER_DISTINCT_ITEMS: rng.integers(0, 20, n),
        F.TIMESTAMP: 1_438_387_247_560 + np.arange(n, dtype=np.int64),
        F.USER_LAST_TIMESTAMP: np.full(n, 1_438_387_000_000, np.int64),
    }


def serialized(requests: dict[str, np.ndarray]) -> list[bytes]:
    """The requests as serialized tf.Examples (as the eval split stores them); "" is absent."""
    out = []
    for i in range(len(requests[F.VISITOR_ID])):
        feature = {}
        for name, values in requests.items():
            value = values[i]
            if isinstance(value, str):
                feature[name] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[value.encode()] if value else [])
                )
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        out.append(
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        )
    return out
