"""Training the two-tower model: settings, the validation window's choices, the fit. No TFX imports.

The trainer's ``run_fn`` (TFX) and ``benchmarks/bench_model.py`` (plain CSVs) both call `train`.

`train` builds evaluation-shaped examples (``modules.examples.pseudo_cutoff_examples``) and makes
every choice on the validation window (``modules.examples.validation_window``, DESIGN 5.6): with T
the last train event's timestamp and V = ``validation_days``, the events in (T - V, T] of visitors
seen at or before T - V are the queries, each with its visitor's state at T - V, scored over the
whole catalogue like the evaluation (``modules.validation``). Then:

1. Fit on the examples whose target is at or before T - V (the item popularity columns of the fit
   examples and of the validation catalogue recomputed as of T - V), up to ``epochs`` epochs;
   keep the epoch with the best validation Recall@50 (`validation.BestEpoch`, ``patience``).
2. Calibrate on the window, together, the weight of the personal part of the score (1, 0.5, 0.25
   or 0 times ``u``) and the repeat boost (`validation.calibrate`: every pair of the grid).
3. With ``refit`` (the default), fit a fresh model on all the examples (targets up to T, the export's
   columns) for the chosen number of epochs and add the chosen boost. The last V days hold the
   freshest co-occurrences and the items that are popular at the cutoff, which the evaluation asks
   about first; a model fit without them would be validated but a week stale. The choices carry
   over because the refit differs only by V more days of data. Cost: a second fit (the full-scale
   Trainer's fit roughly doubles). Without ``refit`` the model of step 1 is the result.

With fewer than ``validation_min_queries`` window queries (tiny data) or ``validation_days`` 0 there
is no validation: one fit on all examples for ``epochs`` epochs, boost 0, and a logged warning.

Known differences from the real evaluation: the transform graph (vocabularies, normalisation) was
analysed on all train rows, window included, and the catalogue's item properties are those at the
real cutoff; only the popularity columns are moved back to T - V.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import tensorflow as tf

from modules import catalogue as Cat
from modules import columns as C
from modules import constants, progress
from modules import examples as E
from modules import features as F
from modules import model as M
from modules import optimizer as O
from modules import transform as T
from modules import validation as V

logger = logging.getLogger(__name__)

_DEFAULTS = {
    "embedding_dim": constants.MODEL_EMBEDDING_DIM,
    "encoder": constants.MODEL_ENCODER,
    "use_visitor": constants.MODEL_USE_VISITOR,
    "use_time": constants.MODEL_USE_TIME,
    "hidden_dim": constants.MODEL_HIDDEN_DIM,
    "dropout": constants.MODEL_DROPOUT,
    "epochs": constants.MODEL_EPOCHS,
    "batch_size": constants.MODEL_BATCH_SIZE,
    "learning_rate": constants.MODEL_LEARNING_RATE,
    "optimizer": constants.MODEL_OPTIMIZER,
    "horizon_days": constants.MODEL_HORIZON_DAYS,
    "examples_per_event": constants.MODEL_EXAMPLES_PER_EVENT,
    "negatives": constants.MODEL_NEGATIVES,
    "sequence": constants.MODEL_SEQUENCE,
    "history_items": constants.MODEL_HISTORY_ITEMS,
    "profile_items": constants.MODEL_PROFILE_ITEMS,
    "bias_prior": constants.MODEL_BIAS_PRIOR,
    "history_content": constants.MODEL_HISTORY_CONTENT,
    "validation_days": constants.MODEL_VALIDATION_DAYS,
    "validation_min_queries": constants.MODEL_VALIDATION_MIN_QUERIES,
    "validation_max_queries": constants.MODEL_VALIDATION_MAX_QUERIES,
    "patience": constants.MODEL_PATIENCE,
    "calibrate_repeat": constants.MODEL_CALIBRATE_REPEAT,
    "refit": constants.MODEL_REFIT,
    "chosen": None,
    "seed": constants.MODEL_SEED,
    "top_k": constants.SERVING_TOP_K,
}


# ---------------------------------------------------------------- settings


def settings(custom_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Training settings: ``custom_config`` over the defaults of ``modules.constants``.

    Keys: ``embedding_dim``, ``encoder`` (mean | position | attention | gru), ``use_visitor``,
    ``use_time``, ``hidden_dim``, ``dropout``, ``epochs`` (at most, with validation), ``batch_size``,
    ``learning_rate``, ``optimizer`` (catch_up_adam | adam), ``horizon_days``,
    ``examples_per_event``, ``negatives`` (history | in_batch), ``sequence`` (events | distinct: what the encoder reads), ``history_items`` (items
    the encoder reads, 0: all), ``profile_items`` (profile items the repeat term reads, 0: all),
    ``bias_prior`` (the per-id item bias starts at the log prior, `model.log_prior`),
    ``history_content`` (the encoder reads the history items' item-tower vectors, content
    included, instead of their id embeddings),
    ``validation_days``, ``validation_min_queries``, ``validation_max_queries``,
    ``patience``, ``calibrate_repeat`` (choose the personal weight and the repeat boost on the
    window), ``refit``, ``chosen`` (the ``validation`` summary of an earlier validated fit of the
    same settings, e.g. the Tuner's best trial: when its window and fit examples are this run's,
    there is no validated fit; its ``best_epoch``, ``personal_weight`` and ``repeat_boost`` are
    used and the model is fit on all examples), ``seed``, ``top_k``; unknown keys
    are ignored
    (the same custom_config may carry the transform's keys).
    """
    merged = dict(_DEFAULTS)
    for key, value in (custom_config or {}).items():
        if key in merged:
            merged[key] = value
    return merged


