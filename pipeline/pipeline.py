"""The one ``create_pipeline`` shared by every runner (local, Kubeflow/Vertex).

Platform differences arrive as optional arguments (Beam args, metadata config, Vertex training
args), never as a second pipeline definition.
"""

from __future__ import annotations

from typing import Any

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2, transform_pb2

from components.baselines.baselines import BASELINE_NAMES
from components.baselines.component import Baselines
from components.batched_reads.component import StatisticsGen, Transform
from components.csv_example_gen.component import CsvExampleGen
from components.curated_schema.component import ImportCuratedSchema
from components.export.component import Export, raw_importer
from components.pusher.component import Pusher
from components.retrieval_evaluator.component import RetrievalEvaluator
from components.scann_index.component import ScannIndex
from components.validation.component import CurateSchema, ValidationGate
from modules import constants
from modules import features as F

# Node ids: the components' names in ML Metadata; reporting/results.py reads their outputs by
# these names.
VALIDATION_GATE = "ValidationGate"
BASELINES = "Baselines"
SCANN_INDEX = "ScannIndex"
EVALUATOR = "RetrievalEvaluator"
PUSHER = "Pusher"
SCANN_PUSHER = "ScannPusher"
EXPORT = "Export"
CURATED_SCHEMA_IMPORTER = "CuratedSchemaImporter"
TUNER = "Tuner"
TRAINER = "Trainer"
# With tune_trials=0 (no Tuner): the latest HyperParameters artifact of an earlier run.
HYPERPARAMETERS_RESOLVER = "LatestHyperparametersResolver"

PREPROCESSING_FN = "modules.transform.preprocessing_fn"
RUN_FN = "modules.trainer.run_fn"
TUNER_FN = "modules.tuner.tuner_fn"
SERVING_MODEL_NAME = "retailrec"  # brute force: the stock TF Serving image serves it
SCANN_SERVING_MODEL_NAME = "retailrec_scann"  # needs the ScaNN ops (ScaNN-enabled TF Serving)


class LatestOrNothingStrategy(tfx.dsl.experimental.LatestArtifactStrategy):
    """TFX's LatestArtifactStrategy, except that no artifact yet resolves nothing, not a failure.

    The stock strategy fails its resolver node when the channel has no artifact (a first run with
    ``tune_trials=0``); the Trainer then trains with the defaults either way, but the run would
    report a failed node.
    """

    def resolve_artifacts(self, store, input_dict):
        """The latest artifact of each channel, or none."""
        return self._resolve(input_dict)


