"""Synthetic RetailRocket-format data: a click stream, a changing item catalogue and a category tree.

The generator writes a raw folder in exactly the layout of the public RetailRocket e-commerce dataset,
so that every downstream step (export, baselines, the TFX pipeline) runs unchanged on synthetic and on
real data::

    out_dir/
      events.csv                   timestamp,visitorid,event,itemid,transactionid
      item_properties_part1.csv    timestamp,itemid,property,value
      item_properties_part2.csv    (the same, the other half of the rows)
      category_tree.csv            categoryid,parentid   (parentid empty for roots)
      generator.json               parameters and resulting counts (provenance)

Stable API (the ``retailrec generate`` command calls it)::

    generate(out_dir, *, preset="default", seed=0, visitors=None, items=None, events=None,
             **overrides) -> dict

``visitors`` / ``items`` / ``events`` override the preset's sizes (``items`` counts catalogue items, i.e.
items with properties; the items that receive events are ``items * items_with_events_share``); any
other key of the preset (``repeat_prob``, ``new_item_share``, ...; for the two presets with their own
event model also its keys, e.g. ``rebuy_prob``) can be overridden by keyword. The same arguments give
byte-identical files.

How the data is made (the structure the models are meant to find):

* Latent structure. Every item has a category (mostly a leaf of a tree of up to five levels) and a
  latent *topic* (think brand or style) shared by the categories under one root. Topic and category
  drive both the item's text properties (tokens drawn from topic, category and category-family
  vocabularies) and the visitors' choices, so content similarity predicts behaviour.
* Popularity is Zipf-like over the items that receive events, hence also within each category; a share
  of the catalogue never receives an event, and a share is introduced only later (some after the
  2015-08-01 cutoff), so cold-start items exist.
* Visitors have heavy-tailed activity (a truncated zeta law solved for the requested mean), one to three
  interest categories (often in the same family), a taste topic per interest, and interests that switch
  between sessions and drift to a neighbouring category over time. A session is a burst of events a
  minute or so apart on items of one interest category; each next item is chosen by popularity, by
  the session's topic or by the topic of the previous item (content similarity). Views re-visit items
  the visitor saw before with probability ``repeat_prob`` (within and across sessions and the cutoff);
  otherwise a browsing pick of an item already seen is redrawn with probability ``novelty_prob``.
* Add-to-carts follow a view of the same item by the same visitor (only while the item is available);
  transactions follow add-to-carts, and the items bought in one session share a transaction id.
* Properties are written like the real data: an initial snapshot when the item enters the catalogue
  (2015-05-03 03:00 UTC for most items) and afterwards only changes, at weekly snapshot times (Sunday
  03:00 UTC). Prices and availability change often, the category rarely.

Two presets replace the browsing sessions above by another event model (the preset's ``mode``; the
catalogue, properties, categories, interests and taste topics are made the same way). They model
regimes of real shop logs where a learned model hardly beats simple baselines:

* ``repeat-purchase`` (``mode="purchase"``, a grocery purchase log): ~2,400 households shop over the
  whole period (10% only during a part of it) on trips of a Poisson process with a lognormal rate;
  median ~50 and 90th percentile ~175 train events per household. A trip buys a basket of
  1 + Poisson(4) distinct items that share ONE timestamp and transaction id (~70% of the events are
  transactions; some bought items also get an add-to-cart and a view during the trip). A basket item
  is a re-buy (``rebuy_prob``: a copy of a uniformly drawn earlier purchase of the household, so the
  chance to buy an item again grows with how often it was bought: a Polya urn), a staple
  (``staple_prob``: from a weighted personal set, partly globally popular products) or an exploration
  (an interest category or a neighbouring one, by taste topic and popularity, or globally popular).
  About 46% of the eval events are items the household had in train; its own items ranked by
  purchase count or recency are the strong predictors (recently_viewed is the best baseline).
* ``never-return`` (``mode="never-return"``): 900 visitors with 20..700 events each (truncated power
  law) who never touch an item twice, not even view -> cart (each event is a single event of its
  type; purchases of a session share a time and id). A visitor's items are drawn without replacement
  with weights popularity x a weak taste boost of its interest categories, and spread over its
  sessions at random, so popularity is stable across the cutoff: every eval target is new to its
  visitor, most_popular is the best baseline and excluding seen items is worth more than taste.

Presets (`PRESETS`; counts of seed 0):

=================  =========  =========  ===============  ===============  =============  ==========
preset             events     visitors   items w/ events  items w/ props   property rows  categories
=================  =========  =========  ===============  ===============  =============  ==========
tiny (tests)           3,005      1,200              755            1,500         53,800          80
default              250,020    100,000           25,077           40,000      1,836,825         600
full (real scale)  2,756,269  1,407,580          237,198          417,053     20,109,364       1,669
repeat-heavy         250,021    100,000           24,463           40,000      1,839,531         600
discovery-heavy      249,917    100,000           24,125           40,000      1,754,824         600
repeat-purchase      298,945      2,400           10,022           14,000        672,813         300
never-return          90,000        900            1,705            2,400         95,918          80
=================  =========  =========  ===============  ===============  =============  ==========

About 69% of the events fall before the 2015-08-01 cutoff (67% for repeat-purchase, 68% for
never-return). On the evaluation protocol of DESIGN section 5 the share of eval events whose item the
visitor had in train is about 0.3 (default), 0.57 (repeat-heavy), 0.19 (discovery-heavy), 0.46
(repeat-purchase) and 0 (never-return).

Everything is vectorised with numpy and pyarrow (no Python loop per event or per visitor): the full
preset takes about 1-1.5 minutes and 1.6 GB of memory on two cores; repeat-purchase and never-return
take a few seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modules.features import (
    EVENT_TYPES,
    PROPERTY_AVAILABLE,
    PROPERTY_CATEGORY,
    RAW_CATEGORY_TREE_FILE,
    RAW_EVENTS_FILE,
)

# ---------------------------------------------------------------- time frame of the real dataset
# The real events run from Sunday 2015-05-03 03:00 UTC for exactly 138 days; property snapshots are
# taken weekly at Sunday 03:00 UTC, so the first snapshot coincides with the first possible event.
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
START_MS = 1_430_622_000_000  # 2015-05-03 03:00:00 UTC (a Sunday)
END_MS = START_MS + 138 * DAY_MS  # 2015-09-18 03:00:00 UTC
CUTOFF_MS = 1_438_387_200_000  # 2015-08-01 00:00:00 UTC, the default evaluation cutoff
N_WEEKS = (END_MS - START_MS - 1) // WEEK_MS + 1  # snapshots at weeks 0..19 (the last: Sep 13)
_MIDNIGHT0_MS = START_MS - 3 * 3_600_000
# Sessions must end this long before END_MS so that cart and purchase delays stay inside the data.
_END_MARGIN_MS = 2 * 3_600_000

PROPERTIES_PART_FILES = ("item_properties_part1.csv", "item_properties_part2.csv")
PROVENANCE_FILE = "generator.json"

_VIEW, _CART, _TRANSACTION = 0, 1, 2  # indices into EVENT_TYPES
_TOKEN_MAX = 1_330_000  # the real hashed tokens are integers below ~1.33M
_ITEMS_PER_CHUNK = 25_000  # property rows are generated and written per chunk of items
_EVENTS_PER_WRITE = 4_000_000
_BUY_SHARE = 0.8  # share of a checked-out session's carts that are bought
_MAX_DRIFTS = 32  # interest drift steps followed per (visitor, interest)

# Depth profile of the real category tree (levels 2..5; its 13 depth-6 nodes folded into level 5).
_REAL_LEVEL_COUNTS = (174, 702, 665, 103)

# ---------------------------------------------------------------- presets
# Event models (a preset's "mode"; presets without one browse): sessions of views with a funnel to
# purchases (`_make_events`), households' shopping trips (`_make_purchase_events`) and visitors who
# never touch an item twice (`_make_never_return_events`).
MODE_BROWSE, MODE_PURCHASE, MODE_NEVER_RETURN = "browse", "purchase", "never-return"
_DEFAULT: dict[str, Any] = {
    # sizes
    "visitors": 100_000,
    "events": 250_000,
    "items": 40_000,  # catalogue items (items with properties)
    "items_with_events_share": 0.625,  # target share of the catalogue that receives events
    "categories": 600,
    "category_roots": 25,
    "category_depth": 5,
    "topics": 300,
    "property_names": 1_104,
    "noise_coverage": 1.6,  # scales how many low-coverage properties an item has
    # catalogue dynamics
    "new_item_share": 0.12,  # items introduced after the first snapshot (weeks 1..19)
    "new_item_boost": 2.0,  # popularity multiplier of newly introduced items
    "popularity_exponent": 0.9,
    "popularity_offset": 50.0,  # Zipf rank offset: flattens the head (real top item: 0.12%)
    # event mix (shares of all events)
    "addtocart_share": 0.025,
    "transaction_share": 0.008,
    # visitors and sessions
    "session_new_prob": 0.35,  # probability that a visitor's next event starts a new session
    "lifetime_days": 12.0,  # median span of a returning visitor's sessions (grows with sqrt(sessions))
    "interest_switch_prob": 0.3,  # per session: move to another of the visitor's interests
    "interest_cluster_prob": 0.6,  # a second/third interest lies in the family of the first
    "interest_drift_prob": 0.15,  # per session: the interest moves to a nearby category
    "taste_prob": 0.75,  # a session follows the visitor's taste topic (else a popular topic)
    "follow_prob": 0.5,  # the next item shares the previous item's topic (content similarity)
    "category_pick_prob": 0.15,  # an item by popularity within the category, ignoring topic
    "global_pick_prob": 0.03,  # an item by global popularity (home page, promotions)
    "repeat_prob": 0.1,  # a view explicitly re-visits an item the visitor saw before
    "novelty_prob": 0.8,  # a browsing pick of an already seen item is redrawn
    "repeat_recent_share": 0.5,  # of the repeats: the previous item (else any earlier one)
    "repeat_cart_boost": 1.5,  # cart propensity of re-visited items relative to first views
    "unavailable_view_prob": 0.5,  # chance that a pick of an unavailable item is kept
    "trend": 0.15,  # linear decline of traffic over the period (real: ~68% before Aug 1)
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        **_DEFAULT,
        "visitors": 1_200,
        "events": 3_000,
        "items": 1_500,
        "items_with_events_share": 0.5,
        "categories": 80,
        "category_roots": 6,
        "topics": 24,
        "property_names": 150,
    },
    "default": dict(_DEFAULT),
    "full": {
        **_DEFAULT,
        "visitors": 1_407_580,
        "events": 2_756_101,
        "items": 417_053,
        "items_with_events_share": 235_061 / 417_053,
        "categories": 1_669,
        "topics": 600,
    },
    # Shoppers come back to the same products (and buy them again): many explicit re-visits,
    # little drift, more sessions per visitor over a longer life.
    "repeat-heavy": {
        **_DEFAULT,
        "repeat_prob": 0.5,
        "novelty_prob": 0.0,
        "repeat_recent_share": 0.25,
        "repeat_cart_boost": 3.0,
        "interest_drift_prob": 0.05,
        "session_new_prob": 0.45,
        "lifetime_days": 20.0,
    },
    # Visitors rarely re-visit an item; interests wander, and many new items enter the catalogue
    # (and are promoted), so most eval targets are items the visitor never saw.
    "discovery-heavy": {
        **_DEFAULT,
        "repeat_prob": 0.0,
        "novelty_prob": 0.95,
        "interest_drift_prob": 0.35,
        "taste_prob": 0.5,
        "category_pick_prob": 0.3,
        "new_item_share": 0.3,
        "new_item_boost": 4.0,
    },
    # A grocery purchase log: households shop over the whole period and mostly buy; baskets share
    # one time and transaction id; households re-buy their own items (the more often bought, the
    # likelier) and staples, and explore some new ones. Browse-model keys (session_new_prob,
    # repeat_prob, ...) are unused.
    "repeat-purchase": {
        **_DEFAULT,
        "mode": MODE_PURCHASE,
        "visitors": 2_400,
        "events": 300_000,
        "items": 14_000,
        "items_with_events_share": 0.72,
        "categories": 300,
        "category_roots": 15,
        "topics": 120,
        "new_item_share": 0.05,
        "new_item_boost": 1.0,
        "addtocart_share": 0.2,
        "transaction_share": 0.7,
        "taste_prob": 0.3,  # explorations within the interest's taste topic
        "global_pick_prob": 0.3,  # explorations by global popularity
        "basket_mean": 5.0,  # mean items per trip (1 + Poisson)
        "activity_sigma": 1.0,  # lognormal spread of the households' trip rates
        "churn_share": 0.1,  # households that shop only during a part of the period
        "staples": 20.0,  # mean size of a household's staple set
        "staple_global_share": 0.4,  # staples that are globally popular products
        "rebuy_prob": 0.28,  # a basket item copies an earlier purchase of the household
        "staple_prob": 0.08,  # a basket item is drawn from the household's staples
        "explore_family_prob": 0.6,  # an exploration looks in a neighbouring category
    },
    # Visitors never interact with an item twice (not even view -> cart): every eval target is new to
    # its visitor; global popularity is the strongest signal, personal taste a weak boost.
    "never-return": {
        **_DEFAULT,
        "mode": MODE_NEVER_RETURN,
        "visitors": 900,
        "events": 90_000,
        "items": 2_400,
        "items_with_events_share": 0.71,
        "categories": 80,
        "category_roots": 8,
        "topics": 40,
        "property_names": 400,
        "new_item_share": 0.05,
        "popularity_exponent": 1.0,
        "popularity_offset": 20.0,
        "session_new_prob": 0.3,
        "lifetime_days": 15.0,
        "min_visitor_events": 20,
        "max_visitor_events": 700,
        "taste_boost": 8.0,  # an interest category's items weigh 1 + boost (its family 1 + boost/4)
    },
}

# Seed-sequence stage tags: each stage draws from its own stream, so that e.g. a change in the
# property writer never changes the events.
_STAGE_TREE, _STAGE_ITEMS, _STAGE_VISITORS, _STAGE_EVENTS, _STAGE_PROPERTIES = range(1, 6)


def _rng(seed: int, *stage: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stage]))


# ---------------------------------------------------------------- property schema
# Roles of the named properties. Names are the real dataset's where we know the real property's
# character (790 is the price, 888 the multi-token text with embedded numbers, 283 long text, 112/159/764
# constants); coverage is the share of items that have the property, weekly the chance per weekly
# snapshot that its value changes (price-linked ones also change with the price).
_TEXT_ROLES: dict[str, tuple[str, float, float]] = {
    # name: (recipe, coverage, weekly change probability)
    "888": ("888", 0.97, 0.25),
    "283": ("long", 0.85, 0.04),
    "364": ("brand", 0.95, 0.01),
    "678": ("category_token", 0.70, 0.02),
    "776": ("family_token", 0.85, 0.01),
    "6": ("topic_pair", 0.60, 0.04),
    "839": ("category_pair", 0.60, 0.04),
    "202": ("mixed", 0.50, 0.05),
    "112": ("constant", 1.0, 0.0),
    "159": ("constant", 1.0, 0.0),
    "764": ("constant", 1.0, 0.0),
    "917": ("weak", 0.90, 0.02),
    "227": ("topic_mixed", 0.45, 0.04),
}
# Medium-coverage properties (below the export's usual 36% threshold): family-flavoured mixed text.
_MEDIUM_ROLES = (
    "451",
    "698",
    "1032",
    "928",
    "496",
    "978",
    "566",
    "28",
    "915",
    "1036",
    "348",
    "225",
)
_MEDIUM_COVERAGE = (0.30, 0.28, 0.25, 0.22, 0.2, 0.18, 0.15, 0.12, 0.1, 0.08, 0.06, 0.05)
_NUMERIC_ROLES: dict[str, tuple[str, float, float]] = {
    "790": ("price", 1.0, 0.0),  # changes are driven by the price timeline
    "1058": ("pack", 0.55, 0.01),
    "212": ("weight", 0.45, 0.0),
    "292": ("old_price", 0.40, 0.0),  # follows the price
    "1096": ("random_number", 0.15, 0.05),
}
_NOISE_WEEKLY_CHANGE = 0.03
_NOISE_COVERAGE_RANGE = (2e-4, 0.05)  # log-uniform coverage of the many rare properties


def _property_names(n_names: int) -> tuple[list[str], list[str]]:
    """Returns (all names in code order, the noise names): specials, roles, then rare properties."""
    roles = [*_NUMERIC_ROLES, *_TEXT_ROLES, *_MEDIUM_ROLES]
    n_noise = n_names - 2 - len(roles)
    if n_noise < 0:
        raise ValueError(f"property_names must be at least {2 + len(roles)}; got {n_names}")
    taken = set(roles)
    noise: list[str] = []
    i = 0
    while len(noise) < n_noise:
        if str(i) not in taken:
            noise.append(str(i))
        i += 1
    return [PROPERTY_CATEGORY, PROPERTY_AVAILABLE, *roles, *noise], noise


# ---------------------------------------------------------------- public API


def resolve_params(
    preset: str = "default",
    visitors: int | None = None,
    items: int | None = None,
    events: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Merges a preset with explicit sizes and overrides, and validates the result.

    Args:
      preset: a key of `PRESETS`.
      visitors: number of visitors (each gets at least one event), or None for the preset's.
      items: number of catalogue items (items with properties), or None for the preset's.
      events: number of event rows, or None for the preset's.
      **overrides: any other key of a preset, e.g. ``repeat_prob=0.5``.

    Returns:
      The full parameter dict.

    Raises:
      ValueError: unknown preset or parameter, or sizes that cannot be honoured.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    params = dict(PRESETS[preset])
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(f"unknown generator parameter(s) {unknown}; known: {sorted(params)}")
    params.update(overrides)
    for key, value in (("visitors", visitors), ("items", items), ("events", events)):
        if value is not None:
            params[key] = value
    for key in ("visitors", "items", "events", "categories", "category_roots", "topics"):
        params[key] = int(params[key])
        if params[key] < 1:
            raise ValueError(f"{key} must be positive; got {params[key]}")
    mode = params.get("mode", MODE_BROWSE)
    if mode not in (MODE_BROWSE, MODE_PURCHASE, MODE_NEVER_RETURN):
        raise ValueError(
            f"mode must be one of {MODE_BROWSE!r}, {MODE_PURCHASE!r}, {MODE_NEVER_RETURN!r}; "
            f"got {mode!r}"
        )
    views = _view_target(params)
    if mode == MODE_BROWSE and views < params["visitors"]:
        raise ValueError(
            f"events={params['events']} leaves {views} views for visitors={params['visitors']}: "
            "every visitor needs at least one view"
        )
    if mode == MODE_PURCHASE:
        if params["addtocart_share"] + params["transaction_share"] > 1.0:
            raise ValueError("addtocart_share + transaction_share must be at most 1")
        if params["rebuy_prob"] + params["staple_prob"] > 1.0:
            raise ValueError(
                f"rebuy_prob + staple_prob must be at most 1; got {params['rebuy_prob']} + "
                f"{params['staple_prob']}"
            )
        if params["basket_mean"] < 1.0:
            raise ValueError(f"basket_mean must be at least 1; got {params['basket_mean']}")
    if mode == MODE_NEVER_RETURN:
        low, high = int(params["min_visitor_events"]), int(params["max_visitor_events"])
        if not 1 <= low <= high:
            raise ValueError(
                f"need 1 <= min_visitor_events <= max_visitor_events; got {low}, {high}"
            )
        if not params["visitors"] * low <= params["events"] <= params["visitors"] * high:
            raise ValueError(
                f"events={params['events']} must lie between visitors x min_visitor_events "
                f"({params['visitors'] * low}) and visitors x max_visitor_events "
                f"({params['visitors'] * high})"
            )
        active = params["items"] * params["items_with_events_share"]
        if high > 0.9 * active:
            raise ValueError(
                f"max_visitor_events={high} needs more items with events than ~{active:.0f} "
                "(items x items_with_events_share): a visitor never sees an item twice"
            )
    if not 1 <= params["category_depth"] <= 5:
        raise ValueError(f"category_depth must be in 1..5; got {params['category_depth']}")
    if params["categories"] < params["category_roots"]:
        raise ValueError(
            f"categories={params['categories']} < category_roots={params['category_roots']}"
        )
    for key in (
        "repeat_prob",
        "new_item_share",
        "items_with_events_share",
        "addtocart_share",
        "transaction_share",
        "session_new_prob",
    ):
        if not 0.0 <= float(params[key]) <= 1.0:
            raise ValueError(f"{key} must be in [0, 1]; got {params[key]}")
    _property_names(int(params["property_names"]))  # validates the count
    return params


def generate(
    out_dir: str | Path,
    *,
    preset: str = "default",
    seed: int = 0,
    visitors: int | None = None,
    items: int | None = None,
    events: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Writes a synthetic raw folder in the RetailRocket layout.

    Args:
      out_dir: folder to write (created if missing; the generator's files are overwritten).
      preset: one of `PRESETS`: ``tiny`` (tests), ``default``, ``full`` (real scale),
        ``repeat-heavy``, ``discovery-heavy``, ``repeat-purchase``, ``never-return``.
      seed: random seed; the same arguments give byte-identical files.
      visitors: number of visitors (overrides the preset).
      items: number of catalogue items with properties (overrides the preset).
      events: number of event rows (overrides the preset; the realised count is within ~1%, for
        repeat-purchase within a few %).
      **overrides: other preset parameters, e.g. ``repeat_prob=0.5``, ``new_item_share=0.2``.

    Returns:
      Counts of what was written: ``events``, ``views``, ``addtocarts``, ``transactions``,
      ``visitors``, ``items_with_events``, ``items_with_properties``, ``property_rows``,
      ``property_names``, ``categories``, a few diagnostics (``train_share_at_cutoff``,
      ``late_items``, ``items_without_train_events``) and ``path`` (the folder, a string).

    Raises:
      ValueError: unknown preset or parameter, or inconsistent sizes.
    """
    params = resolve_params(preset, visitors=visitors, items=items, events=events, **overrides)
    seed = int(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tree = _make_category_tree(
        _rng(seed, _STAGE_TREE),
        params["categories"],
        params["category_roots"],
        int(params["category_depth"]),
    )
    catalogue = _make_catalogue(_rng(seed, _STAGE_ITEMS), tree, params)
    make_events = {
        MODE_BROWSE: _make_events,
        MODE_PURCHASE: _make_purchase_events,
        MODE_NEVER_RETURN: _make_never_return_events,
    }[params.get("mode", MODE_BROWSE)]
    ev = make_events(
        _rng(seed, _STAGE_VISITORS), _rng(seed, _STAGE_EVENTS), tree, catalogue, params
    )

    _write_category_tree(out / RAW_CATEGORY_TREE_FILE, tree)
    _write_events(out / RAW_EVENTS_FILE, ev, catalogue)
    prop_stats = _write_properties(out, seed, tree, catalogue, params)

    ts, item = ev["timestamp"], ev["item"]
    train = ts <= CUTOFF_MS
    item_train = np.zeros(len(catalogue["item_id"]), dtype=bool)
    item_train[item[train]] = True
    counts: dict[str, Any] = {
        "events": int(len(ts)),
        "views": int(np.sum(ev["event"] == _VIEW)),
        "addtocarts": int(np.sum(ev["event"] == _CART)),
        "transactions": int(np.sum(ev["event"] == _TRANSACTION)),
        "visitors": int(len(np.unique(ev["visitor"]))),
        "items_with_events": int(len(np.unique(item))),
        "items_with_properties": int(len(catalogue["item_id"])),
        "property_rows": prop_stats["rows"],
        "property_names": prop_stats["names"],
        "categories": int(len(tree["id"])),
        "topics": int(tree["n_topics"]),
        "train_share_at_cutoff": round(float(train.mean()), 4),
        "late_items": int(np.sum(catalogue["intro_week"] * WEEK_MS + START_MS > CUTOFF_MS)),
        "items_without_train_events": int(np.sum(~item_train)),
    }
    provenance = {
        "generator": "data.generator",
        "preset": preset,
        "seed": seed,
        "params": params,
        "counts": counts,
        "time_range_ms": [START_MS, END_MS],
        "files": [RAW_EVENTS_FILE, *PROPERTIES_PART_FILES, RAW_CATEGORY_TREE_FILE],
    }
    # No output path, host or wall-clock time in the file: it must be byte-identical across runs.
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return {**counts, "path": str(out)}


# ---------------------------------------------------------------- sampling helpers


class _GroupSampler:
    """Draws members of a group with probability proportional to their weight, vectorised.

    All members are sorted by group and their weights accumulated once; a draw for group g maps a
    uniform number into g's slice of the cumulative sum and finds the member with one searchsorted.
    Groups that are unknown or have zero total weight give -1.
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, member: np.ndarray):
        keep = weight > 0
        group, weight, member = group[keep], weight[keep], member[keep]
        order = np.lexsort((member, group))
        self.member = member[order]
        self.cum = np.cumsum(weight[order].astype(np.float64))
        self.keys, self.start = np.unique(group[order], return_index=True)
        self.end = np.append(self.start[1:], len(order))

    def has(self, group: np.ndarray) -> np.ndarray:
        """Whether each group has members to draw from."""
        if len(self.keys) == 0:
            return np.zeros(np.shape(group), dtype=bool)
        pos = np.clip(np.searchsorted(self.keys, group), 0, len(self.keys) - 1)
        return self.keys[pos] == group

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        group = np.asarray(group)
        if len(self.keys) == 0:
            return np.full(group.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.keys, group), 0, len(self.keys) - 1)
        found = self.keys[pos] == group
        start, end = self.start[pos], self.end[pos]
        lo = np.where(start > 0, self.cum[np.maximum(start - 1, 0)], 0.0)
        hi = self.cum[end - 1]
        idx = np.searchsorted(self.cum, lo + u * (hi - lo), side="right")
        idx = np.clip(idx, start, end - 1)
        return np.where(found & (hi > lo), self.member[idx], -1).astype(np.int64)


def _truncated_zeta(rng: np.random.Generator, n: int, mean: float, cap: int) -> np.ndarray:
    """Draws n integers >= 1 from P(k) ~ k^-a on 1..cap, with a solved so that E[k] = mean."""
    k = np.arange(1, cap + 1, dtype=np.float64)
    if mean <= 1.0:
        return np.ones(n, dtype=np.int64)

    def pmf(a: float) -> np.ndarray:
        p = k**-a
        return p / p.sum()

    lo, hi = 1.0001, 12.0  # the mean decreases in the exponent
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(pmf(mid) @ k) > mean:
            lo = mid
        else:
            hi = mid
    cdf = np.cumsum(pmf(0.5 * (lo + hi)))
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right") + 1, cap).astype(np.int64)


def _group_rank(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an array sorted by group: each element's position inside its group and its group's start."""
    n = len(group)
    first = np.ones(n, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    return np.arange(n) - start, start


# ---------------------------------------------------------------- category tree


def _make_category_tree(
    rng: np.random.Generator, n_categories: int, n_roots: int, max_depth: int
) -> dict[str, Any]:
    """Builds a random forest with the real tree's depth profile.

    Returns:
      Arrays indexed by category index: ``id`` (the written category id), ``parent`` (index, -1 for
      roots), ``depth`` (1 for roots), ``root`` and ``family`` (the level-2 ancestor, or the root for
      roots) indices, ``is_leaf``.
    """
    n_rest = n_categories - n_roots
    shape = np.array(_REAL_LEVEL_COUNTS[: max_depth - 1], dtype=np.float64)
    counts = [n_roots]
    if n_rest > 0 and len(shape):
        raw = shape / shape.sum() * n_rest
        level = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - level), kind="stable")[: n_rest - level.sum()]:
            level[i] += 1
        counts += [int(c) for c in level if c > 0]
    parent = [np.full(n_roots, -1, dtype=np.int64)]
    depth = [np.ones(n_roots, dtype=np.int64)]
    first = 0
    for d, count in enumerate(counts[1:], start=2):
        prev = np.arange(first, first + counts[d - 2])
        # Preferential fan-out: some nodes have many children, others none (leaves at any level).
        w = rng.gamma(0.8, size=len(prev)) + 1e-9
        parent.append(rng.choice(prev, size=count, p=w / w.sum()))
        depth.append(np.full(count, d, dtype=np.int64))
        first += counts[d - 2]
    parent_a = np.concatenate(parent)
    depth_a = np.concatenate(depth)
    n = len(parent_a)
    root = np.arange(n)
    family = np.arange(n)
    for i in range(n_roots, n):  # parents precede children, so one pass resolves ancestors
        root[i] = root[parent_a[i]]
        family[i] = i if depth_a[i] == 2 else family[parent_a[i]]
    is_leaf = np.ones(n, dtype=bool)
    is_leaf[parent_a[parent_a >= 0]] = False
    # Written ids are a random subset of 0..~1.02n (the real ids have gaps) in random row order.
    ids = rng.choice(int(n * 1.02) + 2, size=n, replace=False).astype(np.int64)
    return {
        "id": ids,
        "parent": parent_a,
        "depth": depth_a,
        "root": root,
        "family": family,
        "is_leaf": is_leaf,
        "n_roots": n_roots,
        "row_order": rng.permutation(n),
    }