def model_config(cfg: dict[str, Any]) -> M.ModelConfig:
    """The architecture part of `settings`."""
    return M.ModelConfig(
        embedding_dim=int(cfg["embedding_dim"]),
        encoder=str(cfg["encoder"]),
        use_visitor=bool(cfg["use_visitor"]),
        use_time=bool(cfg["use_time"]),
        hidden_dim=int(cfg["hidden_dim"]),
        dropout=float(cfg["dropout"]),
        negatives=str(cfg["negatives"]),
        sequence=str(cfg["sequence"]),
        history_items=int(cfg["history_items"]),
        profile_items=int(cfg["profile_items"]),
        bias_prior=bool(cfg["bias_prior"]),
        history_content=bool(cfg["history_content"]),
        seed=int(cfg["seed"]),
    )


def sizes_from(tft_output: Any) -> M.FeatureSizes:
    """Reads feature domains and widths from a ``TFTransformOutput``."""
    spec = tft_output.transformed_feature_spec()
    buckets = tft_output.num_buckets_for_transformed_feature
    return M.FeatureSizes(
        items=int(buckets(T.ITEM_INDEX)),
        categories=int(buckets(T.CATEGORY_INDEX)),
        text_buckets=int(buckets(T.TEXT_TOKENS)),
        visitors=int(buckets(T.VISITOR_INDEX)),
        item_numeric=int(spec[T.ITEM_NUMERIC].shape[-1]),
        user_numeric=int(spec[T.USER_NUMERIC].shape[-1]),
        category_columns=int(spec[T.CATEGORY_INDEX].shape[-1]),
        history_length=int(spec[T.HISTORY_INDEX].shape[-1]),
        profile_length=int(spec[T.PROFILE_INDEX].shape[-1]),
    )


# ---------------------------------------------------------------- training


@dataclasses.dataclass
class Trained:
    """A trained model with its catalogue, ready to score or export.

    Attributes:
      model: the TFRS model.
      catalogue_ids: [M] raw item ids of the catalogue, ascending (the tie rule's order).
      catalogue_vectors: [M, dim + 1] candidate vectors.
      row_of_index: [items] catalogue row of each item-vocabulary index, -1 when not in the
        catalogue (padding, out-of-vocabulary, items missing from the catalogue).
      settings: the training settings used.
      history: per-epoch loss of the returned model's fit.
      seconds: wall time of the whole `train` call.
      n_examples: training examples built (targets up to T).
      validation_recalls: validation Recall@50 after every epoch of the validated fit (empty
        without validation).
      best_epoch: the chosen number of epochs (1-based; ``epochs`` without validation).
      repeat_boost: the boost added to the repeat weights (`validation.calibrate`).
      boost_recalls: validation Recall@50 of every boost tried.
      personal_weight: the weight of ``u`` (`validation.calibrate`).
      validation_recall: validation Recall@50 of the chosen epoch and boost (the figure to compare
        settings by; None without validation). With ``refit`` it was measured on the validated
        fit, the returned model's twin without the window's data.
      validation: the window and every figure of the choices (written to training_summary.json).
    """

    model: M.TwoTowerModel
    catalogue_ids: np.ndarray
    catalogue_vectors: np.ndarray
    row_of_index: np.ndarray
    settings: dict[str, Any]
    history: list[float]
    seconds: float
    n_examples: int
    validation_recalls: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int = 0
    repeat_boost: float = 0.0
    boost_recalls: dict[float, float] = dataclasses.field(default_factory=dict)
    personal_weight: float = 1.0
    validation_recall: float | None = None
    validation: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Prepared:
    """What `train` derives from its inputs before any fit: the canonical train columns, the
    pseudo-cutoff examples, the validation window and the transformed catalogue."""

    train_columns: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    window: Any
    items: Any


