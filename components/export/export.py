"""RetailRocket raw files -> the CSVs that CsvExampleGen reads (DESIGN sections 4 and 5).

The export is the protocol: deduplication, optional item sampling, the time split (eval restricted to
visitors seen in train, their state frozen at the cutoff), properties as of each event's time (no
look-ahead), category paths, user counters and history, item popularity from train only, and the item
catalogue as known at the cutoff.

It runs on DuckDB: column-oriented, multi-threaded, out of core, with the ASOF JOIN that point-in-time
properties need. The full real scale (2.76M events, 20.3M property rows) exports in minutes on 2 cores.

Output layout (names in ``modules.features``)::

    OUT/train/interactions.csv   one row per train event
    OUT/eval/interactions.csv    one row per eval query (an event after the cutoff)
    OUT/items/items.csv          one row per catalogue item, its properties as of the cutoff
    OUT/export_summary.json      rows read, kept, dropped and why; split sizes; properties kept

The folder is written under a temporary name and renamed when complete, so a failed export never
leaves a half-written folder that a later step would take for a good one.
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from modules import constants, progress
from modules import features as F
from modules.errors import RetailrecError

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1
_MS_PER_DAY = 86_400_000
# Seconds and milliseconds since the epoch are told apart by magnitude, not by a calendar window:
# a ms timestamp after 1973-03-03 is at least 1e11, a seconds timestamp before the year 5138 is
# below it. At 1e14 ms (the year 5138) and above a value is microseconds or nanoseconds.
MIN_TS_MS = 10**11
MAX_TS_MS = 10**14
# Doubles hold integers exactly up to 2**53; ids written as floats ("213.0") must stay below.
_MAX_FLOAT_ID = 2**53
_NUMBER_RE = r"^n-?[0-9]+(\.[0-9]+)?$"


class ExportError(RetailrecError):
    """Bad input or a refused output folder; the message names the file, column and value."""


def parse_cutoff(cutoff: str | int) -> int:
    """Returns the cutoff as ms since the epoch (UTC).

    Args:
      cutoff: a date ``YYYY-MM-DD`` (midnight UTC, any year), an ISO datetime, or an int of ms.

    Raises:
      ExportError: the value is not a date, or a number that is not ms since the epoch.
    """
    text = str(cutoff).strip()
    if isinstance(cutoff, int) or text.isdigit():
        ms = int(text)
        if not MIN_TS_MS <= ms < MAX_TS_MS:
            raise ExportError(
                f"--cutoff: {cutoff!r} is not ms since the epoch (expected 1e11 <= ms < 1e14; "
                "seconds instead of ms?)"
            )
        return ms
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as err:
        raise ExportError(
            f"--cutoff: {cutoff!r} is not a date (YYYY-MM-DD) or ms timestamp"
        ) from err
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat()


def find_raw_files(raw_dir: str | os.PathLike) -> dict[str, Any]:
    """Locates the RetailRocket files in ``raw_dir``.

    Returns:
      ``{"events": path, "properties": [paths], "category_tree": path}``.

    Raises:
      ExportError: a file is missing.
    """
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise ExportError(f"{raw}: raw data folder does not exist")
    events = raw / F.RAW_EVENTS_FILE
    tree = raw / F.RAW_CATEGORY_TREE_FILE
    props = sorted(glob.glob(str(raw / F.RAW_PROPERTIES_GLOB)))
    for path in (events, tree):
        if not path.is_file():
            raise ExportError(f"{path}: file missing (expected the RetailRocket layout in {raw})")
    if not props:
        raise ExportError(
            f"{raw / F.RAW_PROPERTIES_GLOB}: no item property file found "
            "(expected item_properties_part1.csv, item_properties_part2.csv, ...)"
        )
    return {"events": str(events), "properties": props, "category_tree": str(tree)}


def _fingerprint(files: dict[str, Any], params: dict[str, Any]) -> str:
    """Hash of the input bytes and the export parameters: equal means the same export."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(params, sort_keys=True).encode())
    digest.update(str(EXPORT_FORMAT_VERSION).encode())
    for path in [files["events"], files["category_tree"], *files["properties"]]:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):  # noqa: B023
                digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------- reading


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# A row's line in its CSV file (tables of `_read_csv_varchar`).
_LINE = "(rowid + 2)"


