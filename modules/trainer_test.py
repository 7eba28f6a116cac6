"""``run_fn`` inside TFX: CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer.

A LocalDagRunner DAG on the generator's tiny preset (about a minute): the Trainer gets the raw
ExampleGen artifact (splits train, eval, items) and the transform graph, as ``modules.trainer``
documents, and writes a serving model whose signatures answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.export import export as E
from data.generator import generate
from modules import columns as C
from modules import features as F
from modules import serving, trainer
from pipeline import local_runner

pytestmark = pytest.mark.slow

# A low query floor so that the tiny log's validation window (69 queries) is used: the validated
# fit, the boost calibration and the refit all run through the TFX Trainer.
SETTINGS = {
    "epochs": 2,
    "embedding_dim": 16,
    "hidden_dim": 32,
    "batch_size": 256,
    "top_k": 5,
    "validation_min_queries": 20,
}


def _pipeline(export_dir: Path, root: Path):
    from tfx import v1 as tfx
    from tfx.proto import example_gen_pb2, transform_pb2

    splits = [
        example_gen_pb2.Input.Split(name=split, pattern=f"{split}/*.csv")
        for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT, F.ITEMS_SPLIT)
    ]
    example_gen = tfx.components.CsvExampleGen(
        input_base=str(export_dir), input_config=example_gen_pb2.Input(splits=splits)
    )
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.SchemaGen(
        statistics=statistics.outputs["statistics"],
        infer_feature_shape=True,
        exclude_splits=[F.EVAL_SPLIT, F.ITEMS_SPLIT],
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema.outputs["schema"],
        preprocessing_fn="modules.transform.preprocessing_fn",
        splits_config=transform_pb2.SplitsConfig(analyze=[F.TRAIN_SPLIT]),
        materialize=False,
        custom_config=SETTINGS,
    )
    train = tfx.components.Trainer(
        run_fn="modules.trainer.run_fn",
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(splits=[F.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[F.EVAL_SPLIT]),
        custom_config=SETTINGS,
    )
    return tfx.dsl.Pipeline(
        pipeline_name="trainer_test",
        pipeline_root=str(root / "root"),
        components=[example_gen, statistics, schema, transform, train],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")
        ),
        beam_pipeline_args=local_runner.beam_args(),
        enable_cache=False,
    )


@pytest.fixture(scope="module")
def trained_by_tfx(tmp_path_factory):
    from tfx import v1 as tfx

    root = tmp_path_factory.mktemp("tfx")
    generate(root / "raw", preset="tiny", seed=0)
    E.export(root / "raw", root / "export")
    tfx.orchestration.LocalDagRunner().run(_pipeline(root / "export", root))
    models = sorted((root / "root" / "Trainer" / "model").glob("*/Format-Serving"))
    runs = sorted((root / "root" / "Trainer" / "model_run").glob("*"))
    assert len(models) == 1 and len(runs) == 1
    return root, models[0], runs[0]


def test_trainer_exports_a_model_that_ranks_catalogue_items(trained_by_tfx):
    root, model_dir, _ = trained_by_tfx
    queries = C.read_csv_columns(str(root / "export" / F.EVAL_SPLIT / F.INTERACTIONS_FILE))
    items = C.read_csv_columns(str(root / "export" / F.ITEMS_SPLIT / F.ITEMS_FILE))
    model = tf.saved_model.load(str(model_dir))
    request = {
        name: tf.constant(queries[name][:3], dtype=dtype)
        for name, dtype in serving.REQUEST_COLUMNS.items()
    }
    out = model.signatures[serving.SERVING_SIGNATURE](**request)
    ids = out[serving.OUTPUT_ITEM_IDS].numpy()
    assert ids.shape == (3, SETTINGS["top_k"])
    assert set(ids.ravel()) <= set(items[F.ITEM_ID].tolist())
    catalogue = model.signatures[serving.CATALOGUE_SIGNATURE]()
    # The whole catalogue (the items split), cold items included.
    assert catalogue["item_ids"].numpy().tolist() == sorted(items[F.ITEM_ID].tolist())


def test_trainer_writes_its_summary(trained_by_tfx):
    _, _, run_dir = trained_by_tfx
    summary = json.loads((run_dir / trainer.SUMMARY_FILE).read_text())
    assert summary["settings"]["epochs"] == 2 and summary["n_examples"] > 0
    assert np.isfinite(summary["losses"]).all()
    # The epoch count and the boost were chosen on the window, then the model was refit.
    validation = summary["validation"]
    assert validation["window_start_ms"] < validation["window_end_ms"]
    assert validation["window_end"].startswith("2015-07-31")  # the last train event, in ISO
    assert 20 <= validation["window_queries"] < 100
    assert validation["validated"] is True and validation["refit"] is True
    assert 1 <= validation["epochs"] <= 2 and len(summary["losses"]) == validation["epochs"]
    assert str(float(validation["repeat_boost"])) in validation["boost_recalls"]


def test_split_patterns_swap_the_split_folder():
    assert trainer.split_patterns(["/a/Examples/7/Split-train/*"], "items") == [
        "/a/Examples/7/Split-items/*"
    ]
    with pytest.raises(ValueError, match="not an Examples split pattern"):
        trainer.split_patterns(["/a/train/*"], "items")
