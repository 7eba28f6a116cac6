"""The Baselines executor on a tiny Examples artifact: artifact plumbing and hand-checked metrics."""

from __future__ import annotations

import json
import os

import tensorflow as tf
from tfx.types import standard_artifacts

from components import artifacts
from components.artifacts import BaselineMetrics
from components.baselines import baselines, executor
from components.baselines.component import Baselines
from modules import features as F

# Train: visitor 1 saw items 10 then 20; visitor 2 saw 10; visitor 3 saw 30 twice.
TRAIN = [(1, 10, 1000), (1, 20, 2000), (2, 10, 1500), (3, 30, 1200), (3, 30, 1300)]
# Eval queries: visitor 1 -> 20 (in its history), visitor 2 -> 20 (popular with its neighbour),
# visitor 3 -> 99 (never seen in train: a miss for every model).
EVAL = [(1, 20, 5000), (2, 20, 5100), (3, 99, 5200)]


def _write_split(root: str, split: str, rows) -> None:
    os.makedirs(os.path.join(root, f"Split-{split}"))
    path = os.path.join(root, f"Split-{split}", "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for visitor, item, ts in rows:
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        F.VISITOR_ID: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[visitor])
                        ),
                        F.ITEM_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[item])),
                        F.TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(value=[ts])),
                        F.EVENT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"view"])),
                    }
                )
            )
            writer.write(example.SerializeToString())


def test_executor_writes_metrics_and_best_baseline(tmp_path):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.splits = [F.TRAIN_SPLIT, F.EVAL_SPLIT]
    _write_split(examples.uri, F.TRAIN_SPLIT, TRAIN)
    _write_split(examples.uri, F.EVAL_SPLIT, EVAL)
    output = BaselineMetrics()
    output.uri = str(tmp_path / "metrics")

    executor.Executor().Do(
        {"examples": [examples]},
        {"baseline_metrics": [output]},
        {
            "train_split": F.TRAIN_SPLIT,
            "eval_split": F.EVAL_SPLIT,
            "exclude_seen": 0,
            "baselines": json.dumps(list(baselines.BASELINE_NAMES)),
        },
    )

    result = artifacts.read_baselines(output.uri)
    assert set(result["models"]) == set(baselines.BASELINE_NAMES)
    # Recently viewed: visitor 1's list is [20, 10] (hit), visitor 2's is [10] (miss), 3: miss.
    assert abs(result["models"]["recently_viewed"]["recall@50"] - 1 / 3) < 1e-9
    # Most popular by train events: 10 (2), 30 (2), 20 (1): 20 is in every top 50 -> 2 of 3 hits.
    assert abs(result["models"]["most_popular"]["recall@50"] - 2 / 3) < 1e-9
    assert output.get_string_custom_property("best_baseline") == result["best_baseline"]
    assert output.get_float_custom_property("best_recall_at_50") == result["best_recall@50"]
    assert result["best_recall@50"] == max(m["recall@50"] for m in result["models"].values())
    # Slices and intervals for every baseline; per-query ranks kept for paired comparisons.
    popular = result["models"]["most_popular"]
    assert popular["slices"]["target_cold"] == {"queries": 1, "recall@10": 0.0, "recall@50": 0.0}
    assert popular["slices"]["event_view"]["queries"] == 3
    assert popular["recall@50_ci"][0] <= 2 / 3 <= popular["recall@50_ci"][1]
    visitors, targets, ranks = artifacts.read_per_query(output.uri)
    assert visitors.tolist() == [1, 2, 3] and targets.tolist() == [20, 20, 99]
    assert set(ranks) == set(baselines.BASELINE_NAMES) and ranks["most_popular"][2] == 0


def test_component_declares_its_channels():
    examples = standard_artifacts.Examples
    from tfx import types

    component = Baselines(
        examples=types.Channel(type=examples), baselines=["most_popular"], exclude_seen=True
    )
    assert component.outputs["baseline_metrics"].type is BaselineMetrics
    assert component.exec_properties["exclude_seen"] == 1
    assert json.loads(component.exec_properties["baselines"]) == ["most_popular"]
