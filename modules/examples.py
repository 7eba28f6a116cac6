"""Evaluation-shaped examples from the train interactions: pseudo-cutoff training examples, the
validation window, and the visitor state at a time. Plain numpy, no TensorFlow.

The evaluation (DESIGN 5) freezes a visitor's state at the cutoff and makes every later event of a
visitor seen before it one query. Everything here has that shape:

* `pseudo_cutoff_examples` (the fit): for every train event a pseudo-cutoff is drawn uniformly in
  the ``horizon_days`` before it, the visitor's state is frozen at that cutoff (`states_at`: the
  history, counters and last timestamp after its last event at or before the cutoff) and the event
  is the target. Events of visitors with no event before their pseudo-cutoff are skipped, as eval
  drops visitors unseen in train. Repeats then look as they do after the real cutoff, and items of
  one basket are not each other's history.
* `validation_window` (every choice the Trainer makes): the cutoff as the Trainer sees it is T, the
  last train event's timestamp (the export's real cutoff is not among the Trainer's inputs; T is at
  or before it). The window is (T - V, T]; every window event of a visitor with an event at or
  before T - V is one query, its state frozen at T - V, exactly as the eval split at the real
  cutoff. `fit_mask` keeps the training examples whose target is at or before T - V, so nothing of
  the window reaches the fit that is validated on it; `popularity_at` recomputes the export's item
  popularity columns as of T - V for the fit examples and the validation catalogue.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modules import constants
from modules import features as F

MS_PER_DAY = 86_400_000


# ---------------------------------------------------------------- states and examples


def canonical_order(train: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The train columns sorted by visitor, timestamp, item and event type.

    ExampleGen's shards do not keep the export's row order (Beam writes them from two workers), so
    the rows reach the Trainer in an order that changes from run to run. The seeded draws of
    `pseudo_cutoff_examples`, the validation sample and the shuffle follow the row order; sorted
    first, the same data gives the same examples. Columns already in that order come back as they
    are (no copy).
    """
    keys = [train[F.VISITOR_ID], train[F.TIMESTAMP], train[F.ITEM_ID], _ranks(train[F.EVENT])]
    if _non_decreasing(keys):  # a pass over the keys, where sorting 1.9M rows again took 6 s
        return train
    order = np.lexsort(keys[::-1])
    return {name: np.asarray(values)[order] for name, values in train.items()}


def _ranks(values: np.ndarray) -> np.ndarray:
    """[n] each value's rank among the distinct values, sorted (``np.unique``'s inverse, without
    sorting the n cells: an event column has a handful of distinct strings)."""
    values = np.asarray(values)
    rank = {value: i for i, value in enumerate(sorted(set(values.tolist())))}
    return np.fromiter((rank[value] for value in values.tolist()), np.int64, len(values))


def _non_decreasing(keys: list[np.ndarray]) -> bool:
    """Whether the rows are already in lexicographic order of ``keys`` (most significant first),
    i.e. a stable ``np.lexsort`` would leave them where they are."""
    tied = np.ones(
        max(len(keys[0]) - 1, 0), dtype=bool
    )  # rows equal to the next on every key so far
    for key in keys:
        before, after = key[:-1], key[1:]
        if (tied & (before > after)).any():
            return False
        tied &= before == after
    return True


