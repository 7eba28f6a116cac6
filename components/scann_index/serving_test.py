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
from components.scann_index.testing import (
    TOY_K,
    ToyBruteForce,
    serialized,
    toy_requests,
    write_toy_brute_force,
)
from modules import features as F
from modules import serving


def _call(model, requests, name=serving.SERVING_SIGNATURE):
    signature = model.signatures[name]
    inputs = {
        name: tf.constant(values.tolist(), dtype=spec.dtype)
        for name, values in requests.items()
        for spec in [signature.structured_input_signature[1][name]]
    }
    out = signature(**inputs)
    return out[serving.OUTPUT_ITEM_IDS].numpy(), out[serving.OUTPUT_SCORES].numpy()


class _ToyFiltered(ToyBruteForce):
    """The toy with modules.serving's filtered contract: serving_filtered, catalogue availability."""

    def __init__(self, n_items: int, dim: int, seed: int):
        super().__init__(n_items, dim, seed)
        # About 40% unavailable, some unknown (-1: counts as available).
        draw = np.random.default_rng(seed + 7).choice([1, 0, -1], n_items, p=[0.5, 0.4, 0.1])
        self.available = tf.Variable(draw.astype(np.int64), trainable=False)

    @tf.function(
        input_signature=[
            {
                n: tf.TensorSpec([None], d, name=n)
                for n, d in serving.FILTERED_REQUEST_COLUMNS.items()
            }
        ]
    )
    def serve_filtered(self, request):
        query, rows, bonus = self._query(request)
        scores = serving.add_repeat_bonus(
            tf.matmul(query, self.vectors, transpose_b=True), rows, bonus
        )
        excluded = serving.excluded_rows(request[serving.EXCLUDE], self.item_ids)
        only = tf.not_equal(request[serving.AVAILABLE_ONLY], 0)
        eligible = serving.eligible_mask(excluded, self.available, only)
        ids, scores = serving.filtered_top_k(scores, eligible, self.item_ids, self._k)
        return {serving.OUTPUT_ITEM_IDS: ids, serving.OUTPUT_SCORES: scores}

    @tf.function(input_signature=[])
    def catalogue(self):
        return {
            serving.CATALOGUE_IDS: tf.identity(self.item_ids),
            serving.CATALOGUE_VECTORS: tf.identity(self.vectors),
            serving.CATALOGUE_AVAILABLE: tf.identity(self.available),
        }


def _write_toy_filtered(path: str, n_items: int, seed: int) -> str:
    module = _ToyFiltered(n_items, 9, seed)
    signatures = {
        serving.SERVING_SIGNATURE: module.serve,
        serving.FILTERED_SIGNATURE: module.serve_filtered,
        serving.EVAL_SIGNATURE: module.serve_examples,
        serving.QUERY_SIGNATURE: module.user_vectors,
        serving.CATALOGUE_SIGNATURE: module.catalogue,
    }
    tf.saved_model.save(
        module, path, signatures={k: f.get_concrete_function() for k, f in signatures.items()}
    )
    return path


def _filtered_requests(requests: dict, ids: np.ndarray, top: np.ndarray, seed: int) -> dict:
    """``requests`` with every (exclude, available_only) kind, round robin by request.

    Kinds: nothing; the unfiltered list's top 3 (history items among them) + the history + an
    unknown id + junk; available_only; both; the top 300 of the whole catalogue by the
    unfiltered score (more than the index's first candidates: the search must widen).
    """
    rng = np.random.default_rng(seed)
    excludes, only = [], []
    for b, history in enumerate(requests[F.HISTORY]):
        kind = b % 5
        tokens = []
        if kind in (1, 3):
            tokens = [str(x) for x in top[b, :3]] + history.split() + ["424242", "zz"]
            tokens += [str(x) for x in rng.choice(ids, 5, replace=False)]
        if kind == 4:
            tokens = [str(x) for x in top[b, :300]]
        excludes.append(" ".join(tokens))
        only.append(int(kind in (2, 3, 4)))
    return {
        **requests,
        serving.EXCLUDE: np.array(excludes, dtype=object),
        serving.AVAILABLE_ONLY: np.array(only, np.int64),
    }


