"""TFX's StatisticsGen and Transform with the executors of `executor` (batches of 8,192 records).

The components are the stock ones (spec, driver, artifacts, parameters); only their executor
class differs. They keep the class names, so their node ids (``StatisticsGen``, ``Transform``)
are the ones ML Metadata, the report and the tests know.
"""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.batched_reads import executor


class StatisticsGen(tfx.components.StatisticsGen):
    """TFX's StatisticsGen reading the examples in batches of ``executor.READ_BATCH_ROWS``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.StatisticsGenExecutor)


class Transform(tfx.components.Transform):
    """TFX's Transform reading the examples in batches of ``executor.READ_BATCH_ROWS``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.TransformExecutor)
