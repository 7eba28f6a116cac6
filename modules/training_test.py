"""Tests of `training.train`: the validation window's choices, the refit, the fallback on tiny data."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from components.export import export
from data.generator import generate
from modules import columns as C
from modules import examples as E
from modules import features as F
from modules import testing, training
from modules import transform as T
from modules import validation as V

SETTINGS = {"epochs": 3, "embedding_dim": 8, "hidden_dim": 16, "batch_size": 128}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    generate(root / "raw", preset="tiny", seed=0)
    export.export(root / "raw", root / "export")
    read = lambda split, name: C.read_csv_columns(str(root / "export" / split / name))  # noqa: E731
    train = read(F.TRAIN_SPLIT, F.INTERACTIONS_FILE)
    items = read(F.ITEMS_SPLIT, F.ITEMS_FILE)
    return train, items, testing.analyze(train, str(root / "transform"))


def test_epochs_and_boost_are_chosen_on_the_window_then_refit(tiny):
    train, items, tft_output = tiny
    # The tiny log's 7-day window holds a few dozen queries: lower the floor to validate on them.
    trained = training.train(train, items, tft_output, {**SETTINGS, "validation_min_queries": 10})
    v = trained.validation
    assert v["validated"] and v["refit"]
    assert v["window_end_ms"] == int(train[F.TIMESTAMP].max())
    assert v["window_start_ms"] == v["window_end_ms"] - 7 * 86_400_000
    assert 10 <= v["queries"] == v["window_queries"]
    assert 0 < v["fit_examples"] < trained.n_examples
    assert 1 <= len(trained.validation_recalls) <= SETTINGS["epochs"]
    best = int(np.argmax(trained.validation_recalls)) + 1
    assert trained.best_epoch == v["best_epoch"] == best
    # The refit runs the chosen number of epochs on all examples and keeps the chosen boost.
    assert len(trained.history) == trained.best_epoch
    assert trained.repeat_boost in V.REPEAT_BOOSTS
    assert set(trained.boost_recalls) == set(V.REPEAT_BOOSTS)
    assert trained.validation_recall == trained.boost_recalls[trained.repeat_boost]
    # The personal weight is chosen on the window before the boost, and the refit keeps it.
    assert trained.personal_weight == v["personal_weight"] in V.PERSONAL_WEIGHTS
    assert set(v["personal_recalls"]) == {str(w) for w in V.PERSONAL_WEIGHTS}
    assert float(trained.model.user_tower.personal_weight.numpy()) == trained.personal_weight
    assert trained.validation_recall == max(trained.boost_recalls.values())


def test_validation_queries_come_ordered_by_profile_length(tiny):
    # Ordered so that queries scored together have similar profile widths (`grid_hits`); each
    # query keeps its own features and target.
    train, _, tft_output = tiny
    window = E.validation_window(E.canonical_order(train), 7.0)
    layer, spec = tft_output.transform_features_layer(), tft_output.raw_feature_spec()
    queries = V.prepare_queries(layer, spec, window.queries, 10_000, 0)
    lengths = (queries.features[T.PROFILE_INDEX] > 0).sum(axis=1)
    assert queries.size == window.n_queries and np.all(np.diff(lengths) >= 0)
    assert lengths[0] < lengths[-1]  # the tiny log's window has profiles of several lengths
    plain = C.transform_columns(layer, C.user_columns_of(window.queries), spec)
    order = np.argsort((plain[T.PROFILE_INDEX] > 0).sum(axis=1), kind="stable")
    for name in T.USER_OUTPUTS:
        np.testing.assert_array_equal(queries.features[name], plain[name][order])
    np.testing.assert_array_equal(queries.targets, window.queries[F.ITEM_ID][order])


def test_without_refit_the_validated_model_is_returned(tiny):
    train, items, tft_output = tiny
    cfg = {**SETTINGS, "validation_min_queries": 10, "refit": False, "calibrate_repeat": False}
    trained = training.train(train, items, tft_output, cfg)
    v = trained.validation
    assert v["validated"] and not v["refit"]
    assert trained.history == v["fit_losses"]  # the validated fit's losses, all its epochs
    assert trained.repeat_boost == 0.0 and trained.boost_recalls == {}
    assert trained.validation_recall == max(trained.validation_recalls)


def test_epochs_and_boost_chosen_by_the_tuner_skip_the_validated_fit(tiny, caplog):
    train, items, tft_output = tiny
    cfg = {**SETTINGS, "validation_min_queries": 10, "refit": False}
    earlier = training.choices(training.train(train, items, tft_output, cfg))
    chosen = {**earlier, "best_epoch": 2, "repeat_boost": 4.0, "personal_weight": 0.5}
    with caplog.at_level(logging.WARNING, logger=training.__name__):
        trained = training.train(train, items, tft_output, {**cfg, "chosen": chosen})
    v = trained.validation
    assert v["chosen_by_tuner"] and not v["validated"] and "recalls" not in v
    assert len(trained.history) == trained.best_epoch == 2  # one fit, on all examples
    assert trained.repeat_boost == 4.0 and trained.personal_weight == 0.5
    assert float(trained.model.user_tower.personal_weight.numpy()) == 0.5
    assert trained.validation_recall is None and "without validation" not in caplog.text
    # Choices made on another window are not reused.
    other = {**chosen, "window_end_ms": chosen["window_end_ms"] - 1}
    assert training.train(train, items, tft_output, {**cfg, "chosen": other}).validation[
        "validated"
    ]
    # Nor choices made with other settings (a refit, on or off, does not count).
    assert training.train(
        train, items, tft_output, {**cfg, "refit": True, "chosen": chosen}
    ).validation["chosen_by_tuner"]
    assert training.train(
        train, items, tft_output, {**cfg, "learning_rate": 0.01, "chosen": chosen}
    ).validation["validated"]


def test_a_kept_preparation_is_taken_once_and_only_by_the_same_inputs(tiny, monkeypatch):
    """The Tuner's trial keeps its examples, window and catalogue; the next `train` of the very
    same column objects and example settings (the Trainer, in one process) takes them."""
    train, items, tft_output = tiny
    cfg = {**SETTINGS, "epochs": 1, "validation_min_queries": 10, "refit": False}
    training._KEPT.clear()
    first = training.train(train, items, tft_output, cfg, keep=True)
    prepared = []
    real = E.pseudo_cutoff_examples
    monkeypatch.setattr(
        E, "pseudo_cutoff_examples", lambda *a, **k: prepared.append(1) or real(*a, **k)
    )
    second = training.train(train, items, tft_output, {**cfg, "learning_rate": 0.01})
    assert prepared == [] and not training._KEPT  # taken, and nothing kept any more
    assert second.n_examples == first.n_examples
    assert second.validation["fit_examples"] == first.validation["fit_examples"]
    assert second.validation["window_queries"] == first.validation["window_queries"]
    np.testing.assert_array_equal(second.catalogue_ids, first.catalogue_ids)
    training.train(train, items, tft_output, cfg, keep=True)  # nothing kept: prepared again
    assert prepared == [1]
    assert not next(iter(training._KEPT["prepared"][2].raw.values())).flags.writeable
    other = {**cfg, "horizon_days": 3.0}  # other examples: prepared again, and kept
    training.train(train, items, tft_output, other, keep=True)
    assert prepared == [1, 1]
    training.train(dict(train), items, tft_output, other)  # other objects (maybe other rows)
    assert prepared == [1, 1, 1] and not training._KEPT


def test_too_small_a_window_falls_back_to_fixed_epochs(tiny, caplog):
    train, items, tft_output = tiny
    with caplog.at_level(logging.WARNING, logger=training.__name__):
        trained = training.train(train, items, tft_output, {**SETTINGS, "epochs": 2})
    assert trained.validation["window_queries"] < training.settings()["validation_min_queries"]
    assert not trained.validation["validated"] and not trained.validation["refit"]
    assert len(trained.history) == trained.best_epoch == 2
    assert trained.repeat_boost == 0.0 and trained.validation_recall is None
    assert "without validation" in caplog.text


def test_a_visitor_embedding_needs_the_transform_that_built_its_vocabulary(tiny):
    train, items, tft_output = tiny  # analysed with the defaults: no visitor vocabulary
    with pytest.raises(ValueError, match="no visitor vocabulary"):
        training.train(train, items, tft_output, {**SETTINGS, "use_visitor": True})


def test_no_examples_is_an_error():
    train = C.normalise_columns(
        {
            F.VISITOR_ID: [1],
            F.ITEM_ID: [10],
            F.EVENT: ["view"],
            F.TIMESTAMP: [1_433_154_600_000],
            F.HISTORY: [""],
        }
    )
    with pytest.raises(ValueError, match="no training example"):
        training.train(train, train, tft_output=_NoTransform(), custom_config={})


class _NoTransform:
    """Stands in for a TFTransformOutput: `train` must fail before it reads one."""


def test_batches_are_those_of_shuffling_the_examples_themselves():
    """`_batches` shuffles positions and gathers rows: every epoch's batches must be those of
    ``Dataset.from_tensor_slices(examples).shuffle(...)`` with the same seeds, ragged rows too."""
    rng = np.random.default_rng(0)
    n = 1000
    lengths = rng.integers(0, 6, n)
    examples = {
        T.ITEM_INDEX: rng.integers(0, 50, n),
        T.ITEM_NUMERIC: rng.normal(size=(n, 3)).astype(np.float32),
        T.PROFILE_INDEX: tf.RaggedTensor.from_row_lengths(
            rng.integers(1, 50, lengths.sum()).astype(np.int32), lengths
        ),
    }
    reference = (
        tf.data.Dataset.from_tensor_slices(examples)
        .shuffle(n, seed=3, reshuffle_each_iteration=True)
        .batch(64, drop_remainder=True)
    )
    epochs = []
    for dataset in (reference, training._batches(examples, 64, seed=3)):
        tf.keras.utils.set_random_seed(3)
        epochs.append([[batch for batch in dataset] for _ in range(3)])
    (want, got) = epochs
    assert len(got[0]) == n // 64
    for want_epoch, got_epoch in zip(want, got, strict=True):
        for a, b in zip(want_epoch, got_epoch, strict=True):
            for name in examples:
                x, y = a[name], b[name]
                if isinstance(x, tf.RaggedTensor):
                    x, y = x.to_tensor(), y.to_tensor()
                assert x.dtype == y.dtype and np.array_equal(x.numpy(), y.numpy()), name
    assert not np.array_equal(got[0][0][T.ITEM_INDEX], got[1][0][T.ITEM_INDEX])  # reshuffled
    # No autotuning thread to wait for when an epoch's iterator goes (`columns.without_autotune`).
    assert training._batches(examples, 64, seed=3).options().autotune.enabled is False
