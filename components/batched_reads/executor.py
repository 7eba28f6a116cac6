"""TFX's StatisticsGen and Transform executors, reading the examples in batches of `READ_BATCH_ROWS`.

Both stock executors read a split through TFXIO's ``BeamSource()`` with no batch size, which
leaves the batching to Beam's ``BatchElements``, capped at 1,000 records
(``tfx_bsl.coders.batch_util._BATCH_SIZE_CAP``). Each batch then pays fixed costs: its decoding
into an Arrow RecordBatch, a call of every statistics generator, a run of the preprocessing graph.
At RetailRocket scale (1.9M train records of about 1 KB; the full examples, 2 Beam workers,
stock and batched in alternation; docs/benchmarks.md) batches of 8,192 took TFDV's statistics of
train and eval 4.7-22 s less (110.3-130.9 s stock) and the Transform executor 6 s less (113.2 ->
107.3 s). Nothing else changes: the statistics are the same but for the last digit of some means
and standard deviations (sums in another order), and the transform graph has the same
vocabularies and gives the same outputs.

The executors are the stock ones; only the batch size they ask TFXIO for differs. A batch of
8,192 such records is about 8 MB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.transform import executor as transform_executor
from tfx_bsl.tfxio import tf_example_record

READ_BATCH_ROWS = 8192


def _compression(path: str) -> str:
    """tf.data's compression of a TFRecord file, from its name as Beam's reader infers it."""
    return "GZIP" if path.endswith(".gz") else ""


def _record_batches(path: str, rows: int) -> Iterator[list[bytes]]:
    """The serialized records of one TFRecord file, ``rows`` at a time, through tf.data's reader."""
    import tensorflow as tf

    from modules import columns  # imports TensorFlow

    dataset = tf.data.TFRecordDataset(path, compression_type=_compression(path)).batch(rows)
    for records in columns.without_autotune(dataset):
        yield records.numpy().tolist()


def _files(file_patterns: list[str]) -> list[str]:
    """Every file of the patterns, sorted; a pattern that matches nothing is an error, as in Beam."""
    import tensorflow as tf

    files = []
    for pattern in file_patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"{pattern}: no TFRecord file matches")
        files += matched
    return files


class TFExampleFiles(tf_example_record.TFExampleRecord):
    """TFXIO's ``TFExampleRecord`` whose sources read the files with tf.data's C++ reader.

    TFXIO reads TFRecords with Beam's ``ReadFromTFRecord``, which frames records and checks their
    CRCs in Python: 27% of StatisticsGen's profile at RetailRocket scale, about 36 us a record of
    1 KB (docs/benchmarks.md). Here each worker reads whole files with ``tf.data.TFRecordDataset``
    (the same framing and CRC checks, in C++) and ``BeamSource`` hands the records on in the
    batches it was asked for, decoded by TFXIO's own decoder, with no per-record Beam element in
    between. The files are spread over the workers (a Reshuffle of their names); a compressed
    file is read by one worker, as Beam reads it. Everything else (schema, projection, tensor
    representations) is the ``TFExampleRecord``'s.
    """

    def __init__(self, *args, rows: int = READ_BATCH_ROWS, **kwargs):
        """``TFExampleRecord``'s arguments, and ``rows``: records per batch unless asked."""
        super().__init__(*args, **kwargs)
        self._rows = int(rows)

    @classmethod
    def of(cls, tfxio: tf_example_record.TFExampleRecord, rows: int = READ_BATCH_ROWS):
        """The same TFXIO (files, schema, raw record column, telemetry) with these sources."""
        return cls(
            file_pattern=tfxio._file_pattern,  # noqa: SLF001 (TFExampleRecord's own fields)
            schema=tfxio._schema,  # noqa: SLF001
            raw_record_column_name=tfxio.raw_record_column_name,
            telemetry_descriptors=tfxio.telemetry_descriptors,
            rows=rows,
        )

    def _batches(self, rows: int) -> beam.PTransform:
        patterns = list(self._file_pattern)

        @beam.ptransform_fn
        def read(pipeline):
            return (
                pipeline
                | "Files" >> beam.Create(_files(patterns))
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadBatches" >> beam.FlatMap(_record_batches, rows)
            )

        return read()

    def _RawRecordBeamSourceInternal(self) -> beam.PTransform:  # noqa: N802 (TFXIO's interface)
        @beam.ptransform_fn
        def records(pipeline):
            return (
                pipeline
                | "Batches" >> self._batches(self._rows)
                | "Records" >> beam.FlatMap(lambda batch: batch)
            )

        return records()

    def BeamSource(self, batch_size: int | None = None) -> beam.PTransform:  # noqa: N802
        """Arrow RecordBatches of ``batch_size`` records (default ``rows``; a file's last batch
        may be shorter)."""
        decode = tf_example_record._DecodeBatchExamplesDoFn(  # noqa: SLF001 (TFXIO's decoder)
            self._GetSchemaForDecoding(), self.raw_record_column_name
        )

        @beam.ptransform_fn
        def source(pipeline):
            return (
                pipeline
                | "ReadRecordBatches" >> self._batches(batch_size or self._rows)
                | "Decode" >> beam.ParDo(decode)
            )

        return source()

    def _ProjectImpl(self, tensor_names: list[str]) -> TFExampleFiles:  # noqa: N802
        return TFExampleFiles.of(super()._ProjectImpl(tensor_names), self._rows)


