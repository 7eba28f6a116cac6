"""Fixes for two data-loss bugs in Beam's portable DirectRunner, applied before every local run.

Both come from time-based flushing of the gRPC data plane (``data_plane.
TimeBasedBufferingClosableOutputStream``), which the DirectRunner (FnApiRunner) turns on with a
1,000 ms period (``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS``) for every stream it creates in the
gRPC modes: the runner's streams to its workers in ``multi_processing`` and ``multi_threading``,
and the in-process worker's own output streams in ``multi_threading``. A background thread flushes
such a stream once a period, under a lock::

    self._flush_callback(self.get())   # send what the buffer holds now
    self._clear()                      # ... and empty it

1. **Lost writes.** ``write`` takes no lock, so bytes written between the flusher's ``get()`` and
   ``_clear()`` are thrown away. ``BundleManager._send_input_to_worker`` writes a stage's buffered
   input to a worker in whole received chunks (about 10 MB each, the workers' own flush size) in
   a tight loop; a full-scale run of TFX's CsvExampleGen in ``multi_processing`` lost one such
   chunk, ~20,000 rows (1.06%) of the train split, a different one each time (issue 12). Its
   parsed lines feed a side input (column type inference), so the whole split is buffered in the
   runner and re-sent to the workers, and ExampleGen's shuffle before writing does the same.
2. **Split elements.** The flusher flushes wherever the writer is, also in the middle of an element
   that the worker encodes in several writes (timestamp, windows, pane, value): the receiver then
   decodes garbage (``Invalid PaneInfoEncoding``), seen in ``multi_threading`` mode.

Nothing in a batch pipeline needs time-based flushing. The fix turns it off
(``DATA_BUFFER_TIME_LIMIT_MS = 0``: every stream is size-based, flushed only at element boundaries
by its writer) and makes the runner flush its input to a worker after each chunk it writes, as
the workers do after each element, so that a large input still travels in ~10 MB messages
instead of one message the size of the whole stage input. ``in_memory`` mode never used gRPC.

Upstream: Apache Beam 2.59.0, the pinned release; unchanged through 2.77.0, the newest checked
(time-based flushing came with apache/beam PR #10246, BEAM-7949); no upstream issue reports it.
Dataflow does not run the FnApiRunner, so only local runs need this; ``apply()`` is idempotent and
called by ``pipeline.local_runner.run``.
"""

from __future__ import annotations

from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers

_MARK = "_retailrec_flushes_per_chunk"


def _send_input_to_worker(self, process_bundle_id, read_transform_id, byte_streams) -> None:
    """Beam 2.59.0's method (unchanged through 2.77.0), flushing after each chunk it writes."""
    assert self._worker_handler is not None
    data_out = self._worker_handler.data_conn.output_stream(process_bundle_id, read_transform_id)
    for byte_stream in byte_streams or []:
        data_out.write(byte_stream)
        data_out.maybe_flush()  # each chunk holds whole elements: a safe place to send
    data_out.close()


def apply() -> None:
    """Size-based data-plane flushing only, in this process's DirectRunner (see the docstring)."""
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
    manager = fn_runner.BundleManager
    if not getattr(manager, _MARK, False):
        manager._send_input_to_worker = _send_input_to_worker
        setattr(manager, _MARK, True)


def applied() -> bool:
    """Whether ``apply`` has run in this process (and nothing turned time flushing back on)."""
    return (
        bool(getattr(fn_runner.BundleManager, _MARK, False))
        and worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0
    )
