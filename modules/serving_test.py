"""The serving SavedModel: loaded in a process that imports only TensorFlow, REST-shaped requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from components.export import export as E
from data.generator import generate
from modules import columns as C
from modules import (
    constants,
    serving,
    testing,
    training,
)
from modules import features as F
from modules import offline as O

TOP_K = 10
SETTINGS = {"epochs": 2, "embedding_dim": 16, "hidden_dim": 32, "batch_size": 256}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    generate(root / "raw", preset="tiny", seed=0)
    E.export(root / "raw", root / "export")
    read = lambda split, name: C.read_csv_columns(str(root / "export" / split / name))  # noqa: E731
    train = read(F.TRAIN_SPLIT, F.INTERACTIONS_FILE)
    queries = read(F.EVAL_SPLIT, F.INTERACTIONS_FILE)
    items = read(F.ITEMS_SPLIT, F.ITEMS_FILE)
    tft_output = testing.analyze(train, str(root / "transform"))
    trained = training.train(train, items, tft_output, SETTINGS)
    model_dir = serving.export(trained, tft_output, str(root / "model"), top_k=TOP_K)
    return {
        "root": root,
        "model_dir": model_dir,
        "trained": trained,
        "tft_output": tft_output,
        "queries": queries,
        "items": items,
    }


def _instances(queries: dict, rows) -> list[dict]:
    """Eval rows as TF Serving REST instances: one JSON object per query, raw user columns."""
    return [{name: _json(queries[name][i]) for name in serving.REQUEST_COLUMNS} for i in rows]


def _json(value):
    return value if isinstance(value, str) else int(value)


def _serialized(queries: dict, rows) -> list[bytes]:
    out = []
    for i in rows:
        feature = {}
        for name, values in queries.items():
            value = values[i]
            if isinstance(value, str):
                feature[name] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[value.encode()] if value else [])
                )
            elif isinstance(value, float | np.floating):
                feature[name] = tf.train.Feature(
                    float_list=tf.train.FloatList(value=[] if np.isnan(value) else [value])
                )
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        out.append(
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        )
    return out


# The client process: imports TensorFlow and nothing of this project, tf.Transform or TFRS, and
# feeds each signature input the column of the REST instances, as TF Serving's REST API does.
_CLIENT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    request = json.load(open(sys.argv[2]))
    model = tf.saved_model.load(sys.argv[1])
    serve = model.signatures["serving_default"]
    instances = request["instances"]
    inputs = {name: tf.constant([inst[name] for inst in instances], dtype=spec.dtype)
              for name, spec in serve.structured_input_signature[1].items()}
    out = serve(**inputs)
    examples = tf.constant([bytes.fromhex(h) for h in request["examples"]])
    evaluated = model.signatures["serve_tf_examples"](examples=examples)
    catalogue = model.signatures["catalogue"]()
    loaded = sorted(m.split(".")[0] for m in sys.modules)
    json.dump({
        "item_ids": out["item_ids"].numpy().tolist(),
        "scores": out["scores"].numpy().tolist(),
        "classes": evaluated["classes"].numpy().tolist(),
        "eval_scores": evaluated["scores"].numpy().tolist(),
        "catalogue_ids": catalogue["item_ids"].numpy().tolist(),
        "inputs": sorted(inputs),
        "foreign": sorted({m for m in loaded if m in (
            "tensorflow_transform", "tensorflow_recommenders", "tfx", "tf_keras", "modules")}),
    }, open(sys.argv[3], "w"))
    """
)


def _odd_requests(first: dict, catalogue_ids: list[int]) -> dict[str, dict]:
    """Requests a live shop sends that no eval row looks like, by name."""
    known = [str(i) for i in catalogue_ids]
    # 20x the history the model reads, known ids with repeats, unknown ids and junk tokens.
    oversized = [known[(7 * i) % len(known)] for i in range(20 * constants.MODEL_HISTORY_LENGTH)]
    oversized[1::9] = ["999999999999"] * len(oversized[1::9])
    oversized[4::11] = ["not-an-id"] * len(oversized[4::11])
    spaced = first[F.HISTORY].split()[:5]
    return {
        # A new visitor: no history, no counters.
        "new_visitor": {**first, F.HISTORY: "", F.USER_LAST_TIMESTAMP: 0, F.USER_VIEWS: 0},
        "unknown_visitor": {**first, F.VISITOR_ID: 9_876_543_210},
        "oversized": {**first, F.HISTORY: " ".join(oversized)},
        # What the model reads of it: the most recent MODEL_HISTORY_LENGTH items.
        "oversized_cut": {
            **first,
            F.HISTORY: " ".join(oversized[: constants.MODEL_HISTORY_LENGTH]),
        },
        "only_unknown_items": {**first, F.HISTORY: "999999999999 888888888888 -5 x"},
        "extra_spaces": {**first, F.HISTORY: "  " + "   ".join(spaced) + " \t "},
        "single_spaces": {**first, F.HISTORY: " ".join(spaced)},
    }