def pseudo_cutoff_examples(
    train: dict[str, np.ndarray],
    horizon_days: float,
    examples_per_event: int = 1,
    seed: int = 0,
    ordered: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Builds evaluation-shaped training examples from the train interactions.

    For every event and every draw (``examples_per_event``), a pseudo-cutoff c is drawn uniformly in
    [t - horizon, t) before the event's time t (at least 1 ms before); the visitor's state at c
    (`states_at`) becomes the user side, the event (its item and the item's properties at event
    time) the target. Events whose visitor had no event at or before c are skipped.

    Args:
      train: raw columns of the train interactions.
      horizon_days: the longest distance between a pseudo-cutoff and its target event.
      examples_per_event: draws per event.
      seed: numpy seed of the draws.
      ordered: ``ordered_states(train)`` when the caller has it (computed otherwise).

    Returns:
      Raw columns in the interaction layout (same keys as ``train``).
    """
    stamps = train[F.TIMESTAMP]
    n = len(stamps)
    rng = np.random.default_rng(seed)
    horizon_ms = horizon_days * MS_PER_DAY
    parts = []
    ordered = ordered_states(train) if ordered is None else ordered
    for _ in range(examples_per_event):
        cut = stamps - np.maximum(np.floor(rng.uniform(0.0, horizon_ms, n)), 1).astype(np.int64)
        parts.append(_frozen_at(train, np.arange(n), cut, ordered))
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _frozen_at(
    train: dict[str, np.ndarray],
    rows: np.ndarray,
    cutoffs: np.ndarray,
    ordered: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Train rows ``rows`` as queries whose user state is frozen at ``cutoffs`` (one per row).

    Rows whose visitor has no event at or before its cutoff are dropped.
    """
    state, found = states_at(train, train[F.VISITOR_ID][rows], cutoffs, ordered)
    kept = rows[found]
    example = {name: values[kept] for name, values in train.items()}
    example.update({name: values[found] for name, values in state.items()})
    return example


def states_at(
    train: dict[str, np.ndarray],
    visitors: np.ndarray,
    cutoffs: np.ndarray,
    ordered: dict[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The user side of each (visitor, cutoff): its state after all its train events <= cutoff.

    This is how the export freezes an eval query's state at the real cutoff: counters of every
    event type and of distinct items, the last event's timestamp, and the history (the items of
    the latest events, most recent first: the last event's item, then that event's history).

    Args:
      train: raw columns of the train interactions.
      visitors: [q] visitor ids.
      cutoffs: [q] times in ms.
      ordered: ``ordered_states(train)`` when the caller has it (computed otherwise).

    Returns:
      ({user column: [q] values}, [q] bool found: the visitor has a train event <= its cutoff);
      rows not found hold zeros and "".
    """
    ordered = ordered_states(train) if ordered is None else ordered
    v, ts = ordered["visitor"], ordered["ts"]
    distinct = np.unique(v)
    visitors = np.asarray(visitors)
    cutoffs = np.asarray(cutoffs, dtype=np.int64)
    rank = np.searchsorted(distinct, visitors)
    known = (rank < distinct.size) & (distinct[np.minimum(rank, distinct.size - 1)] == visitors)
    t0 = min(int(ts.min()), int(cutoffs.min()) if cutoffs.size else 0)
    span = max(int(ts.max()), int(cutoffs.max()) if cutoffs.size else 0) - t0 + 2
    keys = np.searchsorted(distinct, v).astype(np.int64) * span + (ts - t0)
    query = rank.astype(np.int64) * span + (cutoffs - t0)
    state = np.searchsorted(keys, query, side="right") - 1
    found = known & (state >= 0)
    found[found] &= v[state[found]] == visitors[found]
    picked = np.where(found, state, 0)
    out = {}
    for name, values in ordered["state"].items():
        column = values[picked]
        out[name] = np.where(found, column, "" if values.dtype == object else 0)
        if values.dtype == object:
            out[name] = out[name].astype(object)
    out[F.PROFILE] = np.full(len(visitors), "", dtype=object)
    if found.any():
        out[F.PROFILE][found] = _profiles(ordered, picked[found], constants.PROFILE_LENGTH)
    return out, found


def ordered_states(train: dict[str, np.ndarray]) -> dict[str, Any]:
    """Train rows sorted by (visitor, time, file order) with the state after each row.

    What every state lookup of ``train`` reads (`states_at`); a caller that freezes states of
    the same rows more than once (the fit's examples and the validation window) computes it once.

    The export writes a visitor's events of one millisecond in ``EVENT_ORDER`` (event rank, then
    item id), so file order breaks the ties as the export's state does.
    """
    visitors = train[F.VISITOR_ID]
    stamps = train[F.TIMESTAMP]
    n = len(visitors)
    order = np.lexsort((np.arange(n), stamps, visitors))
    v, ts = visitors[order], stamps[order]
    items = train[F.ITEM_ID][order]
    events = train[F.EVENT][order]
    history = train[F.HISTORY][order]
    new_visitor = np.ones(n, dtype=bool)
    new_visitor[1:] = v[1:] != v[:-1]
    group_start = np.maximum.accumulate(np.where(new_visitor, np.arange(n), 0))
    profile = _profile_rows(v, items, events, ts)
    profile["group_start"] = group_start
    state = {}
    for name, event_type in zip(
        (F.USER_VIEWS, F.USER_ADDTOCARTS, F.USER_TRANSACTIONS), F.EVENT_TYPES, strict=True
    ):
        state[name] = _cumsum_in_groups((events == event_type).astype(np.int64), group_start)
    _, first_index = np.unique(np.stack([v, items], axis=1), axis=0, return_index=True)
    first_seen = np.zeros(n, dtype=np.int64)
    first_seen[first_index] = 1
    state[F.USER_DISTINCT_ITEMS] = _cumsum_in_groups(first_seen, group_start)
    state[F.USER_LAST_TIMESTAMP] = ts
    state[F.HISTORY] = np.array(
        [f"{i} {h}" if h else str(i) for i, h in zip(items, history, strict=True)], dtype=object
    )
    return {"visitor": v, "ts": ts, "state": state, "profile": profile}


def _profile_rows(
    visitors: np.ndarray, items: np.ndarray, events: np.ndarray, stamps: np.ndarray
) -> dict[str, Any]:
    """What the profile needs of each row r of the ordered train rows.

    ``next_same[r]``: the visitor's next row with the same item (n when none): row r is the item's
    last event in a state after row k (r <= k) exactly when ``next_same[r] > k``. ``token[r]``: the
    item's profile token in such a state (its count and strongest event up to row r, r's time).
    """
    n = len(items)
    rank = np.zeros(n, dtype=np.int64)
    for code, name in enumerate(F.EVENT_TYPES):
        rank[events == name] = code
    by_pair = np.lexsort((np.arange(n), items, visitors))  # rows of one (visitor, item) in order
    pv, pi = visitors[by_pair], items[by_pair]
    new_pair = np.ones(n, dtype=bool)
    new_pair[1:] = (pv[1:] != pv[:-1]) | (pi[1:] != pi[:-1])
    pair_start = np.maximum.accumulate(np.where(new_pair, np.arange(n), 0))
    next_same = np.full(n, n, dtype=np.int64)
    follows = ~new_pair[1:]
    next_same[by_pair[:-1][follows]] = by_pair[1:][follows]
    count = np.empty(n, dtype=np.int64)
    count[by_pair] = np.arange(n) - pair_start + 1
    strongest = np.empty(n, dtype=np.int64)
    # The running maximum of the event rank within each pair (ranks < 4; pairs never mix).
    key = np.maximum.accumulate(np.cumsum(new_pair) * 4 + rank[by_pair])
    strongest[by_pair] = key % 4
    sep = F.PROFILE_SEPARATOR
    token = pc.binary_join_element_wise(
        pa.array(items.astype(str)),
        pa.array(count.astype(str)),
        pa.array(np.array(F.EVENT_TYPES, dtype=object)[strongest], type=pa.string()),
        pa.array(np.asarray(stamps, dtype=np.int64).astype(str)),
        sep,
    )
    if isinstance(token, pa.ChunkedArray):  # pyarrow chunks large string arrays
        token = token.combine_chunks()
    return {"next_same": next_same, "token": token.cast(pa.large_string())}


_PROFILE_CHUNK = 1 << 17  # states whose profiles are gathered at once


def _profiles(ordered: dict[str, Any], rows: np.ndarray, length: int) -> np.ndarray:
    """The profile string (``features.PROFILE``) of the state after each of ``rows``.

    The profile after row k is the visitor's rows r <= k with ``next_same[r] > k`` (each item's
    last event), most recent first, at most ``length``: found by walking back from k in blocks of
    offsets, vectorised over the states, until ``length`` items or the visitor's first row.
    """
    info = ordered["profile"]
    next_same, token, first_row = info["next_same"], info["token"], info["group_start"]
    out = np.empty(len(rows), dtype=object)
    for lo in range(0, len(rows), _PROFILE_CHUNK):
        k = np.asarray(rows[lo : lo + _PROFILE_CHUNK], dtype=np.int64)
        start = first_row[k]
        owners, picked, offsets = [], [], []
        taken = np.zeros(k.size, dtype=np.int64)
        active = np.arange(k.size)
        offset, block = 0, 8
        while active.size:
            d = offset + np.arange(block)
            r = k[active, None] - d[None, :]
            inside = r >= start[active, None]
            r = np.where(inside, r, 0)
            keep = inside & (next_same[r] > k[active, None])
            rank = np.cumsum(keep, axis=1) + taken[active, None]
            keep &= rank <= length
            a, j = np.nonzero(keep)
            owners.append(active[a])
            picked.append(r[a, j])
            offsets.append(d[j])
            taken[active] = np.minimum(rank[:, -1], length)
            done = ~inside[:, -1] | (taken[active] >= length)
            active = active[~done]
            offset += block
            block = min(block * 4, 4096)
        owner = np.concatenate(owners)
        row = np.concatenate(picked)
        order = np.lexsort((np.concatenate(offsets), owner))
        splits = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=k.size))])
        lists = pa.LargeListArray.from_arrays(
            pa.array(splits, pa.int64()), token.take(pa.array(row[order]))
        )
        joined = pc.binary_join(lists, pa.scalar(" ", pa.large_string()))
        out[lo : lo + k.size] = joined.to_numpy(zero_copy_only=False)
    return out


def _cumsum_in_groups(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    before = np.concatenate([[0], total])[group_start]
    return total - before


# ---------------------------------------------------------------- the validation window


@dataclasses.dataclass
class ValidationWindow:
    """The validation split of the train interactions (see the module docstring).

    Attributes:
      start_ms: T - V, the window's cutoff: states are frozen here; targets lie after it.
      end_ms: T, the last train event's timestamp.
      queries: raw columns in the interaction layout, one row per query: the target event's own
        columns (item, event, timestamp, item properties) with the user state at ``start_ms``.
    """

    start_ms: int
    end_ms: int
    queries: dict[str, np.ndarray]

    @property
    def n_queries(self) -> int:
        """Number of validation queries."""
        return int(len(self.queries[F.ITEM_ID]))


def validation_window(
    train: dict[str, np.ndarray], days: float, ordered: dict[str, Any] | None = None
) -> ValidationWindow:
    """The validation queries of the last ``days`` of the train interactions.

    Args:
      train: raw columns of the train interactions.
      days: V, the window's length.
      ordered: ``ordered_states(train)`` when the caller has it (computed otherwise).

    Returns:
      The window; its queries are the events in (T - V, T] of visitors with an event at or before
      T - V (T: the last train event's timestamp), each with the visitor's state at T - V.

    Raises:
      ValueError: ``train`` is empty.
    """
    stamps = np.asarray(train[F.TIMESTAMP], dtype=np.int64)
    if stamps.size == 0:
        raise ValueError("no train interactions: no validation window")
    end = int(stamps.max())
    start = end - int(round(days * MS_PER_DAY))
    rows = np.nonzero(stamps > start)[0]
    queries = _frozen_at(train, rows, np.full(rows.size, start, dtype=np.int64), ordered)
    return ValidationWindow(start_ms=start, end_ms=end, queries=queries)


def fit_mask(examples: dict[str, np.ndarray], window: ValidationWindow) -> np.ndarray:
    """[n] True for the examples whose target event is at or before the window's start (T - V)."""
    return np.asarray(examples[F.TIMESTAMP]) <= window.start_ms


def popularity_at(
    train: dict[str, np.ndarray], item_ids: np.ndarray, cutoff_ms: int
) -> dict[str, np.ndarray]:
    """The export's item popularity columns as they would be with the cutoff at ``cutoff_ms``.

    ``item_pop_train``: train events of the item at or before the cutoff; ``item_pop_recent``: those
    in the ``RECENT_POPULARITY_DAYS`` before it (``components/export``: ``ts > cutoff - days``).

    Args:
      train: raw columns of the train interactions.
      item_ids: [n] the items to give the columns to.
      cutoff_ms: the cutoff.

    Returns:
      {``item_pop_train``: [n] int64, ``item_pop_recent``: [n] int64}.
    """
    stamps = np.asarray(train[F.TIMESTAMP], dtype=np.int64)
    recent_from = cutoff_ms - constants.RECENT_POPULARITY_DAYS * MS_PER_DAY
    before = stamps <= cutoff_ms
    known, index = np.unique(np.asarray(train[F.ITEM_ID])[before], return_inverse=True)
    n_train = np.bincount(index, minlength=known.size)
    n_recent = np.bincount(index, weights=stamps[before] > recent_from, minlength=known.size)
    item_ids = np.asarray(item_ids)
    out = {
        name: np.zeros(item_ids.shape, dtype=np.int64)
        for name in (F.ITEM_POP_TRAIN, F.ITEM_POP_RECENT)
    }
    if known.size == 0:
        return out
    pos = np.clip(np.searchsorted(known, item_ids), 0, known.size - 1)
    found = known[pos] == item_ids
    out[F.ITEM_POP_TRAIN][found] = n_train[pos[found]]
    out[F.ITEM_POP_RECENT][found] = n_recent[pos[found]].astype(np.int64)
    return out
