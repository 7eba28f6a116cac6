"""The Tuner's ``tuner_fn`` through TFX's own Tuner executor, on the generator's tiny preset.

The executor gets what a pipeline gives it (a raw Examples artifact with splits train, eval and
items as gzipped tf.Examples, Transform's graph, the custom_config) and writes the
``best_hyperparameters`` artifact that the Trainer's ``run_fn`` then reads.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.export import export
from data.generator import generate
from modules import columns as C
from modules import constants, testing, trainer, training, tuner
from modules import features as F

# Small and quick; epochs and hidden_dim are not searched, so fixing them changes no trial.
# A low query floor: the tiny log's 7-day window (69 queries) is used, so trials compare.
SETTINGS = {"epochs": 2, "hidden_dim": 16, "batch_size": 128, "validation_min_queries": 20}


def _feature(values: np.ndarray, i: int) -> tf.train.Feature | None:
    value = values[i]
    if values.dtype == object:
        return (
            tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            if value
            else None
        )
    if values.dtype.kind == "f":
        if math.isnan(value):
            return None
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _write_split(columns: dict[str, np.ndarray], folder: Path) -> None:
    """The columns as ExampleGen writes a split: gzipped TFRecords of tf.Example."""
    folder.mkdir(parents=True)
    n = len(next(iter(columns.values())))
    with tf.io.TFRecordWriter(str(folder / "data_tfrecord-00000-of-00001.gz"), "GZIP") as writer:
        for i in range(n):
            features = {name: _feature(values, i) for name, values in columns.items()}
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={k: v for k, v in features.items() if v is not None}
                )
            )
            writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Tiny data as the Tuner's input artifacts: raw Examples (train, eval, items), the graph."""
    from tfx.types import artifact_utils, standard_artifacts

    root = tmp_path_factory.mktemp("tuner")
    generate(root / "raw", preset="tiny", seed=0)
    export.export(root / "raw", root / "export")
    uri = root / "Examples"
    for split, name in (
        (F.TRAIN_SPLIT, F.INTERACTIONS_FILE),
        (F.EVAL_SPLIT, F.INTERACTIONS_FILE),
        (F.ITEMS_SPLIT, F.ITEMS_FILE),
    ):
        columns = C.read_csv_columns(str(root / "export" / split / name))
        _write_split(columns, uri / f"Split-{split}")
        if split == F.TRAIN_SPLIT:
            testing.analyze(columns, str(root / "transform"))
    examples = standard_artifacts.Examples()
    examples.uri = str(uri)
    examples.split_names = artifact_utils.encode_split_names(
        [F.TRAIN_SPLIT, F.EVAL_SPLIT, F.ITEMS_SPLIT]
    )
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(root / "transform")
    return root, {"examples": [examples], "transform_graph": [graph]}


def _tune(root: Path, inputs: dict, config: dict, name: str) -> tuple[dict, list[dict]]:
    """Runs TFX's Tuner executor; returns the best_hyperparameters JSON and tuner_results."""
    from tfx.components.tuner import executor
    from tfx.dsl.components.base import base_executor
    from tfx.types import standard_artifacts

    best, results = standard_artifacts.HyperParameters(), standard_artifacts.TunerResults()
    for artifact, folder in ((best, "best"), (results, "results")):
        artifact.uri = str(root / name / folder)
        Path(artifact.uri).mkdir(parents=True)
    properties = {
        "tuner_fn": "modules.tuner.tuner_fn",
        "train_args": json.dumps({"splits": [F.TRAIN_SPLIT]}),
        "eval_args": json.dumps({"splits": [F.EVAL_SPLIT]}),
        "custom_config": json.dumps(config),
    }
    context = base_executor.BaseExecutor.Context(tmp_dir=str(root / name / "tmp"), unique_id="1")
    executor.Executor(context).Do(
        inputs, {"best_hyperparameters": [best], "tuner_results": [results]}, properties
    )
    (best_file,) = Path(best.uri).iterdir()  # the Trainer requires exactly one file
    (results_file,) = Path(results.uri).iterdir()
    return json.loads(best_file.read_text()), json.loads(results_file.read_text())


def _defaults() -> dict:
    """The searched settings' defaults (those training knows; history_items, ... as they land)."""
    known = training.settings()
    return {k: known[k] for k in constants.TUNE_SPACE if k in known}


