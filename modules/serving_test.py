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
    available = serving.align_availability(
        trained.catalogue_ids, items[F.ITEM_ID], items[F.AVAILABLE]
    )
    model_dir = serving.export(
        trained, tft_output, str(root / "model"), top_k=TOP_K, available=available
    )
    return {
        "root": root,
        "model_dir": model_dir,
        "trained": trained,
        "tft_output": tft_output,
        "queries": queries,
        "items": items,
        "available": available,
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
    # {"signature_name": "serving_filtered", "instances": [...]}: each input from the instances.
    body = request["filtered"]
    fn = model.signatures[body["signature_name"]]
    filtered = fn(**{name: tf.constant([inst[name] for inst in body["instances"]], dtype=spec.dtype)
                     for name, spec in fn.structured_input_signature[1].items()})
    loaded = sorted(m.split(".")[0] for m in sys.modules)
    json.dump({
        "filtered_ids": filtered["item_ids"].numpy().tolist(),
        "filtered_scores": filtered["scores"].numpy().tolist(),
        "filtered_inputs": sorted(fn.structured_input_signature[1]),
        "catalogue_available": catalogue["available"].numpy().tolist(),
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
    distinct = list(dict.fromkeys(known))
    profile = [
        f"{distinct[i % len(distinct)]}:{1 + i % 3}:{F.EVENT_TYPES[i % 3]}:1438300000000"
        for i in range(2 * constants.MODEL_PROFILE_LENGTH)
    ]
    profile[3::13] = ["junk"] * len(profile[3::13])
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
        # A profile longer than the model reads (distinct known items, junk and unknown tokens).
        "oversized_profile": {**first, F.PROFILE: " ".join(profile)},
        "oversized_profile_cut": {
            **first,
            F.PROFILE: " ".join(profile[: constants.MODEL_PROFILE_LENGTH]),
        },
        "junk_profile": {**first, F.PROFILE: "x 999999999999:2:view:1 :: 5:a:b:c"},
    }


def _exclusions(exported, n: int) -> list[tuple[str, int]]:
    """(exclude, available_only) of each filtered request, by row: every combination.

    The excluded ids are catalogue items spread over the catalogue, the first row's history
    items (whose repeat bonus would rank them high), the row's own two best items offline (so
    that every exclusion changes the list), an unknown id and a junk token.
    """
    ids = exported["trained"].catalogue_ids
    queries = {name: values[:n] for name, values in exported["queries"].items()}
    offline = O.score_queries(exported["trained"], exported["tft_output"], queries)
    best = ids[np.argsort(-offline, axis=1, kind="stable")[:, :2]]
    history = exported["queries"][F.HISTORY][0].split()[:3]
    spread = [str(i) for i in ids[:: max(1, len(ids) // 7)]]
    cases = []
    for row in range(n):
        exclude = " ".join([*history, *spread, *map(str, best[row]), "999999999999", "x-1"])
        cases.append([(exclude, 0), ("", 1), (exclude, 1), ("", 0)][row % 4])
    return cases


def _filtered_instances(exported, instances: list[dict]) -> list[dict]:
    cases = _exclusions(exported, len(instances))
    return [
        {**inst, serving.EXCLUDE: exclude, serving.AVAILABLE_ONLY: only}
        for inst, (exclude, only) in zip(instances, cases, strict=True)
    ]


@pytest.fixture(scope="module")
def served(exported):
    rows = list(range(min(20, len(exported["queries"][F.ITEM_ID]))))
    instances = _instances(exported["queries"], rows)
    odd = _odd_requests(instances[0], exported["items"][F.ITEM_ID].tolist())
    instances += list(odd.values())
    request = {
        "instances": instances,
        "examples": [x.hex() for x in _serialized(exported["queries"], rows)],
        "filtered": {
            "signature_name": serving.FILTERED_SIGNATURE,
            "instances": _filtered_instances(exported, instances[: len(rows)]),
        },
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
    # The profile likewise: its first MODEL_PROFILE_LENGTH tokens.
    assert ids["oversized_profile"] == ids["oversized_profile_cut"]


def test_history_whitespace_does_not_matter(served):
    _, response = served
    ids = response["odd_item_ids"]
    assert ids["extra_spaces"] == ids["single_spaces"]


def test_filtered_signature_takes_the_request_columns_and_the_exclusions(served, exported):
    _, response = served
    assert response["filtered_inputs"] == sorted(serving.FILTERED_REQUEST_COLUMNS)
    assert response["filtered_inputs"] == sorted(
        [*serving.REQUEST_COLUMNS, serving.EXCLUDE, serving.AVAILABLE_ONLY]
    )
    # The catalogue's availability, stored in catalogue row order.
    assert response["catalogue_available"] == exported["available"].tolist()


def test_filtered_lists_are_the_offline_lists_of_the_eligible_items(served, exported):
    """No excluded or (when asked) unavailable item; K items; the offline order of the rest."""
    rows, response = served
    queries = {name: values[rows] for name, values in exported["queries"].items()}
    offline = O.score_queries(exported["trained"], exported["tft_output"], queries)
    ids = exported["trained"].catalogue_ids
    available = exported["available"]
    got_ids, got_scores = np.array(response["filtered_ids"]), np.array(response["filtered_scores"])
    assert got_ids.shape == (len(rows), TOP_K)
    changed = 0  # requests whose unfiltered list held a dropped item
    for b, (exclude, only) in enumerate(_exclusions(exported, len(rows))):
        dropped = {int(t) for t in exclude.split() if t.isdigit()}
        eligible = ~np.isin(ids, list(dropped))
        if only:
            eligible &= available != serving.NOT_AVAILABLE
        scores = np.where(eligible, offline[b], -np.inf)
        best = np.argsort(-scores, kind="stable")[:TOP_K]
        assert eligible.sum() >= TOP_K  # the tiny catalogue has enough: no padding
        np.testing.assert_array_equal(got_ids[b], ids[best])
        np.testing.assert_allclose(got_scores[b], scores[best], rtol=1e-4, atol=1e-4)
        assert not dropped & set(got_ids[b].tolist())
        if only:
            row_of = {int(i): r for r, i in enumerate(ids)}
            assert all(available[row_of[i]] != serving.NOT_AVAILABLE for i in got_ids[b])
        if not exclude and not only:
            assert got_ids[b].tolist() == response["item_ids"][b]
        changed += got_ids[b].tolist() != response["item_ids"][b]
    # The filters did bite (the tiny catalogue has unavailable items among the top ones).
    assert (available == serving.NOT_AVAILABLE).any() and changed >= len(rows) // 2


def test_excluded_rows_by_hand():
    catalogue = tf.constant([3, 10, 11, 40], tf.int64)
    rows = serving.excluded_rows(
        tf.constant(["11 3", "", " 40  junk 7 -3 10 99999999999999999999 ", "10 10"]), catalogue
    )
    # 11 -> row 2, 3 -> row 0; junk, 7 (not in the catalogue), -3 and an overflowing number: -1.
    assert rows.numpy().tolist() == [
        [2, 0, -1, -1, -1, -1],
        [-1] * 6,
        [3, -1, -1, -1, 1, -1],
        [1, 1, -1, -1, -1, -1],
    ]


def test_eligible_mask_and_rows_agree_by_hand():
    available = tf.constant([1, 0, -1, 0], tf.int64)  # row 1 and 3 unavailable, row 2 unknown
    excluded = tf.constant([[2, -1], [-1, -1], [3, 3]], tf.int64)
    only = tf.constant([False, True, True])
    mask = serving.eligible_mask(excluded, available, only).numpy()
    # Request 0: row 2 excluded, unavailable kept; 1: unavailable rows dropped, unknown kept;
    # 2: both, row 3 twice.
    assert mask.tolist() == [
        [True, True, False, True],
        [True, False, True, False],
        [True, False, True, False],
    ]
    candidates = tf.constant([[0, 1, 2, 3, -1], [3, 2, 1, 0, -1], [-1, 3, 0, 2, 1]], tf.int64)
    by_row = serving.eligible_rows(candidates, excluded, available, only).numpy()
    expected = np.take_along_axis(mask, np.maximum(candidates.numpy(), 0), axis=1)
    np.testing.assert_array_equal(by_row, expected & (candidates.numpy() >= 0))


def test_filtered_top_k_pads_when_too_few_items_are_eligible():
    scores = tf.constant([[0.5, 2.0, 1.0, 2.0]])
    eligible = tf.constant([[True, True, False, True]])
    ids, best = serving.filtered_top_k(scores, eligible, tf.constant([5, 6, 7, 8], tf.int64), 4)
    # Equal scores 2.0: the lower row (id 6) first; row 2 (id 7) is not eligible: a -1 slot.
    assert ids.numpy().tolist() == [[6, 8, 5, -1]]
    assert best.numpy().tolist() == [[2.0, 2.0, 0.5, -np.inf]]


def test_align_availability_by_hand():
    catalogue = np.array([2, 5, 9, 12], np.int64)
    # items.csv order; 12 is missing from the columns, 77 is not a catalogue item.
    out = serving.align_availability(catalogue, np.array([9, 2, 77, 5]), np.array([0, 1, 1, -1]))
    assert out.tolist() == [1, -1, 0, -1]
    assert serving.align_availability(catalogue, np.array([2]), None).tolist() == [-1] * 4