def _outputs(model, requests, name):
    signature = model.signatures[name]
    specs = signature.structured_input_signature[1]
    out = signature(
        **{n: tf.constant(requests[n].tolist(), dtype=spec.dtype) for n, spec in specs.items()}
    )
    return {n: v.numpy() for n, v in out.items()}


def _exact_scores(toy: dict, requests: dict) -> np.ndarray:
    """[B, M] the brute-force score of every item: query . vector + summed history bonus."""
    out = _outputs(toy["brute_force"], requests, serving.QUERY_SIGNATURE)
    scores = out["query"] @ toy["vectors"].T
    for b, (rows, bonus) in enumerate(zip(out["history_rows"], out["repeat_bonus"], strict=True)):
        np.add.at(scores[b], rows[rows >= 0], bonus[rows >= 0])
    return scores


@pytest.fixture(scope="module")
def filtered_toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("scann_filtered")
    n_items = 600
    bf_dir = _write_toy_filtered(str(root / "brute_force"), n_items, seed=3)
    brute_force = tf.saved_model.load(bf_dir)
    catalogue = brute_force.signatures[serving.CATALOGUE_SIGNATURE]()
    toy = {
        "root": root,
        "bf_dir": bf_dir,
        "brute_force": brute_force,
        "ids": catalogue[serving.CATALOGUE_IDS].numpy(),
        "available": catalogue[serving.CATALOGUE_AVAILABLE].numpy(),
        "vectors": catalogue[serving.CATALOGUE_VECTORS].numpy(),
    }
    requests = toy_requests(40, n_items, seed=4)
    scores = _exact_scores(toy, requests)
    top = toy["ids"][np.argsort(-scores, axis=1, kind="stable")]
    toy["requests"] = _filtered_requests(requests, toy["ids"], top, seed=5)
    toy["scores"] = scores
    toy["exact_dir"] = scann_serving.export_scann_model(
        bf_dir, str(root / "exact"), index.exact_config()
    )
    # 20 leaves, 2 searched (about 60 items), reorder 40: far fewer than the excluded 300.
    toy["tree_dir"] = scann_serving.export_scann_model(
        bf_dir, str(root / "tree"), index.tree_ah_config(20, 2, 40)
    )
    return toy


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


def test_a_request_gets_the_same_list_alone_as_in_a_batch(toy):
    # The history is cut to the batch's widest and the index asked for K + that width
    # (`trim_history`): alone (a new visitor's request has no history at all) or beside the
    # longest history, a request gets the same list. (An exact index: ScaNN's batched
    # asymmetric-hashing search can differ with the batch's other queries, trimmed or not.)
    scann_model = scann_serving.load(toy["exact_dir"])
    requests = toy["requests"]
    widths = np.array([len(h.split()) for h in requests[F.HISTORY]])
    assert widths.min() == 0 and widths.max() > 1
    batch_ids, batch_scores = _call(scann_model, requests)
    for b in range(len(widths)):
        alone = {name: values[b : b + 1] for name, values in requests.items()}
        ids, scores = _call(scann_model, alone)
        np.testing.assert_array_equal(ids[0], batch_ids[b])
        np.testing.assert_allclose(scores[0], batch_scores[b], rtol=1e-6, atol=1e-6)


def test_trim_history_cuts_after_the_last_filled_position_of_the_batch():
    rows = tf.constant([[4, -1, 7, -1, -1, -1], [-1, 2, -1, -1, -1, -1]], tf.int64)
    bonus = tf.reshape(tf.range(12, dtype=tf.float32), [2, 6])
    cut_rows, cut_bonus, width = scann_serving.trim_history(rows, bonus)
    assert int(width) == 3
    np.testing.assert_array_equal(cut_rows.numpy(), rows.numpy()[:, :3])
    np.testing.assert_array_equal(cut_bonus.numpy(), bonus.numpy()[:, :3])
    # Nothing filled: the least width asked for (at most the history's).
    empty = -tf.ones([2, 6], tf.int64)
    assert int(scann_serving.trim_history(empty, bonus)[2]) == 1
    assert int(scann_serving.trim_history(empty, bonus, least=4)[2]) == 4
    assert int(scann_serving.trim_history(empty, bonus, least=9)[2]) == 6


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
    response = _run_client(root, _CLIENT, toy["tree_dir"])
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


