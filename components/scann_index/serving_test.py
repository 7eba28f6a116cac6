"""The ScaNN serving SavedModel against the brute-force one it is built from.

The brute-force model here is a toy with exactly the contract of ``modules.serving`` (the four
signatures, their names, dtypes and shapes, the repeat bonus of history items) but a trivial user
tower, so the tests take seconds, not the minute a trained model takes. ``write_toy_brute_force``
is shared with ``executor_test``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.scann_index import index  # noqa: E402
from components.scann_index import serving as scann_serving  # noqa: E402
from modules import features as F  # noqa: E402
from modules import serving  # noqa: E402

TOY_K = 10
TOY_HISTORY = 5
TOY_VISITORS = 97


class ToyBruteForce(tf.Module):
    """modules.serving's signatures over random vectors; query = a visitor embedding."""

    def __init__(self, n_items: int, dim: int, seed: int):
        super().__init__(name="toy_brute_force")
        rng = np.random.default_rng(seed)
        self.item_ids = tf.Variable(1000 + 7 * np.arange(n_items, dtype=np.int64), trainable=False)
        self.vectors = tf.Variable(rng.normal(size=(n_items, dim)).astype(np.float32))
        self.visitors = tf.Variable(rng.normal(size=(TOY_VISITORS, dim)).astype(np.float32))
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
        valid = rows >= 0
        batch_row = tf.broadcast_to(tf.range(tf.shape(rows, tf.int64)[0])[:, None], tf.shape(rows))
        indices = tf.stack([tf.boolean_mask(batch_row, valid), tf.boolean_mask(rows, valid)], 1)
        scores = tf.tensor_scatter_nd_add(scores, indices, tf.boolean_mask(bonus, valid))
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


def write_toy_brute_force(path: str, n_items: int = 600, dim: int = 9, seed: int = 0) -> str:
    """Saves a toy brute-force serving model with modules.serving's four signatures."""
    module = ToyBruteForce(n_items, dim, seed)
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


def _call(model, requests):
    signature = model.signatures[serving.SERVING_SIGNATURE]
    inputs = {
        name: tf.constant(values.tolist(), dtype=spec.dtype)
        for name, values in requests.items()
        for spec in [signature.structured_input_signature[1][name]]
    }
    out = signature(**inputs)
    return out[serving.OUTPUT_ITEM_IDS].numpy(), out[serving.OUTPUT_SCORES].numpy()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("scann_serving")
    bf_dir = write_toy_brute_force(str(root / "brute_force"), n_items=600, dim=9, seed=0)
    exact_dir = scann_serving.export_scann_model(bf_dir, str(root / "exact"), index.exact_config())
    tree = index.tree_ah_config(20, 4, 100)
    tree_dir = scann_serving.export_scann_model(bf_dir, str(root / "tree"), tree)
    return {
        "root": root,
        "bf_dir": bf_dir,
        "brute_force": tf.saved_model.load(bf_dir),
        "exact_dir": exact_dir,
        "tree": tree,
        "tree_dir": tree_dir,
        "requests": toy_requests(64, 600, seed=1),
    }


def test_same_signatures_as_the_brute_force_model(toy):
    scann_model = scann_serving.load(toy["exact_dir"])
    for name in (serving.SERVING_SIGNATURE, serving.EVAL_SIGNATURE):
        mine, theirs = scann_model.signatures[name], toy["brute_force"].signatures[name]
        assert mine.structured_input_signature == theirs.structured_input_signature
        assert mine.structured_outputs == theirs.structured_outputs
    assert set(scann_model.signatures) == set(toy["brute_force"].signatures)


def test_exact_index_serves_the_brute_force_lists(toy):
    # One leaf, exact scoring: the index is the oracle, so the served lists (history bonus,
    # repeats, unknown ids and new visitors included) are the brute-force model's.
    scann_model = scann_serving.load(toy["exact_dir"])
    ids, scores = _call(scann_model, toy["requests"])
    expected_ids, expected_scores = _call(toy["brute_force"], toy["requests"])
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    # History items do reach the lists (the bonus path is exercised, not just the index).
    history_ids = {int(x) for h in toy["requests"][F.HISTORY] for x in h.split()}
    assert history_ids & set(ids.ravel().tolist())

    records = tf.constant(serialized(toy["requests"]))
    got = scann_model.signatures[serving.EVAL_SIGNATURE](examples=records)
    want = toy["brute_force"].signatures[serving.EVAL_SIGNATURE](examples=records)
    np.testing.assert_array_equal(
        got[serving.OUTPUT_CLASSES].numpy(), want[serving.OUTPUT_CLASSES].numpy()
    )


def test_save_load_round_trip_returns_the_same_lists(toy):
    # The in-memory module (before saving) and the SavedModel (saved with the Scann namespace
    # whitelisted, loaded back) give equal ids and scores for an approximate (tree + AH) index.
    module = scann_serving.ScannServingModule(
        scann_serving.load_brute_force(toy["bf_dir"]), toy["tree"]
    )
    requests = {
        name: tf.constant(values.tolist(), dtype=module._request_spec[name].dtype)
        for name, values in toy["requests"].items()
    }
    before = module.serve(requests)
    after_ids, after_scores = _call(scann_serving.load(toy["tree_dir"]), toy["requests"])
    np.testing.assert_array_equal(before[serving.OUTPUT_ITEM_IDS].numpy(), after_ids)
    np.testing.assert_allclose(before[serving.OUTPUT_SCORES].numpy(), after_scores, rtol=1e-6)
    # And it is an index over the brute-force model's vectors: most of the exact list comes back.
    expected_ids, _ = _call(toy["brute_force"], toy["requests"])
    assert index.recall_vs_exact(after_ids, expected_ids) > 0.5


