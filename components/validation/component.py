"""Two small pipeline steps around TFDV: curate the schema, and stop the run on bad data.

ExampleValidator only reports anomalies; ``ValidationGate`` turns them, and any split whose
examples do not number the export's rows, into a failed run before anything trains. Its
``validated_schema`` output is what Transform and the Trainer consume and its ``counts`` what
the Baselines, ScannIndex and RetrievalEvaluator check their reads against, so the order is
enforced by the DAG itself (fail closed).
"""

import json
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components import examples_io
from components.artifacts import RowCounts
from components.validation import validation
from modules import features as F
from modules import row_counts
from modules.errors import RetailrecError

SCHEMA_FILE = "schema.pbtxt"  # the name SchemaGen and ImportSchemaGen write
ANOMALIES_FILE = "SchemaDiff.pb"  # the name ExampleValidator writes per split
REPORT_FILE = "anomalies.json"

Schema = tfx.types.standard_artifacts.Schema


class AnomaliesFound(RetailrecError):
    """The data has anomalies: the run stops before training and nothing is pushed."""


def _read_schema(artifact) -> schema_pb2.Schema:
    return io_utils.parse_pbtxt_file(os.path.join(artifact.uri, SCHEMA_FILE), schema_pb2.Schema())


@tfx.dsl.components.component
def CurateSchema(  # noqa: N802 (component names are PascalCase)
    curated_schema: tfx.dsl.components.InputArtifact[Schema],
    inferred_schema: tfx.dsl.components.InputArtifact[Schema],
    schema: tfx.dsl.components.OutputArtifact[Schema],
) -> None:
    """Curated constraints plus this data's numeric property columns (``validation.curate``)."""
    result = validation.curate(_read_schema(curated_schema), _read_schema(inferred_schema))
    io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE), result)


@tfx.dsl.components.component
def ValidationGate(  # noqa: N802
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[Schema],
    counts: tfx.dsl.components.OutputArtifact[RowCounts],
    export_dir: tfx.dsl.components.Parameter[str],
) -> None:
    """Fails the run when a split lost or gained rows, has anomalies, or eval drifted.

    Counts first (``count_rows``): statistics of a truncated split would look plausible. On an
    anomaly the list is also written to ``anomalies.json`` in the output folder.
    """
    row_counts.write(counts.uri, count_rows(examples, statistics, export_dir))
    lines: list[str] = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(anomalies.uri, f"Split-{split}", ANOMALIES_FILE)
        found = anomalies_pb2.Anomalies()
        found.ParseFromString(io_utils.read_bytes_file(path))
        lines += validation.anomaly_lines(found, split)
    schema_proto = _read_schema(schema)
    lines += validation.drift_lines(
        schema_proto,
        stats_artifact_utils.load_statistics(statistics, F.TRAIN_SPLIT).proto(),
        stats_artifact_utils.load_statistics(statistics, F.EVAL_SPLIT).proto(),
    )
    if lines:
        # Kept for the post-mortem; a passing run's folder holds only the schema (Transform and
        # the Trainer require exactly one file there).
        io_utils.write_string_file(
            os.path.join(validated_schema.uri, REPORT_FILE),
            json.dumps({"anomalies": lines}, indent=2),
        )
        raise AnomaliesFound(
            f"{len(lines)} data anomalies; the run stops before training:\n  " + "\n  ".join(lines)
        )
    io_utils.write_pbtxt_file(os.path.join(validated_schema.uri, SCHEMA_FILE), schema_proto)


def count_rows(examples, statistics, export_dir: str) -> dict:
    """Checks every split's examples (and StatisticsGen's count) against the export's rows.

    Returns:
      The RowCounts payload: ``{"splits": {split: rows, "eval_visitors": n}, CHECKS_KEY: [...]}``.

    Raises:
      RowCountMismatch: ExampleGen wrote, or StatisticsGen read, more or fewer rows than the
        export has.
      RetailrecError: the export folder has no summary to count against.
    """
    import tensorflow as tf

    summary_path = os.path.join(export_dir, F.EXPORT_SUMMARY_FILE)
    if not tf.io.gfile.exists(summary_path):
        raise RetailrecError(
            f"{summary_path}: not found; the examples cannot be counted against the export "
            "(run `retailrec export` into this folder)"
        )
    with tf.io.gfile.GFile(summary_path) as fh:
        split_summary = json.loads(fh.read())["split"]
    expected = {
        F.TRAIN_SPLIT: split_summary["n_train"],
        F.EVAL_SPLIT: split_summary["n_eval_queries"],
        F.ITEMS_SPLIT: split_summary["n_items"],
    }
    checks = [
        row_counts.check(
            "CsvExampleGen", split, "examples", rows, examples_io.count_records(examples.uri, split)
        )
        for split, rows in expected.items()
    ]
    for split in artifact_utils.decode_split_names(statistics.split_names):
        stats = stats_artifact_utils.load_statistics(statistics, split).proto()
        found = sum(d.num_examples for d in stats.datasets)
        checks.append(row_counts.check("StatisticsGen", split, "examples", expected[split], found))
    return {
        "splits": {**expected, "eval_visitors": int(split_summary["eval_visitors"])},
        row_counts.CHECKS_KEY: checks,
    }
