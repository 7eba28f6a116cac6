"""TFX Trainer adapter: ``run_fn(fn_args)`` reads the Examples, trains, exports the serving model.

Wiring the pipeline needs (``pipeline/pipeline.py``)::

    Trainer(
        run_fn="modules.trainer.run_fn",
        examples=<RAW Examples with splits train, eval and items>,   # CsvExampleGen output
        transform_graph=transform.outputs["transform_graph"],
        hyperparameters=tuner.outputs["best_hyperparameters"],      # optional (modules.tuner)
        custom_config={...},                                        # JSON settings, optional
    )

* ``examples`` is the raw ExampleGen artifact, not Transform's transformed examples: the trainer
  builds its evaluation-shaped examples and its validation window from raw train rows
  (``modules.examples``, ``modules.training``) and embeds the
  catalogue, and both pass through the transform graph in memory. The catalogue is the ``items``
  split of the same artifact (the export's ``items/items.csv`` as a third split pattern); the
  Trainer has one ``examples`` input, and artifacts never travel through ``custom_config``.
* ``custom_config`` keys: those of ``modules.training.settings`` (``epochs``, ``encoder``,
  ``embedding_dim``, ``batch_size``, ``learning_rate``, ``horizon_days``, ``examples_per_event``,
  ``use_visitor``, ``use_time``, ``hidden_dim``, ``dropout``, ``validation_days``, ``refit``,
  ``seed``, ``top_k``, ...); defaults live in ``modules/constants.py``. Give Transform the same dict
  for its keys (``history_length``, ...).
* ``hyperparameters`` (optional): the Tuner's ``best_hyperparameters`` (``modules.tuner``), or an
  earlier run's through a resolver; its values are merged into ``custom_config``
  (`merged_config`: a key the config sets explicitly wins). The Tuner reads its inputs with the
  same `read_inputs`.
* The cutoff as the Trainer sees it is the last train event's timestamp T; the validation window is
  the ``validation_days`` before it (``modules.examples.validation_window``).

Outputs: the serving SavedModel in ``fn_args.serving_model_dir`` (signatures in ``modules.serving``)
and ``training_summary.json`` (settings, losses, example count, seconds, repeat weights, and under
``validation`` the window's start and end, its query count, Recall@50 per epoch, the chosen epoch,
the Recall@50 of every repeat boost and the chosen one, and whether the model was refit; under
``hyperparameters`` the values it got from a HyperParameters artifact) in ``fn_args.model_run_dir``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import re
import time
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from modules import columns, constants, examples, memory, row_counts, serving, training
from modules import features as F
from modules import transform as T

logger = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"


def split_patterns(train_files: list[str], split: str) -> list[str]:
    """File patterns of another split of the artifact that holds ``train_files``.

    ``fn_args.train_files`` are ``<examples uri>/Split-<train split>/*`` patterns.

    Raises:
      ValueError: a pattern does not have that layout.
    """
    patterns = []
    for pattern in train_files:
        swapped, count = re.subn(r"Split-[^/\\]+([/\\][^/\\]*)$", rf"Split-{split}\1", pattern)
        if count != 1:
            raise ValueError(f"{pattern}: not an Examples split pattern (.../Split-<name>/*)")
        patterns.append(swapped)
    return patterns


@dataclasses.dataclass
class Inputs:
    """What the Trainer and the Tuner read from their input artifacts (``read_inputs``).

    Attributes:
      train_columns: raw columns of the train split.
      item_columns: raw columns of the catalogue (the ``items`` split).
      tft_output: the transform graph's ``TFTransformOutput``.
      checks: the row-count checks of these reads (``modules.row_counts``), all passed.
    """

    train_columns: dict[str, Any]
    item_columns: dict[str, Any]
    tft_output: Any
    checks: list[dict]
    source: tuple = ()


def hand_over(inputs: Inputs) -> None:
    """Keeps ``inputs``' columns for the next `read_inputs` of the very same files in this process.

    LocalDagRunner runs the Tuner and then the Trainer in the one process that runs the pipeline,
    on the same examples and transform graph: the Tuner hands its read over and the Trainer takes
    it instead of reading the same files again (24-36 s of the Trainer's 130-185 s at RetailRocket
    scale). Under any other runner (Vertex, Kubeflow) each component is its own process and
    nothing is handed over (``modules.columns.hand_over``).
    """
    columns.hand_over(inputs.source, (inputs.train_columns, inputs.item_columns))


def read_inputs(fn_args: Any, component: str = "Trainer") -> Inputs:
    """Reads the raw train and catalogue splits and the transform graph of ``fn_args``.

    The one reader of the Trainer's ``run_fn`` and the Tuner's ``tuner_fn`` (``modules.tuner``):
    both get the raw ExampleGen artifact and Transform's graph, and both check their reads against
    the rows Transform analysed.

    Args:
      fn_args: the component's ``FnArgs`` (train_files, transform_graph_path or transform_output).
      component: the reader's name in the row-count checks.

    Raises:
      FileNotFoundError: the examples have no ``items`` split.
      ValueError: the examples are not raw export rows (e.g. Transform's transformed examples).
      modules.row_counts.RowCountMismatch: the train rows read are not the rows Transform analysed.
    """
    transform_dir = getattr(fn_args, "transform_graph_path", None) or fn_args.transform_output
    tft_output = tft.TFTransformOutput(transform_dir)
    spec = tft_output.raw_feature_spec()
    items_files = split_patterns(list(fn_args.train_files), F.ITEMS_SPLIT)
    source = (
        columns.files_source([*fn_args.train_files, *items_files]),
        os.path.abspath(transform_dir),
    )
    kept = columns.take_handed_over(source)
    if kept is not None:
        train_columns, item_columns = kept
        logger.info(
            "%s took the read handed over by the previous reader of the same files: %d train "
            "rows, %d catalogue items",
            component,
            train_columns[F.ITEM_ID].size,
            item_columns[F.ITEM_ID].size,
        )
    else:
        started = time.perf_counter()
        train_columns = columns.read_example_columns(fn_args.train_files, spec)
        _check_raw(train_columns, fn_args.train_files, component)
        # Sorted here, the shard-ordered copy is freed before training (`training.train` sorts
        # too).
        train_columns = examples.canonical_order(train_columns)
        if not any(tf.io.gfile.glob(pattern) for pattern in items_files):
            raise FileNotFoundError(
                f"{items_files}: no '{F.ITEMS_SPLIT}' split next to the train split; give the "
                f"{component} the ExampleGen artifact with splits {F.TRAIN_SPLIT}, "
                f"{F.EVAL_SPLIT}, {F.ITEMS_SPLIT}"
            )
        item_names = [name for name in spec if name in set(T.RAW_ITEM_COLUMNS)] + T.numeric_columns(
            spec
        )
        item_columns = columns.read_example_columns(items_files, spec, item_names)
        logger.info("%s read the examples in %.1f s", component, time.perf_counter() - started)
    # Read-only: a reader that changed them in place would change what the next one is handed.
    for values in (*train_columns.values(), *item_columns.values()):
        values.flags.writeable = False
    checks = _count_checks(train_columns, item_columns, tft_output, component)
    return Inputs(train_columns, item_columns, tft_output, checks, source)


def merged_config(
    custom_config: dict[str, Any] | None, hyperparameters: dict[str, Any] | None
) -> dict[str, Any]:
    """The Trainer's settings: ``custom_config`` with the chosen hyperparameters merged in.

    ``hyperparameters`` is what TFX hands the Trainer from a ``HyperParameters`` artifact (the
    Tuner's ``best_hyperparameters``, or an earlier run's through the pipeline's resolver): a
    KerasTuner config ``{"space": [...], "values": {...}}`` (plus the tuning log, ignored here),
    or a plain ``{key: value}`` dict. A key that ``custom_config`` sets explicitly (``retailrec
    run --set``) is never searched by the Tuner; when an earlier run's values reach the Trainer
    (``--no-tune``), the explicit setting still wins, with a warning.
    """
    config = dict(custom_config or {})
    values = tuned_values(hyperparameters)
    if not values:
        return config
    kept = {k: v for k, v in values.items() if k in config and config[k] != v}
    if kept:
        logger.warning(
            "explicit settings %s win over the tuned hyperparameters %s",
            {k: config[k] for k in kept},
            kept,
        )
    merged = {**config, **{k: v for k, v in values.items() if k not in kept}}
    # The best trial's choices on the validation window (epochs, personal weight, repeat boost):
    # `training.train` reuses them only for the same settings, window and examples.
    best_choices = (hyperparameters.get(constants.TUNE_LOG_KEY) or {}).get("best_choices")
    if best_choices:
        merged["chosen"] = best_choices
    return merged


def tuned_values(hyperparameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``{key: value}`` settings of a HyperParameters artifact's JSON (None without one)."""
    if hyperparameters is None:
        return None
    values = hyperparameters.get("values", hyperparameters)
    return {k: v for k, v in values.items() if k not in ("space", constants.TUNE_LOG_KEY)}


def run_fn(fn_args: Any) -> None:
    """Trains the two-tower model and exports the serving SavedModel (TFX Trainer entry point).

    Args:
      fn_args: the Trainer's ``FnArgs`` (train_files, transform_graph_path or transform_output,
        serving_model_dir, model_run_dir, custom_config, hyperparameters).

    Raises:
      FileNotFoundError: the examples have no ``items`` split.
      ValueError: the examples are not raw export rows (e.g. Transform's transformed examples).
    """
    hyperparameters = getattr(fn_args, "hyperparameters", None)
    custom_config = merged_config(fn_args.custom_config, hyperparameters)
    inputs = read_inputs(fn_args)
    train_columns, item_columns = inputs.train_columns, inputs.item_columns
    tft_output, checks = inputs.tft_output, inputs.checks
    del inputs

    trained = training.train(train_columns, item_columns, tft_output, custom_config)
    top_k = int(trained.settings["top_k"])
    # The catalogue's availability at the cutoff, in catalogue row order: serving_filtered's
    # available_only drops the items that were unavailable.
    available = serving.align_availability(
        trained.catalogue_ids, item_columns[F.ITEM_ID], item_columns.get(F.AVAILABLE)
    )
    serving.export(trained, tft_output, fn_args.serving_model_dir, top_k=top_k, available=available)

    summary = {
        "settings": trained.settings,
        "losses": trained.history,
        "n_examples": trained.n_examples,
        "n_catalogue_items": int(trained.catalogue_ids.size),
        "seconds": trained.seconds,
        "repeat_bucket_weights": trained.model.repeat.weights_by_bucket.numpy().tolist(),
        "repeat_count_weight": float(trained.model.repeat.weight_of_count.numpy()),
        "repeat_event_weights": trained.model.repeat.weights_by_event.numpy().tolist(),
        "repeat_age_weights": trained.model.repeat.weights_by_age.numpy().tolist(),
        "personal_weight": trained.personal_weight,
        "validation": _validation_summary(trained.validation),
        # The values of the HyperParameters artifact the Trainer got (the Tuner's choice or an
        # earlier run's), None without one: the settings above include them.
        "hyperparameters": tuned_values(hyperparameters),
    }
    # Beside Format-Serving in the model artifact: the RetrievalEvaluator checks these reads
    # against the ValidationGate's counts before it blesses (modules/row_counts.py).
    row_counts.write(
        os.path.dirname(fn_args.serving_model_dir.rstrip("/")), {row_counts.CHECKS_KEY: checks}
    )
    run_dir = getattr(fn_args, "model_run_dir", None)
    if run_dir:
        tf.io.gfile.makedirs(run_dir)
        with tf.io.gfile.GFile(os.path.join(run_dir, SUMMARY_FILE), "w") as fh:
            fh.write(json.dumps(summary, indent=2))
    logger.info("two-tower trained: %s", summary)
    del trained, train_columns, item_columns
    tf.keras.backend.clear_session()
    memory.release()


def _validation_summary(validation: dict) -> dict:
    """The validation figures of `training.Trained.validation`, with the window's times also in ISO."""
    out = dict(validation)
    for key in ("window_start_ms", "window_end_ms"):
        if key in out:
            stamp = datetime.datetime.fromtimestamp(out[key] / 1000, tz=datetime.timezone.utc)
            out[key.replace("_ms", "")] = stamp.isoformat()
    return out


def _count_checks(
    train_columns: dict, item_columns: dict, tft_output, component: str = "Trainer"
) -> list[dict]:
    """The rows this Trainer (or Tuner) read and Transform analysed; they must agree."""
    n_train = int(train_columns[F.ITEM_ID].size)
    n_items = int(item_columns[F.ITEM_ID].size)
    analysed = T.analysed_rows(tft_output)
    return [
        row_counts.check("Transform", F.TRAIN_SPLIT, "analysed train rows", n_train, analysed),
        # Self-checks here; the RetrievalEvaluator compares the found counts with the gate's.
        row_counts.check(component, F.TRAIN_SPLIT, "train events", n_train, n_train),
        row_counts.check(component, F.ITEMS_SPLIT, "catalogue items", n_items, n_items),
    ]


def _check_raw(columns: dict, files: list[str], component: str = "Trainer") -> None:
    ids = columns.get(F.ITEM_ID)
    if ids is None or ids.size == 0 or not (ids != 0).any():
        raise ValueError(
            f"{list(files)}: no raw '{F.ITEM_ID}' values; the {component} needs the raw ExampleGen "
            "examples (not Transform's transformed_examples)"
        )
