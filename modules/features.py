"""The one place where feature and column names are spelled.

Every other module (export, Transform, model, baselines, serving, Evaluator label) imports the names
from here, so that renaming a feature is a one-line change and the contracts cannot drift apart.
"""

from __future__ import annotations

# ---------------------------------------------------------------- raw RetailRocket layout (input)
RAW_EVENTS_FILE = "events.csv"
RAW_PROPERTIES_GLOB = "item_properties*.csv"
RAW_CATEGORY_TREE_FILE = "category_tree.csv"

RAW_EVENT_COLUMNS = (
    "timestamp",
    "visitorid",
    "event",
    "itemid",
)  # transactionid and extras ignored
RAW_PROPERTY_COLUMNS = ("timestamp", "itemid", "property", "value")
RAW_CATEGORY_COLUMNS = ("categoryid", "parentid")

EVENT_TYPES = ("view", "addtocart", "transaction")
PROPERTY_CATEGORY = "categoryid"
PROPERTY_AVAILABLE = "available"
SPECIAL_PROPERTIES = (PROPERTY_CATEGORY, PROPERTY_AVAILABLE)

# ---------------------------------------------------------------- export output (CsvExampleGen input)
VISITOR_ID = "visitorid"
ITEM_ID = "itemid"
EVENT = "event"
TIMESTAMP = "timestamp"

AVAILABLE = "available"
CATEGORY = "categoryid"
CATEGORY_LEVELS = 5
CATEGORY_LEVEL_FEATURES = tuple(f"category_l{i}" for i in range(1, CATEGORY_LEVELS + 1))
ITEM_TEXT = "item_text"  # space-separated "<property>:<token>" of the kept text properties
NUMERIC_PREFIX = "num_"  # one column per kept numeric ("n<number>") property: num_<property>
ITEM_POP_TRAIN = "item_pop_train"  # train events of the item (train split only)
ITEM_POP_RECENT = "item_pop_recent"  # train events of the item in the last days before the cutoff

USER_VIEWS = "user_views"
USER_ADDTOCARTS = "user_addtocarts"
USER_TRANSACTIONS = "user_transactions"
USER_DISTINCT_ITEMS = "user_distinct_items"
USER_LAST_TIMESTAMP = "user_last_timestamp"  # ms of the visitor's previous event, 0 when none
HISTORY = "history"  # space-separated item ids before the event, most recent first
# The long-term profile of a query (eval rows, serving requests; empty on train rows): the
# visitor's distinct train items, most recently seen first, space-separated tokens
# "<itemid>:<count>:<strongest event>:<last-seen ms>", e.g. "461686:3:transaction:1438300000000",
# at most constants.PROFILE_LENGTH of them.
PROFILE = "profile"
PROFILE_SEPARATOR = ":"

USER_COUNTER_FEATURES = (USER_VIEWS, USER_ADDTOCARTS, USER_TRANSACTIONS, USER_DISTINCT_ITEMS)

# Missing categorical ids are written as this value (an item without category, levels deeper than
# the item's own category), so every id column is a dense int64 in the CSV.
MISSING_ID = -1

# Export folder layout: <out>/<split>/<file>
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
ITEMS_SPLIT = "items"
INTERACTIONS_FILE = "interactions.csv"
ITEMS_FILE = "items.csv"
EXPORT_SUMMARY_FILE = "export_summary.json"


def numeric_feature(property_name: str) -> str:
    """Column name of a kept numeric property, e.g. ``numeric_feature("790") == "num_790"``."""
    return f"{NUMERIC_PREFIX}{property_name}"


def item_feature_columns(numeric_properties: list[str]) -> list[str]:
    """Item-side columns shared by the interactions and the items file, in file order."""
    return (
        [AVAILABLE, CATEGORY, *CATEGORY_LEVEL_FEATURES, ITEM_TEXT]
        + [numeric_feature(p) for p in numeric_properties]
        + [ITEM_POP_TRAIN, ITEM_POP_RECENT]
    )


def interaction_columns(numeric_properties: list[str]) -> list[str]:
    """Columns of ``interactions.csv`` in file order."""
    return (
        [VISITOR_ID, ITEM_ID, EVENT, TIMESTAMP]
        + item_feature_columns(numeric_properties)
        + [*USER_COUNTER_FEATURES, USER_LAST_TIMESTAMP, HISTORY, PROFILE]
    )


def item_columns(numeric_properties: list[str]) -> list[str]:
    """Columns of ``items.csv`` in file order."""
    return [ITEM_ID, *item_feature_columns(numeric_properties)]
