"""The feature contract: names are unique, and the raw layout is the real RetailRocket files'."""

from __future__ import annotations

import csv
from pathlib import Path

from modules import features as F

REAL = Path(__file__).resolve().parents[1] / "data" / "testdata" / "retailrocket_real"


def _header(name: str) -> list[str]:
    with open(REAL / name, newline="") as fh:
        return next(csv.reader(fh))


def test_raw_columns_are_those_of_the_real_files():
    assert set(F.RAW_EVENT_COLUMNS) <= set(_header("events_sample.csv"))
    assert tuple(_header("item_properties_sample.csv")) == F.RAW_PROPERTY_COLUMNS
    assert tuple(_header("category_tree.csv")) == F.RAW_CATEGORY_COLUMNS


def test_export_columns_are_unique_and_share_the_item_side():
    numeric = ["790", "888"]
    interactions = F.interaction_columns(numeric)
    items = F.item_columns(numeric)
    assert len(interactions) == len(set(interactions))
    assert len(items) == len(set(items))
    assert F.numeric_feature("790") == "num_790" and "num_790" in items
    # Every item-side column of the catalogue is also on each interaction row.
    assert set(items) <= set(interactions)
    assert interactions[:4] == [F.VISITOR_ID, F.ITEM_ID, F.EVENT, F.TIMESTAMP]


def test_event_types_are_the_protocols():
    assert F.EVENT_TYPES == ("view", "addtocart", "transaction")
    assert len(F.CATEGORY_LEVEL_FEATURES) == F.CATEGORY_LEVELS