def _read_csv_varchar(
    con: duckdb.DuckDBPyConnection, path: str, table: str, required: Sequence[str]
):
    """Loads a CSV as all-text columns, checking the header; a row's line is `_LINE`."""
    if os.path.getsize(path) == 0:
        raise ExportError(f"{path}: file is empty (expected a header {','.join(required)})")
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    names = [h.strip() for h in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ExportError(f"{path}: header repeats column(s) {repeated}; got {names}")
    # The line of a row is its position in the table plus 2 (`_LINE`: the header, 1-based):
    # DuckDB keeps the file's order (preserve_insertion_order) and numbers rows by ``rowid``. A
    # numbering window (``row_number() OVER ()``) cost 2.4-4.3 s per 10M property rows. An extra
    # column named rowid would hide DuckDB's: it is renamed (extra columns are ignored anyway).
    renamed = [f"{n}_" if n.lower() == "rowid" else n for n in names]
    rename = "" if renamed == names else f", names = [{', '.join(map(_sql_str, renamed))}]"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv({_sql_str(path)}, "
            "header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"', "
            f"auto_detect = true, null_padding = false, strict_mode = true{rename})"
        )
    except duckdb.Error as err:
        raise ExportError(f"{path}: not a readable CSV: {str(err).splitlines()[0]}") from err
    columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
    for column in required:
        if column not in columns:
            raise ExportError(f"{path}: column '{column}' missing; got {columns}")
    return columns


def _first_bad(con, table: str, condition: str, column: str) -> tuple[int, str, int] | None:
    """Returns (line, value, count) of the rows of ``table`` where ``condition`` holds."""
    row = con.execute(
        f"SELECT min({_LINE}), arg_min({column}, {_LINE}), count(*) FROM {table} WHERE {condition}"
    ).fetchone()
    if row is None or row[2] == 0:
        return None
    return row[0], row[1], row[2]


def _int_expr(column: str) -> str:
    """SQL for a text id that may be written as a float ("213.0"); NULL when not an integer."""
    as_double = f"TRY_CAST(trim({column}) AS DOUBLE)"
    # DuckDB rounds '10.5' when casting text to BIGINT: accept only digits, or an integral float.
    return (
        f"CASE WHEN regexp_matches(trim({column}), '^-?[0-9]+$') "
        f"THEN TRY_CAST(trim({column}) AS BIGINT) "
        f"WHEN {as_double} = floor({as_double}) AND abs({as_double}) < {_MAX_FLOAT_ID} "
        f"THEN CAST({as_double} AS BIGINT) END"
    )


def _ts_expr(column: str) -> str:
    """SQL for a ms timestamp that may be written rounded ("1.43322E+12")."""
    return f"TRY_CAST(round(TRY_CAST(trim({column}) AS DOUBLE)) AS BIGINT)"


def _ev_rank_expr(column: str) -> str:
    """SQL for an event type's rank: its position in ``features.EVENT_TYPES``."""
    ranks = " ".join(f"WHEN {_sql_str(e)} THEN {i}" for i, e in enumerate(F.EVENT_TYPES))
    return f"CASE {column} {ranks} END"


def _ts_checks(column: str = "timestamp") -> list[tuple[str, str, str]]:
    expr = _ts_expr(column)
    return [
        (column, f"{expr} IS NULL", "value(s) that are not a number (ms since epoch)"),
        (
            column,
            f"{expr} < {MIN_TS_MS}",
            "value(s) below 1e11: seconds instead of ms since the epoch? "
            "(a ms timestamp after 1973-03-03 is at least 1e11)",
        ),
        (
            column,
            f"{expr} >= {MAX_TS_MS}",
            "value(s) of 1e14 or more: microseconds or nanoseconds instead of ms since "
            "the epoch? (1e14 ms is the year 5138)",
        ),
    ]


def _id_checks(column: str) -> list[tuple[str, str, str]]:
    return [
        (column, f"{_int_expr(column)} IS NULL", "value(s) that are not an integer id"),
        (column, f"{_int_expr(column)} < 0", "negative id(s)"),
    ]


def _validate(con, table: str, path: str, checks: list[tuple[str, str, str]]) -> None:
    """Runs every check in one scan; raises on the first that fails, naming line and value.

    Args:
      checks: (column, SQL condition of a bad row, what the bad values are).
    """
    counts = con.execute(
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE {bad})" for _, bad, _ in checks)
        + f" FROM {table}"
    ).fetchone()
    for (column, bad, what), count in zip(checks, counts, strict=True):
        if count:
            line, value = con.execute(
                f"SELECT min({_LINE}), arg_min({column}, {_LINE}) FROM {table} WHERE {bad}"
            ).fetchone()
            raise ExportError(
                f"{path}: column '{column}' has {count} {what}; first at line {line}: {value!r}"
            )


def _load_events(con, path: str, summary: dict) -> None:
    _read_csv_varchar(con, path, "raw_events", F.RAW_EVENT_COLUMNS)
    n_rows = con.execute("SELECT count(*) FROM raw_events").fetchone()[0]
    if n_rows == 0:
        raise ExportError(f"{path}: no events (the file holds only a header)")
    known = ", ".join(_sql_str(e) for e in F.EVENT_TYPES)
    _validate(
        con,
        "raw_events",
        path,
        _ts_checks()
        + _id_checks("visitorid")
        + _id_checks("itemid")
        + [
            (
                "event",
                f"event IS NULL OR trim(event) NOT IN ({known})",
                f"unknown event type(s) (expected one of {list(F.EVENT_TYPES)})",
            )
        ],
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE events_all AS SELECT DISTINCT "
        f"{_ts_expr('timestamp')} AS ts, {_int_expr('visitorid')} AS visitorid, "
        f"trim(event) AS event, {_ev_rank_expr('trim(event)')} AS ev_rank, "
        f"{_int_expr('itemid')} AS itemid FROM raw_events"
    )
    n_unique = con.execute("SELECT count(*) FROM events_all").fetchone()[0]
    con.execute("DROP TABLE raw_events")
    summary["events"] = {"rows_read": n_rows, "dropped_duplicates": n_rows - n_unique}


