"""Tests of the export: hand-computed tiny cases, the real RetailRocket slices, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from components.export import export as E
from data import fixtures
from modules import features as F

T0 = 1_430_000_000_000  # 2015-04-25 22:13:20 UTC: every timestamp below is T0 + a few ms
CUTOFF = T0 + 4500

TREE = "categoryid,parentid\n1,\n2,1.0\n3,2\n"
PROPS = [
    # item 10: category 3, price 100 then 150, available flips 1 -> 0 at +3000
    (T0 + 1000, 10, "categoryid", "3"),
    (T0 + 1000, 10, "available", "1"),
    (T0 + 1000, 10, "790", "n100.000"),
    (T0 + 1000, 10, "888", "a b"),
    (T0 + 1000, 10, "999", "noise"),  # 1 of 3 items: below the 0.36 coverage, not kept
    (T0 + 3000, 10, "790", "n150.000"),
    (T0 + 3000, 10, "available", "0"),
    (T0 + 1000, 20, "categoryid", "2"),
    (T0 + 1000, 20, "available", "1"),
    (T0 + 1000, 20, "790", "n50.000"),
    (T0 + 1000, 20, "888", "c"),
    # item 30 appears only after the cutoff: not in the catalogue known at the cutoff
    (T0 + 5000, 30, "categoryid", "1"),
]
EVENTS = [
    (T0 + 2000, 1, "view", 10, ""),
    (T0 + 2000, 1, "view", 10, ""),  # exact duplicate: dropped
    (T0 + 2500, 1, "view", 20, ""),
    (T0 + 4000, 1, "addtocart", 10, ""),
    (T0 + 2000, 2, "view", 10, ""),
    (T0 + 6000, 1, "view", 20, ""),  # eval query of visitor 1
    (T0 + 7000, 3, "view", 30, ""),  # visitor 3 has no train event: dropped from eval
]


def _write(path: Path, header: str, rows) -> None:
    with open(path, "w", newline="") as fh:
        fh.write(header + "\n")
        csv.writer(fh, lineterminator="\n").writerows(rows)


def make_raw(root: Path, events=EVENTS, props=PROPS, tree=TREE) -> Path:
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    _write(raw / "events.csv", "timestamp,visitorid,event,itemid,transactionid", events)
    _write(raw / "item_properties_part1.csv", "timestamp,itemid,property,value", props[:6])
    _write(raw / "item_properties_part2.csv", "timestamp,itemid,property,value", props[6:])
    (raw / "category_tree.csv").write_text(tree)
    return raw


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    raw = make_raw(root)
    summary = E.export(raw, root / "out", cutoff=CUTOFF, history_length=5)
    return root / "out", summary


def test_split_rules_and_counts(tiny_export):
    out, summary = tiny_export
    train = read_rows(out / F.TRAIN_SPLIT / F.INTERACTIONS_FILE)
    eval_ = read_rows(out / F.EVAL_SPLIT / F.INTERACTIONS_FILE)
    # 7 rows - 1 duplicate = 6; 4 at or before the cutoff; of the 2 after it, visitor 3 is unseen.
    assert summary["events"] == {"rows_read": 7, "dropped_duplicates": 1, "kept": 5}
    assert len(train) == 4 and summary["split"]["n_train"] == 4
    assert [(r["visitorid"], r["itemid"]) for r in eval_] == [("1", "20")]
    assert summary["split"]["dropped_eval_events_of_visitors_unseen_in_train"] == 1
    assert summary["split"]["eval_targets_seen_by_visitor_in_train"] == 1
    assert all(int(r["timestamp"]) <= CUTOFF for r in train)


def test_properties_as_of_event_time(tiny_export):
    out, _ = tiny_export
    train = read_rows(out / F.TRAIN_SPLIT / F.INTERACTIONS_FILE)
    by_key = {(r["visitorid"], r["event"], r["itemid"]): r for r in train}
    before = by_key[("1", "view", "10")]  # at +2000: the +1000 values
    after = by_key[("1", "addtocart", "10")]  # at +4000: the +3000 changes apply, nothing later
    assert float(before[F.numeric_feature("790")]) == 100.0 and before[F.AVAILABLE] == "1"
    assert float(after[F.numeric_feature("790")]) == 150.0 and after[F.AVAILABLE] == "0"
    # Unchanged properties are carried forward from their last change.
    assert before[F.ITEM_TEXT] == after[F.ITEM_TEXT] == "888:a 888:b"
    assert after[F.CATEGORY] == "3"


def test_category_path_from_root(tiny_export):
    out, _ = tiny_export
    items = {r[F.ITEM_ID]: r for r in read_rows(out / F.ITEMS_SPLIT / F.ITEMS_FILE)}
    # Tree 1 <- 2 <- 3: item 10 is in 3, so levels are 1, 2, 3 and then missing.
    assert [items["10"][c] for c in F.CATEGORY_LEVEL_FEATURES] == ["1", "2", "3", "-1", "-1"]
    assert [items["20"][c] for c in F.CATEGORY_LEVEL_FEATURES] == ["1", "2", "-1", "-1", "-1"]


def test_user_counters_and_history(tiny_export):
    out, _ = tiny_export
    train = read_rows(out / F.TRAIN_SPLIT / F.INTERACTIONS_FILE)
    v1 = [r for r in train if r["visitorid"] == "1"]
    # Visitor 1 in time order: view 10 (+2000), view 20 (+2500), addtocart 10 (+4000).
    assert [r[F.USER_VIEWS] for r in v1] == ["0", "1", "2"]
    assert [r[F.USER_ADDTOCARTS] for r in v1] == ["0", "0", "0"]
    assert [r[F.USER_DISTINCT_ITEMS] for r in v1] == ["0", "1", "2"]
    assert [r[F.HISTORY] for r in v1] == ["", "10", "20 10"]  # most recent first
    assert [r[F.USER_LAST_TIMESTAMP] for r in v1] == ["0", str(T0 + 2000), str(T0 + 2500)]
    # The eval query sees the state frozen at the cutoff: all 3 train events, nothing after.
    (query,) = read_rows(out / F.EVAL_SPLIT / F.INTERACTIONS_FILE)
    assert (query[F.USER_VIEWS], query[F.USER_ADDTOCARTS], query[F.USER_DISTINCT_ITEMS]) == (
        "2",
        "1",
        "2",
    )
    assert query[F.HISTORY] == "10 20 10"
    assert query[F.USER_LAST_TIMESTAMP] == str(T0 + 4000)


def test_history_length_cuts_oldest(tmp_path):
    events = [(T0 + 1000 + i, 7, "view", 10 + i, "") for i in range(6)] + [
        (T0 + 9000, 7, "view", 10, "")
    ]
    raw = make_raw(tmp_path, events=events)
    E.export(raw, tmp_path / "out", cutoff=T0 + 5000, history_length=3)
    (query,) = read_rows(tmp_path / "out" / F.EVAL_SPLIT / F.INTERACTIONS_FILE)
    assert query[F.HISTORY] == "15 14 13"


def test_item_popularity_from_train_only(tiny_export):
    out, _ = tiny_export
    items = {r[F.ITEM_ID]: r for r in read_rows(out / F.ITEMS_SPLIT / F.ITEMS_FILE)}
    # Item 10: visitor 1 view + addtocart, visitor 2 view = 3; item 20: 1 (its eval view not counted).
    assert items["10"][F.ITEM_POP_TRAIN] == "3" and items["20"][F.ITEM_POP_TRAIN] == "1"


def test_catalogue_is_the_shop_known_at_cutoff(tiny_export):
    out, summary = tiny_export
    items = read_rows(out / F.ITEMS_SPLIT / F.ITEMS_FILE)
    assert [r[F.ITEM_ID] for r in items] == ["10", "20"]  # item 30 appears after the cutoff
    assert list(items[0]) == F.item_columns(["790"])
    # At the cutoff item 10 is unavailable at price 150.
    assert items[0][F.AVAILABLE] == "0" and float(items[0][F.numeric_feature("790")]) == 150.0
    assert summary["split"]["n_items"] == 2


def test_property_selection_and_parsing(tiny_export):
    out, summary = tiny_export
    props = summary["properties"]
    # 3 items have properties; 790 and 888 cover 2/3 >= 0.36, 999 covers 1/3.
    assert props["numeric"] == ["790"] and props["text"] == ["888"]
    assert props["items_with_properties"] == 3
    header = read_rows(out / F.TRAIN_SPLIT / F.INTERACTIONS_FILE)[0].keys()
    assert list(header) == F.interaction_columns(["790"])
    assert (
        json.loads((out / F.EXPORT_SUMMARY_FILE).read_text())["fingerprint"]
        == summary["fingerprint"]
    )


def test_item_sampling_follows_the_original_protocol(tmp_path):
    import numpy as np

    # Both items get an eval event, so that either draw leaves a non-empty eval split.
    raw = make_raw(tmp_path, events=[*EVENTS, (T0 + 6500, 2, "view", 10, "")])
    summary = E.export(raw, tmp_path / "out", cutoff=CUTOFF, sample_items=1)
    # Pool = sorted ids ever available=1 = [10, 20]; default_rng(1).choice(pool, 1).
    chosen = int(np.random.default_rng(1).choice(np.array([10, 20]), 1, replace=False)[0])
    items = [r[F.ITEM_ID] for r in read_rows(tmp_path / "out" / F.ITEMS_SPLIT / F.ITEMS_FILE)]
    assert items == [str(chosen)]
    assert summary["sampling"]["pool_ever_available"] == 2


def test_same_export_is_reused_and_different_is_refused(tmp_path):
    raw = make_raw(tmp_path)
    out = tmp_path / "out"
    first = E.export(raw, out, cutoff=CUTOFF)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert E.export(raw, out, cutoff=CUTOFF)["reused"] is True
    with pytest.raises(E.ExportError, match="holds a different export"):
        E.export(raw, out, cutoff=CUTOFF + 1)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    replaced = E.export(raw, out, cutoff=CUTOFF + 1, force=True)
    assert replaced["fingerprint"] != first["fingerprint"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no leftovers


def test_failed_export_keeps_the_previous_one_and_leaves_no_partial(tmp_path):
    raw = make_raw(tmp_path)
    out = tmp_path / "out"
    E.export(raw, out, cutoff=CUTOFF)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with (raw / "events.csv").open("a") as fh:
        fh.write(f"{T0 + 8000},1,view,oops,\n")
    with pytest.raises(E.ExportError):
        E.export(raw, out, cutoff=CUTOFF, force=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def test_refuses_a_folder_that_is_not_an_export(tmp_path):
    raw = make_raw(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(E.ExportError, match="not an export folder"):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------ bad input


def _bad_event(value_row):
    return [*EVENTS[:3], value_row]


@pytest.mark.parametrize(
    ("events", "match"),
    [
        (
            _bad_event((T0 + 3000, 1, "purchase", 10, "")),
            r"events.csv: column 'event' .*'purchase'",
        ),
        (
            _bad_event(("yesterday", 1, "view", 10, "")),
            r"events.csv: column 'timestamp' .*'yesterday'",
        ),
        (_bad_event((T0 + 3000, "bob", "view", 10, "")), r"events.csv: column 'visitorid' .*'bob'"),
        (_bad_event((T0 + 3000, 1, "view", "10.5", "")), r"events.csv: column 'itemid' .*'10.5'"),
        (_bad_event((T0 + 3000, 1, "view", "", "")), r"events.csv: column 'itemid' .*line 5"),
        (_bad_event((T0 + 3000, -4, "view", 10, "")), r"column 'visitorid' .*negative.*'-4'"),
        (
            _bad_event((1_430_000_000, 1, "view", 10, "")),
            r"events.csv: column 'timestamp' .*seconds instead of ms.*line 5: '1430000000'",
        ),
        (
            _bad_event((1_430_000_000_000_000, 1, "view", 10, "")),
            r"events.csv: column 'timestamp' .*microseconds.*line 5: '1430000000000000'",
        ),
    ],
)
def test_bad_event_values_name_file_column_and_value(tmp_path, events, match):
    raw = make_raw(tmp_path, events=events)
    with pytest.raises(E.ExportError, match=match):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)
    assert not (tmp_path / "out").exists()


def test_a_bad_value_is_named_by_its_line_even_beside_a_rowid_column(tmp_path):
    """Lines are DuckDB's row numbers in file order; a file's own "RowId" column (extra, so
    ignored) does not hide them."""
    raw = make_raw(tmp_path)
    rows = [
        f"{ts},{v},{e},{i},{t},{n}"
        for n, (ts, v, e, i, t) in enumerate([*EVENTS[:5], (T0 + 3000, 1, "view", "", "")])
    ]
    header = "timestamp,visitorid,event,itemid,transactionid,RowId"
    (raw / "events.csv").write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(E.ExportError, match=r"events.csv: column 'itemid' .*first at line 7"):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)


def test_seconds_in_a_property_file_name_the_part(tmp_path):
    props = [*PROPS[:7], (T0 // 1000, 20, "available", "1"), *PROPS[8:]]
    raw = make_raw(tmp_path, props=props)
    with pytest.raises(
        E.ExportError,
        match=r"item_properties_part2.csv: column 'timestamp' .*seconds instead of ms.*'1430000000'",
    ):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)


# A log of the 1990s: the tiny case with every time stretched (1 ms -> 100 s) and moved so that its
# cutoff falls on 1998-06-01 00:00 UTC; the log ends on 1998-06-03, before 2000.
OLD_CUTOFF_MS = 896_659_200_000  # 1998-06-01 00:00:00 UTC
assert OLD_CUTOFF_MS > E.MIN_TS_MS  # ms after 1973-03-03 are at least 1e11


def _to_1998(ts: int) -> int:
    return OLD_CUTOFF_MS + (ts - CUTOFF) * 100_000


def test_a_log_before_2000_exports_like_a_recent_one(tmp_path, tiny_export, capsys):
    from pipeline import cli

    events = [(_to_1998(t), *rest) for t, *rest in EVENTS]
    props = [(_to_1998(t), *rest) for t, *rest in PROPS]
    assert max(t for t, *_ in events) < 946_684_800_000  # 2000-01-01
    raw = make_raw(tmp_path, events=events, props=props)
    argv = ["export", "--raw", str(raw), "--out", str(tmp_path / "out"), "--history-length", "5"]
    assert cli.main([*argv, "--cutoff", "1998-06-01"]) == 0  # the CLI's date parsing
    out = capsys.readouterr().out
    assert "cutoff 1998-06-01T00:00:00+00:00: train 4 events" in out
    assert "[export]   read events:" in out and "[export]   write train:" in out  # progress
    summary = E.read_summary(tmp_path / "out")
    assert summary["params"]["cutoff_ms"] == OLD_CUTOFF_MS == E.parse_cutoff("1998-06-01")
    assert summary["split"]["events_range"][1].startswith("1998-06-03")
    # The same rows as the 2015 export, at the moved times (recent popularity counts days: its
    # window covers other events once times are stretched).
    recent, _ = tiny_export
    moved = (F.TIMESTAMP, F.USER_LAST_TIMESTAMP)
    for split, name in (
        (F.TRAIN_SPLIT, F.INTERACTIONS_FILE),
        (F.EVAL_SPLIT, F.INTERACTIONS_FILE),
        (F.ITEMS_SPLIT, F.ITEMS_FILE),
    ):
        new_rows = read_rows(tmp_path / "out" / split / name)
        old_rows = read_rows(recent / split / name)
        assert len(new_rows) == len(old_rows) > 0
        for new, old in zip(new_rows, old_rows, strict=True):
            for column, value in old.items():
                if column in moved and value != "0":
                    assert int(new[column]) == _to_1998(int(value)), column
                elif column == F.PROFILE:  # the last-seen times move, the rest is equal
                    tokens = [token.rsplit(":", 1) for token in value.split()]
                    assert new[column] == " ".join(f"{h}:{_to_1998(int(t))}" for h, t in tokens)
                elif column != F.ITEM_POP_RECENT:
                    assert new[column] == value, column


@pytest.mark.parametrize(
    ("cutoff", "expected"),
    [
        ("1998-06-01", OLD_CUTOFF_MS),
        ("1998-06-01T12:00:00+02:00", OLD_CUTOFF_MS + 10 * 3_600_000),
        (OLD_CUTOFF_MS, OLD_CUTOFF_MS),
        (str(OLD_CUTOFF_MS), OLD_CUTOFF_MS),
        ("1985-01-01", 473_385_600_000),
    ],
)
def test_cutoffs_of_any_year_parse(cutoff, expected):
    assert E.parse_cutoff(cutoff) == expected


@pytest.mark.parametrize("cutoff", [896_659_200, "896659200", 10**15, "1st of June"])
def test_cutoff_in_seconds_or_not_a_date_is_refused(cutoff):
    with pytest.raises(E.ExportError, match=r"--cutoff: .*(seconds instead of ms|not a date)"):
        E.parse_cutoff(cutoff)


def test_float_ids_and_rounded_timestamps_are_accepted(tmp_path):
    events = [(f"{T0 + 2000:.6E}", "1.0", "view", "10.0", "12.0"), *EVENTS[2:6]]
    raw = make_raw(tmp_path, events=events)
    summary = E.export(raw, tmp_path / "out", cutoff=CUTOFF)
    # The rounded 1.430000E+12 is T0, before the cutoff: 4 train events as in the tiny case.
    assert summary["split"]["n_train"] == 4


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "events.csv: file is empty"),
        ("timestamp,visitorid,event,itemid,transactionid\n", "events.csv: no events"),
        ("timestamp,visitor,event,itemid\n1,2,view,3\n", "events.csv: column 'visitorid' missing"),
    ],
)
def test_empty_or_malformed_events_file(tmp_path, content, match):
    raw = make_raw(tmp_path)
    (raw / "events.csv").write_text(content)
    with pytest.raises(E.ExportError, match=match):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)


@pytest.mark.parametrize("missing", ["events.csv", "category_tree.csv", "properties"])
def test_missing_files(tmp_path, missing):
    raw = make_raw(tmp_path)
    if missing == "properties":
        for path in raw.glob("item_properties*.csv"):
            path.unlink()
    else:
        (raw / missing).unlink()
    with pytest.raises(E.ExportError, match="missing|no item property file"):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)


@pytest.mark.parametrize(
    ("tree", "match"),
    [
        ("categoryid,parentid\n1,3\n2,1\n3,2\n", r"cycle: (\d+ -> ){3}\d+"),
        (
            "categoryid,parentid\n1,\n2,99\n",
            "value 99 .*parent of category 2.* is not a categoryid",
        ),
        ("categoryid,parentid\n1,\n1,2\n2,\n", "categoryid 1 listed twice"),
        ("categoryid,parentid\n1,\nx,1\n", "column 'categoryid' .*'x'"),
    ],
)
def test_bad_category_tree(tmp_path, tree, match):
    raw = make_raw(tmp_path, tree=tree)
    with pytest.raises(E.ExportError, match=match):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)


def test_bad_property_file_names_the_part(tmp_path):
    props = [*PROPS[:7], (T0 + 1000, "item20", "available", "1"), *PROPS[8:]]
    raw = make_raw(tmp_path, props=props)
    with pytest.raises(
        E.ExportError, match=r"item_properties_part2.csv: column 'itemid' .*'item20'"
    ):
        E.export(raw, tmp_path / "out", cutoff=CUTOFF)


@pytest.mark.parametrize(
    ("cutoff", "match"),
    [("2014-01-01", "outside the events' time range"), ("2016-01-01", "outside")],
)
def test_cutoff_outside_data(tmp_path, cutoff, match):
    raw = make_raw(tmp_path)
    with pytest.raises(E.ExportError, match=match):
        E.export(raw, tmp_path / "out", cutoff=cutoff)


def test_cutoff_with_empty_eval_split(tmp_path):
    # After T0 + 6500 only visitor 3 has an event, and it has none in train.
    raw = make_raw(tmp_path)
    with pytest.raises(E.ExportError, match="eval split would be empty"):
        E.export(raw, tmp_path / "out", cutoff=T0 + 6500)


def test_items_without_properties_are_counted(tmp_path):
    events = [*EVENTS[:4], (T0 + 2100, 1, "view", 40, ""), *EVENTS[4:]]  # item 40 has no properties
    raw = make_raw(tmp_path, events=events)
    summary = E.export(raw, tmp_path / "out", cutoff=CUTOFF)
    assert summary["split"]["catalogue_items_without_properties_at_cutoff"] == 1
    items = {r[F.ITEM_ID]: r for r in read_rows(tmp_path / "out" / F.ITEMS_SPLIT / F.ITEMS_FILE)}
    assert items["40"][F.CATEGORY] == str(F.MISSING_ID) and items["40"][F.ITEM_TEXT] == ""


# ------------------------------------------------------------------------------ real slices


def _real_raw(tmp_path: Path, events_file: str) -> Path:
    return fixtures.real_sample_raw(tmp_path / "raw", events_file)


def test_real_sample_exports(tmp_path):
    raw = _real_raw(tmp_path, "events_sample.csv")  # extra datetime column, float transactionid
    summary = E.export(raw, tmp_path / "out")
    assert summary["events"]["rows_read"] == 9385
    assert summary["events"]["dropped_duplicates"] == 3
    assert summary["category_tree"] == {
        "categories": 1669,
        "roots": 25,
        "max_depth": 6,
        "categories_with_truncated_path": 0,
    }
    split = summary["split"]
    assert (
        split["n_train"]
        + split["n_eval_queries"]
        + split["dropped_eval_events_of_visitors_unseen_in_train"]
        == 9385 - 3
    )
    train = read_rows(tmp_path / "out" / F.TRAIN_SPLIT / F.INTERACTIONS_FILE)
    assert len(train) == split["n_train"] and "datetime" not in train[0]


def test_real_rounded_timestamps_export(tmp_path):
    raw = _real_raw(tmp_path, "events_head_rounded.csv")
    # Timestamps were rounded to 5 values around 1.4332E+12 (2015-06-01/02).
    summary = E.export(raw, tmp_path / "out", cutoff=1_433_190_000_000)
    assert summary["split"]["n_train"] > 0 and summary["split"]["n_eval_queries"] > 0
