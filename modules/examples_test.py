"""Tests of the evaluation-shaped examples: pseudo-cutoff examples, states, the validation window."""

from __future__ import annotations

import numpy as np
import pytest

from components.export import export
from data.generator import generate
from modules import columns as C
from modules import examples as E
from modules import features as F

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_433_154_600_000


def _train() -> dict[str, np.ndarray]:
    """Visitor 1: view 10 (T0), view 20 (+1 h), addtocart 10 (+2 h), view 30 (+30 days).

    Visitor 2: one view of 10 (+5 h). Columns hold what the export writes (history = items
    before the event, most recent first; counters before the event). Rows are not in time order.
    """
    rows = [
        # visitor, item, event, timestamp, history
        (1, 20, "view", T0 + HOUR, "10"),
        (1, 10, "view", T0, ""),
        (2, 10, "view", T0 + 5 * HOUR, ""),
        (1, 10, "addtocart", T0 + 2 * HOUR, "20 10"),
        (1, 30, "view", T0 + 30 * DAY, "10 20 10"),
    ]
    columns = {
        F.VISITOR_ID: [r[0] for r in rows],
        F.ITEM_ID: [r[1] for r in rows],
        F.EVENT: [r[2] for r in rows],
        F.TIMESTAMP: [r[3] for r in rows],
        F.HISTORY: [r[4] for r in rows],
        F.CATEGORY: [7, 8, 8, 8, 9],  # an item column: must travel with its event
    }
    for name in (*F.USER_COUNTER_FEATURES, F.USER_LAST_TIMESTAMP):
        columns[name] = [-1] * len(rows)  # overwritten by the state at the pseudo-cutoff
    return C.normalise_columns(columns)


def _by_target(examples):
    keys = zip(examples[F.VISITOR_ID].tolist(), examples[F.TIMESTAMP].tolist(), strict=True)
    return {key: i for i, key in enumerate(keys)}


def test_next_event_limit_by_hand():
    # A horizon of 1 ms puts every pseudo-cutoff 1 ms before its event: the state is the visitor's
    # previous event. The first event of each visitor has no state and is skipped.
    examples = E.pseudo_cutoff_examples(_train(), horizon_days=1 / DAY)
    index = _by_target(examples)
    assert sorted(index) == [(1, T0 + HOUR), (1, T0 + 2 * HOUR), (1, T0 + 30 * DAY)]
    cart = index[(1, T0 + 2 * HOUR)]  # state after view 10, view 20
    assert examples[F.ITEM_ID][cart] == 10 and examples[F.EVENT][cart] == "addtocart"
    assert examples[F.CATEGORY][cart] == 8  # the target's own item columns
    assert examples[F.HISTORY][cart] == "20 10"
    assert (examples[F.USER_VIEWS][cart], examples[F.USER_ADDTOCARTS][cart]) == (2, 0)
    assert examples[F.USER_DISTINCT_ITEMS][cart] == 2
    assert examples[F.USER_LAST_TIMESTAMP][cart] == T0 + HOUR
    late = index[(1, T0 + 30 * DAY)]  # state after all three earlier events
    assert examples[F.HISTORY][late] == "10 20 10"
    assert (examples[F.USER_VIEWS][late], examples[F.USER_ADDTOCARTS][late]) == (2, 1)
    assert examples[F.USER_DISTINCT_ITEMS][late] == 2
    assert examples[F.USER_LAST_TIMESTAMP][late] == T0 + 2 * HOUR


def test_pseudo_cutoffs_never_look_ahead():
    train = _train()
    examples = E.pseudo_cutoff_examples(train, horizon_days=60, examples_per_event=20)
    assert len(examples[F.ITEM_ID]) > 0
    # The state always precedes its target, and a target is never part of its own state.
    assert (examples[F.USER_LAST_TIMESTAMP] < examples[F.TIMESTAMP]).all()
    late = examples[F.TIMESTAMP] == T0 + 30 * DAY
    # The +30 days view: a cutoff within 60 days may fall before or after the first three events.
    assert set(examples[F.HISTORY][late]) <= {"10", "20 10", "10 20 10"}


def test_the_same_rows_in_any_order_give_the_same_examples():
    train = _train()
    reversed_rows = {name: values[::-1] for name, values in train.items()}
    first, second = (
        E.pseudo_cutoff_examples(E.canonical_order(t), horizon_days=60, examples_per_event=5)
        for t in (train, reversed_rows)
    )
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    ordered = E.canonical_order(reversed_rows)
    assert ordered[F.VISITOR_ID].tolist() == [1, 1, 1, 1, 2]
    assert ordered[F.TIMESTAMP].tolist() == sorted(ordered[F.TIMESTAMP][:4]) + [T0 + 5 * HOUR]
    assert ordered[F.CATEGORY].tolist() == [8, 7, 8, 9, 8]  # every column moves with its row
    assert E.canonical_order(ordered) is ordered  # already in order: no copy