def _load_properties(con, paths: list[str], summary: dict) -> None:
    parts = []
    for i, path in enumerate(paths):
        table = f"raw_props_{i}"
        _read_csv_varchar(con, path, table, F.RAW_PROPERTY_COLUMNS)
        _validate(con, table, path, _ts_checks() + _id_checks("itemid"))
        parts.append(table)
    union = " UNION ALL ".join(
        f"SELECT {_ts_expr('timestamp')} AS ts, {_int_expr('itemid')} AS itemid, "
        f"trim(property) AS property, trim(value) AS value FROM {t}"
        for t in parts
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE props_read AS {union}")
    for table in parts:
        con.execute(f"DROP TABLE {table}")
    n_rows, n_empty = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE property IS NULL OR property = '' "
        "OR value IS NULL OR value = '') FROM props_read"
    ).fetchone()
    con.execute(
        "CREATE OR REPLACE TEMP TABLE props_all AS SELECT DISTINCT ts, itemid, property, value "
        "FROM props_read WHERE property <> '' AND value <> ''"
    )
    con.execute("DROP TABLE props_read")
    n_unique = con.execute("SELECT count(*) FROM props_all").fetchone()[0]
    summary["properties"] = {
        "files": [os.path.basename(p) for p in paths],
        "rows_read": n_rows,
        "dropped_empty_property_or_value": n_empty,
        "dropped_duplicates": n_rows - n_empty - n_unique,
    }


def load_category_tree(path: str) -> dict[int, list[int]]:
    """Reads ``category_tree.csv`` and returns each category's path from its root.

    Returns:
      ``{categoryid: [root, ..., categoryid]}``.

    Raises:
      ExportError: bad ids, a parent that is not a category, a category listed twice with different
        parents, or a cycle.
    """
    con = duckdb.connect()
    try:
        _read_csv_varchar(con, path, "tree", F.RAW_CATEGORY_COLUMNS)
        _validate(con, "tree", path, _id_checks("categoryid"))
        bad = _first_bad(
            con,
            "tree",
            f"parentid IS NOT NULL AND trim(parentid) <> '' AND {_int_expr('parentid')} IS NULL",
            "parentid",
        )
        if bad:
            line, value, count = bad
            raise ExportError(
                f"{path}: column 'parentid' has {count} value(s) that are not an integer id; "
                f"first at line {line}: {value!r}"
            )
        rows = con.execute(
            f"SELECT {_int_expr('categoryid')}, {_int_expr('parentid')}, {_LINE} FROM tree "
            "ORDER BY rowid"
        ).fetchall()
    finally:
        con.close()
    parent: dict[int, int | None] = {}
    for cat, par, line in rows:
        if cat in parent and parent[cat] != par:
            raise ExportError(
                f"{path}: categoryid {cat} listed twice with different parents "
                f"({parent[cat]} and {par}, line {line})"
            )
        parent[cat] = par
    for cat, par in parent.items():
        if par is not None and par not in parent:
            raise ExportError(
                f"{path}: column 'parentid' value {par} (parent of category {cat}) is not a categoryid"
            )
    paths: dict[int, list[int]] = {}
    for cat in parent:
        chain, seen = [cat], {cat}
        node = parent[cat]
        while node is not None:
            if node in seen:
                cycle = chain[chain.index(node) :] + [node]
                raise ExportError(
                    f"{path}: the category tree has a cycle: {' -> '.join(map(str, cycle))}"
                )
            chain.append(node)
            seen.add(node)
            node = parent[node]
        paths[cat] = chain[::-1]
    return paths


# ------------------------------------------------------------------------ the visitor state
#
# One definition of "a visitor's state at a time", used by the export (each eval query's state,
# frozen at the cutoff), by ``retailrec recommend`` (``visitor_states``) and reproduced by training's
# ``states_at`` (tested equal). A visitor's events are ordered by time, then event rank (view before
# addtocart before transaction, the order of ``features.EVENT_TYPES``), then item id: events of one
# timestamp have a fixed order, so the history does not depend on file or thread order. Exact
# duplicates are dropped before, so the order is total.

EVENT_ORDER = "ts, ev_rank, itemid"
_EVENT_ORDER_DESC = "ts DESC, ev_rank DESC, itemid DESC"
# The user-state columns of the export's rows, in file order.
_STATE_COLUMNS = (*F.USER_COUNTER_FEATURES, F.USER_LAST_TIMESTAMP, F.HISTORY, F.PROFILE)
# The counters of each event type, in the order of features.EVENT_TYPES.
_EVENT_COUNTERS = (F.USER_VIEWS, F.USER_ADDTOCARTS, F.USER_TRANSACTIONS)


def _event_counter_sql(over: str = "") -> list[str]:
    """``sum(...) [OVER w] AS user_<event>s`` for each event type (an aggregate or a window)."""
    return [
        f"COALESCE(sum(CASE WHEN ev_rank = {rank} THEN 1 ELSE 0 END){over}, 0) AS {name}"
        for rank, name in enumerate(_EVENT_COUNTERS)
    ]