# The preparation of the last `train(..., keep=True)` call, for the next `train` of the very same
# columns (the same objects), transform graph and example settings. Under LocalDagRunner the Tuner's
# trial keeps it and the Trainer, handed the Tuner's columns (``modules.trainer.read_inputs``),
# takes it: at RetailRocket scale the preparation took the Trainer 15-20 s. One is kept at most,
# and every `train` call takes it away, so a trial never holds two. It lives here, not in the
# Tuner's or the Trainer's module, which TFX reloads (``modules.columns``).
_KEPT: dict[str, Any] = {}


def _preparation_key(train_columns, item_columns, tft_output, cfg: dict[str, Any]) -> tuple:
    return (
        id(train_columns),
        id(item_columns),
        str(getattr(tft_output, "transform_savedmodel_dir", "")),
        float(cfg["horizon_days"]),
        int(cfg["examples_per_event"]),
        int(cfg["seed"]),
        float(cfg["validation_days"]),
    )


def _take_kept(train_columns, item_columns, tft_output, cfg) -> _Prepared | None:
    """The preparation kept for exactly these inputs (`_KEPT`), or None; nothing stays kept."""
    kept = _KEPT.pop("prepared", None)
    if (
        kept is not None
        and kept[1][0] is train_columns
        and kept[1][1] is item_columns
        and kept[0] == _preparation_key(train_columns, item_columns, tft_output, cfg)
    ):
        progress.report("took the examples and catalogue prepared by the previous fit")
        return kept[2]
    return None


def _examples(train_columns, cfg: dict[str, Any]) -> _Prepared:
    """The canonical train columns, pseudo-cutoff examples and validation window (no catalogue).

    Raises:
      ValueError: no training example could be built.
    """
    train_columns = E.canonical_order(train_columns)
    ordered = E.ordered_states(train_columns)
    raw = E.pseudo_cutoff_examples(
        train_columns,
        float(cfg["horizon_days"]),
        int(cfg["examples_per_event"]),
        int(cfg["seed"]),
        ordered,
    )
    if len(raw[F.ITEM_ID]) == 0:
        raise ValueError(
            "no training example: no visitor has an event within "
            f"{cfg['horizon_days']} days after an earlier event"
        )
    window = E.validation_window(train_columns, float(cfg["validation_days"]), ordered)
    return _Prepared(train_columns, raw, window, None)


def _keep(train_columns, item_columns, tft_output, cfg, prepared: _Prepared) -> None:
    """Keeps ``prepared`` for the next `train` of the same inputs, its examples read-only."""
    for column in prepared.raw.values():
        column.flags.writeable = False
    key = _preparation_key(train_columns, item_columns, tft_output, cfg)
    _KEPT["prepared"] = (key, (train_columns, item_columns), prepared)


