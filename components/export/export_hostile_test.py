"""Property-based: malformed event and property rows give a clear error or a counted skip.

Never a traceback from deep inside a library, never a silent drop: every run either raises
``ExportError`` naming the file, or accounts for every row it read.
"""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.export import export as E
from components.export.export_test import CUTOFF, EVENTS, PROPS, T0, TREE

GOOD_EVENTS = [list(map(str, row)) for row in EVENTS]
JUNK = st.one_of(
    st.just(""),
    st.just("99999999999999999999999"),  # beyond int64
    st.just("-5"),
    st.just("1e400"),
    st.just("nan"),
    st.just("12.5"),
    st.just(" 7 "),
    # unicode, commas, quotes, newlines; not NUL, which Python 3.10's csv writer cannot write
    st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=6),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["view", "addtocart", "transaction", "VIEW", "purchase"]),
    st.integers(min_value=0, max_value=5_000_000_000_000).map(str),  # ms, s and garbage
)


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _setup(tmp_path, events_text: str, props_text: str | None = None):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    (raw / "events.csv").write_text(events_text)
    (raw / "item_properties_part1.csv").write_text(
        props_text
        if props_text is not None
        else _csv(["timestamp", "itemid", "property", "value"], [list(map(str, p)) for p in PROPS])
    )
    (raw / "category_tree.csv").write_text(TREE)
    return raw


def _export_or_clear_error(raw, out, files: tuple[str, ...]) -> None:
    try:
        summary = E.export(raw, out, cutoff=CUTOFF, force=True)
    except E.ExportError as err:
        assert any(name in str(err) for name in files), str(err)
        return
    events = summary["events"]
    split = summary["split"]
    # Every row read is kept or dropped for a counted reason.
    assert (
        events["rows_read"]
        == events["dropped_duplicates"]
        + split["n_train"]
        + split["n_eval_queries"]
        + split["dropped_eval_events_of_visitors_unseen_in_train"]
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    position=st.integers(min_value=0, max_value=len(GOOD_EVENTS) - 1),
    column=st.integers(min_value=0, max_value=3),
    value=JUNK,
)
def test_one_malformed_event_field(tmp_path, position, column, value):
    rows = [list(r) for r in GOOD_EVENTS]
    rows[position][column] = value
    raw = _setup(
        tmp_path, _csv(["timestamp", "visitorid", "event", "itemid", "transactionid"], rows)
    )
    _export_or_clear_error(raw, tmp_path / "out", ("events.csv", "--cutoff"))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    position=st.integers(min_value=0, max_value=len(PROPS) - 1),
    column=st.integers(min_value=0, max_value=3),
    value=JUNK,
)
def test_one_malformed_property_field(tmp_path, position, column, value):
    rows = [list(map(str, p)) for p in PROPS]
    rows[position][column] = value
    raw = _setup(
        tmp_path,
        _csv(["timestamp", "visitorid", "event", "itemid", "transactionid"], GOOD_EVENTS),
        _csv(["timestamp", "itemid", "property", "value"], rows),
    )
    _export_or_clear_error(raw, tmp_path / "out", ("item_properties_part1.csv", "--cutoff"))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(
        st.sampled_from(["timestamp", "visitorid", "event", "itemid", "transactionid", "x", ""]),
        min_size=0,
        max_size=7,
    ),
    n_fields=st.integers(min_value=0, max_value=7),
)
def test_odd_headers_and_ragged_rows(tmp_path, header, n_fields):
    rows = [r[:n_fields] + ["1"] * max(0, n_fields - len(r)) for r in GOOD_EVENTS]
    raw = _setup(tmp_path, _csv(header, rows) if header else "")
    _export_or_clear_error(raw, tmp_path / "out", ("events.csv", "--cutoff"))


def test_duplicated_header_is_named(tmp_path):
    text = _csv(
        ["timestamp", "visitorid", "event", "itemid", "itemid"], [[str(T0), "1", "view", "2", "3"]]
    )
    raw = _setup(tmp_path, text)
    try:
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)
    except E.ExportError as err:
        assert "header repeats column(s) ['itemid']" in str(err)
    else:
        raise AssertionError("a duplicated header must be refused")