def user_state_sql(
    events: str, history_length: int, profile_length: int = constants.PROFILE_LENGTH
) -> str:
    """SQL of each visitor's state after all the events of ``events``: one row per visitor.

    Args:
      events: a table or parenthesised subquery with columns ``visitorid``, ``itemid``, ``ts`` (ms)
        and ``ev_rank`` (see ``_ev_rank_expr``), holding the events that make up the state.
      history_length: items kept in the history.
      profile_length: items kept in the profile.

    Returns:
      A query with ``visitorid``, the counters of each event type and of distinct items, the last
      event's time, the history (the items of the last ``history_length`` events in
      ``EVENT_ORDER``, most recent first, space-separated) and the profile (``features.PROFILE``:
      the distinct items by their last event in ``EVENT_ORDER``, most recent first, at most
      ``profile_length``).
    """
    events_names = "[" + ", ".join(f"'{e}'" for e in F.EVENT_TYPES) + "]"
    sep = F.PROFILE_SEPARATOR
    # One row per (visitor, item); ``last`` orders the items like their last events (ts, ev_rank;
    # the item id breaks the remaining ties as in EVENT_ORDER).
    items = (
        f"(SELECT visitorid, itemid, count(*) AS n, max(ev_rank) AS strongest, max(ts) AS last_ts, "
        f"max(ts * 4 + ev_rank) AS last FROM {events} GROUP BY visitorid, itemid)"
    )
    token = (
        f"CAST(itemid AS VARCHAR) || '{sep}' || CAST(n AS VARCHAR) || '{sep}' || "
        f"list_extract({events_names}, strongest + 1) || '{sep}' || CAST(last_ts AS VARCHAR)"
    )
    profiles = (
        f"(SELECT visitorid, array_to_string(list({token} ORDER BY last DESC, itemid DESC)"
        f"[1:{int(profile_length)}], ' ') AS {F.PROFILE} FROM {items} GROUP BY visitorid)"
    )
    state = (
        f"SELECT visitorid, {', '.join(_event_counter_sql())}, "
        f"count(DISTINCT itemid) AS {F.USER_DISTINCT_ITEMS}, max(ts) AS {F.USER_LAST_TIMESTAMP}, "
        f"array_to_string(list(itemid ORDER BY {_EVENT_ORDER_DESC})[1:{int(history_length)}], ' ') "
        f"AS {F.HISTORY} FROM {events} GROUP BY visitorid"
    )
    return (
        f"SELECT s.*, p.{F.PROFILE} FROM ({state}) s JOIN {profiles} p ON s.visitorid = p.visitorid"
    )


def visitor_states(
    interactions_csv: str | os.PathLike,
    visitors: Sequence[int],
    at_ms: int | None = None,
    history_length: int = constants.HISTORY_LENGTH,
) -> dict[int, dict[str, Any]]:
    """The state of visitors after their events at or before ``at_ms`` in an exported split.

    On the train split with ``at_ms=None`` (or the cutoff) this is exactly the state the export
    gives each eval query of those visitors.

    Args:
      interactions_csv: an export's ``interactions.csv`` (the train split for the state at the cutoff).
      visitors: visitor ids.
      at_ms: only events at or before this time count (None: all of the file's events).
      history_length: items kept in the history (the export's ``params["history_length"]``).

    Returns:
      ``{visitor: {user feature: value}}`` for the visitors with at least one such event.
    """
    where = f"{F.VISITOR_ID} IN (SELECT unnest(?::BIGINT[]))"
    if at_ms is not None:
        where += f" AND {F.TIMESTAMP} <= {int(at_ms)}"
    events = (
        f"(SELECT CAST({F.VISITOR_ID} AS BIGINT) AS visitorid, CAST({F.ITEM_ID} AS BIGINT) AS itemid, "
        f"CAST({F.TIMESTAMP} AS BIGINT) AS ts, {_ev_rank_expr(F.EVENT)} AS ev_rank "
        f"FROM read_csv(?, header = true) WHERE {where})"
    )
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")  # a long scan draws one on stdout
        con.execute(
            f"CREATE TEMP TABLE state_events AS SELECT * FROM {events}",
            [str(interactions_csv), list(visitors)],
        )
        frame = con.execute(user_state_sql("state_events", history_length)).fetchall()
        names = [d[0] for d in con.description]
    finally:
        con.close()
    states = {}
    for row in frame:
        state = dict(zip(names, row, strict=True))
        visitor = int(state.pop("visitorid"))
        states[visitor] = {F.VISITOR_ID: visitor, **state}
    return states


# ------------------------------------------------------------------------------------ the export


def _select_properties(con, min_coverage: float, numeric_share: float) -> dict[str, Any]:
    """Chooses the properties to keep (coverage share) and whether each is numeric or text."""
    n_items = con.execute("SELECT count(DISTINCT itemid) FROM props_all").fetchone()[0]
    special = ", ".join(_sql_str(p) for p in F.SPECIAL_PROPERTIES)
    rows = con.execute(
        "SELECT property, count(DISTINCT itemid) AS n_items, "
        f"avg(CASE WHEN regexp_matches(value, {_sql_str(_NUMBER_RE)}) THEN 1.0 ELSE 0.0 END) "
        f"FROM props_all WHERE property NOT IN ({special}) GROUP BY property "
        "ORDER BY n_items DESC, property"
    ).fetchall()
    n_names = con.execute("SELECT count(DISTINCT property) FROM props_all").fetchone()[0]
    numeric, text = [], []
    for name, count, share in rows:
        if n_items and count / n_items >= min_coverage:
            (numeric if share >= numeric_share else text).append(name)
    return {
        "items_with_properties": n_items,
        "property_names": n_names,
        "min_coverage": min_coverage,
        "numeric": sorted(numeric, key=_natural),
        "text": sorted(text, key=_natural),
        "coverage": {name: round(count / n_items, 4) for name, count, _ in rows[:50]}
        if n_items
        else {},
    }


