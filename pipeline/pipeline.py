"""The one ``create_pipeline`` shared by every runner (local, Kubeflow/Vertex).

Platform differences arrive as optional arguments (Beam args, metadata config), never as a second
pipeline definition.
"""

from __future__ import annotations

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.baselines.baselines import BASELINE_NAMES
from components.baselines.component import Baselines
from components.validation.component import CurateSchema, ValidationGate
from modules import features as F


def interactions_input_config() -> example_gen_pb2.Input:
    """The export's time split, as ExampleGen splits (not hash buckets)."""
    return example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name=F.TRAIN_SPLIT, pattern=f"{F.TRAIN_SPLIT}/*.csv"),
            example_gen_pb2.Input.Split(name=F.EVAL_SPLIT, pattern=f"{F.EVAL_SPLIT}/*.csv"),
        ]
    )


def items_input_config() -> example_gen_pb2.Input:
    """The item catalogue as one split."""
    return example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=F.ITEMS_SPLIT, pattern=f"{F.ITEMS_SPLIT}/*.csv")]
    )


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    export_dir: str,
    schema_path: str,
    *,
    baselines: list[str] | tuple[str, ...] = BASELINE_NAMES,
    exclude_seen: bool = False,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    """Builds the retailrec DAG.

    Args:
      pipeline_name: name recorded in ML Metadata.
      pipeline_root: where artifacts are written (a local folder or ``gs://``).
      export_dir: the export folder (``train/``, ``eval/``, ``items/`` CSVs).
      schema_path: the curated schema (``schema/schema.pbtxt``).
      baselines: baseline names the Baselines component runs (empty: no Baselines component).
      exclude_seen: drop items a visitor had in train from every model's list (DESIGN 5).
      metadata_connection_config: ML Metadata store (None: the runner's default).
      beam_pipeline_args: arguments of every Beam-powered component.
      enable_cache: reuse the results of components whose inputs did not change.

    Returns:
      The pipeline, ready for any TFX runner.
    """
    # The export's time split becomes the ExampleGen splits, so every model sees the same protocol.
    example_gen = tfx.components.CsvExampleGen(
        input_base=export_dir, input_config=interactions_input_config()
    )
    # The catalogue (cold items included) is embedded and indexed from its own ExampleGen.
    items_gen = tfx.components.CsvExampleGen(
        input_base=export_dir, input_config=items_input_config()
    ).with_id("ItemsExampleGen")
    # Statistics feed the schema, the validation and the TFDV report (train vs eval drift).
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    # The curated schema (domains, presence, drift) is imported; SchemaGen adds this data's
    # numeric property columns to it, and any other unexpected column becomes an anomaly.
    curated_schema = tfx.components.ImportSchemaGen(schema_file=schema_path).with_id(
        "CuratedSchemaImporter"
    )
    curate_schema = CurateSchema(
        curated_schema=curated_schema.outputs["schema"],
        inferred_schema=schema_gen.outputs["schema"],
    )
    # Anomalies (missing columns, unexpected values) are found before anything trains ...
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=curate_schema.outputs["schema"]
    )
    # ... and stop the run: Transform reads the schema only this gate passes on (fail closed).
    validation_gate = ValidationGate(
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=curate_schema.outputs["schema"],
    )
    components = [
        example_gen,
        items_gen,
        statistics_gen,
        schema_gen,
        curated_schema,
        curate_schema,
        example_validator,
        validation_gate,
    ]

    if baselines:
        # The bar the two-tower must clear, measured on the same split with the same metric.
        components.append(
            Baselines(
                examples=example_gen.outputs["examples"],
                baselines=list(baselines),
                exclude_seen=exclude_seen,
                train_split=F.TRAIN_SPLIT,
                eval_split=F.EVAL_SPLIT,
            )
        )

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