def test_filtered_signature_is_the_brute_force_models(filtered_toy):
    scann_model = scann_serving.load(filtered_toy["exact_dir"])
    bf = filtered_toy["brute_force"]
    assert set(scann_model.signatures) == set(bf.signatures)
    mine, theirs = (m.signatures[serving.FILTERED_SIGNATURE] for m in (scann_model, bf))
    assert mine.structured_input_signature == theirs.structured_input_signature
    assert mine.structured_outputs == theirs.structured_outputs
    # A brute-force model without it (older models, the plain toy): no filtered signature.
    plain = scann_serving.ScannServingModule(
        scann_serving.load_brute_force(write_toy_brute_force(str(filtered_toy["root"] / "plain"))),
        index.exact_config(),
    )
    assert not plain.filtered


def test_exact_index_serves_the_brute_force_filtered_lists(filtered_toy):
    requests = filtered_toy["requests"]
    got = _outputs(
        scann_serving.load(filtered_toy["exact_dir"]), requests, serving.FILTERED_SIGNATURE
    )
    want = _outputs(filtered_toy["brute_force"], requests, serving.FILTERED_SIGNATURE)
    np.testing.assert_array_equal(got[serving.OUTPUT_ITEM_IDS], want[serving.OUTPUT_ITEM_IDS])
    np.testing.assert_allclose(
        got[serving.OUTPUT_SCORES], want[serving.OUTPUT_SCORES], rtol=1e-5, atol=1e-5
    )


def _assert_eligible_full_lists(toy: dict, requests: dict, ids: np.ndarray, scores: np.ndarray):
    """K distinct items per request, none excluded or (if asked) unavailable, exact scores."""
    row_of = {int(i): r for r, i in enumerate(toy["ids"])}
    for b in range(len(ids)):
        dropped = {int(t) for t in requests[serving.EXCLUDE][b].split() if t.isdigit()}
        got = ids[b].tolist()
        assert len(set(got)) == len(got) == TOY_K and min(got) >= 0, b
        assert not dropped & set(got), b
        if requests[serving.AVAILABLE_ONLY][b]:
            assert all(toy["available"][row_of[i]] != serving.NOT_AVAILABLE for i in got), b
        exact = toy["scores"][b, [row_of[i] for i in got]]
        np.testing.assert_allclose(scores[b], exact, rtol=1e-4, atol=1e-4)
        assert (np.diff(scores[b]) <= 1e-6).all(), b


def test_approximate_index_returns_k_eligible_items(filtered_toy):
    # The tree searches 2 of 20 leaves; a request excluding the catalogue's 300 best items (and
    # the unavailable ones) finds no eligible item in them: the search widens until it does.
    requests = filtered_toy["requests"]
    model = scann_serving.load(filtered_toy["tree_dir"])
    got = _outputs(model, requests, serving.FILTERED_SIGNATURE)
    ids, scores = got[serving.OUTPUT_ITEM_IDS], got[serving.OUTPUT_SCORES]
    _assert_eligible_full_lists(filtered_toy, requests, ids, scores)
    # A batch with nothing excluded, nothing asked: serving_default's lists.
    plain = {name: values[::5] for name, values in requests.items()}
    assert not "".join(plain[serving.EXCLUDE]) and not plain[serving.AVAILABLE_ONLY].any()
    np.testing.assert_array_equal(
        _outputs(model, plain, serving.FILTERED_SIGNATURE)[serving.OUTPUT_ITEM_IDS],
        _outputs(model, plain, serving.SERVING_SIGNATURE)[serving.OUTPUT_ITEM_IDS],
    )
    # And the approximate lists are mostly the exact eligible ones.
    exact = _outputs(filtered_toy["brute_force"], requests, serving.FILTERED_SIGNATURE)
    assert index.recall_vs_exact(ids, exact[serving.OUTPUT_ITEM_IDS]) > 0.5


