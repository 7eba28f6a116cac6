"""Executor of the pipeline's ExampleGen: CSV files to gzipped tf.Example TFRecords, like TFX's
CsvExampleGen (same examples, same splits, same artifact) but parsed in Arrow (``csv_examples``).

TFX's base ExampleGen executor does the rest as for any ExampleGen: one ``InputToRecord`` per
input split, then its own shuffle-and-write to ``Split-<name>/data_tfrecord-*.gz``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import apache_beam as beam
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs

from components.csv_example_gen import csv_examples


class _ReadSplit(beam.DoFn):
    """Reads all CSV files of one split and emits its rows as serialized tf.Examples."""

    def process(self, paths: list[str]):
        table = csv_examples.read_split(paths, open_file=fileio.open)
        types = csv_examples.infer_types(table)
        logging.info(
            "ExampleGen: %d rows from %s; column types %s",
            table.num_rows,
            paths,
            {name: kind.name for name, kind in types.items()},
        )
        for batch in csv_examples.serialized_examples(table, types):
            yield from batch


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _CsvToSerializedExamples(  # noqa: N802 (Beam PTransform names are PascalCase)
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    paths = sorted(fileio.glob(pattern))
    if not paths:
        raise RuntimeError(f"Split pattern {pattern} does not match any files.")
    # One element: the split's files are read together so that a column's type is inferred over
    # the whole split, as CsvExampleGen does.
    return pipeline | "SplitFiles" >> beam.Create([paths]) | "ReadCsv" >> beam.ParDo(_ReadSplit())


class Executor(BaseExampleGenExecutor):
    """ExampleGen executor for CSV files (header line first), Arrow-parsed."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 (TFX interface)
        return _CsvToSerializedExamples