@pytest.fixture(scope="module")
def served(exported):
    rows = list(range(min(20, len(exported["queries"][F.ITEM_ID]))))
    instances = _instances(exported["queries"], rows)
    odd = _odd_requests(instances[0], exported["items"][F.ITEM_ID].tolist())
    instances += list(odd.values())
    request = {
        "instances": instances,
        "examples": [x.hex() for x in _serialized(exported["queries"], rows)],
    }
    root = exported["root"]
    (root / "request.json").write_text(json.dumps(request))
    (root / "client.py").write_text(_CLIENT)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [
            sys.executable,
            str(root / "client.py"),
            exported["model_dir"],
            str(root / "request.json"),
            str(root / "response.json"),
        ],
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        cwd=str(root),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    response = json.loads((root / "response.json").read_text())
    # Each odd request's answer by name; the rows' answers stay first.
    for key in ("item_ids", "scores"):
        answers = response[key][len(rows) :]
        response[key] = response[key][: len(rows)]
        response[f"odd_{key}"] = dict(zip(odd, answers, strict=True))
    return rows, response


def test_loads_with_tensorflow_only_and_takes_raw_user_columns(served):
    _, response = served
    assert response["foreign"] == []
    assert response["inputs"] == sorted(serving.REQUEST_COLUMNS)


def test_returns_catalogue_item_ids_best_first(served, exported):
    rows, response = served
    ids = np.array(response["item_ids"])
    scores = np.array(response["scores"])
    assert ids.shape == (len(rows), TOP_K)
    assert set(ids.ravel()) <= set(exported["items"][F.ITEM_ID].tolist())
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert all(len(set(row)) == TOP_K for row in ids.tolist())  # no item twice


def test_serving_scores_equal_the_offline_evaluation(served, exported):
    rows, response = served
    queries = {name: values[rows] for name, values in exported["queries"].items()}
    offline = O.score_queries(exported["trained"], exported["tft_output"], queries)
    best = np.argsort(-offline, axis=1, kind="stable")[:, :TOP_K]
    expected_ids = exported["trained"].catalogue_ids[best]
    expected_scores = np.take_along_axis(offline, best, axis=1)
    np.testing.assert_allclose(np.array(response["scores"]), expected_scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.array(response["item_ids"]), expected_ids)


def test_evaluator_signature_reads_serialized_examples(served):
    rows, response = served
    classes = np.array(response["classes"])
    assert classes.shape == (len(rows), serving.EVAL_TOP_K)
    # The same ranking as serving_default, only longer.
    np.testing.assert_array_equal(classes[:, :TOP_K], np.array(response["item_ids"]))


def test_catalogue_signature_lists_every_item_once(served, exported):
    _, response = served
    assert response["catalogue_ids"] == sorted(exported["items"][F.ITEM_ID].tolist())


def test_odd_requests_get_full_lists_of_catalogue_items(served, exported):
    """Unknown visitors, unknown or junk history tokens, oversized histories: answers, no errors."""
    _, response = served
    catalogue = set(exported["items"][F.ITEM_ID].tolist())
    for name, ids in response["odd_item_ids"].items():
        scores = response["odd_scores"][name]
        assert len(ids) == TOP_K and len(set(ids)) == TOP_K, name
        assert set(ids) <= catalogue, name
        assert np.isfinite(scores).all() and scores == sorted(scores, reverse=True), name


def test_an_oversized_history_is_read_as_its_most_recent_items(served):
    _, response = served
    ids, scores = response["odd_item_ids"], response["odd_scores"]
    assert ids["oversized"] == ids["oversized_cut"]
    np.testing.assert_allclose(scores["oversized"], scores["oversized_cut"], rtol=1e-5)


def test_history_whitespace_does_not_matter(served):
    _, response = served
    ids = response["odd_item_ids"]
    assert ids["extra_spaces"] == ids["single_spaces"]
