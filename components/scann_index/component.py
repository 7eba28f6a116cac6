"""ScannIndex: a tuned ScaNN index over the whole catalogue, served as a SavedModel (DESIGN 7-8).

Why a component after the Trainer: the index is tuned on the run's own held-out (eval) queries to
the cheapest configuration (distance computations per query, not timings: the same inputs give
the same index on any machine) whose Recall@``SCANN_RECALL_K`` against exact search reaches the
target, and the recall/cost curve it measured is an artifact, so "the index is faithful" is a fact
checked on every run, not an assumption. Its ``scann_model`` output is a standard Model (the
ScaNN SavedModel in its serving dir), so the stock Pusher pushes it; ``index_metrics`` carries
``ann.json`` (``components.artifacts.write_ann``) for the gate and the run report.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import AnnMetrics, RowCounts
from components.scann_index import executor
from modules import constants


class ScannIndexSpec(types.ComponentSpec):
    """Inputs, outputs and parameters of the ScannIndex component."""

    PARAMETERS = {
        "target_recall": ExecutionParameter(type=float),
        "exclude_seen": ExecutionParameter(type=int),  # 0/1, as the RetrievalEvaluator's
        "train_split": ExecutionParameter(type=str),
        "eval_split": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        # The ValidationGate's verified counts: items indexed and rows scored must equal them.
        "row_counts": ChannelParameter(type=RowCounts, optional=True),
    }
    # TFX wants argument names unique across inputs and outputs: the Trainer's model comes in as
    # ``model`` (as for the RetrievalEvaluator and the Pusher), the ScaNN model goes out as
    # ``scann_model``.
    OUTPUTS = {
        "scann_model": ChannelParameter(type=standard_artifacts.Model),
        "index_metrics": ChannelParameter(type=AnnMetrics),
    }


class ScannIndex(base_component.BaseComponent):
    """Tunes a ScaNN index over the Trainer model's catalogue and exports the ScaNN SavedModel."""

    SPEC_CLASS = ScannIndexSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        target_recall: float = constants.SCANN_TARGET_RECALL,
        exclude_seen: bool = False,
        train_split: str = "train",
        eval_split: str = "eval",
        row_counts: types.BaseChannel | None = None,
    ):
        """Builds the component.

        Args:
          model: the Trainer's model (its serving SavedModel has the ``user_vectors`` and
            ``catalogue`` signatures of ``modules.serving``).
          examples: the ExampleGen's raw Examples; every eval row is one held-out query.
          target_recall: Recall@``constants.SCANN_RECALL_K`` against exact search the index
            must reach (the cut is that constant: the gate and the reports read that key).
          exclude_seen: as the RetrievalEvaluator's, for the ``two_tower_scann`` metrics.
          train_split: split for coverage (and ``exclude_seen``).
          eval_split: split of the held-out queries.
          row_counts: the ValidationGate's ``counts`` to check the items and rows read against.
        """
        spec = ScannIndexSpec(
            model=model,
            examples=examples,
            row_counts=row_counts,
            target_recall=float(target_recall),
            exclude_seen=int(exclude_seen),
            train_split=train_split,
            eval_split=eval_split,
            scann_model=types.Channel(type=standard_artifacts.Model),
            index_metrics=types.Channel(type=AnnMetrics),
        )
        super().__init__(spec=spec)
