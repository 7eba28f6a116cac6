"""The export as a pipeline step: raw RetailRocket files (an imported artifact) -> the export folder.

On Vertex AI the pipeline starts from the raw files the user uploaded: an Importer records the raw
folder as a ``RawData`` artifact (lineage starts there), ``Export`` runs the DuckDB export
(``export.export``) into the pipeline's export folder (CsvExampleGen's ``input_base``, the
ValidationGate's ``export_dir``; both run after it) and records that folder's URI, split sizes and
fingerprint as its ``String`` output.
"""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact, component_spec, standard_artifacts

from components.export import executor
from modules import constants

NODE_ID = "Export"
RAW_IMPORTER_NODE_ID = "RawDataImporter"


class RawData(artifact.Artifact):
    """A folder of RetailRocket raw files: events.csv, item_properties*.csv, category_tree.csv."""

    TYPE_NAME = "retailrec.RawData"


class ExportSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of ``Export``."""

    PARAMETERS = {
        executor.EXPORT_DIR_KEY: component_spec.ExecutionParameter(type=str),
        "cutoff": component_spec.ExecutionParameter(type=str),
        "sample_items": component_spec.ExecutionParameter(type=int, optional=True),
        "sample_seed": component_spec.ExecutionParameter(type=int),
        "history_length": component_spec.ExecutionParameter(type=int),
        "min_coverage": component_spec.ExecutionParameter(type=float),
    }
    INPUTS = {executor.RAW_KEY: component_spec.ChannelParameter(type=RawData)}
    OUTPUTS = {executor.OUTPUT_KEY: component_spec.ChannelParameter(type=standard_artifacts.String)}


class Export(base_component.BaseComponent):
    """Runs the export of a raw folder into ``export_dir`` (reusing an identical export there)."""

    SPEC_CLASS = ExportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        raw: tfx.dsl.Channel,
        export_dir: str,
        *,
        cutoff: str = constants.DEFAULT_CUTOFF,
        sample_items: int | None = None,
        sample_seed: int = constants.SAMPLE_ITEMS_SEED,
        history_length: int = constants.HISTORY_LENGTH,
        min_coverage: float = constants.PROPERTY_MIN_COVERAGE,
    ):
        """Builds the step.

        Args:
          raw: channel of the ``RawData`` folder (``raw_importer``'s output).
          export_dir: the export folder (local or ``gs://``); the pipeline owns it.
          cutoff, sample_items, sample_seed, history_length, min_coverage: the export's
            parameters (``export.export``).
        """
        super().__init__(
            spec=ExportSpec(
                raw=raw,
                export_dir=export_dir,
                cutoff=str(cutoff),
                sample_items=sample_items,
                sample_seed=sample_seed,
                history_length=history_length,
                min_coverage=min_coverage,
                **{executor.OUTPUT_KEY: tfx.dsl.Channel(type=standard_artifacts.String)},
            )
        )


def raw_importer(raw_dir: str) -> tfx.dsl.Importer:
    """The Importer that records the raw folder as the pipeline's first artifact."""
    return tfx.dsl.Importer(source_uri=raw_dir, artifact_type=RawData).with_id(RAW_IMPORTER_NODE_ID)