def test_served_scores_are_exact_even_from_a_quantised_index(toy):
    # AH scores are approximate; the served scores are re-computed exactly, so every returned
    # (item, score) pair is the brute-force score of that item.
    ids, scores = _call(scann_serving.load(toy["tree_dir"]), toy["requests"])
    bf = toy["brute_force"]
    vectors = bf.signatures[serving.CATALOGUE_SIGNATURE]()["item_vectors"].numpy()
    signature = bf.signatures[serving.QUERY_SIGNATURE]
    out = signature(
        **{
            name: tf.constant(values.tolist(), dtype=spec.dtype)
            for name, values in toy["requests"].items()
            for spec in [signature.structured_input_signature[1][name]]
        }
    )
    query = out["query"].numpy()
    rows = (ids - 1000) // 7
    bonus = np.zeros_like(scores)
    history, repeat = out["history_rows"].numpy(), out["repeat_bonus"].numpy()
    for b in range(len(ids)):
        for n in range(history.shape[1]):
            bonus[b] += np.where(rows[b] == history[b, n], repeat[b, n], 0.0)
    expected = np.einsum("bd,bkd->bk", query, vectors[rows]) + bonus
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


# A client process with TensorFlow and the ScaNN ops only (what the ScaNN-enabled TF Serving image
# has): nothing of this project, tf.Transform, TFRS or TFX.
_CLIENT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from scann.scann_ops.py import scann_ops  # registers the Scann>... ops
    model = tf.saved_model.load(sys.argv[1])
    serve = model.signatures["serving_default"]
    request = json.load(open(sys.argv[2]))
    inputs = {name: tf.constant(request[name], dtype=spec.dtype)
              for name, spec in serve.structured_input_signature[1].items()}
    out = serve(**inputs)
    loaded = sorted({m.split(".")[0] for m in sys.modules})
    json.dump({"item_ids": out["item_ids"].numpy().tolist(),
               "foreign": [m for m in loaded if m in (
                   "tensorflow_transform", "tensorflow_recommenders", "tfx", "modules",
                   "components")]}, open(sys.argv[3], "w"))
    """
)


def test_serves_in_a_process_with_only_tensorflow_and_the_scann_ops(toy):
    root = toy["root"]
    request = {name: values.tolist() for name, values in toy["requests"].items()}
    (root / "request.json").write_text(json.dumps(request))
    (root / "client.py").write_text(_CLIENT)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "client.py", toy["tree_dir"], "request.json", "response.json"],
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        cwd=str(root),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    response = json.loads((root / "response.json").read_text())
    assert response["foreign"] == []
    expected, _ = _call(scann_serving.load(toy["tree_dir"]), toy["requests"])
    np.testing.assert_array_equal(np.array(response["item_ids"]), expected)


def test_merge_candidates_by_hand():
    # Items (rows) 0..4 on a line: vector[r] = [r]; query [1]: dot score = r.
    vectors = tf.constant([[0.0], [1.0], [2.0], [3.0], [4.0]])
    query = tf.constant([[1.0]])
    # The index returned rows 4, 3, 2 and a padded (invalid) slot.
    ann_rows = tf.constant([[4, 3, 2, 0]], tf.int64)
    ann_valid = tf.constant([[True, True, True, False]])
    # History: row 1 twice (bonus 5 at its first position, 0 at the repeat), row 3 (bonus 0.5),
    # no item (-1).
    history = tf.constant([[1, 1, 3, -1]], tf.int64)
    bonus = tf.constant([[5.0, 0.0, 0.5, 9.0]])
    rows, scores = scann_serving.merge_candidates(
        query, vectors, ann_rows, ann_valid, history, bonus, k=4
    )
    # Scores: row 1 = 1 + 5 = 6; row 4 = 4; row 3 = 3 + 0.5 = 3.5 (once, not twice); row 2 = 2.
    assert rows.numpy().tolist() == [[1, 4, 3, 2]]
    np.testing.assert_allclose(scores.numpy(), [[6.0, 4.0, 3.5, 2.0]])

    # Equal scores go to the lower row whatever the order the index returned them in.
    tied = tf.constant([[1.0], [1.0], [1.0]])
    rows, _ = scann_serving.merge_candidates(
        query,
        tied,
        tf.constant([[2, 0, 1]], tf.int64),
        tf.ones([1, 3], tf.bool),
        tf.constant([[-1]], tf.int64),
        tf.zeros([1, 1]),
        k=2,
    )
    assert rows.numpy().tolist() == [[0, 1]]


def test_missing_signature_is_named(tmp_path):
    class Bare(tf.Module):
        @tf.function(input_signature=[])
        def catalogue(self):
            return {"item_ids": tf.constant([1], tf.int64)}

    bare = Bare()
    tf.saved_model.save(bare, str(tmp_path), signatures={"catalogue": bare.catalogue})
    with pytest.raises(ValueError, match="no signature .*serving_default"):
        scann_serving.load_brute_force(str(tmp_path))
