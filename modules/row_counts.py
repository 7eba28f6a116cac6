"""Row counts at every boundary of the pipeline, checked fail-closed (issue 12).

The export says how many rows each split has (``export_summary.json``). The ValidationGate counts
the examples ExampleGen wrote and StatisticsGen read, and publishes the verified counts as a
``RowCounts`` artifact; every component that reads examples after it (Baselines, ScannIndex,
RetrievalEvaluator, and through the model's ``counts.json`` the Trainer and Transform) checks what
it read against that artifact. A mismatch raises ``RowCountMismatch``: one line naming the
component, the split, the expected and the found count; ``retailrec run`` exits with status 2.

Each component also writes the checks it made into its own output (``CHECKS_KEY``), and
``metrics.json`` gathers them under ``counts``. The artifact type is in ``components/artifacts.py``;
this module has no TFX dependency, so the Trainer's ``run_fn`` uses it too.
"""

from __future__ import annotations

import json
import os

from modules.errors import RetailrecError

COUNTS_FILE = "row_counts.json"  # in a RowCounts artifact, and beside a trained model
CHECKS_KEY = "count_checks"  # the list of checks inside each component's own JSON output


class RowCountMismatch(RetailrecError):
    """A component read more or fewer rows than the split has: the run stops."""


def check(component: str, split: str, what: str, expected: int, found: int) -> dict:
    """Raises ``RowCountMismatch`` unless ``found == expected``; returns the check's record."""
    record = {
        "component": component,
        "split": split,
        "what": what,
        "expected": int(expected),
        "found": int(found),
    }
    if int(found) != int(expected):
        raise RowCountMismatch(
            f"row count mismatch in {component}: split '{split}' should have {int(expected):,} "
            f"{what}, found {int(found):,}; the run stops before anything is pushed"
        )
    return record


def check_reads(
    component: str, expected: dict[str, int], reads: list[tuple[str, str, int]]
) -> list[dict]:
    """``check`` for each ``(split, what, found)`` read against ``expected[split]``."""
    return [check(component, split, what, expected[split], found) for split, what, found in reads]


def write(uri: str, payload: dict) -> None:
    """Writes a counts payload (``{"splits": {...}, CHECKS_KEY: [...]}``) into a folder."""
    import tensorflow as tf

    tf.io.gfile.makedirs(uri)
    with tf.io.gfile.GFile(os.path.join(uri, COUNTS_FILE), "w") as fh:
        fh.write(json.dumps(payload, indent=2, sort_keys=True))


def read(uri: str) -> dict:
    """Reads what ``write`` wrote."""
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(uri, COUNTS_FILE)) as fh:
        return json.loads(fh.read())


def splits(uri: str) -> dict[str, int]:
    """The verified rows per split (and per-split extras like ``eval_visitors``) of a RowCounts."""
    return {k: int(v) for k, v in read(uri)["splits"].items()}