def test_too_few_eligible_items_pad_with_minus_one(filtered_toy):
    # Exclude every item but 3: those 3 come back (best first), then -1 / -inf.
    keep = filtered_toy["ids"][[5, 100, 400]]
    rest = " ".join(str(i) for i in filtered_toy["ids"] if i not in set(keep))
    requests = {name: values[:2] for name, values in filtered_toy["requests"].items()}
    requests[serving.EXCLUDE] = np.array([rest, rest], dtype=object)
    requests[serving.AVAILABLE_ONLY] = np.array([0, 0], np.int64)
    for model_dir in (filtered_toy["tree_dir"], filtered_toy["exact_dir"]):
        got = _outputs(scann_serving.load(model_dir), requests, serving.FILTERED_SIGNATURE)
        ids, scores = got[serving.OUTPUT_ITEM_IDS], got[serving.OUTPUT_SCORES]
        assert ids.shape == (2, TOY_K)
        assert sorted(ids[:, :3].ravel().tolist()) == sorted(keep.tolist() * 2)
        assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


_FILTERED_CLIENT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    from scann.scann_ops.py import scann_ops  # registers the Scann>... ops
    model = tf.saved_model.load(sys.argv[1])
    body = json.load(open(sys.argv[2]))  # a TF Serving REST body
    fn = model.signatures[body["signature_name"]]
    inputs = {name: tf.constant([inst[name] for inst in body["instances"]], dtype=spec.dtype)
              for name, spec in fn.structured_input_signature[1].items()}
    out = fn(**inputs)
    json.dump({"item_ids": out["item_ids"].numpy().tolist(),
               "scores": out["scores"].numpy().tolist(),
               "foreign": sorted({m.split(".")[0] for m in sys.modules} & {
                   "tensorflow_transform", "tensorflow_recommenders", "tfx", "modules",
                   "components"})}, open(sys.argv[3], "w"))
    """
)


def test_filtered_signature_serves_rest_instances_with_only_tensorflow_and_scann(filtered_toy):
    root, requests = filtered_toy["root"], filtered_toy["requests"]
    instances = [
        {
            name: values[b].item() if hasattr(values[b], "item") else values[b]
            for name, values in requests.items()
        }
        for b in range(len(requests[F.VISITOR_ID]))
    ]
    body = {"signature_name": serving.FILTERED_SIGNATURE, "instances": instances}
    (root / "request.json").write_text(json.dumps(body))
    response = _run_client(root, _FILTERED_CLIENT, filtered_toy["tree_dir"])
    assert response["foreign"] == []
    _assert_eligible_full_lists(
        filtered_toy, requests, np.array(response["item_ids"]), np.array(response["scores"])
    )


def test_merge_candidates_drops_what_keep_refuses_before_the_cut():
    # Rows 0..4 with dot score = row; the index found 4, 3, 2; history row 1 with bonus 5.
    vectors = tf.constant([[0.0], [1.0], [2.0], [3.0], [4.0]])
    rows, scores = scann_serving.merge_candidates(
        tf.constant([[1.0]]),
        vectors,
        tf.constant([[4, 3, 2]], tf.int64),
        tf.ones([1, 3], tf.bool),
        tf.constant([[1]], tf.int64),
        tf.constant([[5.0]]),
        k=3,
        keep=lambda r: (r >= 0) & (r != 1) & (r != 4),  # the history item and row 4 excluded
    )
    # Without keep: rows 1 (6.0), 4, 3. With it: 3, 2, then nothing.
    assert rows.numpy().tolist() == [[3, 2, -1]]
    np.testing.assert_allclose(scores.numpy(), [[3.0, 2.0, -np.inf]])


def _run_client(root, client: str, model_dir: str) -> dict:
    """Runs ``client`` (a script) on ``root/request.json`` in a fresh process, returns its answer."""
    (root / "client.py").write_text(client)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "client.py", model_dir, "request.json", "response.json"],
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        cwd=str(root),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / "response.json").read_text())