def test_canonical_order_is_a_stable_sort_by_visitor_time_item_and_event():
    rng = np.random.default_rng(3)
    n = 2_000
    for trial in range(20):
        # Few distinct values: many rows tie on some keys, some on all of them (duplicates).
        rows = {
            F.VISITOR_ID: rng.integers(0, 4, n),
            F.TIMESTAMP: rng.integers(0, 3, n) * HOUR,
            F.ITEM_ID: rng.integers(0, 3, n),
            F.EVENT: rng.choice(np.array(["view", "addtocart", "transaction"], dtype=object), n),
            "row": np.arange(n),
        }
        if trial % 2:  # already sorted: must come back untouched
            rows = {k: v[_reference_order(rows)] for k, v in rows.items()}
        ordered = E.canonical_order(rows)
        expected = _reference_order(rows)
        np.testing.assert_array_equal(ordered["row"], rows["row"][expected])
        assert (ordered is rows) == bool((expected == np.arange(n)).all())


def _reference_order(rows):
    """The stable sort canonical_order must match (np.unique's ranks of the event strings)."""
    events = np.unique(rows[F.EVENT], return_inverse=True)[1]
    return np.lexsort((events, rows[F.ITEM_ID], rows[F.TIMESTAMP], rows[F.VISITOR_ID]))


def test_states_at_reproduce_the_exports_eval_queries(tmp_path):
    generate(tmp_path / "raw", preset="tiny", seed=0)
    summary = export.export(tmp_path / "raw", tmp_path / "out", history_length=5)
    train = C.read_csv_columns(str(tmp_path / "out" / F.TRAIN_SPLIT / F.INTERACTIONS_FILE))
    queries = C.read_csv_columns(str(tmp_path / "out" / F.EVAL_SPLIT / F.INTERACTIONS_FILE))
    cutoff = np.full(len(queries[F.VISITOR_ID]), summary["split"]["cutoff_ms"])
    state, found = E.states_at(train, queries[F.VISITOR_ID], cutoff)
    assert found.all()
    for name in (*F.USER_COUNTER_FEATURES, F.USER_LAST_TIMESTAMP):
        np.testing.assert_array_equal(state[name], queries[name], err_msg=name)
    cut = [" ".join(h.split()[:5]) for h in state[F.HISTORY]]  # the export keeps 5
    assert cut == list(queries[F.HISTORY])


def test_unknown_visitors_have_no_state():
    state, found = E.states_at(_train(), np.array([1, 3]), np.array([T0 - 1, T0 + DAY]))
    assert found.tolist() == [False, False]  # visitor 1 before its first event; 3 never seen
    assert state[F.HISTORY].tolist() == ["", ""]


