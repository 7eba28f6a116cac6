"""Baselines TFX component: trains the classic recommenders on the train split, scores the eval split.

The Evaluator gate reads the ``baseline_metrics`` artifact, so "the two-tower beats the baselines"
is a fact the pipeline checks on every run, under the same protocol (DESIGN section 5).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import BaselineMetrics, RowCounts
from components.baselines import executor


class BaselinesSpec(types.ComponentSpec):
    """Inputs, outputs and parameters of the Baselines component."""

    PARAMETERS = {
        "train_split": ExecutionParameter(type=str),
        "eval_split": ExecutionParameter(type=str),
        "exclude_seen": ExecutionParameter(type=int),  # 0/1: a bool in KFP-compatible form
        "baselines": ExecutionParameter(type=str),  # JSON list of baseline names
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        # The ValidationGate's verified counts: what this component reads is checked against them.
        "row_counts": ChannelParameter(type=RowCounts, optional=True),
    }
    OUTPUTS = {"baseline_metrics": ChannelParameter(type=BaselineMetrics)}


class Baselines(base_component.BaseComponent):
    """Most popular, recently viewed, user-user CF, item-item CF and SVD on the pipeline's split."""

    SPEC_CLASS = BaselinesSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        baselines: list[str],
        exclude_seen: bool = False,
        train_split: str = "train",
        eval_split: str = "eval",
        row_counts: types.BaseChannel | None = None,
    ):
        """Builds the component.

        Args:
          examples: interactions with a train and an eval split (the export's time split).
          baselines: names of the baselines to run (``baselines.BASELINE_NAMES``).
          exclude_seen: drop items the visitor had in train from every list (DESIGN 5).
          train_split: split the baselines are fit on.
          eval_split: split whose every row is one query.
          row_counts: the ValidationGate's ``counts``; when given, the rows, queries and eval
            visitors read must equal them (fail closed) and the run waits for the gate.
        """
        import json

        spec = BaselinesSpec(
            examples=examples,
            row_counts=row_counts,
            train_split=train_split,
            eval_split=eval_split,
            exclude_seen=int(exclude_seen),
            baselines=json.dumps(list(baselines)),
            baseline_metrics=types.Channel(type=BaselineMetrics),
        )
        super().__init__(spec=spec)