def _natural(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _sample_items(con, n: int, seed: int, summary: dict) -> None:
    """Keeps ``n`` items drawn from those ever available=1 (the original protocol)."""
    pool = np.array(
        [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT itemid FROM props_all WHERE property = "
                f"{_sql_str(F.PROPERTY_AVAILABLE)} AND value = '1' ORDER BY itemid"
            ).fetchall()
        ],
        dtype=np.int64,
    )
    if n > len(pool):
        raise ExportError(
            f"--sample-items {n}: only {len(pool)} items were ever available=1 in the property files"
        )
    chosen = np.random.default_rng(seed).choice(pool, n, replace=False)
    con.register("sample_df", _frame({"itemid": np.sort(chosen)}))
    con.execute("CREATE OR REPLACE TEMP TABLE sampled AS SELECT itemid FROM sample_df")
    con.unregister("sample_df")
    n_events = con.execute("SELECT count(*) FROM events_all").fetchone()[0]
    n_props = con.execute("SELECT count(*) FROM props_all").fetchone()[0]
    con.execute("DELETE FROM events_all WHERE itemid NOT IN (SELECT itemid FROM sampled)")
    con.execute("DELETE FROM props_all WHERE itemid NOT IN (SELECT itemid FROM sampled)")
    summary["sampling"] = {
        "items": n,
        "seed": seed,
        "pool_ever_available": int(len(pool)),
        "dropped_events_not_sampled": n_events
        - con.execute("SELECT count(*) FROM events_all").fetchone()[0],
        "dropped_property_rows_not_sampled": n_props
        - con.execute("SELECT count(*) FROM props_all").fetchone()[0],
    }


def _frame(columns: dict[str, np.ndarray]):
    import pandas as pd

    return pd.DataFrame(columns)


