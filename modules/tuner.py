"""TFX Tuner adapter: ``tuner_fn(fn_args)`` searches the two-tower's settings on the validation window.

Wiring (``pipeline/pipeline.py``)::

    tuner = Tuner(
        tuner_fn="modules.tuner.tuner_fn",
        examples=<RAW Examples with splits train, eval and items>,   # as the Trainer's
        transform_graph=transform.outputs["transform_graph"],
        custom_config={..., "tune_trials": N},                      # the Trainer's settings + N
    )
    Trainer(..., hyperparameters=tuner.outputs["best_hyperparameters"])

A trial is one `modules.training.train` call with the trial's settings and ``refit`` off: the fit
on the examples before the validation window, the epoch count (early stopping) and the repeat boost
chosen on the window, exactly the Trainer's validated fit. Its objective
(``constants.TUNE_OBJECTIVE``, maximised) is the validation-window Recall@50 of those choices
(``Trained.validation_recall``): the last ``validation_days`` of train, scored like the
evaluation; the eval split is never read. The best trial's choices on the window (epochs,
personal weight, repeat boost: ``training.choices``) ride in the log; the Trainer reuses them
when its settings, window and fit examples are the trial's, and only refits on all train events.
The search stops early when another trial would pass ``TUNE_SECONDS_PER_TRIAL`` x trials.

The search (`DefaultsFirstOracle`): trial 1 is the defaults (``modules.constants``), so the
Tuner never hands the Trainer settings that are worse on the window than the defaults (ties go to
the earlier trial, KerasTuner sorts stably); the others are drawn at random (seeded) from
``constants.TUNE_SPACE``, a few values around each default, without repeats. Settings that
``custom_config`` sets explicitly (``retailrec run --set``) are not searched. Data with no
validation window (fewer than ``validation_min_queries`` queries, e.g. tiny data) cannot compare
settings: the trial's objective is 0, a warning says so and the search stops after trial 1.

Why not KerasTuner's own ``Tuner``: KerasTuner 1.4 runs on Keras 3 (even with
``TF_USE_LEGACY_KERAS=1``) and its ``Tuner.run_trial`` refuses the tf-keras models TFRS builds.
`TwoTowerTuner` is a ``BaseTuner`` whose ``run_trial`` trains through `modules.training` itself
and reports the figure; it saves no model (the Trainer retrains the chosen settings).

Output: TFX writes ``tuner.get_best_hyperparameters()[0].get_config()`` into the
``best_hyperparameters`` artifact (one JSON file, which the Trainer reads: ``{"space": [...],
"values": {...}}``). The config of the best trial returned here also carries, under
``constants.TUNE_LOG_KEY``, the search's log (`tuning_log`): every trial's settings, validation
Recall@50, chosen epochs and seconds, the best trial and the space searched. It rides in that
artifact because the artifact may hold only one file, and the stock executors (local and Vertex)
write nothing else of a trial but its score (``tuner_results``); ``reporting/results.py`` reads it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import keras_tuner
import tensorflow as tf
from tfx.v1.components import TunerFnResult

from modules import constants, memory, progress, training
from modules import trainer as trainer_module

logger = logging.getLogger(__name__)

TRIALS_KEY = constants.TUNE_TRIALS_KEY  # custom_config: trials (the defaults included)
SEED_KEY = constants.TUNE_SEED_KEY  # custom_config: the random search's seed
OBJECTIVE_DESCRIPTION = "validation-window Recall@50"
PROJECT_NAME = "retailrec_tuner"  # KerasTuner's state (small JSON files) in the working dir
# Metrics reported beside the objective (KerasTuner keeps them with each trial).
_SECONDS, _VALIDATED, _EPOCHS = "seconds", "validated", "epochs"


def search_space(custom_config: dict[str, Any] | None = None) -> keras_tuner.HyperParameters:
    """The settings searched: ``constants.TUNE_SPACE``, each a choice around its default.

    A setting is left out when ``custom_config`` sets it (the user fixed it) or when
    ``modules.training.settings`` does not know it (it would change nothing). The default
    (``training.settings()``) is always one of the choices and each choice's ``default``.
    """
    fixed = set(custom_config or {})
    defaults = training.settings()
    space = keras_tuner.HyperParameters()
    for name, choices in constants.TUNE_SPACE.items():
        if name in fixed or name not in defaults:
            continue
        kind = type(choices[0])
        default = kind(defaults[name])
        space.Choice(name, sorted({kind(c) for c in choices} | {default}), default=default)
    return space


class DefaultsFirstOracle(keras_tuner.oracles.RandomSearchOracle):
    """Random search whose first trial is every setting's default.

    It stops after a trial that had no validation window (its objective, 0, compares nothing).
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """Trial 1: the defaults; then seeded random values not tried yet (KerasTuner's)."""
        running = keras_tuner.engine.trial.TrialStatus.RUNNING
        if not self.trials:
            values = {hp.name: hp.default for hp in self.hyperparameters.space}
            return {"status": running, "values": values}
        if any(_metric(t, _VALIDATED) == 0.0 for t in self.trials.values()):
            return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