def faster(tfxio: Any, rows: int = READ_BATCH_ROWS) -> Any:
    """``tfxio`` reading through `TFExampleFiles` if it is a plain ``TFExampleRecord``, else
    through a `BatchedTFXIO`; batches of ``rows`` records unless a batch size is asked for."""
    if type(tfxio) is tf_example_record.TFExampleRecord:
        return TFExampleFiles.of(tfxio, rows)
    return BatchedTFXIO(tfxio, rows)


class BatchedTFXIO:
    """A TFXIO whose ``BeamSource()`` batches ``rows`` records unless a batch size is given."""

    def __init__(self, tfxio: Any, rows: int = READ_BATCH_ROWS):
        self._tfxio = tfxio
        self._rows = int(rows)

    def BeamSource(self, batch_size: int | None = None):  # noqa: N802 (TFXIO's interface)
        """The wrapped TFXIO's source, with ``rows`` records per batch by default."""
        return self._tfxio.BeamSource(batch_size or self._rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tfxio, name)


@contextlib.contextmanager
def _swapped(module: Any, name: str, value: Any) -> Iterator[None]:
    """``module.name`` is ``value`` within the block, and what it was again after it.

    TFX's ``Do`` methods pick their reader inline (the StatisticsGen executor's
    ``tfxio_utils.get_split_tfxio(...).BeamSource()``, the Transform executor's
    ``TransformProcessor()``), with no hook between; the executor module's reference is swapped
    for the ``Do`` only (LocalDagRunner and Vertex run one executor per process at a time).
    """
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


class _BatchedTFXIOUtils:
    """``tfxio_utils`` whose ``get_split_tfxio`` returns `BatchedTFXIO`s."""

    def __init__(self, utils: Any, rows: int):
        self._utils = utils
        self._rows = rows

    def get_split_tfxio(self, *args, **kwargs) -> Any:
        return faster(self._utils.get_split_tfxio(*args, **kwargs), self._rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._utils, name)


class StatisticsGenExecutor(statistics_gen_executor.Executor):
    """TFX's StatisticsGen executor reading each split in batches of `READ_BATCH_ROWS`."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 (TFX's interface)
        utils = _BatchedTFXIOUtils(statistics_gen_executor.tfxio_utils, READ_BATCH_ROWS)
        with _swapped(statistics_gen_executor, "tfxio_utils", utils):
            super().Do(input_dict, output_dict, exec_properties)


class _BatchedTransformProcessor(transform_executor.TransformProcessor):
    """TFX's TransformProcessor asking TFXIO for batches of `READ_BATCH_ROWS`.

    TFX asks for batches of 1 only for SequenceExamples decoded as raw records; that stays.
    """

    def _GetDesiredBatchSize(self, data_format: int, schema: Any) -> int | None:  # noqa: N802
        return super()._GetDesiredBatchSize(data_format, schema) or READ_BATCH_ROWS

    def _CreateTFXIO(self, dataset: Any, schema: Any) -> Any:  # noqa: N802
        tfxio = super()._CreateTFXIO(dataset, schema)
        if type(tfxio) is tf_example_record.TFExampleRecord:
            return TFExampleFiles.of(tfxio, READ_BATCH_ROWS)
        return tfxio


class TransformExecutor(transform_executor.Executor):
    """TFX's Transform executor reading in batches of `READ_BATCH_ROWS`.

    TFX's ``Do`` runs ``TransformProcessor().Transform(...)`` inline (see `_swapped`).
    """

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 (TFX's interface)
        with _swapped(transform_executor, "TransformProcessor", _BatchedTransformProcessor):
            super().Do(input_dict, output_dict, exec_properties)