@pytest.fixture(scope="module")
def tuned(artifacts):
    root, inputs = artifacts
    return _tune(root, inputs, {**SETTINGS, tuner.TRIALS_KEY: 2}, "two_trials")


def test_two_trials_first_the_defaults_best_on_the_window(tuned):
    config, results = tuned
    log = config[constants.TUNE_LOG_KEY]
    assert log["objective"] == "validation-window Recall@50"
    trials = log["trials"]
    assert [t["trial"] for t in trials] == [1, 2]
    # Trial 1 is the defaults; trial 2 something else from the space.
    assert trials[0]["hyperparameters"] == _defaults() == log["defaults"]
    assert trials[1]["hyperparameters"] != trials[0]["hyperparameters"]
    for trial in trials:
        assert set(trial["hyperparameters"]) == set(log["space"])
        for key, value in trial["hyperparameters"].items():
            assert value in log["space"][key]
        assert 0.0 <= trial["validation_recall@50"] <= 1.0  # the window was used
        assert trial["seconds"] > 0 and 1 <= trial["epochs"] <= SETTINGS["epochs"]
    # The best trial is the higher on the window (the earlier on a tie), and its values are what
    # the Trainer gets.
    recalls = [t["validation_recall@50"] for t in trials]
    assert log["best_trial"] == int(np.argmax(recalls)) + 1
    assert config["values"] == log["best"] == trials[log["best_trial"] - 1]["hyperparameters"]
    # Fixed settings are not searched; TFX's own tuner_results agree with the log.
    assert not set(SETTINGS) & set(log["space"])
    assert sorted(r["score"] for r in results) == sorted(recalls)


def test_run_fn_trains_the_tuned_settings(artifacts, tuned, tmp_path, caplog):
    from tfx.components.trainer import fn_args_utils

    root, inputs = artifacts
    config, _ = tuned
    caplog.set_level(logging.INFO, logger="modules.trainer")
    caplog.set_level(logging.INFO, logger="retailrec.progress")
    fn_args = fn_args_utils.FnArgs(
        train_files=[str(root / "Examples" / f"Split-{F.TRAIN_SPLIT}" / "*")],
        transform_graph_path=str(root / "transform"),
        serving_model_dir=str(tmp_path / "model" / "Format-Serving"),
        model_run_dir=str(tmp_path / "run"),
        custom_config={**SETTINGS, "top_k": 5},
        hyperparameters=config,  # as TFX's Trainer executor reads the artifact's file
    )
    trainer.run_fn(fn_args)
    # In one process (LocalDagRunner) the Trainer takes the Tuner's read of the same files.
    assert "Trainer took the read handed over" in caplog.text
    # ... and the preparation (examples, window, catalogue) of the last trial when it built the
    # same examples (the search's only example setting is horizon_days).
    last = config[constants.TUNE_LOG_KEY]["trials"][-1]["hyperparameters"]
    same = last["horizon_days"] == config["values"]["horizon_days"]
    assert same == ("took the examples and catalogue prepared" in caplog.text)
    summary = json.loads((tmp_path / "run" / trainer.SUMMARY_FILE).read_text())
    assert summary["hyperparameters"] == config["values"]
    for key, value in config["values"].items():
        assert summary["settings"][key] == value
    assert summary["settings"]["epochs"] <= SETTINGS["epochs"] and summary["settings"]["top_k"] == 5
    # The best trial was the Trainer's validated fit: its choices are reused, not made again.
    best = config[constants.TUNE_LOG_KEY]["best_choices"]
    assert summary["validation"]["chosen_by_tuner"] and not summary["validation"]["validated"]
    assert summary["validation"]["best_epoch"] == best["best_epoch"]
    assert summary["validation"]["repeat_boost"] == best["repeat_boost"]


def test_the_time_budget_stops_the_search(artifacts, monkeypatch):
    root, inputs = artifacts
    monkeypatch.setattr(constants, "TUNE_SECONDS_PER_TRIAL", 0.001)
    best, _ = _tune(root, inputs, {**SETTINGS, tuner.TRIALS_KEY: 3}, "budget")
    (trial,) = best[constants.TUNE_LOG_KEY]["trials"]  # the defaults, then out of time
    assert trial["hyperparameters"] == _defaults() and trial["validation_recall@50"] is not None


