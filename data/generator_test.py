"""Tests of the synthetic RetailRocket generator (tiny sizes only: each test takes about a second)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data import generator
from modules.features import (
    EVENT_TYPES,
    PROPERTY_AVAILABLE,
    PROPERTY_CATEGORY,
    RAW_CATEGORY_TREE_FILE,
    RAW_EVENTS_FILE,
)

VIEW, CART, TRANSACTION = EVENT_TYPES
CUTOFF_MS = generator.CUTOFF_MS
# Sizes for the preset comparison: big enough for a few hundred eval queries, still ~1 s each.
SMALL = {"visitors": 4_000, "events": 16_000, "items": 5_000, "categories": 150, "topics": 60}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny")
    return out, generator.generate(out, preset="tiny", seed=0)


@pytest.fixture(scope="module")
def events(tiny) -> pd.DataFrame:
    return pd.read_csv(tiny[0] / RAW_EVENTS_FILE)


@pytest.fixture(scope="module")
def properties(tiny) -> pd.DataFrame:
    parts = [
        pd.read_csv(tiny[0] / f, dtype={"value": str}) for f in generator.PROPERTIES_PART_FILES
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def tree(tiny) -> pd.DataFrame:
    return pd.read_csv(tiny[0] / RAW_CATEGORY_TREE_FILE, dtype={"parentid": "Int64"})


def _latest(properties: pd.DataFrame, name: str) -> pd.Series:
    rows = properties[properties.property == name].sort_values("timestamp")
    return rows.drop_duplicates("itemid", keep="last").set_index("itemid").value


def _eval_repeat_share(folder: Path) -> float:
    """Share of eval events (after the cutoff, visitors with train events) whose item the visitor
    had in train: what the recently-viewed baseline can at best recall."""
    return _eval_repeat_share_of(pd.read_csv(folder / RAW_EVENTS_FILE))


def _eval_repeat_share_of(ev: pd.DataFrame) -> float:
    train = ev[ev.timestamp <= CUTOFF_MS]
    test = ev[(ev.timestamp > CUTOFF_MS) & ev.visitorid.isin(train.visitorid)]
    seen = set(zip(train.visitorid, train.itemid, strict=True))
    return float(
        np.mean([(v, i) in seen for v, i in zip(test.visitorid, test.itemid, strict=True)])
    )


def test_layout_headers_and_counts(tiny):
    out, counts = tiny
    expected_headers = {
        RAW_EVENTS_FILE: "timestamp,visitorid,event,itemid,transactionid",
        RAW_CATEGORY_TREE_FILE: "categoryid,parentid",
        **{f: "timestamp,itemid,property,value" for f in generator.PROPERTIES_PART_FILES},
    }
    for name, header in expected_headers.items():
        with open(out / name) as f:
            assert f.readline().rstrip("\n") == header, name
    # The tiny preset asks for 3,000 events and 1,200 visitors (each with at least one view).
    assert abs(counts["events"] - 3_000) <= 60
    assert counts["visitors"] == 1_200
    assert counts["items_with_properties"] == 1_500
    assert counts["path"] == str(out)
    provenance = json.loads((out / generator.PROVENANCE_FILE).read_text())
    assert provenance["preset"] == "tiny" and provenance["seed"] == 0
    assert provenance["counts"] == {k: v for k, v in counts.items() if k != "path"}


def test_counts_match_files(tiny, events, properties, tree):
    _, counts = tiny
    assert counts["events"] == len(events)
    assert counts["visitors"] == events.visitorid.nunique()
    assert counts["items_with_events"] == events.itemid.nunique()
    assert counts["items_with_properties"] == properties.itemid.nunique()
    assert counts["property_rows"] == len(properties)
    assert counts["property_names"] == properties.property.nunique()
    assert counts["categories"] == len(tree)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = generator.generate(tmp_path / "a", preset="tiny", seed=7)
    b = generator.generate(tmp_path / "b", preset="tiny", seed=7)
    c = generator.generate(tmp_path / "c", preset="tiny", seed=8)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert RAW_EVENTS_FILE in names and generator.PROVENANCE_FILE in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert {k: v for k, v in a.items() if k != "path"} == {
        k: v for k, v in b.items() if k != "path"
    }
    for name in (RAW_EVENTS_FILE, *generator.PROPERTIES_PART_FILES, RAW_CATEGORY_TREE_FILE):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name
    assert c["events"] > 0


def test_event_mix_is_close_to_the_real_one(events):
    share = events.event.value_counts(normalize=True)
    assert set(share.index) == set(EVENT_TYPES)
    # Real: 96.7% views, 2.5% add-to-carts, 0.8% transactions; ~3,000 events allow a few points.
    assert 0.95 <= share[VIEW] <= 0.985
    assert 0.015 <= share[CART] <= 0.035
    assert 0.003 <= share[TRANSACTION] <= 0.013


def test_transaction_ids_only_on_transactions_and_shared_within_a_purchase(events):
    tx = events[events.event == TRANSACTION]
    assert events.loc[events.event != TRANSACTION, "transactionid"].isna().all()
    assert tx.transactionid.notna().all()
    assert (tx.transactionid == tx.transactionid.round()).all()
    # One purchase = one visitor and one time; some purchases hold several items.
    per_tx = tx.groupby("transactionid").agg(
        visitors=("visitorid", "nunique"), times=("timestamp", "nunique"), items=("itemid", "size")
    )
    assert (per_tx.visitors == 1).all() and (per_tx.times == 1).all()


def test_some_purchases_hold_several_items(tmp_path):
    # Tiny has only ~25 purchases; a small default run has a few hundred (real: 1.27 items each).
    generator.generate(tmp_path, preset="default", seed=1, **SMALL)
    events = pd.read_csv(tmp_path / RAW_EVENTS_FILE)
    items = events[events.event == TRANSACTION].groupby("transactionid").size()
    assert items.max() >= 2
    assert 1.03 <= items.mean() <= 1.6


@pytest.mark.parametrize(("later", "earlier"), [(CART, VIEW), (TRANSACTION, CART)])
def test_funnel_steps_follow_the_previous_step(events, later, earlier):
    # Every add-to-cart follows a view, every transaction an add-to-cart, of the same visitor and
    # item at an earlier time.
    first_earlier = events[events.event == earlier].groupby(["visitorid", "itemid"]).timestamp.min()
    rows = events[events.event == later]
    before = first_earlier.reindex(pd.MultiIndex.from_frame(rows[["visitorid", "itemid"]]))
    assert len(rows) > 0
    assert before.notna().all()
    assert (before.to_numpy() < rows.timestamp.to_numpy()).all()


def test_timestamps_in_range_with_a_realistic_cutoff_share(events):
    assert events.timestamp.min() >= generator.START_MS
    assert events.timestamp.max() < generator.END_MS
    assert (events.timestamp.diff().dropna() >= 0).all()  # written in time order
    train_share = (events.timestamp <= CUTOFF_MS).mean()
    assert 0.55 <= train_share <= 0.85
    # Daily seasonality: the busiest hour has clearly more events than the quietest.
    hours = pd.to_datetime(events.timestamp, unit="ms").dt.hour.value_counts()
    assert hours.max() > 2 * hours.min()


def test_every_item_with_events_has_properties_before_its_first_event(events, properties):
    first_event = events.groupby("itemid").timestamp.min()
    first_property = properties.groupby("itemid").timestamp.min().reindex(first_event.index)
    assert first_property.notna().all()
    assert (first_property <= first_event).all()
    # Every item has a category and an availability from its first snapshot on.
    for name in (PROPERTY_CATEGORY, PROPERTY_AVAILABLE):
        first = properties[properties.property == name].groupby("itemid").timestamp.min()
        assert first.reindex(first_property.index).eq(first_property).all(), name


def test_property_timestamps_are_weekly_snapshots(properties):
    offsets = (properties.timestamp - generator.START_MS) % generator.WEEK_MS
    assert (offsets == 0).all()
    # 2015-05-03 03:00 UTC is a Sunday; so are all later snapshots.
    days = pd.to_datetime(properties.timestamp.unique(), unit="ms")
    assert set(days.dayofweek) == {6} and set(days.hour) == {3}


def test_available_is_binary_and_flips(properties):
    avail = properties[properties.property == PROPERTY_AVAILABLE]
    assert set(avail.value) == {"0", "1"}
    rows_per_item = avail.groupby("itemid").size()
    assert (rows_per_item >= 2).mean() > 0.2  # many items change
    assert rows_per_item.max() >= 4  # some flip several times
    # Only changes are stored: consecutive rows of an item differ.
    ordered = avail.sort_values(["itemid", "timestamp"])
    same_item = ordered.itemid.eq(ordered.itemid.shift())
    assert (ordered.value != ordered.value.shift())[same_item].all()


def test_numeric_and_text_values_parse(properties):
    number = re.compile(r"^n-?\d+\.\d{3}$")
    price = properties[properties.property == "790"].value
    assert price.str.match(number).all()
    assert (price.str[1:].astype(float) > 0).all()
    # Text values are space-separated integer tokens, some of them n<number> (like 888).
    tokens = properties[properties.property == "888"].value.str.split(" ").explode()
    is_number = tokens.str.match(number)
    assert is_number.any() and (~is_number).any()
    assert tokens[~is_number].str.fullmatch(r"\d+").all()
    # Property names are integers as strings, except the two special ones.
    names = set(properties.property) - {PROPERTY_CATEGORY, PROPERTY_AVAILABLE}
    assert all(n.isdigit() for n in names)
    assert len(names) > 100


def test_property_parts_split_roughly_in_half(tiny):
    out, _ = tiny
    sizes = [len(pd.read_csv(out / f)) for f in generator.PROPERTIES_PART_FILES]
    assert 0.35 <= sizes[0] / sum(sizes) <= 0.65


def test_category_tree_is_a_forest_of_depth_at_most_five(tree, properties):
    assert tree.categoryid.is_unique
    parent = dict(zip(tree.categoryid, tree.parentid, strict=True))
    known = set(tree.categoryid)
    assert all(p in known for p in tree.parentid.dropna())
    depth = {}
    for category in tree.categoryid:
        node, d, path = category, 1, set()
        while not pd.isna(parent[node]):
            assert node not in path, f"cycle through {node}"
            path.add(node)
            node, d = parent[node], d + 1
        depth[category] = d
    assert max(depth.values()) <= 5
    assert sum(d == 1 for d in depth.values()) == generator.PRESETS["tiny"]["category_roots"]
    # Items' categories are known, and mostly leaves.
    item_categories = _latest(properties, PROPERTY_CATEGORY).astype(int)
    assert item_categories.isin(known).all()
    leaves = known - set(tree.parentid.dropna())
    assert item_categories.isin(leaves).mean() > 0.8


def test_cold_and_late_items_exist(events, properties):
    catalogue = set(properties.itemid)
    train_items = set(events.loc[events.timestamp <= CUTOFF_MS, "itemid"])
    assert len(catalogue - set(events.itemid)) > 0.2 * len(catalogue)  # never any event
    assert len(catalogue - train_items) > len(catalogue - set(events.itemid))  # cold at cutoff
    first_property = properties.groupby("itemid").timestamp.min()
    late = set(first_property[first_property > CUTOFF_MS].index)
    assert late
    late_events = events[events.itemid.isin(late)]
    assert len(late_events) > 0  # late items do get clicked, after their introduction
    assert (late_events.timestamp > CUTOFF_MS).all()


def test_visitor_activity_is_heavy_tailed(events):
    per_visitor = events.groupby("visitorid").size()
    assert (per_visitor == 1).mean() > 0.5  # most visitors have one event
    assert per_visitor.max() >= 20  # a few have many
    per_item = events.groupby("itemid").size().sort_values(ascending=False)
    top = per_item.iloc[: max(1, len(per_item) // 100)].sum() / len(events)
    assert top > 0.05  # the top 1% of items take a large share


def test_browsing_is_content_coherent(events, properties):
    # Consecutive views of one visitor (within 30 minutes, different items) share the category
    # and the brand-like token of property 364 far more often than random pairs of viewed items.
    views = events[events.event == VIEW].sort_values(["visitorid", "timestamp"])
    prev = views.shift()
    pairs = views[
        (views.visitorid == prev.visitorid)
        & (views.itemid != prev.itemid)
        & (views.timestamp - prev.timestamp < 30 * 60_000)
    ]
    prev_items = prev.loc[pairs.index, "itemid"].to_numpy()
    rng = np.random.default_rng(0)
    random_items = rng.permutation(views.itemid.to_numpy())[: len(pairs)]
    for name in (PROPERTY_CATEGORY, "364"):
        value = _latest(properties, name)
        together = np.mean(value.reindex(pairs.itemid).to_numpy() == value.reindex(prev_items))
        chance = np.mean(
            value.reindex(pairs.itemid).to_numpy() == value.reindex(random_items).to_numpy()
        )
        assert together > 3 * chance + 0.05, (name, together, chance)


def test_repeat_heavy_repeats_more_than_discovery_heavy(tmp_path):
    shares = {}
    for preset in ("repeat-heavy", "discovery-heavy"):
        generator.generate(tmp_path / preset, preset=preset, seed=3, **SMALL)
        shares[preset] = _eval_repeat_share(tmp_path / preset)
    assert shares["repeat-heavy"] > shares["discovery-heavy"] + 0.15, shares


def test_explicit_sizes_and_overrides(tmp_path):
    counts = generator.generate(
        tmp_path, preset="tiny", visitors=500, items=800, events=2_000, repeat_prob=0.3
    )
    assert counts["visitors"] == 500
    assert counts["items_with_properties"] == 800
    assert abs(counts["events"] - 2_000) <= 40
    params = json.loads((tmp_path / generator.PROVENANCE_FILE).read_text())["params"]
    assert params["repeat_prob"] == 0.3 and params["visitors"] == 500


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "huge"}, "unknown preset"),
        ({"preset": "tiny", "repeat_probability": 0.5}, "repeat_probability"),
        ({"preset": "tiny", "visitors": 5_000, "events": 3_000}, "at least one view"),
        ({"preset": "tiny", "repeat_prob": 1.5}, "repeat_prob"),
    ],
)
def test_bad_arguments_are_rejected_with_the_bad_value(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generator.generate(tmp_path, **kwargs)


# ---------------------------------------------------------------- the purchase and never-return modes

# A small grocery log: 300 households with ~100 events each over the whole period.
PURCHASE_SMALL = {"visitors": 300, "events": 30_000, "items": 3_000, "categories": 80, "topics": 40}


@pytest.fixture(scope="module")
def purchase(tmp_path_factory) -> tuple[pd.DataFrame, dict]:
    out = tmp_path_factory.mktemp("purchase")
    counts = generator.generate(out, preset="repeat-purchase", seed=0, **PURCHASE_SMALL)
    return pd.read_csv(out / RAW_EVENTS_FILE), counts


@pytest.fixture(scope="module")
def never_return(tmp_path_factory) -> tuple[pd.DataFrame, dict]:
    out = tmp_path_factory.mktemp("never_return")
    counts = generator.generate(out, preset="never-return", seed=0)  # the preset's size: ~0.5 s
    return pd.read_csv(out / RAW_EVENTS_FILE), counts


def test_repeat_purchase_baskets_share_one_time_and_id(purchase):
    events, counts = purchase
    assert counts["visitors"] == PURCHASE_SMALL["visitors"]
    assert abs(counts["events"] - PURCHASE_SMALL["events"]) < 0.05 * PURCHASE_SMALL["events"]
    tx = events[events.event == TRANSACTION]
    per_tx = tx.groupby("transactionid").agg(
        visitors=("visitorid", "nunique"),
        times=("timestamp", "nunique"),
        items=("itemid", "size"),
        distinct=("itemid", "nunique"),
    )
    assert (per_tx.visitors == 1).all() and (per_tx.times == 1).all()
    assert (per_tx["items"] == per_tx.distinct).all()  # an item once per basket
    assert per_tx["items"].mean() > 3.5 and per_tx["items"].max() >= 8  # several items per trip
    # Add-to-carts and views happen during the trip, before its checkout.
    checkout = tx.set_index(["visitorid", "itemid"]).timestamp.groupby(level=[0, 1]).max()
    carts = events[events.event == CART]
    after = checkout.reindex(pd.MultiIndex.from_frame(carts[["visitorid", "itemid"]]))
    assert after.notna().all()


def test_repeat_purchase_transactions_dominate(purchase):
    share = purchase[0].event.value_counts(normalize=True)
    assert share[TRANSACTION] > 0.6
    assert share[TRANSACTION] > share.drop(TRANSACTION).sum()


def test_repeat_purchase_households_rebuy_by_frequency(purchase):
    events, _ = purchase
    tx = events[events.event == TRANSACTION]
    bought = tx.groupby(["visitorid", "itemid"]).transactionid.nunique()
    assert (bought >= 2).mean() > 0.2  # many (household, item) pairs are bought again
    assert bought.max() >= 10  # staples, bought over and over
    # The more often an item was bought before the cutoff, the likelier it is bought after it.
    train = tx[tx.timestamp <= CUTOFF_MS].groupby(["visitorid", "itemid"]).size()
    after = tx[tx.timestamp > CUTOFF_MS]
    later = set(zip(after.visitorid, after.itemid, strict=True))
    again = pd.Series([key in later for key in train.index], index=train.index)
    once, often = again[train == 1].mean(), again[train >= 4].mean()
    assert often > 2 * once, (once, often)
    # About 45% of the eval events are items the household had before the cutoff.
    assert 0.3 <= _eval_repeat_share_of(events) <= 0.6


def test_repeat_purchase_households_span_many_weeks(purchase):
    events, _ = purchase
    assert events.timestamp.min() >= generator.START_MS
    assert events.timestamp.max() < generator.END_MS
    span_days = events.groupby("visitorid").timestamp.agg(
        lambda t: (t.max() - t.min()) / 86_400_000
    )
    assert span_days.median() > 70  # not 12-day lifetimes: most shop over the whole period
    trips = events[events.event == TRANSACTION].groupby("visitorid").transactionid.nunique()
    assert trips.median() >= 6


def test_never_return_has_no_repeated_visitor_item_pair(never_return):
    events, counts = never_return
    assert not events.duplicated(["visitorid", "itemid"]).any()
    assert _eval_repeat_share_of(events) == 0.0
    assert counts["events"] == generator.PRESETS["never-return"]["events"]
    # Purchases of a session share one time and id, like real purchases.
    per_tx = events[events.event == TRANSACTION].groupby("transactionid")
    assert (per_tx.timestamp.nunique() == 1).all() and (per_tx.visitorid.nunique() == 1).all()


def test_never_return_visitor_activity_is_heavy_tailed_within_bounds(never_return):
    events, counts = never_return
    params = generator.PRESETS["never-return"]
    per_visitor = events.groupby("visitorid").size()
    assert counts["visitors"] == len(per_visitor) == params["visitors"]
    assert per_visitor.min() >= params["min_visitor_events"]
    assert per_visitor.max() <= params["max_visitor_events"]
    assert per_visitor.max() > 10 * per_visitor.median()  # a few visitors do most of it
    assert 1_500 <= counts["items_with_events"] <= 1_900


def test_never_return_popularity_predicts_eval_better_than_own_categories(never_return):
    # Global popularity carries over the cutoff: the 50 most popular train items hold a clearly
    # larger share of the eval events than 50 random train items.
    events, _ = never_return
    train = events[events.timestamp <= CUTOFF_MS]
    test = events[(events.timestamp > CUTOFF_MS) & events.visitorid.isin(train.visitorid)]
    top = train.itemid.value_counts().index[:50]
    random50 = np.random.default_rng(0).choice(train.itemid.unique(), 50, replace=False)
    assert test.itemid.isin(top).mean() > 2.5 * test.itemid.isin(random50).mean()


@pytest.mark.parametrize(
    ("preset", "sizes"),
    [
        ("repeat-purchase", {"visitors": 100, "events": 6_000, "items": 1_000, "categories": 40}),
        ("never-return", {"visitors": 100, "events": 6_000}),
    ],
)
def test_new_modes_are_reproducible(tmp_path, preset, sizes):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generator.generate(tmp_path / name, preset=preset, seed=seed, **sizes)
    for name in (RAW_EVENTS_FILE, *generator.PROPERTIES_PART_FILES, generator.PROVENANCE_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / RAW_EVENTS_FILE).read_bytes() != (
        tmp_path / "c" / RAW_EVENTS_FILE
    ).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "never-return", "events": 1_000}, "min_visitor_events"),
        ({"preset": "never-return", "max_visitor_events": 5_000}, "max_visitor_events"),
        ({"preset": "repeat-purchase", "rebuy_prob": 0.9, "staple_prob": 0.2}, "rebuy_prob"),
        ({"preset": "tiny", "mode": "shop"}, "mode"),
    ],
)
def test_bad_mode_arguments_are_rejected(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generator.generate(tmp_path, **kwargs)