def example_gen_input_config() -> example_gen_pb2.Input:
    """The export's folders as ExampleGen splits: the time split (not hash buckets) + the catalogue."""
    return example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name=split, pattern=f"{split}/*.csv")
            for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT, F.ITEMS_SPLIT)
        ]
    )


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    export_dir: str,
    schema_path: str,
    serving_dir: str,
    *,
    raw_dir: str | None = None,
    export_config: dict[str, Any] | None = None,
    baselines: list[str] | tuple[str, ...] = BASELINE_NAMES,
    exclude_seen: bool = False,
    training_config: dict[str, Any] | None = None,
    tune_trials: int = constants.TUNE_TRIALS,
    min_recall: float = constants.MIN_RECALL_AT_50,
    scann_target_recall: float = constants.SCANN_TARGET_RECALL,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
    beam_pipeline_args: list[str] | None = None,
    vertex_training_args: dict[str, Any] | None = None,
    latest_artifact_strategy: type = LatestOrNothingStrategy,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    """Builds the retailrec DAG.

    Args:
      pipeline_name: name recorded in ML Metadata.
      pipeline_root: where artifacts are written (a local folder or ``gs://``).
      export_dir: the export folder (``train/``, ``eval/``, ``items/`` CSVs); with ``raw_dir``
        the pipeline's Export step writes it, otherwise it must hold an export already.
      schema_path: the curated schema: a path relative to the project root (read where the
        pipeline's code runs, e.g. inside the image), an absolute path or a ``gs://`` URI.
      serving_dir: base folder of pushed models (``<serving_dir>/retailrec/<version>/``, and the
        ScaNN variant in ``<serving_dir>/retailrec_scann/<version>/``).
      raw_dir: when given, the DAG starts from this RetailRocket raw folder (local or ``gs://``):
        an Importer records it and an Export step exports it into ``export_dir`` (reusing an
        identical export there) before CsvExampleGen.
      export_config: ``components.export.component.Export`` parameters (cutoff, sample_items,
        sample_seed, history_length, min_coverage); only with ``raw_dir``.
      baselines: baseline names the Baselines component runs (empty: no Baselines component, and
        the gate then has no baseline bar).
      exclude_seen: drop items a visitor had in train from every model's list (DESIGN 5).
      training_config: JSON settings for Transform and the Trainer (keys of
        ``modules.training.settings`` and ``modules.transform.settings``), e.g. ``{"epochs": 3}``.
        A key given here is fixed: the Tuner does not search it.
      tune_trials: trials of the Tuner (``modules.tuner``: trial 1 is the defaults) on the
        validation window; 0: no Tuner, the Trainer gets the latest HyperParameters an earlier
        run of this pipeline produced (a resolver), or none (the defaults).
      min_recall: the gate's absolute floor of Recall@50.
      scann_target_recall: Recall@50 against exact search the ScaNN index must reach to push.
      metadata_connection_config: ML Metadata store (None: the runner's default).
      beam_pipeline_args: arguments of every Beam-powered component.
      vertex_training_args: when given, the Tuner and the Trainer run as Vertex AI custom jobs
        with these ``{"project": ..., "region": ..., "job_spec": {...}}`` settings.
      latest_artifact_strategy: the strategy of the resolver that replaces the Tuner when
        ``tune_trials`` is 0. Kubeflow/Vertex compiles only TFX's own
        ``LatestArtifactStrategy`` (and Vertex resolves nothing there without failing);
        locally `LatestOrNothingStrategy` keeps a first run from reporting a failed node.
      enable_cache: reuse the results of components whose inputs did not change.

    Returns:
      The pipeline, ready for any TFX runner.

    Raises:
      ValueError: ``tune_trials`` is negative.
    """
    if tune_trials < 0:
        raise ValueError(f"tune_trials={tune_trials}: give 1 or more trials, or 0 for no Tuner")
    training_config = dict(training_config or {})
    components: list[Any] = []
    export = None
    if raw_dir:
        # A Vertex user uploads the raw files and submits one pipeline: the export runs inside
        # it, and ML Metadata lineage starts at the raw folder. CsvExampleGen and the gate read
        # its folder (a constant: TFX 1.16 compiles an upstream output used as a parameter to a
        # task name that does not exist, "Export_task"), so they run after it.
        raw = raw_importer(raw_dir)
        export = Export(
            raw=raw.outputs["result"], export_dir=export_dir, **(export_config or {})
        ).with_id(EXPORT)
        components += [raw, export]
    # The export's time split becomes the ExampleGen splits, so every model sees the same protocol;
    # the catalogue (cold items included) rides along as a third split for the Trainer.
    # TFX's FileBasedExampleGen with an Arrow CSV executor: the examples CsvExampleGen would write,
    # about 10x faster (components/csv_example_gen).
    example_gen = CsvExampleGen(export_dir, example_gen_input_config())
    interaction_splits_only = [F.ITEMS_SPLIT]
    # Statistics feed the schema, the validation and the TFDV report (train vs eval drift).
    # TFX's StatisticsGen and Transform, reading batches of 8,192 records instead of Beam's 1,000.
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"], exclude_splits=interaction_splits_only
    )
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    # The curated schema (domains, presence, drift) is imported; SchemaGen adds this data's
    # numeric property columns to it, and any other unexpected column becomes an anomaly. It is
    # read where the code runs (the image on Vertex), so no path of the compiling machine.
    curated_schema = ImportCuratedSchema(schema_file=schema_path).with_id(CURATED_SCHEMA_IMPORTER)
    curate_schema = CurateSchema(
        curated_schema=curated_schema.outputs["schema"],
        inferred_schema=schema_gen.outputs["schema"],
    )
    # Anomalies (missing columns, unexpected values) are found before anything trains ...
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=curate_schema.outputs["schema"],
        exclude_splits=interaction_splits_only,
    )
    # ... and stop the run, as does any split whose examples do not number the export's rows:
    # Transform and the Trainer read the schema only this gate passes on, and everything that
    # reads examples after it checks its reads against the counts it verified (fail closed).
    validation_gate = ValidationGate(
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=curate_schema.outputs["schema"],
        export_dir=export_dir,
    ).with_id(VALIDATION_GATE)
    if export is not None:
        example_gen.add_upstream_node(export)
        validation_gate.add_upstream_node(export)
    validated_schema = validation_gate.outputs["validated_schema"]
    verified_counts = validation_gate.outputs["counts"]
    components += [
        example_gen,
        statistics_gen,
        schema_gen,
        curated_schema,
        curate_schema,
        example_validator,
        validation_gate,
    ]

    # Vocabularies, hashing and normalisation are analysed on train only; the graph is applied in
    # the trainer and inside the serving model, so training and serving cannot skew.
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=validated_schema,
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(analyze=[F.TRAIN_SPLIT], transform=[]),
        materialize=False,
        # StatisticsGen has the statistics of these very examples; the transformed features are
        # never materialised, so TFDV over them would only cost a second pass.
        disable_statistics=True,
        # The analyzer cache only pays when a later run analyses some of the same input again
        # (rolling spans, fed back as ``analyzer_cache``); nothing here reads it, and writing it
        # cost 38-57 s of Transform's 154-173 s at RetailRocket scale (docs/benchmarks.md).
        disable_analyzer_cache=True,
        custom_config=training_config,
    )
    if tune_trials:
        # The two-tower's settings (learning rate, embedding size, horizon, history and profile
        # widths) are searched on the validation window inside train, trial 1 being the defaults,
        # so the Trainer never gets settings that are worse there; never on the eval split.
        tuner_kwargs: dict[str, Any] = {
            "tuner_fn": TUNER_FN,
            "examples": example_gen.outputs["examples"],
            "transform_graph": transform.outputs["transform_graph"],
            "schema": validated_schema,
            # Trials read the train split (and the catalogue beside it); eval_files are unread.
            "train_args": tfx.proto.TrainArgs(splits=[F.TRAIN_SPLIT]),
        }
        tuner_config = {**training_config, constants.TUNE_TRIALS_KEY: tune_trials}
        if vertex_training_args:
            tuner = tfx.extensions.google_cloud_ai_platform.Tuner(
                **tuner_kwargs,
                custom_config=_vertex_job_config(
                    tuner_config,
                    vertex_training_args,
                    tfx.extensions.google_cloud_ai_platform.experimental.TUNING_ARGS_KEY,
                ),
            )
        else:
            tuner = tfx.components.Tuner(**tuner_kwargs, custom_config=tuner_config)
        settings_source = tuner.with_id(TUNER)
        hyperparameters = settings_source.outputs["best_hyperparameters"]
    else:
        # No search this run: the settings the latest earlier run chose (none on a new pipeline
        # root: the defaults), so that a quick re-run keeps what tuning found.
        settings_source = tfx.dsl.Resolver(
            strategy_class=latest_artifact_strategy,
            hyperparameters=tfx.dsl.Channel(type=tfx.types.standard_artifacts.HyperParameters),
        ).with_id(HYPERPARAMETERS_RESOLVER)
        hyperparameters = settings_source.outputs["hyperparameters"]
    # The two-tower trains on evaluation-shaped examples built from raw train rows (the
    # Transform graph applied in memory) with the chosen hyperparameters over training_config,
    # and exports the brute-force serving model.
    trainer_kwargs: dict[str, Any] = {
        "run_fn": RUN_FN,
        "examples": example_gen.outputs["examples"],
        "transform_graph": transform.outputs["transform_graph"],
        "schema": validated_schema,
        "hyperparameters": hyperparameters,
        "train_args": tfx.proto.TrainArgs(splits=[F.TRAIN_SPLIT]),
        "eval_args": tfx.proto.EvalArgs(splits=[F.EVAL_SPLIT]),
    }
    if vertex_training_args:
        trainer = tfx.extensions.google_cloud_ai_platform.Trainer(
            **trainer_kwargs,
            custom_config=_vertex_job_config(
                training_config,
                vertex_training_args,
                tfx.extensions.google_cloud_ai_platform.TRAINING_ARGS_KEY,
            ),
        )
    else:
        trainer = tfx.components.Trainer(**trainer_kwargs, custom_config=training_config)
    trainer = trainer.with_id(TRAINER)
    # The latest blessed model is re-evaluated on this run's eval data: no regression allowed.
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModelResolver")
    components += [transform, settings_source, trainer, latest_blessed]

    baseline_metrics = None
    if baselines:
        # The bar the two-tower must clear, measured on the same split with the same metric.
        baselines_component = Baselines(
            examples=example_gen.outputs["examples"],
            baselines=list(baselines),
            row_counts=verified_counts,
            exclude_seen=exclude_seen,
            train_split=F.TRAIN_SPLIT,
            eval_split=F.EVAL_SPLIT,
        ).with_id(BASELINES)
        baseline_metrics = baselines_component.outputs["baseline_metrics"]
        components.append(baselines_component)

    # A ScaNN index over the whole catalogue, tuned to the cheapest configuration that keeps
    # Recall@50 against exact search at the target on held-out queries.
    scann_index = ScannIndex(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        row_counts=verified_counts,
        target_recall=scann_target_recall,
        exclude_seen=exclude_seen,
        train_split=F.TRAIN_SPLIT,
        eval_split=F.EVAL_SPLIT,
    ).with_id(SCANN_INDEX)
    components.append(scann_index)

    # Recall@K of the model under the protocol; blesses only above the threshold, the latest
    # blessed model and the best baseline, and with a faithful index (fail closed).
    evaluator = RetrievalEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=latest_blessed.outputs["model"],
        baseline_metrics=baseline_metrics,
        index_metrics=scann_index.outputs["index_metrics"],
        row_counts=verified_counts,
        min_recall=min_recall,
        exclude_seen=exclude_seen,
        train_split=F.TRAIN_SPLIT,
        eval_split=F.EVAL_SPLIT,
    ).with_id(EVALUATOR)
    # Only a blessed model reaches the serving folder (TF Serving layout: <name>/<version>/), once:
    # the model TF Serving serves already is not pushed again (components/pusher).
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=f"{serving_dir.rstrip('/')}/{SERVING_MODEL_NAME}"
            )
        ),
    ).with_id(PUSHER)
    # The same blessing gates the ScaNN variant (same signature, ScaNN ops inside).
    scann_pusher = Pusher(
        model=scann_index.outputs["scann_model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=f"{serving_dir.rstrip('/')}/{SCANN_SERVING_MODEL_NAME}"
            )
        ),
    ).with_id(SCANN_PUSHER)
    components += [evaluator, pusher, scann_pusher]

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )


def _vertex_job_config(
    config: dict[str, Any], vertex_training_args: dict[str, Any], job_key: str
) -> dict[str, Any]:
    """``config`` plus what runs a component as a Vertex AI custom job (Trainer or Tuner).

    TFX pops ``project`` and submits ``job_spec`` (a CustomJobSpec) under ``job_key``.
    """
    return {
        **config,
        tfx.extensions.google_cloud_ai_platform.ENABLE_VERTEX_KEY: True,
        tfx.extensions.google_cloud_ai_platform.VERTEX_REGION_KEY: vertex_training_args["region"],
        job_key: {
            "project": vertex_training_args["project"],
            "job_spec": vertex_training_args["job_spec"],
        },
    }