def test_no_validation_window_objective_zero_warned_and_search_stops(artifacts, caplog):
    root, inputs = artifacts
    config = {**SETTINGS, "validation_min_queries": 10_000, tuner.TRIALS_KEY: 3}
    with caplog.at_level(logging.WARNING, logger=tuner.__name__):
        best, results = _tune(root, inputs, config, "no_window")
    log = best[constants.TUNE_LOG_KEY]
    (trial,) = log["trials"]  # nothing to compare settings on: one trial, the defaults
    assert trial["hyperparameters"] == _defaults() == best["values"]
    assert trial["validation_recall@50"] is None
    assert [r["score"] for r in results] == [0.0]
    assert "no validation window" in caplog.text


def test_explicit_settings_are_fixed_and_win_over_remembered_ones():
    space = tuner.search_space({"learning_rate": 0.01, "epochs": 3})
    names = {hp.name for hp in space.space}
    assert "learning_rate" not in names and "embedding_dim" in names
    for hp in space.space:  # the default is a choice, and the default choice
        assert hp.default == training.settings()[hp.name] and hp.default in hp.values
    # A HyperParameters artifact's JSON: KerasTuner's config (+ the log), or plain values.
    remembered = {"space": [], "values": {"learning_rate": 0.006, "embedding_dim": 32}}
    remembered[constants.TUNE_LOG_KEY] = {"trials": []}
    assert trainer.merged_config({"epochs": 3}, remembered) == {
        "epochs": 3,
        "learning_rate": 0.006,
        "embedding_dim": 32,
    }
    # `--set learning_rate=0.01` with an earlier run's values (--no-tune): the explicit one wins.
    merged = trainer.merged_config({"learning_rate": 0.01}, {"learning_rate": 0.006})
    assert merged == {"learning_rate": 0.01}
    assert trainer.merged_config({"epochs": 3}, None) == {"epochs": 3}
    assert trainer.tuned_values(None) is None


def test_fewer_than_one_trial_is_refused():
    class Args:
        custom_config = {tuner.TRIALS_KEY: 0}

    with pytest.raises(ValueError, match="tune_trials=0"):
        tuner.tuner_fn(Args())


def test_the_same_seed_draws_the_same_settings_in_every_run():
    """KerasTuner draws a random seed for seed 0 (the default tune_seed): the oracle must not."""
    draws = {
        seed: [tuner.make_oracle(tuner.search_space(), 3, seed)._random_values() for _ in range(2)]
        for seed in (0, 1)
    }
    assert draws[0][0] == draws[0][1] and draws[1][0] == draws[1][1]
    assert draws[0][0] != draws[1][0]


def test_a_read_is_handed_over_once_and_only_for_the_same_files(artifacts):
    from tfx.components.trainer import fn_args_utils

    root, _ = artifacts
    fn_args = fn_args_utils.FnArgs(
        train_files=[str(root / "Examples" / f"Split-{F.TRAIN_SPLIT}" / "*")],
        transform_graph_path=str(root / "transform"),
    )
    first = trainer.read_inputs(fn_args, component="Tuner")
    assert not first.train_columns[F.ITEM_ID].flags.writeable  # nobody changes what is handed on
    trainer.hand_over(first)
    # TFX's Trainer executor reloads the module of its run_fn before calling it.
    importlib.reload(trainer)
    taken = trainer.read_inputs(fn_args)
    assert taken.train_columns is first.train_columns
    assert taken.item_columns is first.item_columns
    assert taken.checks[1]["component"] == "Trainer"
    # Taken once: the next reader reads the files again, and finds the same rows.
    again = trainer.read_inputs(fn_args)
    assert again.train_columns is not first.train_columns
    for name, values in first.train_columns.items():
        floats = values.dtype.kind == "f"
        assert np.array_equal(again.train_columns[name], values, equal_nan=floats), name
    # Files that changed since (another size or time) are read again.
    trainer.hand_over(again)
    shard = next((root / "Examples" / f"Split-{F.ITEMS_SPLIT}").iterdir())
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        fresh = trainer.read_inputs(fn_args)
    finally:
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fresh.train_columns is not again.train_columns