# ---------------------------------------------------------------- catalogue


def _make_catalogue(rng: np.random.Generator, tree: dict[str, Any], params: dict) -> dict[str, Any]:
    """Items: category, topic, introduction week, popularity, availability and price timelines."""
    n_items = params["items"]
    n_cat = len(tree["id"])
    leaf = tree["is_leaf"]

    # Category sizes are heavy-tailed; 5% of the items sit in inner nodes as in the real catalogue.
    cat_w = rng.lognormal(0.0, 1.0, size=n_cat)
    inner_share = 0.05 if (~leaf).any() else 0.0
    cat_w[leaf] *= (1 - inner_share) / cat_w[leaf].sum()
    if inner_share:
        cat_w[~leaf] *= inner_share / cat_w[~leaf].sum()
    category = rng.choice(n_cat, size=n_items, p=cat_w / cat_w.sum())

    # Topics belong to a root (a brand spans the categories of one department); bigger departments
    # have more topics. Each category prefers a few of its root's topics (Dirichlet weights).
    root_mass = np.bincount(tree["root"], weights=cat_w, minlength=tree["n_roots"])
    share = root_mass**0.7 / np.sum(root_mass**0.7)
    per_root = np.maximum(2, np.round(share * params["topics"])).astype(np.int64)
    topic_root = np.repeat(np.arange(tree["n_roots"]), per_root)
    topic_first = np.concatenate([[0], np.cumsum(per_root)[:-1]])
    n_topics = int(per_root.sum())
    tree["n_topics"] = n_topics
    pair_cat = np.repeat(np.arange(n_cat), per_root[tree["root"]])
    pair_rank, _ = _group_rank(pair_cat)
    pair_topic = topic_first[tree["root"][pair_cat]] + pair_rank
    pair_w = rng.gamma(0.4, size=len(pair_cat)) + 1e-12
    topic_sampler = _GroupSampler(pair_cat, pair_w, pair_topic)
    topic = topic_sampler.sample(category, rng.random(n_items))

    intro_week = np.where(
        rng.random(n_items) < params["new_item_share"], rng.integers(1, N_WEEKS, n_items), 0
    )

    # Popularity: a Zipf law over a random subset of the catalogue; the subset's size is solved so
    # that the expected number of distinct items with events matches the requested share.
    n_active = _solve_active_items(params, _fresh_draws(params))
    active = rng.choice(n_items, size=n_active, replace=False)
    offset = float(params["popularity_offset"])
    weight = np.zeros(n_items, dtype=np.float64)
    weight[active] = (np.arange(n_active) + offset) ** -params["popularity_exponent"]
    # The most popular item is in the first snapshot, so that every session can fall back on an
    # item that exists at any time (see the anchors in `_make_events`).
    intro_week[active[0]] = 0
    weight[intro_week > 0] *= params["new_item_boost"]

    # Availability: most items start available; a third never change, the rest flip at their own
    # weekly rate, some several times. Only weeks after the item's introduction count.
    weeks = np.arange(N_WEEKS)
    after_intro = weeks[None, :] > intro_week[:, None]
    flip_rate = np.where(rng.random(n_items) < 0.3, 0.0, rng.beta(1.2, 5.0, size=n_items))
    flips = (rng.random((n_items, N_WEEKS)) < flip_rate[:, None]) & after_intro
    avail0 = rng.random(n_items) < 0.8
    available = avail0[:, None] ^ (np.cumsum(flips, axis=1) % 2 == 1)

    # Prices: lognormal around a level inherited down the category tree, shifted per topic (premium
    # brands), then a multiplicative random walk with an item-specific weekly change rate. Values
    # are multiples of 12, like the scaled prices of the real data.
    cat_mu = np.empty(n_cat)
    for d in range(1, int(tree["depth"].max()) + 1):
        at = np.flatnonzero(tree["depth"] == d)
        base = np.log(20_000.0) if d == 1 else cat_mu[tree["parent"][at]]
        cat_mu[at] = base + rng.normal(0.0, 0.8 if d == 1 else 0.35, size=len(at))
    topic_mu = rng.normal(0.0, 0.3, size=n_topics)
    log_price = cat_mu[category] + topic_mu[topic] + rng.normal(0.0, 0.5, size=n_items)
    price_rate = rng.beta(1.0, 4.0, size=n_items)
    steps = np.where(
        (rng.random((n_items, N_WEEKS)) < price_rate[:, None]) & after_intro,
        rng.normal(0.0, 0.1, size=(n_items, N_WEEKS)),
        0.0,
    )
    price = np.maximum(1, np.rint(np.exp(log_price[:, None] + np.cumsum(steps, axis=1)) / 12))
    price = price.astype(np.int64) * 12

    # Ids: a random subset of 0..~1.12n, so that id order carries no information.
    item_id = rng.choice(int(n_items * 1.12) + 10, size=n_items, replace=False).astype(np.int64)

    # Token vocabularies (distinct ids, so that a token means one thing): per category, per family
    # node, per topic, plus a few tokens common to all items and three constants.
    n_vocab = n_cat * 8 + n_cat * 6 + n_topics * 10 + 16 + 3
    vocab = rng.choice(np.arange(1, _TOKEN_MAX), size=n_vocab, replace=False).astype(np.int64)
    cut = np.cumsum([n_cat * 8, n_cat * 6, n_topics * 10, 16])
    return {
        "item_id": item_id,
        "category": category,
        "topic": topic,
        "topic_root": topic_root,
        "intro_week": intro_week.astype(np.int64),
        "weight": weight,
        "available": available,
        "price": price,
        "item_tokens": rng.integers(1, _TOKEN_MAX, size=(n_items, 2)),
        "has_n_888": rng.random(n_items) < 0.5,
        "discount": rng.uniform(0.05, 0.4, size=n_items),
        "cat_pack": rng.choice([1, 2, 3, 4, 6, 10, 12, 20, 24, 50], size=n_cat),
        "cat_weight_mu": rng.normal(0.0, 1.0, size=n_cat),
        "cat_vocab": vocab[: cut[0]].reshape(n_cat, 8),
        "family_vocab": vocab[cut[0] : cut[1]].reshape(n_cat, 6),
        "topic_vocab": vocab[cut[1] : cut[2]].reshape(n_topics, 10),
        "common_vocab": vocab[cut[2] : cut[3]],
        "constants": vocab[cut[3] :],
    }


