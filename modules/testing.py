"""Test and benchmark helpers only: the pipeline never imports this module.

`analyze` runs ``modules.transform.preprocessing_fn``'s analysis in-process (tf.Transform on Beam's
DirectRunner), so that tests and ``benchmarks/`` can start from the export's CSVs; the pipeline runs
the same analysis in the TFX Transform component.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf

from modules import columns as C
from modules import transform as T


def analyze(
    columns: dict[str, np.ndarray],
    output_dir: str,
    custom_config: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
) -> Any:
    """Runs ``preprocessing_fn``'s analysis in-process (tf.Transform on Beam's DirectRunner).

    The pipeline runs the same analysis in the TFX Transform component; this path serves tests and
    benchmarks that start from the export's CSVs, and is never called by the pipeline.

    Args:
      columns: raw columns of the train interactions.
      output_dir: where the transform output is written (a ``TFTransformOutput`` folder).
      custom_config: passed to ``preprocessing_fn``.
      spec: raw feature spec (default: ``modules.columns.raw_feature_spec`` of the columns).

    Returns:
      The ``TFTransformOutput``.
    """
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
    from tfx_bsl.coders import example_coder
    from tfx_bsl.tfxio import tf_example_record

    spec = spec or C.raw_feature_spec(columns)
    schema = schema_utils.schema_from_feature_spec(spec)
    arrow_types = {tf.string: pa.large_binary(), tf.int64: pa.int64(), tf.float32: pa.float32()}
    fields, arrays = [], []
    for name, feature in spec.items():
        values = np.asarray(columns[name])
        present = C.present_mask(values) if isinstance(feature, tf.io.VarLenFeature) else None
        kept = values if present is None else values[present]
        flat = C.as_numpy(kept, feature.dtype, fill=True)
        lengths = np.ones(len(values), np.int64) if present is None else present.astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        field_type = pa.large_list(arrow_types[feature.dtype])
        arrays.append(
            pa.LargeListArray.from_arrays(
                pa.array(offsets, pa.int64()),
                pa.array(
                    list(flat) if feature.dtype == tf.string else flat, arrow_types[feature.dtype]
                ),
            )
        )
        fields.append(pa.field(name, field_type))
    record_batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    # Through a TFRecord file, as the TFX Transform component reads Examples: data handed to Beam
    # in memory would be pickled and compressed into the pipeline (minutes for 100k rows).
    temp_dir = tempfile.mkdtemp(prefix="tft-")
    path = os.path.join(temp_dir, "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for start in range(0, record_batch.num_rows, C.TRANSFORM_BATCH):
            for record in example_coder.RecordBatchToExamples(
                record_batch.slice(start, C.TRANSFORM_BATCH)
            ):
                writer.write(record)
    source = tf_example_record.TFExampleRecord(file_pattern=path, schema=schema)

    def preprocessing(inputs):
        return T.preprocessing_fn(inputs, custom_config)

    options = PipelineOptions(["--direct_running_mode=in_memory"])  # one process, no staging
    context = tft_beam.Context(temp_dir=os.path.join(temp_dir, "tmp"), force_tf_compat_v1=False)
    with beam.Pipeline(options=options) as pipeline, context:
        raw = pipeline | "Read" >> source.BeamSource()
        transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(preprocessing)
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema),
        os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    shutil.rmtree(temp_dir, ignore_errors=True)
    return tft.TFTransformOutput(output_dir)