def train(
    train_columns: dict[str, np.ndarray],
    item_columns: dict[str, np.ndarray],
    tft_output: Any,
    custom_config: dict[str, Any] | None = None,
    log_every_epoch: bool = True,
    keep: bool = False,
) -> Trained:
    """Trains the two-tower model, choosing its epochs and repeat boost on the validation window.

    Args:
      train_columns: raw columns of the train interactions.
      item_columns: raw columns of the catalogue (``items.csv``).
      tft_output: the ``TFTransformOutput`` of `modules.transform.preprocessing_fn`.
      custom_config: overrides of `settings`.
      log_every_epoch: log the losses and validation figures.
      keep: keep the preparation (examples, window, catalogue) for the next `train` of the very
        same column objects, graph and example settings (the Tuner's trials; `_KEPT`).

    Returns:
      The trained model and its catalogue.

    Raises:
      ValueError: no training example could be built, or the catalogue is empty.
    """
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:  # seconds of each phase, for the log (what a long run spends)
        phases[name] = round(time.perf_counter() - started - sum(phases.values()), 1)

    cfg = settings(custom_config)
    seed = int(cfg["seed"])
    given_columns = (train_columns, item_columns)
    prepared = _take_kept(train_columns, item_columns, tft_output, cfg) or _examples(
        train_columns, cfg
    )
    spec = tft_output.raw_feature_spec()
    layer = tft_output.transform_features_layer()
    sizes = sizes_from(tft_output)
    if cfg["use_visitor"] and sizes.visitors <= 1:
        raise ValueError(
            "use_visitor is on but the transform graph has no visitor vocabulary: Transform "
            "builds it only when its custom_config has use_visitor true too (modules.transform)"
        )
    if prepared.items is None:
        prepared.items = Cat.prepare_catalogue(layer, item_columns, spec, sizes)
    train_columns, raw, window, items = (
        prepared.train_columns,
        prepared.raw,
        prepared.window,
        prepared.items,
    )
    n_examples = len(raw[F.ITEM_ID])
    lap("catalogue")
    fit_rows = E.fit_mask(raw, window)
    summary: dict[str, Any] = {
        "window_start_ms": window.start_ms,
        "window_end_ms": window.end_ms,
        "days": float(cfg["validation_days"]),
        "window_queries": window.n_queries,
        "fit_examples": int(fit_rows.sum()),
    }
    window_usable = bool(
        float(cfg["validation_days"]) > 0
        and window.n_queries >= int(cfg["validation_min_queries"])
        and fit_rows.any()
    )
    chosen = cfg["chosen"] or {}
    # The choices of an earlier validated fit apply only to the very same settings, window and
    # examples.
    given = bool(chosen) and all(
        chosen.get(key) == value
        for key, value in (
            ("window_end_ms", window.end_ms),
            ("window_queries", window.n_queries),
            ("fit_examples", int(fit_rows.sum())),
            ("settings", _comparable(cfg)),
        )
    )
    if chosen and not given:
        logger.warning("the given choices were made on another validation window; choosing anew")
    validated = window_usable and not given
    fit_losses: list[float] = []
    recalls: list[float] = []
    boost, boost_recalls, chosen_recall = 0.0, {}, None
    personal, personal_recalls = 1.0, {}
    epochs = int(cfg["epochs"])
    if given:
        # Chosen on this window by an earlier identical validated fit (the Tuner's best trial).
        epochs = int(chosen["best_epoch"])
        boost = float(chosen.get("repeat_boost", 0.0))
        personal = float(chosen.get("personal_weight", 1.0))
        progress.report(
            "epochs %d, personal weight %.2f and repeat boost %+.0f as chosen on the validation "
            "window by the Tuner",
            epochs,
            personal,
            boost,
        )
        summary.update(
            best_epoch=epochs,
            personal_weight=personal,
            repeat_boost=boost,
            chosen_recall=chosen.get("recall"),
        )
    elif validated:
        at_start = E.popularity_at(train_columns, raw[F.ITEM_ID][fit_rows], window.start_ms)
        fit_raw = {name: values[fit_rows] for name, values in raw.items()} | at_start
        items_then = dict(item_columns) | E.popularity_at(
            train_columns, item_columns[F.ITEM_ID], window.start_ms
        )
        then = Cat.prepare_catalogue(layer, items_then, spec, sizes)
        queries = V.prepare_queries(
            layer, spec, window.queries, int(cfg["validation_max_queries"]), seed
        )
        lap("validation_examples")
        stopper = V.BestEpoch(then, queries, int(cfg["patience"]))
        model, fit_losses = _fit(_transformed(layer, fit_raw, spec), sizes, cfg, then, [stopper])
        stopper.restore_best()
        recalls, epochs = stopper.recalls, stopper.best_epoch + 1
        chosen_recall = recalls[stopper.best_epoch]
        lap("fit")
        if cfg["calibrate_repeat"]:
            personal, boost, personal_recalls, boost_recalls = V.calibrate(model, then, queries)
            chosen_recall = boost_recalls[boost]
            progress.report(
                "personal weight %.2f and repeat boost %+.0f chosen: validation Recall@50 %.4f",
                personal,
                boost,
                chosen_recall,
            )
        lap("calibrate_repeat")
        summary.update(
            queries=queries.size,
            fit_losses=fit_losses,
            recalls=recalls,
            best_epoch=epochs,
            personal_recalls={str(w): r for w, r in personal_recalls.items()},
            personal_weight=personal,
            boost_recalls={str(b): r for b, r in boost_recalls.items()},
            repeat_boost=boost,
            recall=chosen_recall,
        )
        del then, queries
    elif not given:
        logger.warning(
            "two-tower training without validation: the %.1f-day window before the last train "
            "event holds %d queries (fewer than %d) or no fit example precedes it; training %d "
            "epochs on all examples, repeat boost 0",
            float(cfg["validation_days"]),
            window.n_queries,
            int(cfg["validation_min_queries"]),
            epochs,
        )
    refit = not validated or bool(cfg["refit"])
    if refit:
        examples = _transformed(layer, raw, spec)
        lap("examples")
        progress.report(
            "%s on all %d examples for %d epochs",
            "refit" if validated else "fit",
            len(examples[T.ITEM_INDEX]),
            epochs,
        )
        report_epochs = tf.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress.report(
                "epoch %d/%d: loss %.1f", epoch + 1, epochs, float(logs.get("loss", 0.0))
            )
        )
        model, losses = _fit(examples, sizes, cfg, items, [report_epochs], epochs=epochs)
        del examples
        V.add_repeat_boost(model, boost)
        model.user_tower.personal_weight.assign(personal)
        lap("refit" if validated else "fit")
    else:
        losses = fit_losses
    summary.update(
        validated=validated, refit=validated and refit, epochs=epochs, chosen_by_tuner=given
    )
    if log_every_epoch:
        logger.info("two-tower training: losses %s, validation %s", losses, summary)

    vectors = Cat.item_vectors(model, items)
    lap("item_vectors")
    logger.info("two-tower training phases (s): %s", phases)
    if keep:
        _keep(*given_columns, tft_output, cfg, prepared)
    del prepared
    return Trained(
        model=model,
        catalogue_ids=items.ids,
        catalogue_vectors=vectors,
        row_of_index=items.row_of_index,
        settings=cfg,
        history=losses,
        seconds=time.perf_counter() - started,
        n_examples=n_examples,
        validation_recalls=recalls,
        best_epoch=epochs,
        repeat_boost=boost,
        boost_recalls=boost_recalls,
        personal_weight=personal,
        validation_recall=chosen_recall,
        validation=summary,
    )