def make_oracle(space: keras_tuner.HyperParameters, trials: int, seed: int) -> DefaultsFirstOracle:
    """The search's oracle: ``trials`` trials over ``space``, its draws fixed by ``seed``.

    KerasTuner takes a seed of 0 for none and draws one at random (``Oracle.__init__``:
    ``seed or random.randint(1, 10000)``): with the default ``tune_seed`` 0 every run searched other
    settings. The oracle gets ``seed + 1``.
    """
    oracle = DefaultsFirstOracle(
        objective=keras_tuner.Objective(constants.TUNE_OBJECTIVE, direction="max"),
        max_trials=trials,
        seed=int(seed) + 1,
        hyperparameters=space,
        tune_new_entries=False,
        allow_new_entries=False,
    )
    oracle.verbose = 0  # KerasTuner prints trial tables; progress lines say what matters
    return oracle


def _metric(trial: Any, name: str) -> float | None:
    if not trial.metrics.exists(name):
        return None
    return trial.metrics.get_last_value(name)


class _ChosenHyperParameters(keras_tuner.HyperParameters):
    """The best trial's hyperparameters; their config also carries the search's log."""

    def __init__(self):
        super().__init__()
        self.log: dict[str, Any] = {}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), constants.TUNE_LOG_KEY: self.log}


class TwoTowerTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs each trial through `modules.training.train` (refit off) on the data read once.

    Args:
      oracle: the search (`DefaultsFirstOracle`).
      inputs: what `modules.trainer.read_inputs` read (train and catalogue columns, transform).
      base_config: the Trainer's ``custom_config``; each trial's values go over it.
      directory: KerasTuner's working folder (its state: a few small JSON files).
    """

    def __init__(
        self,
        oracle: keras_tuner.Oracle,
        inputs: trainer_module.Inputs,
        base_config: dict[str, Any],
        directory: str,
    ):
        super().__init__(
            oracle=oracle, directory=directory, project_name=PROJECT_NAME, overwrite=True
        )
        self._inputs: trainer_module.Inputs | None = inputs
        self._base = dict(base_config)
        self._choices: dict[str, dict[str, Any] | None] = {}
        self._budget = constants.TUNE_SECONDS_PER_TRIAL * oracle.max_trials
        self._spent = 0.0

    def run_trial(self, trial: Any, *fit_args, **fit_kwargs) -> dict[str, float]:
        """Trains the trial's settings and returns the validation-window Recall@50 (0 without one).

        Raises:
          keras_tuner.errors.FatalError: training failed (KerasTuner would otherwise skip the
            trial silently); the Tuner, and the run, stop.
        """
        del fit_args, fit_kwargs
        if self._inputs is None:
            raise keras_tuner.errors.FatalError("the tuner's data was released: search once")
        values = dict(trial.hyperparameters.values)
        number, total = int(trial.trial_id) + 1, self.oracle.max_trials
        started = time.perf_counter()
        try:
            trained = training.train(
                self._inputs.train_columns,
                self._inputs.item_columns,
                self._inputs.tft_output,
                {**self._base, **values, "refit": False},
                log_every_epoch=False,
                keep=True,  # for the Trainer, when this trial is the last and the best
            )
        except Exception as err:
            raise keras_tuner.errors.FatalError(
                f"Tuner trial {number} ({values}) failed: {type(err).__name__}: {err}"
            ) from err
        recall, epochs = trained.validation_recall, int(trained.best_epoch)
        cfg = trained.settings
        # What the trial chose on the window: the Trainer reuses the best trial's (same settings,
        # same window) instead of repeating its validated fit.
        self._choices[trial.trial_id] = training.choices(trained)
        del trained
        tf.keras.backend.clear_session()
        memory.release()
        seconds = time.perf_counter() - started
        self._spent += seconds
        shown = ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "(nothing searched)"
        label = "the defaults" if number == 1 else "random"
        if recall is None:
            logger.warning(
                "Tuner trial %d: no validation window (the last %s days of train hold fewer than "
                "%s queries): the settings cannot be compared, the objective is 0 and the search "
                "stops; the Trainer gets the defaults",
                number,
                cfg["validation_days"],
                cfg["validation_min_queries"],
            )
            progress.report(
                "trial %d/%d (%s) %s: NO validation window, objective 0; search stopped (%.0f s)",
                number,
                total,
                label,
                shown,
                seconds,
            )
        else:
            progress.report(
                "trial %d/%d (%s) %s: validation Recall@50 %.4f, %d epochs (%.0f s)",
                number,
                total,
                label,
                shown,
                recall,
                epochs,
                seconds,
            )
        if number < total and self._spent + seconds > self._budget:
            # Another trial like this one would pass the time budget: stop here.
            self.oracle.max_trials = number
            progress.report(
                "time budget: %d trial(s) took %.0f s; another would pass %.0f s "
                "(%d s x %d trials): search stopped",
                number,
                self._spent,
                self._budget,
                constants.TUNE_SECONDS_PER_TRIAL,
                total,
            )
        return {
            constants.TUNE_OBJECTIVE: 0.0 if recall is None else float(recall),
            _SECONDS: float(seconds),
            _VALIDATED: 0.0 if recall is None else 1.0,
            _EPOCHS: float(epochs),
        }

    def on_search_end(self) -> None:
        """Hands the examples over to the Trainer (`trainer_module.hand_over`: when it runs in
        this process, it takes them instead of reading the same files again); only the oracle's
        records are needed here after the search."""
        if self._inputs is not None:
            trainer_module.hand_over(self._inputs)
        self._inputs = None
        memory.release()
        super().on_search_end()

    def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
        """Saves nothing: the Trainer retrains the chosen settings."""

    def load_model(self, trial: Any) -> None:
        """No model is kept (see `save_model`)."""
        return None

    def get_best_hyperparameters(self, num_trials: int = 1) -> list[keras_tuner.HyperParameters]:
        """KerasTuner's best trials' hyperparameters; the first one's config carries `tuning_log`."""
        best = super().get_best_hyperparameters(num_trials)
        if best:
            chosen = _ChosenHyperParameters.from_config(best[0].get_config())
            chosen.log = tuning_log(self.oracle, self._choices)
            best[0] = chosen
        return best

    def search_space_summary(self, extended: bool = False) -> None:
        """Logs the space (KerasTuner prints it; the run's terminal shows progress lines only)."""
        space = {hp.name: hp.get_config() for hp in self.oracle.get_space().space}
        logger.info("Tuner search space: %s", space)

    def results_summary(self, num_trials: int = 10) -> None:
        """Logs the trials (KerasTuner prints them)."""
        logger.info("Tuner results: %s", tuning_log(self.oracle, self._choices))


