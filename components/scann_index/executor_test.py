"""The ScannIndex executor on a toy brute-force model and a tiny Examples artifact."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tfx import types  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402
from tfx.utils import path_utils  # noqa: E402

from components.scann_index import executor, index  # noqa: E402
from components.scann_index import serving as scann_serving  # noqa: E402
from components.scann_index.component import AnnMetrics, ScannIndex  # noqa: E402
from components.scann_index.serving_test import (  # noqa: E402
    serialized,
    toy_requests,
    write_toy_brute_force,
)
from modules import features as F  # noqa: E402
from modules import serving  # noqa: E402

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
    metrics = AnnMetrics()
    metrics.uri = str(tmp_path / "ann")

    executor.Executor().Do(
        {"model": [model], "examples": [examples]},
        {"scann_model": [scann_model], "index_metrics": [metrics]},
        {
            "target_recall": 0.95,
            "k": 50,
            "exclude_seen": 0,
            "train_split": F.TRAIN_SPLIT,
            "eval_split": F.EVAL_SPLIT,
        },
    )

    ann = executor.read_metrics(metrics.uri)
    assert set(ann) >= {
        "recall_vs_exact@50",
        "scann_queries_per_s",
        "exact_queries_per_s",
        "single_query_scann_per_s",
        "single_query_exact_per_s",
        "config",
        "curve",
        "meets_target",
        "build_s",
        "two_tower_scann",
    }
    # 600 items: a small catalogue, scored exactly inside ScaNN.
    assert ann["config"] == index.exact_config()
    assert ann["recall_vs_exact@50"] == 1.0 and ann["meets_target"] is True
    assert ann["served_recall_vs_brute_force@50"] == 1.0
    assert ann["n_queries"] == 120 and ann["n_items"] == N_ITEMS
    assert all(ann[key] > 0 for key in ("scann_queries_per_s", "exact_queries_per_s"))
    assert set(ann["two_tower_scann"]) == set(metrics.metric_names())
    # The exact index serves the brute-force lists, so its Recall@50 is the brute-force model's:
    # the share of eval targets in the toy model's top 50 (its eval signature returns more).
    bf = tf.saved_model.load(path_utils.serving_model_dir(model.uri))
    records = tf.constant(_split(120, seed=2))
    lists = bf.signatures[serving.EVAL_SIGNATURE](examples=records)["classes"].numpy()[:, :50]
    targets = tf.io.parse_example(records, {F.ITEM_ID: tf.io.FixedLenFeature([], tf.int64)})
    hits = (lists == targets[F.ITEM_ID].numpy()[:, None]).any(axis=1).mean()
    assert abs(ann["two_tower_scann"]["recall@50"] - hits) < 1e-9

    assert metrics.get_int_custom_property("meets_target") == 1
    assert metrics.get_float_custom_property("recall_vs_exact_at_50") == 1.0
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
    assert component.exec_properties["k"] == 50
    assert component.exec_properties["exclude_seen"] == 1
    # KFP v2 compiles custom artifact types only without declared properties.
    assert not getattr(AnnMetrics, "PROPERTIES", None)
