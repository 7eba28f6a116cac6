"""Readable progress for ``retailrec run``: one line per component, library logs to a file.

TensorFlow, Beam and TFX log a great deal, partly from C++ straight to file descriptor 2. While the
pipeline runs, descriptor 2 and every Python log record go to ``OUTPUT/logs/run.log``; the terminal
gets which component is running, how long each took, and the milestones that long steps report
through ``modules.progress`` (training epochs with their validation Recall, index tuning), indented
under their component.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator

from modules import progress as step_progress

_RUNNING = re.compile(r"^Component (\S+) is running\.$")
_FINISHED = re.compile(r"^Component (\S+) is finished\.$")
_SKIPPED = re.compile(r"^Skipping component (\S+)\.$")


class _StepProgress(logging.Handler):
    """Prints ``modules.progress`` records, indented under the running component."""

    def __init__(self, components: _ComponentProgress):
        super().__init__(level=logging.INFO)
        self._components = components

    def emit(self, record: logging.LogRecord) -> None:
        running = self._components.running or ""
        self._components._print(
            f"[pipeline]   {running + ':' if running else ''} {record.getMessage()}"
        )


class _ComponentProgress(logging.Handler):
    """Turns LocalDagRunner's "Component X is running/finished" records into terminal lines."""

    def __init__(self, out):
        super().__init__(level=logging.INFO)
        self._out = out
        self._started: dict[str, float] = {}
        self.finished: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if match := _RUNNING.match(message):
            self._started[match[1]] = time.monotonic()
            self._print(f"[pipeline] {match[1]:<24} running ...")
        elif match := _FINISHED.match(message):
            seconds = time.monotonic() - self._started.get(match[1], time.monotonic())
            self.finished[match[1]] = seconds
            self._print(f"[pipeline] {match[1]:<24} done in {seconds:6.1f} s")
        elif match := _SKIPPED.match(message):
            self._print(f"[pipeline] {match[1]:<24} skipped")

    @property
    def running(self) -> str | None:
        """The component started last and not finished (the one a failure belongs to)."""
        pending = [c for c in self._started if c not in self.finished]
        return pending[-1] if pending else None

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)


@contextlib.contextmanager
def pipeline_logging(log_file: str, quiet: bool = True) -> Iterator[_ComponentProgress]:
    """Sends library logs to ``log_file`` and component progress to the terminal.

    Args:
      log_file: where every log record (and, when quiet, descriptor 2) goes.
      quiet: also redirect descriptor 2 (C++ logs of TensorFlow and friends) to the file.

    Yields:
      The progress handler (``.finished`` maps component ids to seconds).
    """
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    terminal = sys.stdout
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    progress = _ComponentProgress(terminal)
    root.handlers = [file_handler]
    root.setLevel(logging.INFO)
    # On absl's own logger (LocalDagRunner logs through absl): libraries that reset the root
    # logger's handlers mid-run (Beam does) do not silence the progress lines.
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(progress)
    # Some component libraries lower absl's verbosity to WARNING mid-run, which would hide the
    # "Component X is finished" records; keep INFO reachable for the run's duration.
    absl_logger.setLevel(logging.INFO)
    absl_logger.setLevel = lambda level: logging.Logger.setLevel(  # type: ignore[method-assign]
        absl_logger, min(level, logging.INFO) if level else logging.INFO
    )
    steps_logger = logging.getLogger(step_progress.LOGGER_NAME)
    steps = _StepProgress(progress)
    steps_logger.addHandler(steps)
    steps_logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    saved_fd = None
    if quiet:
        sys.stderr.flush()
        saved_fd = os.dup(2)
        log_fd = os.open(log_file, os.O_WRONLY | os.O_APPEND)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    try:
        yield progress
    finally:
        if saved_fd is not None:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        absl_logger.removeHandler(progress)
        steps_logger.removeHandler(steps)
        del absl_logger.setLevel  # back to logging.Logger.setLevel
        logging.captureWarnings(False)
        file_handler.close()
        root.handlers, root.level = saved_handlers, saved_level


class _PrefixedLines(logging.Handler):
    """Prints ``modules.progress`` records after a fixed prefix."""

    def __init__(self, prefix: str, out):
        super().__init__(level=logging.INFO)
        self._prefix, self._out = prefix, out

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{self._prefix}{record.getMessage()}", file=self._out, flush=True)


@contextlib.contextmanager
def step_lines(prefix: str) -> Iterator[None]:
    """Shows ``modules.progress`` milestones on the terminal while the block runs.

    For long work outside the pipeline's logging (the export before ``retailrec run``'s DAG):
    ``with step_lines("[export]   "): export.export(...)``.
    """
    logger = logging.getLogger(step_progress.LOGGER_NAME)
    handler = _PrefixedLines(prefix, sys.stdout)
    saved_level, saved_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # shown once, here; not again by the root logger's handler
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate
