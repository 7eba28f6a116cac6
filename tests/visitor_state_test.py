"""One "visitor state at a time": the export, training's ``states_at`` and ``recommend`` agree.

The export freezes each eval query's state at the cutoff (``export.user_state_sql``);
``retailrec recommend`` asks the export for it (``export.visitor_states``); training rebuilds it
from the train split at any time (``examples.states_at``). A small log with ties of timestamps
(several events of one visitor in the same millisecond) checks that all three give the same
history and counters, by hand and against each other.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from components.export import export as E
from modules import columns, examples
from modules import features as F
from modules.errors import RetailrecError
from reporting import recommend

T = 1_430_000_000_000
CUTOFF = T + 3000
HISTORY_LENGTH = 5
USER_COLUMNS = (*F.USER_COUNTER_FEATURES, F.USER_LAST_TIMESTAMP, F.HISTORY, F.PROFILE)

# (timestamp, visitor, event, item), deliberately not in time order in the file.
EVENTS = [
    (T + 2000, 1, "view", 20),
    (T + 1000, 1, "addtocart", 10),
    (T + 1000, 1, "view", 30),
    (T + 2000, 1, "transaction", 10),
    (T + 1000, 1, "view", 10),
    (T + 2000, 1, "view", 5),
    (T + 1500, 2, "view", 40),
    (T + 1500, 2, "view", 30),
    (T + 3000, 3, "view", 7),  # exactly at the cutoff: train
    (T + 3000, 3, "addtocart", 7),
    # eval: one query per event of a visitor seen in train
    (T + 4000, 1, "view", 20),
    (T + 5000, 2, "view", 10),
    (T + 3500, 3, "transaction", 7),
]
PROPS = [(T, item, "categoryid", "1") for item in (5, 7, 10, 20, 30, 40)]


def _write(path: Path, header: str, rows) -> None:
    with open(path, "w", newline="") as fh:
        fh.write(header + "\n")
        csv.writer(fh, lineterminator="\n").writerows(rows)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ties")
    raw = root / "raw"
    raw.mkdir()
    _write(raw / "events.csv", "timestamp,visitorid,event,itemid", EVENTS)
    _write(raw / "item_properties_part1.csv", "timestamp,itemid,property,value", PROPS)
    (raw / "category_tree.csv").write_text("categoryid,parentid\n1,\n")
    E.export(raw, root / "out", cutoff=CUTOFF, history_length=HISTORY_LENGTH)
    return root / "out"


def _eval_states(out: Path) -> dict[int, dict[str, str]]:
    with open(out / F.EVAL_SPLIT / F.INTERACTIONS_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    states: dict[int, dict[str, str]] = {}
    for row in rows:
        state = {name: row[name] for name in USER_COLUMNS}
        assert states.setdefault(int(row[F.VISITOR_ID]), state) == state  # frozen at the cutoff
    return states


def _training_states(out: Path, visitors: list[int], at_ms: int) -> dict[int, dict[str, str]]:
    train = columns.read_csv_columns(str(out / F.TRAIN_SPLIT / F.INTERACTIONS_FILE))
    state, found = examples.states_at(
        train, np.array(visitors), np.full(len(visitors), at_ms, dtype=np.int64)
    )
    result = {}
    for i, visitor in enumerate(visitors):
        if found[i]:
            values = {name: str(state[name][i]) for name in USER_COLUMNS}
            # states_at keeps the last event's item and that event's history: one item more.
            values[F.HISTORY] = " ".join(values[F.HISTORY].split()[:HISTORY_LENGTH])
            result[visitor] = values
    return result


def _as_text(state: dict) -> dict[str, str]:
    return {name: str(state[name]) for name in USER_COLUMNS}


def test_state_at_the_cutoff_by_hand(exported):
    states = _eval_states(exported)
    # Visitor 1 in EVENT_ORDER (time, then view < addtocart < transaction, then item id):
    # +1000 view 10, view 30, addtocart 10; +2000 view 5, view 20, transaction 10.
    # Most recent first: 10 20 5 10 30 | 10 (cut at 5).
    assert states[1] == {
        F.USER_VIEWS: "4",
        F.USER_ADDTOCARTS: "1",
        F.USER_TRANSACTIONS: "1",
        F.USER_DISTINCT_ITEMS: "4",  # 5, 10, 20, 30
        F.USER_LAST_TIMESTAMP: str(T + 2000),
        F.HISTORY: "10 20 5 10 30",
        # Distinct items by their last event, most recent first; count, strongest event, last ms.
        F.PROFILE: (
            f"10:3:transaction:{T + 2000} 20:1:view:{T + 2000} 5:1:view:{T + 2000} "
            f"30:1:view:{T + 1000}"
        ),
    }
    assert states[2][F.HISTORY] == "40 30"  # same ms, item id order: 30 then 40
    # Visitor 3's events at the cutoff itself are train: view 7 then addtocart 7.
    assert (states[3][F.HISTORY], states[3][F.USER_DISTINCT_ITEMS]) == ("7 7", "1")
    assert states[3][F.PROFILE] == f"7:2:addtocart:{T + 3000}"


def test_export_training_and_recommend_agree_at_the_cutoff(exported):
    from_export = _eval_states(exported)
    visitors = sorted(from_export)
    assert visitors == [1, 2, 3]
    from_training = _training_states(exported, visitors, CUTOFF)
    from_recommend = {v: _as_text(recommend.visitor_state(str(exported), v)) for v in visitors}
    assert from_export == from_training == from_recommend


@pytest.mark.parametrize("at_ms", [T + 999, T + 1000, T + 1500, T + 1999, T + 2000, T + 2999])
def test_export_definition_and_training_agree_at_any_time(exported, at_ms):
    visitors = [1, 2, 3, 4]
    shared = E.visitor_states(
        exported / F.TRAIN_SPLIT / F.INTERACTIONS_FILE,
        visitors,
        at_ms=at_ms,
        history_length=HISTORY_LENGTH,
    )
    assert {v: _as_text(s) for v, s in shared.items()} == _training_states(
        exported, visitors, at_ms
    )
    assert 4 not in shared and (3 in shared) == (at_ms >= T + 3000)


def test_recommend_refuses_a_visitor_without_train_events(exported):
    with pytest.raises(RetailrecError, match="visitor 4 has no train event"):
        recommend.visitor_state(str(exported), 4)
