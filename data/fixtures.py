"""Committed fixtures: the real RetailRocket slices laid out as a raw folder (for tests and demos)."""

from __future__ import annotations

import shutil
from pathlib import Path

from modules import features as F

TESTDATA = Path(__file__).resolve().parent / "testdata"
REAL_SAMPLE = TESTDATA / "retailrocket_real"


def real_sample_raw(dest: str | Path, events_file: str = "events_sample.csv") -> Path:
    """Copies the real slices into ``dest`` under the RetailRocket file names.

    Args:
      dest: folder to create.
      events_file: ``events_sample.csv`` (every event of 5,000 visitors) or
        ``events_head_rounded.csv`` (the first 999 rows, timestamps rounded).

    Returns:
      ``dest`` as a Path.
    """
    raw = Path(dest)
    raw.mkdir(parents=True, exist_ok=True)
    shutil.copy(REAL_SAMPLE / events_file, raw / F.RAW_EVENTS_FILE)
    shutil.copy(REAL_SAMPLE / "item_properties_sample.csv", raw / "item_properties_part1.csv")
    shutil.copy(REAL_SAMPLE / F.RAW_CATEGORY_TREE_FILE, raw / F.RAW_CATEGORY_TREE_FILE)
    return raw
