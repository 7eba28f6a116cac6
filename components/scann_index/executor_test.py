"""The ScannIndex executor on a toy brute-force model and a tiny Examples artifact."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components import artifacts
from components.scann_index import executor, index
from components.scann_index import serving as scann_serving
from components.scann_index.component import AnnMetrics, ScannIndex
from components.scann_index.testing import serialized, toy_requests, write_toy_brute_force
from modules import constants, metrics, serving
from modules import features as F

N_ITEMS = 600


def _write_split(root: str, split: str, records: list[bytes]) -> None:
    os.makedirs(os.path.join(root, f"Split-{split}"))
    path = os.path.join(root, f"Split-{split}", "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)


def _split(n: int, seed: int) -> list[bytes]:
    """Rows with the raw user columns and a target item id (every 3rd one the catalogue's first)."""
    requests = toy_requests(n, N_ITEMS, seed)
    rng = np.random.default_rng(seed)
    requests[F.ITEM_ID] = 1000 + 7 * rng.integers(0, N_ITEMS, n)
    requests[F.ITEM_ID][::3] = 1000
    requests[F.EVENT] = np.array(F.EVENT_TYPES, dtype=object)[np.arange(n) % len(F.EVENT_TYPES)]
    return serialized(requests)


def test_executor_writes_ann_json_and_a_pushable_model(tmp_path):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "trainer_model")
    write_toy_brute_force(path_utils.serving_model_dir(model.uri), n_items=N_ITEMS)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.splits = [F.TRAIN_SPLIT, F.EVAL_SPLIT]
    _write_split(examples.uri, F.TRAIN_SPLIT, _split(300, seed=1))
    _write_split(examples.uri, F.EVAL_SPLIT, _split(120, seed=2))
    scann_model = standard_artifacts.Model()
    scann_model.uri = str(tmp_path / "scann_model")
    ann_metrics = AnnMetrics()
    ann_metrics.uri = str(tmp_path / "ann")

    executor.Executor().Do(
        {"model": [model], "examples": [examples]},
        {"scann_model": [scann_model], "index_metrics": [ann_metrics]},
        {
            "target_recall": 0.95,
            "exclude_seen": 0,
            "train_split": F.TRAIN_SPLIT,
            "eval_split": F.EVAL_SPLIT,
        },
    )

    ann = artifacts.read_ann(ann_metrics.uri)
    # The keys the RetrievalEvaluator and the reports read.
    assert artifacts.FIDELITY_KEY == "recall_vs_exact@50"
    assert set(ann) >= {
        artifacts.FIDELITY_KEY,
        "k",
        "target_recall",
        "config_name",
        "cost",
        "scann_queries_per_s",
        "exact_queries_per_s",
        "single_query_scann_per_s",
        "single_query_exact_per_s",
        "config",
        "curve",
        "meets_target",
        "build_s",
        artifacts.SCANN_MODEL_ENTRY,
    }
    assert ann["k"] == constants.SCANN_RECALL_K and ann["target_recall"] == 0.95
    # 600 items: a small catalogue, scored exactly inside ScaNN.
    assert ann["config"] == index.exact_config()
    assert ann[artifacts.FIDELITY_KEY] == 1.0 and ann["meets_target"] is True
    assert ann["cost"] == ann["exact_cost"] == N_ITEMS
    assert ann["served_recall_vs_brute_force@50"] == 1.0
    assert ann["n_queries"] == 120 and ann["n_items"] == N_ITEMS
    assert all(ann[key] > 0 for key in ("scann_queries_per_s", "exact_queries_per_s"))
    assert set(ann[artifacts.SCANN_MODEL_ENTRY]) >= set(metrics.metric_names())
    # The exact index serves the brute-force lists, so its Recall@50 is the brute-force model's:
    # the share of eval targets in the toy model's top 50 (its eval signature returns more).
    bf = tf.saved_model.load(path_utils.serving_model_dir(model.uri))
    records = tf.constant(_split(120, seed=2))
    lists = bf.signatures[serving.EVAL_SIGNATURE](examples=records)["classes"].numpy()[:, :50]
    targets = tf.io.parse_example(records, {F.ITEM_ID: tf.io.FixedLenFeature([], tf.int64)})
    hits = (lists == targets[F.ITEM_ID].numpy()[:, None]).any(axis=1).mean()
    assert abs(ann[artifacts.SCANN_MODEL_ENTRY]["recall@50"] - hits) < 1e-9

    assert ann_metrics.get_int_custom_property("meets_target") == 1
    assert ann_metrics.get_float_custom_property("recall_vs_exact_at_50") == 1.0
    # The Pusher reads the serving model from the Model artifact's standard place.
    served = scann_serving.load(path_utils.serving_model_path(scann_model.uri))
    assert serving.SERVING_SIGNATURE in served.signatures
    assert scann_model.get_int_custom_property("meets_target") == 1


def test_component_declares_its_channels():
    component = ScannIndex(
        model=types.Channel(type=standard_artifacts.Model),
        examples=types.Channel(type=standard_artifacts.Examples),
        target_recall=0.9,
        exclude_seen=True,
    )
    assert component.outputs["scann_model"].type is standard_artifacts.Model
    assert component.outputs["index_metrics"].type is AnnMetrics
    assert component.exec_properties["target_recall"] == 0.9
    # The recall cut is constants.SCANN_RECALL_K, not a parameter: the fidelity key is one.
    assert "k" not in component.exec_properties
    assert component.exec_properties["exclude_seen"] == 1
    # KFP v2 compiles custom artifact types only without declared properties.
    assert not getattr(AnnMetrics, "PROPERTIES", None)


def _variables(model_dir: str) -> dict[str, bytes]:
    folder = os.path.join(model_dir, "variables")
    return {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}


def test_two_builds_on_the_same_inputs_give_the_same_index(tmp_path):
    # A catalogue a tree suits (clustered), large enough for the default grid of trees.
    bf_dir = write_toy_brute_force(str(tmp_path / "bf"), n_items=2500, dim=9, clusters=40)
    eval_root = str(tmp_path / "examples")
    _write_split(eval_root, F.EVAL_SPLIT, serialized(toy_requests(400, 2500, seed=3)))
    files = [
        os.path.join(eval_root, f"Split-{F.EVAL_SPLIT}", name)
        for name in os.listdir(os.path.join(eval_root, f"Split-{F.EVAL_SPLIT}"))
    ]
    timing = dict(repeats=1, single_queries=5, min_seconds=0.01)
    first = executor.build_index(bf_dir, files, str(tmp_path / "one"), **timing)
    # With another number of training and search threads.
    second = executor.build_index(bf_dir, files, str(tmp_path / "two"), threads=1, **timing)

    assert first["config"] == second["config"] and first["config"] != index.exact_config()
    assert first["curve"] == second["curve"]
    assert first[artifacts.FIDELITY_KEY] == second[artifacts.FIDELITY_KEY] >= 0.95
    # The index in the SavedModel is the same, byte for byte (its saved_model.pb names traced
    # functions with a process-wide counter, so only a fresh process writes the same one).
    assert _variables(str(tmp_path / "one")) == _variables(str(tmp_path / "two"))
