"""The ScaNN serving SavedModel against the brute-force one it is built from.

The brute-force model is ``testing.ToyBruteForce``: ``modules.serving``'s contract over random
vectors with a trivial user tower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from components.scann_index import index
from components.scann_index import serving as scann_serving
from components.scann_index.testing import serialized, toy_requests, write_toy_brute_force
from modules import features as F
from modules import serving


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

    # A history item at two positions gets both bonuses (as tf.tensor_scatter_nd_add and
    # ranking.add_repeat_bonus add them), and is listed once, also when the index found it.
    rows, scores = scann_serving.merge_candidates(
        query,
        vectors,
        tf.constant([[2, 4]], tf.int64),
        tf.ones([1, 2], tf.bool),
        tf.constant([[2, 2, 0]], tf.int64),
        tf.constant([[1.0, 1.5, 0.25]]),
        k=4,
    )
    # row 2 = 2 + 1 + 1.5 = 4.5; row 4 = 4; row 0 = 0 + 0.25; then a padded slot.
    assert rows.numpy().tolist() == [[2, 4, 0, -1]]
    np.testing.assert_allclose(scores.numpy(), [[4.5, 4.0, 0.25, -np.inf]])


def test_missing_signature_is_named(tmp_path):
    class Bare(tf.Module):
        @tf.function(input_signature=[])
        def catalogue(self):
            return {"item_ids": tf.constant([1], tf.int64)}

    bare = Bare()
    tf.saved_model.save(bare, str(tmp_path), signatures={"catalogue": bare.catalogue})
    with pytest.raises(ValueError, match="no signature .*serving_default"):
        scann_serving.load_brute_force(str(tmp_path))