def _view_target(params: dict) -> int:
    n = params["events"]
    return n - round(n * params["addtocart_share"]) - round(n * params["transaction_share"])


def _fresh_draws(params: dict) -> float:
    """About how many independent popularity draws the event model makes (see `_solve_active_items`)."""
    mode = params.get("mode", MODE_BROWSE)
    if mode == MODE_PURCHASE:  # the staple sets and the exploring purchases
        buys = params["events"] * params["transaction_share"]
        explore = 1.0 - params["rebuy_prob"] - params["staple_prob"]
        return (params["visitors"] * params["staples"] + buys * explore) * 0.8
    if mode == MODE_NEVER_RETURN:  # every event is a new item of its visitor
        return float(params["events"])
    # Visitors concentrate on their interests, so draws are less spread than independent ones.
    return _view_target(params) * (1.0 - 0.5 * params["repeat_prob"]) * 0.8


def _solve_active_items(params: dict, fresh: float) -> int:
    """Number of items given a popularity weight so that ~items_with_events_share get events.

    The expected number of distinct items hit by F independent popularity draws is
    sum_i 1 - exp(-F p_i); F counts the fresh draws (`_fresh_draws`, e.g. the non-repeat views).
    Bisection on the Zipf support size.
    """
    n_items = params["items"]
    target = params["items_with_events_share"] * n_items

    def expected(n: int) -> float:
        offset = float(params["popularity_offset"])
        w = (np.arange(n) + offset) ** -params["popularity_exponent"]
        return float(np.sum(-np.expm1(-fresh * w / w.sum())))

    lo, hi = 1, n_items
    if expected(hi) <= target:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if expected(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    return max(1, lo)


# ---------------------------------------------------------------- events


class _Samplers:
    """The item and category samplers shared by the event models (built once, no randomness).

    Items are drawn by popularity weight: over all items (``by_all``), within a category
    (``by_category``, group = category) or within a (category, topic) pair (``by_topic``, group =
    category * n_topics + topic); categories by their items' total weight globally (``cat_global``)
    or within a family (``cat_family``). ``anchor[c]`` is category c's most popular item of the
    first snapshot (or the catalogue's): the fallback when every draw hits an item not yet introduced.
    """

    def __init__(self, tree: dict[str, Any], cat: dict[str, Any]):
        w = cat["weight"]
        items = np.arange(len(w))
        category, topic = cat["category"], cat["topic"]
        self.n_topics = n_topics = len(cat["topic_root"])
        self.by_category = _GroupSampler(category, w, items)
        self.by_topic = _GroupSampler(category * n_topics + topic, w, items)
        self.by_all = _GroupSampler(np.zeros_like(items), w, items)
        cat_pop = np.bincount(category, weights=w, minlength=len(tree["id"]))
        cats = np.arange(len(cat_pop))
        self.cat_global = _GroupSampler(np.zeros_like(cats), cat_pop, cats)
        self.cat_family = _GroupSampler(tree["family"], cat_pop, cats)
        first = np.flatnonzero((cat["intro_week"] == 0) & (w > 0))
        anchor = np.full(len(cat_pop), first[np.argmax(w[first])], dtype=np.int64)
        order = np.lexsort((-w[first], category[first]))
        heads = first[order][np.unique(category[first][order], return_index=True)[1]]
        anchor[category[heads]] = heads
        self.anchor = anchor

    def taste_pick(
        self, rng: np.random.Generator, c: np.ndarray, tp: np.ndarray, taste: np.ndarray
    ) -> np.ndarray:
        """Items of categories c: of topic tp where ``taste`` is set and the pair has items, else
        by popularity in the category (-1 where the category has no item)."""
        pair = c * self.n_topics + tp
        item = self.by_topic.sample(pair, rng.random(len(c)))
        by_cat = self.by_category.sample(c, rng.random(len(c)))
        return np.where(taste & (item >= 0), item, by_cat)


def _interests(
    vrng: np.random.Generator,
    n_vis: int,
    tree: dict[str, Any],
    cat: dict[str, Any],
    smp: _Samplers,
    params: dict,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each visitor's interests: (count 1..3, [n, 3] categories, [n, 3] taste topics).

    The first interest is a category drawn by popularity; the others lie in its family with
    ``interest_cluster_prob``. Each interest has a taste topic (brand loyalty: one in the same
    department as the first often keeps the first's topic).
    """
    n_int = vrng.choice([1, 2, 3], size=n_vis, p=[0.5, 0.3, 0.2])
    int_cat = np.empty((n_vis, 3), dtype=np.int64)
    zeros = np.zeros(n_vis, dtype=np.int64)
    int_cat[:, 0] = smp.cat_global.sample(zeros, vrng.random(n_vis))
    for j in (1, 2):
        near = smp.cat_family.sample(tree["family"][int_cat[:, 0]], vrng.random(n_vis))
        far = smp.cat_global.sample(zeros, vrng.random(n_vis))
        int_cat[:, j] = np.where(vrng.random(n_vis) < params["interest_cluster_prob"], near, far)
    int_topic = np.empty((n_vis, 3), dtype=np.int64)
    for j in range(3):
        int_topic[:, j] = cat["topic"][smp.by_category.sample(int_cat[:, j], vrng.random(n_vis))]
    # Brand loyalty: an interest in the same department as the first keeps the first's topic.
    same_root = tree["root"][int_cat] == tree["root"][int_cat[:, :1]]
    loyal = same_root & (vrng.random((n_vis, 3)) < 0.7)
    int_topic = np.where(loyal, int_topic[:, :1], int_topic)
    return n_int, int_cat, int_topic


def _make_events(
    vrng: np.random.Generator,
    rng: np.random.Generator,
    tree: dict[str, Any],
    cat: dict[str, Any],
    params: dict,
) -> dict[str, np.ndarray]:
    """Visitors, sessions and events; returns event arrays sorted by time (internal indices)."""
    n_vis = params["visitors"]
    n_views = _view_target(params)
    period = END_MS - _END_MARGIN_MS - START_MS

    # -- samplers over the items that have a popularity weight
    smp = _Samplers(tree, cat)
    topic, n_topics = cat["topic"], smp.n_topics
    by_category, by_topic, by_all = smp.by_category, smp.by_topic, smp.by_all
    cat_family, anchor = smp.cat_family, smp.anchor

    # -- visitors: activity, interests, lifetime
    cap = max(20, int(n_views**0.55))
    n_ev = _truncated_zeta(vrng, n_vis, n_views / n_vis, cap)
    diff = n_views - int(n_ev.sum())
    if diff > 0:  # top up proportionally to activity, keeping the tail shape
        n_ev += np.bincount(
            vrng.choice(n_vis, size=diff, p=n_ev / n_ev.sum()), minlength=n_vis
        ).astype(np.int64)
    elif diff < 0:  # remove surplus events above each visitor's first
        extra = np.repeat(np.arange(n_vis), n_ev - 1)
        n_ev -= np.bincount(
            extra[vrng.choice(len(extra), size=-diff, replace=False)], minlength=n_vis
        )
    n_int, int_cat, int_topic = _interests(vrng, n_vis, tree, cat, smp, params)
    drift_key = vrng.integers(0, 2**62, size=n_vis)

    # -- sessions: a visitor's next event starts a new session with session_new_prob
    visitor = np.repeat(np.arange(n_vis), n_ev)
    slot_rank, slot_first = _group_rank(visitor)
    new_session = (slot_rank == 0) | (rng.random(n_views) < params["session_new_prob"])
    session = np.cumsum(new_session) - 1
    sess_first = np.flatnonzero(new_session)
    n_sess = len(sess_first)
    sess_len = np.diff(np.append(sess_first, n_views))
    sess_vis = visitor[sess_first]
    n_sess_v = np.bincount(sess_vis, minlength=n_vis)

    # Session times: a visitor's sessions are spread over a lifetime that grows with the number of
    # sessions; the lifetime's start follows a slightly declining trend over the period.
    lifetime = np.where(
        n_sess_v > 1,
        np.minimum(
            period * 0.98,
            DAY_MS
            * params["lifetime_days"]
            * np.sqrt(n_sess_v)
            * rng.lognormal(0.0, 1.0, size=n_vis),
        ),
        0.0,
    )
    t0 = START_MS + (period - lifetime) * _trend_inverse(rng.random(n_vis), params["trend"])
    gaps = rng.exponential(1.0, size=n_sess)
    sess_rank, sess_start_of_vis = _group_rank(sess_vis)
    gaps[sess_rank == 0] = 0.0
    csum = np.cumsum(gaps)
    pos = csum - csum[sess_start_of_vis]
    last = sess_start_of_vis + n_sess_v[sess_vis] - 1
    frac = np.where(pos[last] > 0, pos / np.where(pos[last] > 0, pos[last], 1.0), 0.0)
    t = t0[sess_vis] + frac * lifetime[sess_vis]
    # Daily seasonality: keep the day, redraw the time of day from a profile with a night trough.
    day = np.floor((t - _MIDNIGHT0_MS) / DAY_MS)
    t = _MIDNIGHT0_MS + day * DAY_MS + _time_of_day(rng, n_sess)
    t = np.where(t < START_MS, t + DAY_MS, t)
    t = np.where(t > START_MS + period, t - DAY_MS, t)
    # Re-sort each visitor's session times (the redraw may swap two sessions of the same day).
    sess_t = t[np.lexsort((t, sess_vis))].astype(np.int64)

    # Events inside a session are a minute or so apart; a session running past the end is shifted.
    step = np.clip(rng.lognormal(np.log(50_000.0), 1.0, size=n_views), 2_000, 1_800_000)
    step = step.astype(np.int64)
    step[new_session] = 0
    cstep = np.cumsum(step)
    offset = cstep - cstep[sess_first][session]
    sess_dur = offset[sess_first + sess_len - 1]
    sess_t -= np.maximum(0, sess_t + sess_dur - (START_MS + period))
    slot_t = (sess_t[session] + offset).astype(np.int64)

    # Interest of each session: switch between the visitor's interests with interest_switch_prob,
    # else carry on. An interest also drifts: in each session it is used, with interest_drift_prob
    # it moves on to a category of the same family, so long-lived visitors wander through
    # neighbouring categories instead of exhausting one.
    switch = (sess_rank == 0) | (rng.random(n_sess) < params["interest_switch_prob"])
    pick = np.where(sess_rank == 0, 0, rng.integers(0, 3, size=n_sess) % n_int[sess_vis])
    carry = np.maximum.accumulate(np.where(switch, np.arange(n_sess), 0))
    sess_int = pick[carry]
    # Drift steps so far of each session's (visitor, interest): a running count in that group (the
    # sessions are already in time order within a visitor); the first use of an interest never drifts.
    by_int = np.lexsort((np.arange(n_sess), sess_vis * 3 + sess_int))
    rank, start = _group_rank((sess_vis * 3 + sess_int)[by_int])
    steps = np.cumsum((rng.random(n_sess) < params["interest_drift_prob"])[by_int] & (rank > 0))
    n_drift = np.empty(n_sess, dtype=np.int64)
    n_drift[by_int] = np.minimum(steps - steps[start], _MAX_DRIFTS)
    sess_cat = int_cat[sess_vis, sess_int]
    for d in range(1, int(n_drift.max(initial=0)) + 1):
        # The d-th step of a (visitor, interest) walk must be the same in all of its sessions: its
        # uniform number is a hash of (visitor key, interest, step), not a fresh draw.
        on = n_drift >= d
        u = _hash_uniform(drift_key[sess_vis[on]] + sess_int[on] * _MAX_DRIFTS + d)
        sess_cat[on] = cat_family.sample(tree["family"][sess_cat[on]], u)
    # The session's topic: the visitor's taste for this interest, unless the (drifted) category has
    # no item of that topic or the visitor is browsing widely; then a topic popular in the category.
    sess_topic = int_topic[sess_vis, sess_int]
    wide = ~by_topic.has(sess_cat * n_topics + sess_topic)
    wide |= rng.random(n_sess) >= params["taste_prob"]
    sess_topic[wide] = topic[by_category.sample(sess_cat[wide], rng.random(int(wide.sum())))]

    # -- item of every view, position by position inside the sessions (vectorised over sessions),
    # so that an item can follow the topic of the previous one.
    slot_item = np.empty(n_views, dtype=np.int64)
    by_len = np.argsort(-sess_len, kind="stable")
    n_active_at = np.searchsorted(-sess_len[by_len], -np.arange(1, sess_len.max() + 1), "right")
    prev_topic = sess_topic.copy()
    p_global = params["global_pick_prob"]
    p_cat = p_global + params["category_pick_prob"]
    avail = cat["available"]
    intro_ms = START_MS + cat["intro_week"] * WEEK_MS
    for k in range(len(n_active_at)):
        act = by_len[: n_active_at[k]]
        slots = sess_first[act] + k
        c = sess_cat[act]
        tp = sess_topic[act]
        if k:  # follow the previous item's topic when the session's category has it
            follow = rng.random(len(act)) < params["follow_prob"]
            follow &= by_topic.has(c * n_topics + prev_topic[act])
            tp = np.where(follow, prev_topic[act], tp)
        u = rng.random(len(act))
        item = by_topic.sample(c * n_topics + tp, rng.random(len(act)))
        mode_cat = (u >= p_global) & ((u < p_cat) | (item < 0))
        item = np.where(mode_cat, by_category.sample(c, rng.random(len(act))), item)
        item = np.where(u < p_global, by_all.sample(np.zeros_like(c), rng.random(len(act))), item)
        ts = slot_t[slots]
        week = (ts - START_MS) // WEEK_MS
        for attempt in range(4):  # not yet introduced, or unavailable and skipped: draw again
            bad = (item < 0) | (intro_ms[np.maximum(item, 0)] > ts)
            bad |= ~avail[np.maximum(item, 0), week] & (
                rng.random(len(act)) >= params["unavailable_view_prob"]
            )
            if not bad.any():
                break
            # Stay on the topic first, then widen to the category.
            group = c * n_topics + tp if attempt < 2 else c
            sampler = by_topic if attempt < 2 else by_category
            item = np.where(bad, sampler.sample(group, rng.random(len(act))), item)
        late = (item < 0) | (intro_ms[np.maximum(item, 0)] > ts)
        item = np.where(late, anchor[c], item)
        slot_item[slots] = item
        prev_topic[act] = topic[item]

    # -- novelty: a visitor browsing (not deliberately re-visiting) tends to skip items it has seen
    # before; with novelty_prob such a pick is redrawn in the session's topic and category (twice at
    # most).
    for _ in range(2):
        by_vi = np.lexsort((np.arange(n_views), slot_item, visitor))
        seen = np.zeros(n_views, dtype=bool)
        seen[by_vi[1:]] = (visitor[by_vi[1:]] == visitor[by_vi[:-1]]) & (
            slot_item[by_vi[1:]] == slot_item[by_vi[:-1]]
        )
        redo = np.flatnonzero(seen & (rng.random(n_views) < params["novelty_prob"]))
        if not len(redo):
            break
        c = sess_cat[session[redo]]
        new = by_topic.sample(c * n_topics + sess_topic[session[redo]], rng.random(len(redo)))
        new = np.where(new < 0, by_category.sample(c, rng.random(len(redo))), new)
        ok = (new >= 0) & (intro_ms[np.maximum(new, 0)] <= slot_t[redo])
        slot_item[redo[ok]] = new[ok]

    # -- repeats: a view re-visits the previous item or any earlier item of the same visitor. The
    # source pointers all point backwards; pointer jumping resolves chains of repeats.
    repeat = (slot_rank > 0) & (rng.random(n_views) < params["repeat_prob"])
    recent = rng.random(n_views) < params["repeat_recent_share"]
    src = np.where(
        recent,
        np.arange(n_views) - 1,
        slot_first + np.floor(rng.random(n_views) * slot_rank).astype(np.int64),
    )
    ptr = np.where(repeat, src, np.arange(n_views))
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    # Two sessions of a visitor can overlap in time, so a source may be later than its repeat:
    # never let a repeat precede the item's introduction (keep the fresh pick instead).
    repeated = slot_item[ptr]
    repeat &= intro_ms[repeated] <= slot_t
    slot_item = np.where(repeat, repeated, slot_item)

    # -- add-to-carts: after a view of an available item, more likely for propensive visitors
    # and (repeat_cart_boost) for items seen before.
    n_cart_target = round(params["events"] * params["addtocart_share"])
    n_tx_target = round(params["events"] * params["transaction_share"])
    # A per-session shopping intent makes carts and purchases cluster in a few sessions, so that
    # purchases often hold several items (real: 1.27 items per transaction).
    propensity = rng.lognormal(0.0, 1.0, size=n_vis)
    intent = rng.lognormal(0.0, 1.5, size=n_sess)
    slot_week = (slot_t - START_MS) // WEEK_MS
    score = propensity[visitor] * intent[session]
    score *= np.where(repeat, params["repeat_cart_boost"], 1.0)
    score *= avail[slot_item, slot_week]
    cart = rng.random(n_views) < _calibrated(score, n_cart_target)
    cart_slot = np.flatnonzero(cart)
    cart_t = slot_t[cart_slot] + np.clip(
        rng.lognormal(np.log(30_000.0), 0.8, len(cart_slot)), 1_000, 600_000
    ).astype(np.int64)

    # -- purchases: a session with carts checks out (likelier with more intent) and then buys most
    # of its carts together, so one transaction often holds several items; the purchases of one
    # session share a transaction id.
    cart_sess, cart_grp, carts_in = np.unique(
        session[cart_slot], return_inverse=True, return_counts=True
    )
    checkout = rng.random(len(cart_sess)) < _calibrated(
        np.sqrt(propensity[sess_vis[cart_sess]]) * intent[cart_sess],
        n_tx_target,
        size=_BUY_SHARE * carts_in + (1 - _BUY_SHARE) ** carts_in,  # expected items bought
    )
    buy = checkout[cart_grp] & (rng.random(len(cart_slot)) < _BUY_SHARE)
    # A checkout buys at least one item: its first cart when the draw took none.
    first_cart = np.unique(cart_grp, return_index=True)[1]
    none = checkout & (np.bincount(cart_grp, weights=buy, minlength=len(cart_sess)) == 0)
    buy[first_cart[none]] = True
    tx_slot = cart_slot[buy]
    tx_cart_t = cart_t[buy]
    tx_sess = session[tx_slot]
    # One time per purchase: after the last bought cart of the session.
    grp_keys, grp = np.unique(tx_sess, return_inverse=True)
    grp_t = np.zeros(len(grp_keys), dtype=np.int64)
    np.maximum.at(grp_t, grp, tx_cart_t)
    grp_t += np.clip(rng.lognormal(np.log(240_000.0), 0.8, len(grp_keys)), 5_000, 3_600_000).astype(
        np.int64
    )
    # Transaction ids are dense and numbered in time order like the real ones.
    txid_of_grp = np.empty(len(grp_keys), dtype=np.int64)
    txid_of_grp[np.lexsort((grp_keys, grp_t))] = np.arange(len(grp_keys))

    ts = np.concatenate([slot_t, cart_t, grp_t[grp]])
    vis = np.concatenate([visitor, visitor[cart_slot], visitor[tx_slot]])
    it = np.concatenate([slot_item, slot_item[cart_slot], slot_item[tx_slot]])
    kind = np.concatenate(
        [
            np.full(n_views, _VIEW, dtype=np.int8),
            np.full(len(cart_slot), _CART, dtype=np.int8),
            np.full(len(tx_slot), _TRANSACTION, dtype=np.int8),
        ]
    )
    txid = np.concatenate([np.full(n_views + len(cart_slot), -1, dtype=np.int64), txid_of_grp[grp]])
    order = np.lexsort((it, kind, vis, ts))
    return {
        "timestamp": ts[order],
        "visitor": vis[order],
        "visitor_id": vrng.permutation(n_vis).astype(np.int64),  # dense ids like the real ones
        "item": it[order],
        "event": kind[order],
        "transactionid": txid[order],
    }


# ---------------------------------------------------------------- events: purchase mode


def _make_purchase_events(
    vrng: np.random.Generator,
    rng: np.random.Generator,
    tree: dict[str, Any],
    cat: dict[str, Any],
    params: dict,
) -> dict[str, np.ndarray]:
    """Households, shopping trips and baskets (``mode="purchase"``); arrays as `_make_events`.

    A household shops over (most of) the whole period, at trip times of a Poisson process whose rate
    is its lognormal activity. Every trip buys a basket of 1 + Poisson(basket_mean - 1) distinct
    items, all with the trip's one transaction time and id; some bought items also get an add-to-cart
    (and a view before it) during the trip. Each basket item is, with ``rebuy_prob``, a copy of a
    uniformly drawn earlier purchase of the household (so an item is re-bought in proportion to how
    often it was bought before: a Polya urn), with ``staple_prob`` a draw from the household's staple
    set (weighted; popular items and items of its interests), and otherwise an exploration: an item
    of an interest category (or a neighbouring one), by topic taste and popularity, or a globally
    popular one.
    """
    n_vis = params["visitors"]
    period = END_MS - _END_MARGIN_MS - START_MS
    smp = _Samplers(tree, cat)
    intro_ms = START_MS + cat["intro_week"] * WEEK_MS
    n_buy = round(params["events"] * params["transaction_share"])
    n_cart_target = round(params["events"] * params["addtocart_share"])
    n_view_target = params["events"] - n_buy - n_cart_target
    basket_mean = float(params["basket_mean"])

    # -- households: when they shop (most over the whole period, a churn_share only a part of it),
    # how often (lognormal activity x time span), their interests and their staples.
    edge = vrng.uniform(0.0, 0.05, size=(n_vis, 2))
    span_lo, span_hi = edge[:, 0], 1.0 - edge[:, 1]
    churn = vrng.random(n_vis) < params["churn_share"]
    length = vrng.uniform(0.2, 0.7, size=n_vis)
    begin = vrng.random(n_vis) * (1.0 - length)
    span_lo = np.where(churn, begin, span_lo)
    span_hi = np.where(churn, begin + length, span_hi)
    rate = vrng.lognormal(0.0, params["activity_sigma"], size=n_vis) * (span_hi - span_lo)
    extra_trips = max(0.0, n_buy / basket_mean - n_vis)
    n_trips = 1 + vrng.poisson(rate / rate.sum() * extra_trips)
    n_int, int_cat, int_topic = _interests(vrng, n_vis, tree, cat, smp, params)
    # Staples: a weighted personal set; a share of them are globally popular products.
    n_staples = 1 + vrng.poisson(max(0.0, params["staples"] - 1.0), size=n_vis)
    st_vis = np.repeat(np.arange(n_vis), n_staples)
    st_rank, _ = _group_rank(st_vis)
    k = st_rank % n_int[st_vis]
    taste = vrng.random(len(st_vis)) < params["taste_prob"]
    st_item = smp.taste_pick(vrng, int_cat[st_vis, k], int_topic[st_vis, k], taste)
    glob = smp.by_all.sample(np.zeros(len(st_vis), dtype=np.int64), vrng.random(len(st_vis)))
    st_item = np.where(
        (vrng.random(len(st_vis)) < params["staple_global_share"]) | (st_item < 0), glob, st_item
    )
    staples = _GroupSampler(st_vis, vrng.gamma(0.7, size=len(st_vis)) + 1e-9, st_item)

    # -- trips: uniform over the household's span (a Poisson process), time of day redrawn.
    trip_vis = np.repeat(np.arange(n_vis), n_trips)
    n_trip = len(trip_vis)
    t = START_MS + (span_lo[trip_vis] + rng.random(n_trip) * (span_hi - span_lo)[trip_vis]) * period
    t = _redraw_time_of_day(rng, t, period)
    trip_t = t[np.lexsort((t, trip_vis))].astype(np.int64)  # trip_vis is sorted already

    # -- basket slots, ordered by household and trip; `prior` counts the household's slots in
    # earlier trips (what a re-buy can copy).
    size = 1 + rng.poisson(max(0.0, basket_mean - 1.0), size=n_trip)
    slot_trip = np.repeat(np.arange(n_trip), size)
    n = len(slot_trip)
    slot_vis = trip_vis[slot_trip]
    trip_first = np.cumsum(size) - size
    _, hh_first = _group_rank(slot_vis)
    prior = trip_first[slot_trip] - hh_first
    # Times inside a trip: items put in the cart a minute or so apart, then one checkout.
    step = np.clip(rng.lognormal(np.log(40_000.0), 0.8, size=n), 3_000, 900_000).astype(np.int64)
    cstep = np.cumsum(step)
    offset = cstep - cstep[trip_first][slot_trip]
    checkout = np.clip(rng.lognormal(np.log(120_000.0), 0.8, size=n_trip), 10_000, 1_800_000)
    trip_end = trip_t + offset[trip_first + size - 1] + checkout.astype(np.int64)
    late = np.maximum(0, trip_end - (START_MS + period))
    trip_t -= late
    trip_end -= late
    slot_t = trip_t[slot_trip] + offset

    # -- what each slot buys: a re-buy (copy of an earlier slot), a staple or an exploration.
    u = rng.random(n)
    rebuy_p, staple_p = params["rebuy_prob"], params["staple_prob"]
    copy = (prior > 0) & (u < rebuy_p)
    staple = ~copy & (u < rebuy_p + staple_p)  # a first trip's would-be re-buys are staples too
    src = hh_first + np.floor(rng.random(n) * prior).astype(np.int64)
    explore = _explore_items(
        rng, smp, slot_vis, slot_t, n_int, int_cat, int_topic, tree, cat, params
    )
    st = staples.sample(slot_vis, rng.random(n))
    st_ok = staple & (st >= 0) & (intro_ms[np.maximum(st, 0)] <= slot_t)
    fresh = np.where(st_ok, st, explore)
    ptr = np.where(copy, src, np.arange(n))
    while True:  # pointer jumping: a copy of a copy is a copy of the first purchase
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    item = fresh[ptr]
    # A basket holds an item once: a second pick of it explores instead (twice), else is dropped.
    n_items = len(cat["weight"])
    for attempt in range(3):
        key = slot_trip * n_items + item
        by_key = np.lexsort((np.arange(n), key))
        dup = np.zeros(n, dtype=bool)
        dup[by_key[1:]] = key[by_key[1:]] == key[by_key[:-1]]
        if attempt == 2 or not dup.any():
            break
        redo = np.flatnonzero(dup)
        item[redo] = _explore_items(
            rng, smp, slot_vis[redo], slot_t[redo], n_int, int_cat, int_topic, tree, cat, params
        )
    keep = ~dup
    slot_trip, slot_vis, slot_t, item = slot_trip[keep], slot_vis[keep], slot_t[keep], item[keep]
    n = len(item)

    # -- events: every slot is bought at the trip's end; some are put in the cart (and viewed
    # before) during the trip.
    has_cart = rng.random(n) < min(1.0, n_cart_target / max(n, 1))
    has_view = rng.random(n) < min(1.0, n_view_target / max(n, 1))
    view_lead = np.clip(rng.lognormal(np.log(15_000.0), 0.7, size=n), 1_000, 120_000)
    txid_of_trip = np.empty(n_trip, dtype=np.int64)
    txid_of_trip[np.lexsort((np.arange(n_trip), trip_end))] = np.arange(n_trip)
    used = np.zeros(n_trip, dtype=bool)
    used[slot_trip] = True
    dense = np.cumsum(used[np.argsort(txid_of_trip)]) - 1  # ids stay dense after the drops
    txid = dense[txid_of_trip[slot_trip]]
    ts = np.concatenate(
        [
            slot_t[has_view] - view_lead[has_view].astype(np.int64),
            slot_t[has_cart],
            trip_end[slot_trip],
        ]
    )
    vis = np.concatenate([slot_vis[has_view], slot_vis[has_cart], slot_vis])
    it = np.concatenate([item[has_view], item[has_cart], item])
    kind = np.concatenate(
        [
            np.full(int(has_view.sum()), _VIEW, dtype=np.int8),
            np.full(int(has_cart.sum()), _CART, dtype=np.int8),
            np.full(n, _TRANSACTION, dtype=np.int8),
        ]
    )
    tx = np.concatenate([np.full(int(has_view.sum() + has_cart.sum()), -1, dtype=np.int64), txid])
    ts = np.maximum(ts, START_MS)
    order = np.lexsort((it, kind, vis, ts))
    return {
        "timestamp": ts[order],
        "visitor": vis[order],
        "visitor_id": vrng.permutation(n_vis).astype(np.int64),
        "item": it[order],
        "event": kind[order],
        "transactionid": tx[order],
    }


def _explore_items(
    rng: np.random.Generator,
    smp: _Samplers,
    vis: np.ndarray,
    t: np.ndarray,
    n_int: np.ndarray,
    int_cat: np.ndarray,
    int_topic: np.ndarray,
    tree: dict[str, Any],
    cat: dict[str, Any],
    params: dict,
) -> np.ndarray:
    """A new item for each (visitor, time): in one of the visitor's interest categories (or, with
    ``explore_family_prob``, a category of its family), of the interest's taste topic with
    ``taste_prob``; with ``global_pick_prob`` by global popularity. Always an introduced item."""
    n = len(vis)
    intro_ms = START_MS + cat["intro_week"] * WEEK_MS
    k = np.floor(rng.random(n) * n_int[vis]).astype(np.int64)
    c = int_cat[vis, k]
    near = smp.cat_family.sample(tree["family"][c], rng.random(n))
    c = np.where((rng.random(n) < params["explore_family_prob"]) & (near >= 0), near, c)
    item = smp.taste_pick(rng, c, int_topic[vis, k], rng.random(n) < params["taste_prob"])
    glob = smp.by_all.sample(np.zeros(n, dtype=np.int64), rng.random(n))
    item = np.where((rng.random(n) < params["global_pick_prob"]) | (item < 0), glob, item)
    for _ in range(3):  # not yet introduced: another item of the category
        bad = (item < 0) | (intro_ms[np.maximum(item, 0)] > t)
        if not bad.any():
            break
        item = np.where(bad, smp.by_category.sample(c, rng.random(n)), item)
    bad = (item < 0) | (intro_ms[np.maximum(item, 0)] > t)
    return np.where(bad, smp.anchor[c], item)


def _redraw_time_of_day(rng: np.random.Generator, t: np.ndarray, period: int) -> np.ndarray:
    """Keeps each time's day and redraws its time of day (`_time_of_day`), inside the period."""
    day = np.floor((t - _MIDNIGHT0_MS) / DAY_MS)
    t = _MIDNIGHT0_MS + day * DAY_MS + _time_of_day(rng, len(t))
    t = np.where(t < START_MS, t + DAY_MS, t)
    return np.where(t > START_MS + period, t - DAY_MS, t)


# ---------------------------------------------------------------- events: never-return mode


def _make_never_return_events(
    vrng: np.random.Generator,
    rng: np.random.Generator,
    tree: dict[str, Any],
    cat: dict[str, Any],
    params: dict,
) -> dict[str, np.ndarray]:
    """Visitors who never touch an item twice (``mode="never-return"``); arrays as `_make_events`.

    A visitor has min_visitor_events..max_visitor_events events (a truncated power law) in sessions
    over a lifetime. Its items are a draw without replacement (Gumbel top-k, in chunks of visitors)
    with weights popularity x taste, where taste is a weak boost (``taste_boost``) of its interest
    categories and their family; every item then lands in a random session of the visitor at or after
    the item's introduction, so popularity is the same before and after the cutoff. Event types are
    drawn per event (each a single event: there is no view -> cart -> purchase funnel on one item);
    the purchases of a session share a time and a transaction id.
    """
    n_vis = params["visitors"]
    period = END_MS - _END_MARGIN_MS - START_MS
    smp = _Samplers(tree, cat)
    intro_ms = START_MS + cat["intro_week"] * WEEK_MS
    low, high = int(params["min_visitor_events"]), int(params["max_visitor_events"])
    target = int(params["events"])

    # -- activity: low - 1 + truncated zeta, then nudged to the requested total within the bounds.
    n_ev = low - 1 + _truncated_zeta(vrng, n_vis, target / n_vis - (low - 1), high - low + 1)
    for _ in range(8):
        diff = target - int(n_ev.sum())
        if diff > 0:
            p = n_ev * (n_ev < high)
            n_ev = np.minimum(
                high,
                n_ev + np.bincount(vrng.choice(n_vis, size=diff, p=p / p.sum()), minlength=n_vis),
            )
        elif diff < 0:
            extra = np.repeat(np.arange(n_vis), n_ev - low)
            take = vrng.choice(len(extra), size=min(-diff, len(extra)), replace=False)
            n_ev -= np.bincount(extra[take], minlength=n_vis)
        else:
            break
    n_int, int_cat, _ = _interests(vrng, n_vis, tree, cat, smp, params)

    # -- sessions over a lifetime that grows with the number of sessions.
    n_sess_v = 1 + rng.binomial(n_ev - 1, params["session_new_prob"])
    lifetime = np.minimum(
        period * 0.98,
        DAY_MS * params["lifetime_days"] * np.sqrt(n_sess_v) * rng.lognormal(0.0, 0.7, size=n_vis),
    )
    t0 = START_MS + (period - lifetime) * _trend_inverse(rng.random(n_vis), params["trend"])
    sess_vis = np.repeat(np.arange(n_vis), n_sess_v)
    t = t0[sess_vis] + rng.random(len(sess_vis)) * lifetime[sess_vis]
    t = _redraw_time_of_day(rng, t, period)
    sess_t = t[np.lexsort((t, sess_vis))].astype(np.int64)
    sess_end = np.cumsum(n_sess_v)
    last_start = sess_t[sess_end - 1]

    # -- items: popularity x weak taste, without replacement, only items introduced by the
    # visitor's last session.
    act = np.flatnonzero(cat["weight"] > 0)
    log_w = np.log(cat["weight"][act])
    act_cat = cat["category"][act]
    act_family = tree["family"][act_cat]
    boost = float(params["taste_boost"])
    rows = max(1, 2_000_000 // len(act))
    ev_vis: list[np.ndarray] = []
    ev_item: list[np.ndarray] = []
    for lo in range(0, n_vis, rows):  # chunks of visitors: bounded memory
        v = np.arange(lo, min(n_vis, lo + rows))
        in_cat = np.zeros((len(v), len(act)), dtype=bool)
        in_family = np.zeros((len(v), len(act)), dtype=bool)
        for j in range(3):
            on = (j < n_int[v])[:, None]
            in_cat |= on & (act_cat[None, :] == int_cat[v, j][:, None])
            in_family |= on & (act_family[None, :] == tree["family"][int_cat[v, j]][:, None])
        taste = 1.0 + boost * in_cat + 0.25 * boost * in_family
        key = log_w[None, :] + np.log(taste) + rng.gumbel(size=taste.shape)
        key[intro_ms[act][None, :] > last_start[v][:, None]] = -np.inf
        order = np.argsort(-key, axis=1, kind="stable")
        take = np.arange(len(act))[None, :] < n_ev[v][:, None]
        take &= np.isfinite(np.take_along_axis(key, order, axis=1))
        ev_vis.append(np.broadcast_to(v[:, None], take.shape)[take])
        ev_item.append(act[order[take]])
    vis = np.concatenate(ev_vis)
    item = np.concatenate(ev_item)
    m = len(vis)

    # -- each event in a random session at or after its item's introduction.
    shift = np.int64(36)  # session keys: visitor in the high bits, time since START_MS below
    sess_key = (sess_vis.astype(np.int64) << shift) + (sess_t - START_MS)
    need = (vis.astype(np.int64) << shift) + np.maximum(intro_ms[item] - START_MS, 0)
    first_ok = np.searchsorted(sess_key, need, side="left")
    end = sess_end[vis]
    sess = first_ok + np.floor(rng.random(m) * (end - first_ok)).astype(np.int64)
    # Events inside a session a minute or so apart, in random order; shifted to end in the period.
    by_sess = np.lexsort((rng.random(m), sess))
    vis, item, sess = vis[by_sess], item[by_sess], sess[by_sess]
    step = np.clip(rng.lognormal(np.log(50_000.0), 1.0, size=m), 2_000, 1_800_000).astype(np.int64)
    rank, start = _group_rank(sess)
    step[rank == 0] = 0
    cstep = np.cumsum(step)
    offset = cstep - cstep[start]
    dur = np.zeros(len(sess_t), dtype=np.int64)
    np.maximum.at(dur, sess, offset)
    sess_t = sess_t - np.maximum(0, sess_t + dur - (START_MS + period))
    ts = sess_t[sess] + offset

    # -- event types: single events; a session's purchases share one time and transaction id.
    u = rng.random(m)
    kind = np.full(m, _VIEW, dtype=np.int8)
    kind[u < params["addtocart_share"] + params["transaction_share"]] = _CART
    kind[u < params["transaction_share"]] = _TRANSACTION
    is_tx = kind == _TRANSACTION
    tx_sess, grp = np.unique(sess[is_tx], return_inverse=True)
    grp_t = np.zeros(len(tx_sess), dtype=np.int64)
    np.maximum.at(grp_t, grp, ts[is_tx])
    ts[is_tx] = grp_t[grp]
    txid_of_grp = np.empty(len(tx_sess), dtype=np.int64)
    txid_of_grp[np.lexsort((tx_sess, grp_t))] = np.arange(len(tx_sess))
    txid = np.full(m, -1, dtype=np.int64)
    txid[is_tx] = txid_of_grp[grp]
    order = np.lexsort((item, kind, vis, ts))
    return {
        "timestamp": ts[order],
        "visitor": vis[order],
        "visitor_id": vrng.permutation(n_vis).astype(np.int64),
        "item": item[order],
        "event": kind[order],
        "transactionid": txid[order],
    }


def _hash_uniform(key: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers that are a fixed function of integer keys (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        z = key.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _calibrated(score: np.ndarray, target: float, size: np.ndarray | None = None) -> np.ndarray:
    """Per-row probabilities proportional to score, capped at 1, with sum(p * size) ~= target."""
    size = np.ones(len(score)) if size is None else np.asarray(size, dtype=np.float64)
    total = float(score @ size)
    if total <= 0 or target <= 0:
        return np.zeros(len(score), dtype=np.float64)
    scale = target / total
    for _ in range(20):  # re-scale the uncapped rows to make up for the capped ones
        p = np.minimum(1.0, score * scale)
        s = float(p @ size)
        if s >= target * 0.999 or s >= float(size[score > 0].sum()):
            break
        scale *= target / s
    return p


def _trend_inverse(u: np.ndarray, trend: float) -> np.ndarray:
    """Inverse CDF of the density (1 + trend) - 2 trend x on [0, 1] (traffic declining over time)."""
    if abs(trend) < 1e-9:
        return u
    b = 1.0 + trend
    return (b - np.sqrt(b * b - 4.0 * trend * u)) / (2.0 * trend)


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Milliseconds after midnight UTC, with an evening peak (01:30 UTC) and a day-time trough."""
    minutes = np.arange(1441, dtype=np.float64)
    density = 1.0 + 0.5 * np.cos(2 * np.pi * (minutes[:-1] / 1440.0 - 1.5 / 24.0))
    cdf = np.concatenate([[0.0], np.cumsum(density)])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, minutes) * 60_000.0


# ---------------------------------------------------------------- writers


def _lines(columns: list[pa.Array]) -> memoryview:
    """CSV lines (comma-separated, newline-terminated, nothing quoted) of string columns.

    The values never contain commas, quotes or newlines, so no quoting is needed, and the joined
    lines' data buffer is exactly the file content (no per-row Python work).
    """
    joined = pc.binary_join_element_wise(
        *columns, ",", null_handling="replace", null_replacement=""
    )
    lines = pc.binary_join_element_wise(joined, "", "\n")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[first:last]


def _str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def _n_format(values: np.ndarray) -> pa.Array:
    """Numbers written like the real numeric properties: ``n12000.000`` (three decimals)."""
    milli = np.rint(np.asarray(values, dtype=np.float64) * 1000.0).astype(np.int64)
    whole = pc.binary_join_element_wise("n", _str(milli // 1000), "")
    frac = pc.utf8_lpad(_str(milli % 1000), width=3, padding="0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _write_category_tree(path: Path, tree: dict[str, Any]) -> None:
    order = tree["row_order"]
    parent = tree["parent"][order]
    parent_id = pa.array(np.where(parent >= 0, tree["id"][np.maximum(parent, 0)], 0))
    parent_s = pc.if_else(
        pa.array(parent >= 0), pc.cast(parent_id, pa.string()), pa.nulls(len(order), pa.string())
    )
    with open(path, "wb") as f:
        f.write(b"categoryid,parentid\n")
        f.write(_lines([_str(tree["id"][order]), parent_s]))


def _write_events(path: Path, ev: dict[str, np.ndarray], cat: dict[str, Any]) -> None:
    names = pa.array(list(EVENT_TYPES))
    with open(path, "wb") as f:
        f.write(b"timestamp,visitorid,event,itemid,transactionid\n")
        # In slices, so that no string column comes near pyarrow's 2 GiB offset limit.
        for lo in range(0, len(ev["timestamp"]), _EVENTS_PER_WRITE):
            part = slice(lo, lo + _EVENTS_PER_WRITE)
            tx = ev["transactionid"][part]
            tx_s = pc.if_else(
                pa.array(tx >= 0), _str(np.maximum(tx, 0)), pa.nulls(len(tx), pa.string())
            )
            f.write(
                _lines(
                    [
                        _str(ev["timestamp"][part]),
                        _str(ev["visitor_id"][ev["visitor"][part]]),
                        pc.take(names, pa.array(ev["event"][part].astype(np.int32))),
                        _str(cat["item_id"][ev["item"][part]]),
                        tx_s,
                    ]
                )
            )


# ---------------------------------------------------------------- item properties


def _write_properties(
    out: Path, seed: int, tree: dict[str, Any], cat: dict[str, Any], params: dict
) -> dict[str, int]:
    """Writes the two property parts chunk by chunk (bounded memory); returns row/name counts."""
    names, noise = _property_names(int(params["property_names"]))
    name_arr = pa.array(names)
    code = {name: i for i, name in enumerate(names)}
    n_items = len(cat["item_id"])
    n_chunks = 2 * max(1, math.ceil(n_items / (2 * _ITEMS_PER_CHUNK)))
    bounds = np.linspace(0, n_items, n_chunks + 1).astype(np.int64)

    # Rare properties: coverage log-uniform, a home department where they mostly occur, and a
    # small value vocabulary each.
    prng = _rng(seed, _STAGE_PROPERTIES, 0)
    lo, hi = np.log(_NOISE_COVERAGE_RANGE[0]), np.log(_NOISE_COVERAGE_RANGE[1])
    noise_cov = np.exp(prng.uniform(lo, hi, size=len(noise))) * params["noise_coverage"]
    noise_spec = {
        "code": np.array([code[n] for n in noise], dtype=np.int64),
        "coverage": np.minimum(noise_cov, 1.0),
        "home": prng.integers(0, tree["n_roots"], size=len(noise)),
        "vocab": prng.integers(1, _TOKEN_MAX, size=(len(noise), 20)),
        "vocab_size": prng.integers(1, 21, size=len(noise)),
    }

    rows = 0
    used = np.zeros(len(names), dtype=bool)
    for part, part_file in enumerate(PROPERTIES_PART_FILES):
        with open(out / part_file, "wb") as f:
            f.write(b"timestamp,itemid,property,value\n")
            for chunk in range(part * n_chunks // 2, (part + 1) * n_chunks // 2):
                rng = _rng(seed, _STAGE_PROPERTIES, chunk + 1)
                items = np.arange(bounds[chunk], bounds[chunk + 1])
                week, item, prop, value = _chunk_rows(rng, items, tree, cat, code, noise_spec)
                order = np.lexsort((prop, cat["item_id"][item], week))
                used[np.unique(prop)] = True
                rows += len(order)
                f.write(
                    _lines(
                        [
                            _str(START_MS + week[order] * WEEK_MS),
                            _str(cat["item_id"][item[order]]),
                            pc.take(name_arr, pa.array(prop[order].astype(np.int32))),
                            pc.take(value, pa.array(order)),
                        ]
                    )
                )
    return {"rows": rows, "names": int(used.sum())}


def _timeline_rows(mask: np.ndarray, intro: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair index, week) of the rows to write: the introduction week plus every change after it."""
    weeks = np.arange(mask.shape[1])
    mask = (mask & (weeks[None, :] > intro[:, None])) | (weeks[None, :] == intro[:, None])
    return np.nonzero(mask)


def _chunk_rows(
    rng: np.random.Generator,
    items: np.ndarray,
    tree: dict[str, Any],
    cat: dict[str, Any],
    code: dict[str, int],
    noise: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """All property rows of a chunk of items: (week, item index, property code, value strings)."""
    weeks_out: list[np.ndarray] = []
    items_out: list[np.ndarray] = []
    props_out: list[np.ndarray] = []
    values_out: list[pa.Array] = []

    def emit(name_code: int | np.ndarray, it: np.ndarray, wk: np.ndarray, values: pa.Array):
        weeks_out.append(wk)
        items_out.append(it)
        props_out.append(np.broadcast_to(np.asarray(name_code, dtype=np.int64), it.shape))
        values_out.append(values)

    intro = cat["intro_week"][items]
    n = len(items)

    def present(coverage: float) -> np.ndarray:
        return items[rng.random(n) < coverage]

    def random_changes(it: np.ndarray, weekly: float) -> tuple[np.ndarray, np.ndarray]:
        mask = rng.random((len(it), N_WEEKS)) < weekly
        r, wk = _timeline_rows(mask, cat["intro_week"][it])
        return it[r], wk

    # categoryid: almost never changes; when it does, to another category of the same family.
    mask = rng.random((n, N_WEEKS)) < 0.002
    mask &= np.cumsum(mask, axis=1) == 1  # at most one change
    r, wk = _timeline_rows(mask, intro)
    it = items[r]
    cats = np.arange(len(tree["id"]))
    moved = wk > intro[r]
    sibling = _GroupSampler(tree["family"], tree["is_leaf"].astype(np.float64) + 1e-3, cats)
    new_cat = sibling.sample(tree["family"][cat["category"][it]], rng.random(len(it)))
    value_cat = np.where(moved & (new_cat >= 0), new_cat, cat["category"][it])
    keep = ~moved | (value_cat != cat["category"][it])
    emit(code[PROPERTY_CATEGORY], it[keep], wk[keep], _str(tree["id"][value_cat[keep]]))

    # available: the catalogue's availability timeline, written when it changes.
    av = cat["available"][items]
    changed = np.zeros_like(av)
    changed[:, 1:] = av[:, 1:] != av[:, :-1]
    r, wk = _timeline_rows(changed, intro)
    emit(code[PROPERTY_AVAILABLE], items[r], wk, _str(av[r, wk].astype(np.int64)))

    # Price-linked properties: 790 (the price), 292 (an old/list price), and 888's numbers.
    price = cat["price"][items]
    price_changed = np.zeros(price.shape, dtype=bool)
    price_changed[:, 1:] = price[:, 1:] != price[:, :-1]
    r, wk = _timeline_rows(price_changed, intro)
    emit(code["790"], items[r], wk, _n_format(price[r, wk]))
    has_292 = rng.random(n) < _NUMERIC_ROLES["292"][1]
    sel = has_292[r]
    old = np.rint(price[r, wk][sel] * (1 + cat["discount"][items[r][sel]]) / 12) * 12
    emit(code["292"], items[r][sel], wk[sel], _n_format(old))

    own = rng.random((n, N_WEEKS)) < _TEXT_ROLES["888"][2]
    m888 = own | (price_changed & cat["has_n_888"][items][:, None])
    has_888 = rng.random(n) < _TEXT_ROLES["888"][1]
    r, wk = _timeline_rows(m888[has_888], intro[has_888])
    it = items[has_888][r]
    emit(code["888"], it, wk, _value_888(rng, it, cat["price"][it, wk], tree, cat))

    # Other numeric properties.
    it = present(_NUMERIC_ROLES["1058"][1])
    it, wk = random_changes(it, _NUMERIC_ROLES["1058"][2])
    pack = cat["cat_pack"][cat["category"][it]] * rng.choice([1, 1, 1, 2, 3], size=len(it)) * 12
    emit(code["1058"], it, wk, _n_format(pack))
    it = present(_NUMERIC_ROLES["212"][1])
    it, wk = random_changes(it, 0.0)
    mass = np.exp(cat["cat_weight_mu"][cat["category"][it]] + rng.normal(0, 0.4, len(it)))
    emit(code["212"], it, wk, _n_format(np.rint(mass * 200) / 200))
    it = present(_NUMERIC_ROLES["1096"][1])
    it, wk = random_changes(it, _NUMERIC_ROLES["1096"][2])
    emit(code["1096"], it, wk, _n_format(np.rint(rng.lognormal(5, 2, len(it)))))

    # Text properties with content (topic / category / family tokens).
    for name, (recipe, coverage, weekly) in _TEXT_ROLES.items():
        if name == "888":
            continue
        it, wk = random_changes(present(coverage), weekly)
        emit(code[name], it, wk, _text_value(rng, recipe, name, it, tree, cat))
    for name, coverage in zip(_MEDIUM_ROLES, _MEDIUM_COVERAGE, strict=True):
        it, wk = random_changes(present(coverage), 0.03)
        emit(code[name], it, wk, _text_value(rng, "medium", name, it, tree, cat))

    # Rare properties: mostly items of the property's home department; random tokens of a small
    # vocabulary, sometimes a number.
    k = rng.binomial(n, noise["coverage"])
    which = np.repeat(np.arange(len(k)), k)
    roots = tree["root"][cat["category"][items]]
    by_root = np.argsort(roots, kind="stable")
    r_start = np.searchsorted(roots[by_root], np.arange(tree["n_roots"]))
    r_size = np.bincount(roots, minlength=tree["n_roots"])
    home = noise["home"][which]
    at_home = (rng.random(len(which)) < 0.8) & (r_size[home] > 0)
    local = by_root[
        np.minimum(
            r_start[home] + np.floor(rng.random(len(which)) * r_size[home]).astype(np.int64),
            n - 1,
        )
    ]
    pick = np.where(at_home, local, rng.integers(0, n, len(which)))
    pair = np.unique(which * n + pick)
    which, pick = pair // n, pair % n
    mask = rng.random((len(pair), N_WEEKS)) < _NOISE_WEEKLY_CHANGE
    r, wk = _timeline_rows(mask, intro[pick])
    which, it = which[r], items[pick[r]]
    n_tok = rng.integers(1, 4, len(it))
    slot = np.floor(rng.random((len(it), 3)) * noise["vocab_size"][which][:, None]).astype(np.int64)
    tok = noise["vocab"][which[:, None], slot]
    tok[np.arange(3)[None, :] >= n_tok[:, None]] = -1
    nval = np.full(tok.shape, np.nan)
    is_num = rng.random(len(it)) < 0.1
    nval[is_num, 0] = np.rint(rng.lognormal(4, 1.5, int(is_num.sum())))
    emit(noise["code"][which], it, wk, _join_tokens(tok, nval))

    return (
        np.concatenate(weeks_out).astype(np.int64),
        np.concatenate(items_out).astype(np.int64),
        np.concatenate(props_out).astype(np.int64),
        pa.concat_arrays(values_out),
    )


def _join_tokens(tok: np.ndarray, nval: np.ndarray | None = None) -> pa.Array:
    """Space-separated token strings from a (rows x slots) matrix; -1 marks an empty slot, and a
    non-NaN `nval` makes the slot a number token (``n708.000``). Every row keeps at least one token.
    """
    if nval is None:
        nval = np.full(tok.shape, np.nan)
    is_n = ~np.isnan(nval)
    present = (tok >= 0) | is_n
    empty = ~present.any(axis=1)
    present[empty, 0] = True  # never an empty value: fall back to the first slot's token
    tok = tok.copy()
    tok[empty, 0] = np.where(tok[empty, 0] >= 0, tok[empty, 0], 769_062)
    flat_tok = tok[present]
    flat_n = is_n[present]
    flat_v = np.where(flat_n, nval[present], 0.0)
    strings = pc.if_else(pa.array(flat_n), _n_format(flat_v), _str(np.maximum(flat_tok, 0)))
    offsets = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), strings)
    return pc.binary_join(lists, " ")


def _skewed(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> np.ndarray:
    """Vocabulary slots 0..size-1 with the first ones much more frequent (shared core tokens)."""
    return np.minimum((rng.random(shape) ** 2 * size).astype(np.int64), size - 1)


def _value_888(
    rng: np.random.Generator, it: np.ndarray, price: np.ndarray, tree: dict, cat: dict
) -> pa.Array:
    """Property 888: topic and category tokens, a common token, the item's own token, and (for half
    the items) price-derived numbers, like ``171969 306678 n708.000 1175087``."""
    n = len(it)
    topic, category = cat["topic"][it], cat["category"][it]
    tok = np.full((n, 9), -1, dtype=np.int64)
    nval = np.full((n, 9), np.nan)
    tv, cv = cat["topic_vocab"], cat["cat_vocab"]
    tok[:, 0] = tv[topic, _skewed(rng, (n,), 10)]
    tok[:, 1] = np.where(rng.random(n) < 0.8, cv[category, _skewed(rng, (n,), 8)], -1)
    tok[:, 3] = np.where(rng.random(n) < 0.6, tv[topic, _skewed(rng, (n,), 10)], -1)
    tok[:, 4] = np.where(rng.random(n) < 0.5, cat["common_vocab"][_skewed(rng, (n,), 16)], -1)
    tok[:, 6] = np.where(rng.random(n) < 0.5, cat["item_tokens"][it, 0], -1)
    tok[:, 7] = np.where(rng.random(n) < 0.4, cv[category, _skewed(rng, (n,), 8)], -1)
    has_n = cat["has_n_888"][it]
    for slot, share in ((2, 0.9), (5, 0.5), (8, 0.3)):
        on = has_n & (rng.random(n) < share)
        factor = rng.choice([0.01, 0.02, 0.03, 0.05], size=n)
        nval[on, slot] = np.maximum(12, np.rint(price[on] * factor[on] / 12) * 12)
    return _join_tokens(tok, nval)


def _text_value(
    rng: np.random.Generator, recipe: str, name: str, it: np.ndarray, tree: dict, cat: dict
) -> pa.Array:
    """Values of the content-bearing text properties (see `_TEXT_ROLES` for coverage/changes)."""
    n = len(it)
    topic, category = cat["topic"][it], cat["category"][it]
    family = tree["family"][category]
    tv, cv, fv = cat["topic_vocab"], cat["cat_vocab"], cat["family_vocab"]
    common = cat["common_vocab"]
    rand = rng.integers(1, _TOKEN_MAX, size=n)
    if recipe == "constant":
        index = {"112": 0, "159": 1, "764": 2}[name]
        return _str(np.full(n, cat["constants"][index]))
    if recipe == "brand":
        return _str(np.where(rng.random(n) < 0.85, tv[topic, 0], rand))
    if recipe == "category_token":
        return _str(cv[category, _skewed(rng, (n,), 8)])
    if recipe == "family_token":
        return _str(fv[family, _skewed(rng, (n,), 6)])
    if recipe == "weak":  # barely informative: a medium global vocabulary or a big number
        vocab = common[_skewed(rng, (n,), 16)]
        nval = np.where(rng.random(n) < 0.3, np.rint(rng.lognormal(8, 3, n)), np.nan)
        return _join_tokens(vocab[:, None], nval[:, None])
    if recipe == "topic_pair":
        second = np.where(rng.random(n) < 0.4, rand, -1)
        return _join_tokens(np.stack([tv[topic, 1 + _skewed(rng, (n,), 9)], second], axis=1))
    if recipe == "category_pair":
        second = np.where(rng.random(n) < 0.5, cat["item_tokens"][it, 1], -1)
        return _join_tokens(np.stack([cv[category, _skewed(rng, (n,), 8)], second], axis=1))
    if recipe in ("mixed", "topic_mixed", "medium", "long"):
        # Each slot draws a token kind; lengths vary per row. "long" is the description-like 283.
        kinds = {
            "long": ([0.3, 0.2, 0.15, 0.15, 0.15, 0.05], 6, 30),
            "mixed": ([0.1, 0.3, 0.2, 0.1, 0.2, 0.1], 2, 5),
            "topic_mixed": ([0.5, 0.1, 0.1, 0.15, 0.15, 0.0], 1, 5),
            "medium": ([0.05, 0.2, 0.35, 0.1, 0.2, 0.1], 1, 4),
        }
        probs, low, high = kinds[recipe]
        length = rng.integers(low, high + 1, size=n)
        kind = np.searchsorted(np.cumsum(probs), rng.random((n, high)), side="right")
        kind = np.minimum(kind, len(probs) - 1)
        cols = {
            0: tv[topic[:, None], _skewed(rng, (n, high), 10)],
            1: cv[category[:, None], _skewed(rng, (n, high), 8)],
            2: fv[family[:, None], _skewed(rng, (n, high), 6)],
            3: common[_skewed(rng, (n, high), 16)],
            4: rng.integers(1, _TOKEN_MAX, size=(n, high)),
        }
        block = np.full((n, high), -1, dtype=np.int64)
        for k, col in cols.items():
            block = np.where(kind == k, col, block)
        is_n = kind == 5
        nblock = np.where(is_n, np.rint(rng.lognormal(5, 2, (n, high))), np.nan)
        outside = np.arange(high)[None, :] >= length[:, None]
        block[outside] = -1
        nblock[outside] = np.nan
        return _join_tokens(block, nblock)
    raise ValueError(f"unknown property recipe {recipe!r} for property {name}")
