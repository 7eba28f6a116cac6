"""Progress inside long steps (export phases, training epochs, index tuning), as log records.

Code that runs for minutes calls `report` at each milestone. The record goes to the
``retailrec.progress`` logger: ``retailrec run`` shows it on the terminal under the running
component (``pipeline/progress.py``) and keeps it in ``logs/run.log``; anywhere else (Vertex,
Dataflow, tests) it is an ordinary INFO log line.
"""

from __future__ import annotations

import logging

LOGGER_NAME = "retailrec.progress"
_logger = logging.getLogger(LOGGER_NAME)


def report(message: str, *args) -> None:
    """Logs one progress line (``%``-style arguments, like ``logging``)."""
    _logger.info(message, *args)