def tuning_log(
    oracle: keras_tuner.Oracle, choices: dict[str, dict[str, Any] | None] | None = None
) -> dict[str, Any]:
    """The search's record: every trial in the order it ran, the best one and the space.

    Returns:
      ``{"objective": "validation-window Recall@50", "trials": [{"trial": 1, "hyperparameters":
      {...}, "validation_recall@50": x or None (no window), "epochs": e, "seconds": s, "status":
      ...}, ...], "best_trial": n, "best": {...}, "space": {setting: [choices]}, "defaults":
      {setting: default}, "best_choices": what the best trial chose on the window
      (``training.choices``, from ``choices`` by trial id; the Trainer reuses it)}``.
    """
    choices = choices or {}
    trials = []
    for trial_id in sorted(oracle.trials, key=int):
        trial = oracle.trials[trial_id]
        validated = _metric(trial, _VALIDATED)
        recall = _metric(trial, constants.TUNE_OBJECTIVE)
        epochs = _metric(trial, _EPOCHS)
        seconds = _metric(trial, _SECONDS)
        trials.append(
            {
                "trial": int(trial_id) + 1,
                "hyperparameters": dict(trial.hyperparameters.values),
                "validation_recall@50": recall if validated else None,
                "epochs": None if epochs is None else int(epochs),
                "seconds": None if seconds is None else round(seconds, 1),
                "status": str(trial.status),
            }
        )
    best = oracle.get_best_trials(1)
    space = oracle.get_space().space
    return {
        "objective": OBJECTIVE_DESCRIPTION,
        "trials": trials,
        "best_trial": int(best[0].trial_id) + 1 if best else None,
        "best": dict(best[0].hyperparameters.values) if best else {},
        "best_choices": choices.get(best[0].trial_id) if best else None,
        "space": {hp.name: list(hp.values) for hp in space},
        "defaults": {hp.name: hp.default for hp in space},
    }


def tuner_fn(fn_args: Any) -> TunerFnResult:
    """Builds the search (TFX Tuner entry point); the Tuner's executor runs ``tuner.search()``.

    Args:
      fn_args: the Tuner's ``FnArgs``: ``train_files`` (the raw train split; the catalogue split
        beside it), ``transform_graph_path``, ``working_dir`` (KerasTuner's state) and
        ``custom_config`` (the Trainer's settings plus ``tune_trials`` and ``tune_seed``).

    Returns:
      The tuner, and no fit arguments (each trial reads the data the tuner holds).

    Raises:
      ValueError: ``tune_trials`` is below 1.
    """
    custom_config = dict(fn_args.custom_config or {})
    trials = int(custom_config.pop(TRIALS_KEY, constants.TUNE_TRIALS))
    seed = int(custom_config.pop(SEED_KEY, constants.TUNE_SEED))
    if trials < 1:
        raise ValueError(f"custom_config {TRIALS_KEY}={trials}: the Tuner needs 1 trial or more")
    inputs = trainer_module.read_inputs(fn_args, component="Tuner")
    space = search_space(custom_config)
    oracle = make_oracle(space, trials, seed)
    progress.report(
        "%d trial(s) on the %s (trial 1: the defaults), searching %s",
        trials,
        OBJECTIVE_DESCRIPTION,
        ", ".join(hp.name for hp in space.space) or "nothing (every setting is fixed)",
    )
    directory = fn_args.working_dir or "."
    tuner = TwoTowerTuner(oracle, inputs, custom_config, directory=directory)
    return TunerFnResult(tuner=tuner, fit_kwargs={})