def choices(trained: Trained) -> dict[str, Any] | None:
    """What `train` chose on the validation window, to hand a later `train` of the same settings
    on the same data (``chosen``): None when it did not validate."""
    v = trained.validation
    if not v.get("validated"):
        return None
    keys = ("window_end_ms", "window_queries", "fit_examples", "best_epoch", "personal_weight")
    return {
        **{key: v[key] for key in keys},
        "repeat_boost": v.get("repeat_boost", 0.0),
        "recall": v.get("recall"),
        "settings": _comparable(trained.settings),
    }


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings that make two validated fits identical (not refit, the list length or the
    choices)."""
    return {k: v for k, v in sorted(cfg.items()) if k not in ("refit", "top_k", "chosen")}


def _transformed(layer: Any, raw: dict[str, np.ndarray], spec: dict[str, Any]) -> dict[str, Any]:
    """The transformed features the model reads of raw examples.

    The profile outputs are kept ragged (the filled positions of each row): padded to the
    profile's width they would take 13 bytes x 500 per example, 12 GB at RetailRocket's 1.9M
    examples, where a visitor has a few items on average. `_dense_profiles` pads each batch.
    """
    needed = set(T.ITEM_OUTPUTS) | set(T.USER_OUTPUTS)
    parts: dict[str, list] = {}
    lengths = []
    for chunk in C.transform_chunks(layer, raw, spec):
        length = (chunk[T.PROFILE_INDEX] > 0).sum(axis=1)
        filled = np.arange(chunk[T.PROFILE_INDEX].shape[1])[None, :] < length[:, None]
        lengths.append(length)
        for name in needed:
            values = chunk[name]
            if name in T.PROFILE_OUTPUTS:
                values = values[filled].astype(_PROFILE_DTYPES[name])
            elif name == T.HISTORY_INDEX:
                values = values.astype(np.int32)
            parts.setdefault(name, []).append(values)
    out: dict[str, Any] = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    row_lengths = np.concatenate(lengths)
    for name in T.PROFILE_OUTPUTS:
        out[name] = tf.RaggedTensor.from_row_lengths(out[name], row_lengths)
    return out


# Compact kinds of the profile outputs in memory (the model casts what it reads).
_PROFILE_DTYPES = {
    T.PROFILE_INDEX: np.int32,
    T.PROFILE_COUNT: np.float32,
    T.PROFILE_EVENT: np.int8,
    T.PROFILE_AGE: np.float32,
}


def _dense_profiles(width: int):
    """A dataset map: pads a batch's ragged profile outputs to [B, width]."""

    @tf.autograph.experimental.do_not_convert  # plain TF ops; nothing to convert
    def pad(batch: dict[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        for name in T.PROFILE_OUTPUTS:
            if name in out and isinstance(out[name], tf.RaggedTensor):
                out[name] = out[name].to_tensor(shape=[None, width])
        return out

    return pad


def _batches(examples: dict[str, Any], batch_size: int, seed: int):
    """Shuffled batches of in-memory columns, reshuffled every epoch (the last partial batch
    dropped).

    The shuffle draws positions and a batch gathers its rows: the same batches as shuffling the
    examples themselves (a shuffle's order depends only on its size and seeds; `training_test`
    compares the two), at a few ms a batch instead of about 27 ms of per-example work at
    RetailRocket scale.
    """
    n = len(examples[T.ITEM_INDEX])
    columns = {
        name: values if isinstance(values, tf.RaggedTensor) else tf.constant(values)
        for name, values in examples.items()
    }
    return C.without_autotune(
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .map(_gather(columns))
    )


def _gather(columns: dict[str, Any]):
    """A dataset map: the rows at a batch of positions of in-memory columns."""

    @tf.autograph.experimental.do_not_convert  # plain TF ops; nothing to convert
    def take(positions: tf.Tensor) -> dict[str, Any]:
        return {name: tf.gather(values, positions) for name, values in columns.items()}

    return take


def _fit(
    examples: dict[str, np.ndarray],
    sizes: M.FeatureSizes,
    cfg: dict[str, Any],
    items: Cat.Catalogue,
    callbacks: list[Any],
    epochs: int | None = None,
) -> tuple[M.TwoTowerModel, list[float]]:
    """Builds a fresh model (seeded) and fits it for ``epochs`` (default: the ``epochs`` setting).

    The log-Q correction's item probabilities are the targets' shares among ``examples``.

    Returns:
      (the model, the loss of every epoch).
    """
    seed = int(cfg["seed"])
    tf.keras.utils.set_random_seed(seed)
    counts = np.bincount(examples[T.ITEM_INDEX], minlength=sizes.items).astype(np.float64)
    model = M.TwoTowerModel(sizes, model_config(cfg), counts / counts.sum(), items.table)
    optimizers = {"catch_up_adam": O.CatchUpAdam, "adam": tf.keras.optimizers.Adam}
    if cfg["optimizer"] not in optimizers:
        raise ValueError(f"optimizer {cfg['optimizer']!r}: expected one of {sorted(optimizers)}")
    model.compile(optimizer=optimizers[cfg["optimizer"]](learning_rate=float(cfg["learning_rate"])))
    if isinstance(model.optimizer, O.CatchUpAdam):
        # Variables and optimiser slots before the first step: the traced step must see them to
        # bring a batch's embedding rows up to date before reading them.
        first = tf.data.Dataset.from_tensor_slices(examples).batch(2)
        model.compute_loss(next(iter(first.map(_dense_profiles(sizes.profile_length)))))
        model.optimizer.build(model.trainable_variables)
    n = len(examples[T.ITEM_INDEX])
    dataset = _batches(examples, min(int(cfg["batch_size"]), n), seed)
    dataset = dataset.map(_dense_profiles(sizes.profile_length)).prefetch(2)
    # The catch-up first: the callbacks after it read the model at the end of an epoch.
    callbacks = [O.CatchUp(), *callbacks]
    fit = model.fit(dataset, epochs=int(epochs or cfg["epochs"]), verbose=0, callbacks=callbacks)
    return model, [float(x) for x in fit.history.get("loss", [])]