def _build_item_state(con, selection: dict, category_paths: dict[int, list[int]]) -> None:
    """Builds ``item_state``: one row per (item, time) with every kept property as of that time."""
    kept = [*F.SPECIAL_PROPERTIES, *selection["numeric"], *selection["text"]]
    names = ", ".join(_sql_str(p) for p in kept)
    cols = {p: f"p{i}" for i, p in enumerate(kept)}
    # One row per (item, ts) where something changed; max() makes duplicates deterministic.
    pivots = ", ".join(
        f"max(value) FILTER (WHERE property = {_sql_str(p)}) AS {c}" for p, c in cols.items()
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE changes AS SELECT itemid, ts, {pivots} FROM props_all "
        f"WHERE property IN ({names}) GROUP BY itemid, ts"
    )
    # Properties are written when they change: carry the last value forward in time.
    carried = ", ".join(
        f"last_value({c} IGNORE NULLS) OVER (PARTITION BY itemid ORDER BY ts "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {c}"
        for c in cols.values()
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE carried AS SELECT itemid, ts, {carried} FROM changes"
    )
    con.execute("DROP TABLE changes")

    levels = {
        f"l{i}": np.array(
            [path[i - 1] if len(path) >= i else F.MISSING_ID for path in category_paths.values()],
            dtype=np.int64,
        )
        for i in range(1, F.CATEGORY_LEVELS + 1)
    }
    con.register(
        "category_df",
        _frame({"categoryid": np.array(list(category_paths), dtype=np.int64), **levels}),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE categories AS SELECT * FROM category_df")
    con.unregister("category_df")

    cat_col, avail_col = cols[F.PROPERTY_CATEGORY], cols[F.PROPERTY_AVAILABLE]
    numeric_sql = [
        f"TRY_CAST(CASE WHEN regexp_matches({cols[p]}, {_sql_str(_NUMBER_RE)}) "
        f"THEN substr({cols[p]}, 2) END AS DOUBLE) AS {F.numeric_feature(p)}"
        for p in selection["numeric"]
    ]
    text_parts = [
        f"array_to_string(list_transform(string_split({cols[p]}, ' '), "
        f"t -> {_sql_str(p + ':')} || t), ' ')"
        for p in selection["text"]
    ]
    text_sql = f"concat_ws(' ', {', '.join(text_parts)})" if text_parts else "''"
    level_sql = ", ".join(
        f"COALESCE(c.l{i}, CASE WHEN {i} = 1 THEN s.categoryid ELSE {F.MISSING_ID} END) AS {name}"
        for i, name in enumerate(F.CATEGORY_LEVEL_FEATURES, start=1)
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE item_state AS "
        "WITH s AS (SELECT itemid, ts, "
        f"COALESCE(TRY_CAST(TRY_CAST({cat_col} AS DOUBLE) AS BIGINT), {F.MISSING_ID}) AS categoryid, "
        f"COALESCE(TRY_CAST(TRY_CAST({avail_col} AS DOUBLE) AS BIGINT), {F.MISSING_ID}) AS available, "
        f"{text_sql} AS item_text" + "".join(f", {n}" for n in numeric_sql) + " FROM carried) "
        f"SELECT s.itemid, s.ts, s.available AS {F.AVAILABLE}, s.categoryid AS {F.CATEGORY}, "
        f"{level_sql}, s.item_text AS {F.ITEM_TEXT}"
        + "".join(f", s.{F.numeric_feature(p)}" for p in selection["numeric"])
        + " FROM s LEFT JOIN categories c ON s.categoryid = c.categoryid"
    )
    con.execute("DROP TABLE carried")


def _item_feature_sql(alias: str, numeric: list[str]) -> str:
    """Item feature columns read from an ASOF-joined item_state, with defaults where absent."""
    cols = [
        f"COALESCE({alias}.{F.AVAILABLE}, {F.MISSING_ID}) AS {F.AVAILABLE}",
        f"COALESCE({alias}.{F.CATEGORY}, {F.MISSING_ID}) AS {F.CATEGORY}",
        *(f"COALESCE({alias}.{c}, {F.MISSING_ID}) AS {c}" for c in F.CATEGORY_LEVEL_FEATURES),
        f"COALESCE({alias}.{F.ITEM_TEXT}, '') AS {F.ITEM_TEXT}",
        *(f"{alias}.{F.numeric_feature(p)}" for p in numeric),
        f"COALESCE(pop.n_train, 0) AS {F.ITEM_POP_TRAIN}",
        f"COALESCE(pop.n_recent, 0) AS {F.ITEM_POP_RECENT}",
    ]
    return ", ".join(cols)


def _write_csv(con, query: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({query}) TO {_sql_str(str(path))} (HEADER, DELIMITER ',', QUOTE '\"')")


class _Phases:
    """Wall time of each export phase, reported in the summary (where the minutes go)."""

    def __init__(self, summary: dict):
        self.seconds = summary.setdefault("phase_seconds", {})
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now
        progress.report("%s: %.1f s", name.replace("_", " "), self.seconds[name])


def _run_export(con, files: dict, tmp_out: Path, params: dict, summary: dict) -> None:
    cutoff = params["cutoff_ms"]
    history = int(params["history_length"])
    phases = _Phases(summary)
    _load_events(con, files["events"], summary)
    phases.done("read_events")
    _load_properties(con, files["properties"], summary)
    phases.done("read_properties")
    category_paths = load_category_tree(files["category_tree"])
    depth = max((len(p) for p in category_paths.values()), default=0)
    summary["category_tree"] = {
        "categories": len(category_paths),
        "roots": sum(1 for p in category_paths.values() if len(p) == 1),
        "max_depth": depth,
        # The category itself is a column of its own, so a path of LEVELS + 1 loses nothing.
        "categories_with_truncated_path": sum(
            1 for p in category_paths.values() if len(p) > F.CATEGORY_LEVELS + 1
        ),
    }

    if params["sample_items"]:
        _sample_items(con, int(params["sample_items"]), int(params["sample_seed"]), summary)

    t_min, t_max = con.execute("SELECT min(ts), max(ts) FROM events_all").fetchone()
    if t_min is None:
        raise ExportError(f"{files['events']}: no events left after item sampling")
    if not t_min <= cutoff < t_max:
        raise ExportError(
            f"--cutoff {_iso(cutoff)} is outside the events' time range {_iso(t_min)} .. "
            f"{_iso(t_max)} of {files['events']}: train or eval would be empty"
        )

    selection = _select_properties(con, params["min_coverage"], params["numeric_share"])
    summary["properties"].update(selection)
    numeric = selection["numeric"]
    _build_item_state(con, selection, category_paths)
    phases.done("item_state")
    summary["properties"]["items_with_unknown_category"] = con.execute(
        "SELECT count(DISTINCT itemid) FROM item_state s WHERE categoryid <> "
        f"{F.MISSING_ID} AND categoryid NOT IN (SELECT categoryid FROM categories)"
    ).fetchone()[0]

    # The split: train at or before the cutoff; eval after it, of visitors seen in train.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE train AS SELECT * FROM events_all WHERE ts <= {cutoff}"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE eval AS SELECT * FROM events_all "
        f"WHERE ts > {cutoff} AND visitorid IN (SELECT DISTINCT visitorid FROM train)"
    )
    n_total = con.execute("SELECT count(*) FROM events_all").fetchone()[0]
    n_train = con.execute("SELECT count(*) FROM train").fetchone()[0]
    n_eval = con.execute("SELECT count(*) FROM eval").fetchone()[0]
    n_after = n_total - n_train
    if n_eval == 0:
        raise ExportError(
            f"--cutoff {_iso(cutoff)}: no event after the cutoff comes from a visitor seen before it "
            f"({n_after} events after it): the eval split would be empty"
        )
    con.execute("DROP TABLE events_all")

    recent_from = cutoff - constants.RECENT_POPULARITY_DAYS * _MS_PER_DAY
    con.execute(
        "CREATE OR REPLACE TEMP TABLE pop AS SELECT itemid, count(*) AS n_train, "
        f"count(*) FILTER (WHERE ts > {recent_from}) AS n_recent FROM train GROUP BY itemid"
    )

    # User state before each train event (the events before it in EVENT_ORDER); the eval state is
    # frozen at the cutoff: the state after all the visitor's train events (user_state_sql).
    window = (
        f"(PARTITION BY visitorid ORDER BY {EVENT_ORDER} "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE train_users AS SELECT *, "
        f"{', '.join(_event_counter_sql(' OVER w'))}, "
        f"COALESCE(sum(first_seen) OVER w, 0) AS {F.USER_DISTINCT_ITEMS}, "
        f"COALESCE(max(ts) OVER w, 0) AS {F.USER_LAST_TIMESTAMP}, "
        f"COALESCE(array_to_string(list_reverse(list(itemid) OVER (PARTITION BY visitorid "
        f"ORDER BY {EVENT_ORDER} ROWS BETWEEN {history} PRECEDING AND 1 PRECEDING)), ' '), '') "
        f"AS {F.HISTORY}, '' AS {F.PROFILE} "
        "FROM (SELECT *, CASE WHEN row_number() OVER (PARTITION BY visitorid, itemid "
        f"ORDER BY {EVENT_ORDER}) = 1 THEN 1 ELSE 0 END AS first_seen FROM train) "
        f"WINDOW w AS {window}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE state_at_cutoff AS {user_state_sql('train', history)}"
    )

    item_cols = _item_feature_sql("s", numeric)
    user_cols = ", ".join(f"u.{c}" for c in _STATE_COLUMNS)
    head = (
        f"u.visitorid AS {F.VISITOR_ID}, u.itemid AS {F.ITEM_ID}, u.event AS {F.EVENT}, "
        f"u.ts AS {F.TIMESTAMP}"
    )
    train_query = (
        f"SELECT {head}, {item_cols}, {user_cols} FROM train_users u "
        "ASOF LEFT JOIN item_state s ON u.itemid = s.itemid AND u.ts >= s.ts "
        "LEFT JOIN pop ON u.itemid = pop.itemid ORDER BY u.ts, u.visitorid, u.ev_rank, u.itemid"
    )
    eval_query = (
        f"SELECT {head}, {item_cols}, {user_cols} FROM "
        "(SELECT e.visitorid, e.itemid, e.event, e.ts, e.ev_rank, "
        f"{', '.join(f'st.{c}' for c in _STATE_COLUMNS)} "
        "FROM eval e JOIN state_at_cutoff st ON e.visitorid = st.visitorid) u "
        "ASOF LEFT JOIN item_state s ON u.itemid = s.itemid AND u.ts >= s.ts "
        "LEFT JOIN pop ON u.itemid = pop.itemid ORDER BY u.ts, u.visitorid, u.ev_rank, u.itemid"
    )
    # The catalogue is the shop as known at the cutoff: items with a property row or a train event
    # by then, described by their properties as of the cutoff (cold items included).
    items_query = (
        f"SELECT k.itemid AS {F.ITEM_ID}, {item_cols} FROM "
        f"(SELECT itemid, {cutoff}::BIGINT AS ts FROM (SELECT itemid FROM props_all WHERE ts <= {cutoff} "
        "UNION SELECT itemid FROM train)) k "
        "ASOF LEFT JOIN item_state s ON k.itemid = s.itemid AND k.ts >= s.ts "
        "LEFT JOIN pop ON k.itemid = pop.itemid ORDER BY k.itemid"
    )
    phases.done("split_and_user_state")
    _write_csv(con, train_query, tmp_out / F.TRAIN_SPLIT / F.INTERACTIONS_FILE)
    phases.done("write_train")
    _write_csv(con, eval_query, tmp_out / F.EVAL_SPLIT / F.INTERACTIONS_FILE)
    _write_csv(con, items_query, tmp_out / F.ITEMS_SPLIT / F.ITEMS_FILE)
    phases.done("write_eval_and_items")

    def _count(sql: str) -> int:
        return con.execute(sql).fetchone()[0]

    n_items = _count(
        f"SELECT count(*) FROM read_csv({_sql_str(str(tmp_out / F.ITEMS_SPLIT / F.ITEMS_FILE))})"
    )
    no_props = (
        "SELECT count(*) FROM {t} x WHERE NOT EXISTS (SELECT 1 FROM item_state s "
        "WHERE s.itemid = x.itemid AND s.ts <= x.ts)"
    )
    summary["split"] = {
        "cutoff": _iso(cutoff),
        "cutoff_ms": cutoff,
        "events_range": [_iso(t_min), _iso(t_max)],
        "n_train": n_train,
        "n_eval_queries": n_eval,
        "dropped_eval_events_of_visitors_unseen_in_train": n_after - n_eval,
        "train_visitors": _count("SELECT count(DISTINCT visitorid) FROM train"),
        "eval_visitors": _count("SELECT count(DISTINCT visitorid) FROM eval"),
        "train_items": _count("SELECT count(DISTINCT itemid) FROM train"),
        "n_items": n_items,
        "eval_targets_not_in_train": _count(
            "SELECT count(*) FROM eval WHERE itemid NOT IN (SELECT itemid FROM pop)"
        ),
        "eval_targets_seen_by_visitor_in_train": _count(
            "SELECT count(*) FROM eval e WHERE EXISTS (SELECT 1 FROM train t "
            "WHERE t.visitorid = e.visitorid AND t.itemid = e.itemid)"
        ),
        "train_events_without_properties_at_event_time": _count(no_props.format(t="train")),
        "eval_events_without_properties_at_event_time": _count(no_props.format(t="eval")),
        "catalogue_items_without_properties_at_cutoff": _count(
            f"SELECT count(*) FROM (SELECT DISTINCT itemid FROM train) x WHERE NOT EXISTS "
            f"(SELECT 1 FROM props_all p WHERE p.itemid = x.itemid AND p.ts <= {cutoff})"
        ),
        "catalogue_items_without_train_events": _count(
            f"SELECT count(DISTINCT itemid) FROM props_all WHERE ts <= {cutoff} "
            "AND itemid NOT IN (SELECT itemid FROM pop)"
        ),
    }
    summary["events"]["kept"] = n_train + n_eval
    phases.done("summary_counts")


def export(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    cutoff: str | int = constants.DEFAULT_CUTOFF,
    sample_items: int | None = None,
    sample_seed: int = constants.SAMPLE_ITEMS_SEED,
    history_length: int = constants.HISTORY_LENGTH,
    min_coverage: float = constants.PROPERTY_MIN_COVERAGE,
    numeric_share: float = constants.NUMERIC_PROPERTY_MIN_SHARE,
    force: bool = False,
    threads: int | None = None,
    memory_limit: str = "16GB",
) -> dict[str, Any]:
    """Exports a RetailRocket raw folder to the CSVs of DESIGN section 4.

    Args:
      raw_dir: folder with events.csv, item_properties*.csv and category_tree.csv.
      out_dir: the export folder to write (see the module docstring).
      cutoff: train = events at or before it; a date (midnight UTC) or ms.
      sample_items: keep this many items drawn from those ever available=1 (None: all items).
      sample_seed: seed of the item sample (the original protocol used 1).
      history_length: items kept in the history column.
      min_coverage: keep a property when this share of items has it.
      numeric_share: a property is numeric when this share of its values is ``n<number>``.
      force: replace an output folder that holds a different export.
      threads: DuckDB threads (default: all cores).
      memory_limit: DuckDB memory limit; beyond it DuckDB spills to a temporary folder.

    Returns:
      The export summary (also written to ``export_summary.json``), with ``"reused": True`` when the
      folder already held this exact export.

    Raises:
      ExportError: bad input (the message names the file, column and value) or a refused folder.
    """
    started = time.time()
    out = Path(out_dir).resolve()
    files = find_raw_files(raw_dir)
    cutoff_ms = parse_cutoff(cutoff)
    if history_length < 1:
        raise ExportError(f"--history-length: must be at least 1, got {history_length}")
    if sample_items is not None and sample_items < 1:
        raise ExportError(f"--sample-items: must be at least 1, got {sample_items}")
    if not 0.0 <= min_coverage <= 1.0:
        raise ExportError(f"min_coverage: must be in [0, 1], got {min_coverage}")
    params = {
        "cutoff_ms": cutoff_ms,
        "sample_items": sample_items,
        "sample_seed": sample_seed,
        "history_length": history_length,
        "min_coverage": min_coverage,
        "numeric_share": numeric_share,
    }
    fingerprint = _fingerprint(files, params)

    existing = out / F.EXPORT_SUMMARY_FILE
    if out.exists():
        if existing.is_file():
            previous = json.loads(existing.read_text())
            if previous.get("fingerprint") == fingerprint:
                logger.info("%s already holds this export; reusing it", out)
                return {**previous, "reused": True}
            if not force:
                raise ExportError(
                    f"{out}: holds a different export (other input files or parameters: was "
                    f"{previous.get('params')}, now {params}); pass --force to replace it or choose "
                    "another --out"
                )
        elif any(out.iterdir()) and not force:
            raise ExportError(
                f"{out}: exists and is not an export folder; refusing to write into it"
            )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp_out.chmod(0o755)
    summary: dict[str, Any] = {
        "format_version": EXPORT_FORMAT_VERSION,
        "raw_dir": str(Path(raw_dir).resolve()),
        "params": params,
        "fingerprint": fingerprint,
    }
    spill = tmp_out / ".duckdb_spill"
    con = duckdb.connect(
        config={
            "threads": threads or os.cpu_count() or 1,
            "memory_limit": memory_limit,
            "temp_directory": str(spill),
            "preserve_insertion_order": True,
        }
    )
    completed = False
    try:
        _run_export(con, files, tmp_out, params, summary)
        summary["features"] = {
            "numeric": [F.numeric_feature(p) for p in summary["properties"]["numeric"]],
            "interaction_columns": F.interaction_columns(summary["properties"]["numeric"]),
            "item_columns": F.item_columns(summary["properties"]["numeric"]),
        }
        summary["seconds"] = round(time.time() - started, 2)
        shutil.rmtree(spill, ignore_errors=True)
        (tmp_out / F.EXPORT_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        _replace_dir(tmp_out, out)
        completed = True
    finally:
        con.close()
        if not completed:  # never leave a half-written export behind
            shutil.rmtree(tmp_out, ignore_errors=True)
    return {**summary, "reused": False}


def _replace_dir(new: Path, target: Path) -> None:
    """Moves ``new`` to ``target``; an old ``target`` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_summary(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``export_summary.json`` of an export folder.

    Raises:
      ExportError: the folder holds no complete export.
    """
    path = Path(out_dir) / F.EXPORT_SUMMARY_FILE
    if not path.is_file():
        raise ExportError(f"{path}: missing; {out_dir} is not a complete export")
    return json.loads(path.read_text())