def _window_log() -> dict[str, np.ndarray]:
    """A log whose last event is at T = T0 + 10 days; with V = 3 days the window is (T0+7d, T0+10d].

    visitor 1: view 10 (T0), view 20 (T0 + 6 d), view 30 (T0 + 8 d), addtocart 30 (T0 + 9 d)
    visitor 2: view 20 (T0 + 7 d, exactly at T - V: before the window), view 10 (T0 + 10 d)
    visitor 3: view 40 (T0 + 8 d), view 10 (T0 + 9 d)  -- no event at or before T - V
    """
    rows = [
        (1, 10, "view", T0, ""),
        (1, 20, "view", T0 + 6 * DAY, "10"),
        (1, 30, "view", T0 + 8 * DAY, "20 10"),
        (1, 30, "addtocart", T0 + 9 * DAY, "30 20 10"),
        (2, 20, "view", T0 + 7 * DAY, ""),
        (2, 10, "view", T0 + 10 * DAY, "20"),
        (3, 40, "view", T0 + 8 * DAY, ""),
        (3, 10, "view", T0 + 9 * DAY, "40"),
    ]
    columns = {
        F.VISITOR_ID: [r[0] for r in rows],
        F.ITEM_ID: [r[1] for r in rows],
        F.EVENT: [r[2] for r in rows],
        F.TIMESTAMP: [r[3] for r in rows],
        F.HISTORY: [r[4] for r in rows],
        F.CATEGORY: [r[1] // 10 for r in rows],
    }
    for name in (*F.USER_COUNTER_FEATURES, F.USER_LAST_TIMESTAMP):
        columns[name] = [-1] * len(rows)
    return C.normalise_columns(columns)


def test_validation_window_has_the_eval_protocols_shape():
    window = E.validation_window(_window_log(), days=3)
    assert (window.start_ms, window.end_ms) == (T0 + 7 * DAY, T0 + 10 * DAY)
    q = window.queries
    # Targets: the window events of visitors 1 and 2 (each had an event at or before T - V);
    # visitor 3's first event is inside the window, so it has no query, as eval drops visitors
    # unseen in train. Visitor 2's event exactly at T - V is state, not a target.
    targets = sorted(zip(q[F.VISITOR_ID].tolist(), q[F.TIMESTAMP].tolist(), strict=True))
    assert targets == [(1, T0 + 8 * DAY), (1, T0 + 9 * DAY), (2, T0 + 10 * DAY)]
    assert window.n_queries == 3
    # Every query of a visitor has the state frozen at T - V (as the eval split at the cutoff).
    by_visitor = {v: i for i, v in enumerate(q[F.VISITOR_ID].tolist())}
    one, two = by_visitor[1], by_visitor[2]
    assert set(q[F.HISTORY][q[F.VISITOR_ID] == 1]) == {"20 10"}
    assert q[F.HISTORY][two] == "20"
    assert (q[F.USER_VIEWS][one], q[F.USER_DISTINCT_ITEMS][one]) == (2, 2)
    assert q[F.USER_LAST_TIMESTAMP][one] == T0 + 6 * DAY
    assert q[F.USER_LAST_TIMESTAMP][two] == T0 + 7 * DAY
    assert (q[F.USER_LAST_TIMESTAMP] <= window.start_ms).all()
    # The target's own columns travel with it.
    cart = np.nonzero(q[F.EVENT] == "addtocart")[0][0]
    assert (q[F.ITEM_ID][cart], q[F.CATEGORY][cart]) == (30, 3)


def test_no_fit_example_has_a_target_in_the_window():
    train = _window_log()
    window = E.validation_window(train, days=3)
    examples = E.pseudo_cutoff_examples(train, horizon_days=10, examples_per_event=20, seed=1)
    keep = E.fit_mask(examples, window)
    assert keep.any() and (~keep).any()
    assert (examples[F.TIMESTAMP][keep] <= window.start_ms).all()
    # ... and so no state of a fit example reads the window either.
    assert (examples[F.USER_LAST_TIMESTAMP][keep] < window.start_ms).all()


def test_popularity_as_of_the_window_start():
    # At T - V = T0 + 7 d: item 10 has 1 train event (T0), 20 has 2 (T0 + 6 d, T0 + 7 d), 30 and
    # 40 none yet; RECENT_POPULARITY_DAYS (14) before T0 + 7 d covers all of them.
    pop = E.popularity_at(_window_log(), np.array([10, 20, 30, 40, 99]), T0 + 7 * DAY)
    assert pop[F.ITEM_POP_TRAIN].tolist() == [1, 2, 0, 0, 0]
    assert pop[F.ITEM_POP_RECENT].tolist() == [1, 2, 0, 0, 0]
    # At T0 + 30 d item 10 has all its 3 events (T0, T0 + 9 d, T0 + 10 d), none in the 14 days
    # before; at T0 + 20 d the two at T0 + 9 d and T0 + 10 d are recent.
    late = E.popularity_at(_window_log(), np.array([10, 10]), T0 + 30 * DAY)
    assert (late[F.ITEM_POP_TRAIN][0], late[F.ITEM_POP_RECENT][0]) == (3, 0)
    mid = E.popularity_at(_window_log(), np.array([10]), T0 + 20 * DAY)
    assert (mid[F.ITEM_POP_TRAIN][0], mid[F.ITEM_POP_RECENT][0]) == (3, 2)


@pytest.mark.parametrize("length", [3, 7, 500])
def test_profiles_match_a_reference_walk(length):
    """Each state's profile: its distinct items by last event, with count, strongest event, time."""
    rng = np.random.default_rng(0)
    n = 3000
    train = {
        F.VISITOR_ID: rng.integers(0, 20, n),
        F.ITEM_ID: rng.integers(0, 40, n),
        F.TIMESTAMP: np.sort(rng.integers(0, 2000, n)) + 10**12,
        F.EVENT: np.array(F.EVENT_TYPES, dtype=object)[rng.choice(3, n, p=[0.8, 0.15, 0.05])],
        F.HISTORY: np.full(n, "", dtype=object),
    }
    ordered = E.ordered_states(train)
    order = np.lexsort((np.arange(n), train[F.TIMESTAMP], train[F.VISITOR_ID]))
    visitors = train[F.VISITOR_ID][order]
    items, events, stamps = (train[c][order] for c in (F.ITEM_ID, F.EVENT, F.TIMESTAMP))
    rows = rng.integers(0, n, 300)
    for k, got in zip(rows, E._profiles(ordered, rows, length), strict=True):
        first = k
        while first > 0 and visitors[first - 1] == visitors[k]:
            first -= 1
        seen: dict[int, tuple[int, int, int]] = {}
        for r in range(first, k + 1):
            count, strongest, _ = seen.get(items[r], (0, 0, 0))
            seen[items[r]] = (count + 1, max(strongest, F.EVENT_TYPES.index(events[r])), r)
        latest = sorted(seen.items(), key=lambda pair: -pair[1][2])[:length]
        expected = " ".join(
            f"{item}:{count}:{F.EVENT_TYPES[strongest]}:{stamps[r]}"
            for item, (count, strongest, r) in latest
        )
        assert got == expected
