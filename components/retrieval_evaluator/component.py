"""RetrievalEvaluator: Recall@K of the two-tower on the eval split, and the push decision.

Why not the stock Evaluator: TFMA's thresholds are fixed when the pipeline is built, while one bar
of the gate (the best baseline's Recall@50) is measured in the same run; and the two-tower must be
scored by the very code that scores the baselines (one protocol, coverage@50 and ``exclude_seen``
included). This component re-evaluates the latest blessed model on the same eval data (no stale
comparison) and emits the standard ``ModelBlessing``, so the stock Pusher gates on it.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import AnnMetrics, BaselineMetrics, RowCounts
from components.retrieval_evaluator import executor
from modules import constants


class RetrievalEvaluatorSpec(types.ComponentSpec):
    """Inputs, outputs and parameters of the RetrievalEvaluator."""

    PARAMETERS = {
        "train_split": ExecutionParameter(type=str),
        "eval_split": ExecutionParameter(type=str),
        "min_recall": ExecutionParameter(type=float),
        "regression_tolerance": ExecutionParameter(type=float),
        "exclude_seen": ExecutionParameter(type=int),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        "baseline_metrics": ChannelParameter(type=BaselineMetrics, optional=True),
        "index_metrics": ChannelParameter(type=AnnMetrics, optional=True),
        # The ValidationGate's verified counts: the queries scored here, and the rows the Trainer
        # and Transform read (the model's row_counts.json), must equal them before blessing.
        "row_counts": ChannelParameter(type=RowCounts, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class RetrievalEvaluator(base_component.BaseComponent):
    """Scores the candidate (and the latest blessed model) and blesses it only if it is better."""

    SPEC_CLASS = RetrievalEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        baseline_model: types.BaseChannel | None = None,
        baseline_metrics: types.BaseChannel | None = None,
        index_metrics: types.BaseChannel | None = None,
        min_recall: float = constants.MIN_RECALL_AT_50,
        regression_tolerance: float = constants.REGRESSION_TOLERANCE,
        exclude_seen: bool = False,
        train_split: str = "train",
        eval_split: str = "eval",
        row_counts: types.BaseChannel | None = None,
    ):
        """Builds the component.

        Args:
          examples: raw interactions with train and eval splits (every eval row is one query).
          model: the Trainer's model (its SavedModel has ``configs.EVAL_SIGNATURE``).
          baseline_model: the latest blessed model (from a LatestBlessedModelStrategy resolver).
          baseline_metrics: the Baselines component's output; the model must not trail the best.
          index_metrics: the ScannIndex output; below its recall target nothing is pushed.
          min_recall: absolute floor of Recall@50.
          regression_tolerance: how far below 0 the whole paired interval of the Recall@50
            difference to the latest blessed model may lie and still pass (training noise).
          exclude_seen: drop items the visitor had in train before cutting lists to 50.
          train_split: split used for coverage and ``exclude_seen``.
          eval_split: split whose every example is one query.
          row_counts: the ValidationGate's ``counts``; the rows read here and by the Trainer and
            Transform (the model's ``row_counts.json``) must equal them, or nothing is blessed.
        """
        spec = RetrievalEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            baseline_metrics=baseline_metrics,
            index_metrics=index_metrics,
            row_counts=row_counts,
            min_recall=float(min_recall),
            regression_tolerance=float(regression_tolerance),
            exclude_seen=int(exclude_seen),
            train_split=train_split,
            eval_split=eval_split,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
