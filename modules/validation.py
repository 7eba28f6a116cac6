"""Scoring the validation window exactly like the evaluation, to choose the epoch and the repeat boost.

The queries are those of ``modules.examples.validation_window`` (the eval protocol's shape inside
train). A query's score of a catalogue item is its dot product with the user vector plus the repeat
bonus of the visitor's profile items (``ranking.add_repeat_bonus``), over the whole catalogue, as
serving computes; a query is a hit when its target is in the top 50 by the protocol's tie rule
(``ranking.top_k_items`` then ``metrics.hit_ranks``); seen items are not excluded (the protocol's
default). Recall@50 is the share of hits; targets outside the catalogue are misses.

`BestEpoch` is the early-stopping callback (it keeps the weights of the best epoch; it is not
Keras' ``EarlyStopping``, which watches a logged metric); `calibrate` picks the personal weight and
the repeat boost together (`grid_hits` scores the whole grid from one dot product per query).
No TFX imports.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from modules import catalogue as Cat
from modules import columns as C
from modules import features as F
from modules import metrics, progress, ranking, topk
from modules import model as M
from modules import transform as T
from modules.constants import TIE_EPSILON

RECALL_K = 50  # the gate's metric: Recall@50
# Boosts added to every repeat bucket weight; the first of equal results wins, so 0 comes first.
# The large negative boosts let a shop whose visitors never return to an item drop seen items.
_DROPS = (-32.0, -16.0, -8.0, -4.0, -2.0, -1.0)
_RAISES = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)
REPEAT_BOOSTS = (0.0, *_DROPS, *_RAISES)
# Weights of the personal part of the score tried by `calibrate` (1: as trained).
PERSONAL_WEIGHTS = (1.0, 0.5, 0.25, 0.0)
_USER_BATCH = 1024  # queries per call of the user tower
# Queries x catalogue cells scored at once (float32: 128 MiB; 84 queries at RetailRocket scale).
# With the queries ordered by profile length (`prepare_queries`), calibrating over 5,000
# RetailRocket window queries took 13.4 s in chunks of 84 and 16.5 s in chunks of 42.
_SCORE_CELLS = 1 << 25


def _query_chunks(model: M.TwoTowerModel, items: Cat.Catalogue, queries: ValidationQueries):
    """Yields (user vectors, profile catalogue rows, repeat bonus, targets) of consecutive queries.

    The towers run on ``_USER_BATCH`` queries per call (one call per chunk cost more than the
    scoring at RetailRocket scale, where a chunk is about 80 queries); the chunks hold at most
    ``_SCORE_CELLS`` query x catalogue cells. Profile positions without a catalogue row are -1.
    """
    chunk = int(np.clip(_SCORE_CELLS // max(items.ids.size, 1), 1, _USER_BATCH))
    for start in range(0, queries.size, _USER_BATCH):
        part = {k: v[start : start + _USER_BATCH] for k, v in queries.features.items()}
        users = model.user_vectors(part).numpy()
        rows = items.row_of_index[model.repeat.items(part).numpy()]
        bonus = model.repeat.bonus(part).numpy()
        targets = queries.targets[start : start + _USER_BATCH]
        for at in range(0, len(targets), chunk):
            end = at + chunk
            yield users[at:end], rows[at:end], bonus[at:end], targets[at:end]


@dataclasses.dataclass
class ValidationQueries:
    """Transformed validation queries.

    Attributes:
      features: user-side transformed features, one row per query.
      targets: [Q] raw item id of every query's target.
    """

    features: dict[str, np.ndarray]
    targets: np.ndarray

    @property
    def size(self) -> int:
        """Number of queries."""
        return int(self.targets.size)


def prepare_queries(
    layer: Any,
    spec: dict[str, Any],
    queries: dict[str, np.ndarray],
    max_queries: int,
    seed: int,
) -> ValidationQueries:
    """Transforms the window's queries, keeping a seeded sample of at most ``max_queries``.

    Args:
      layer: the transform output's ``transform_features_layer()``.
      spec: the raw feature spec.
      queries: raw query columns (``ValidationWindow.queries``).
      max_queries: the most queries kept (a sample without replacement, in the original order).
      seed: seed of the sample.

    Returns:
      The transformed queries, ordered by profile length (stable): the figures are sums over
      queries, and `grid_hits` ranks k + the longest profile of the queries it scores together,
      so grouping short profiles keeps that small (at RetailRocket scale a profile holds 5 items
      at the median and 500 at most, and nearly every chunk of the sample order held one of 500).
    """
    n = len(queries[F.ITEM_ID])
    keep = np.arange(n)
    if n > max_queries:
        rng = np.random.default_rng([seed, 13])
        keep = np.sort(rng.choice(n, max_queries, replace=False))
    kept = {name: values[keep] for name, values in queries.items()}
    transformed = C.transform_columns(layer, C.user_columns_of(kept), spec)
    order = np.argsort((transformed[T.PROFILE_INDEX] > 0).sum(axis=1), kind="stable")
    features = {name: transformed[name][order] for name in T.USER_OUTPUTS}
    features[T.HISTORY_INDEX] = features[T.HISTORY_INDEX].astype(np.int32)
    return ValidationQueries(features=features, targets=kept[F.ITEM_ID][order].astype(np.int64))


def hits_at_k(scores: np.ndarray, item_ids: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """[Q] whether each row's target is in its top k by the protocol's tie rule.

    Equal to ``metrics.hit_ranks(ranking.top_k_items(scores, item_ids, k), targets, k) > 0``, which
    decides every row that two counts cannot: a tie class of M items spans less than
    ``margin = (M + 1) * TIE_EPSILON``, so items scoring more than the target + margin rank before
    it (k of them: a miss) and every item ranked before it scores at least the target - margin
    (fewer than k such items besides the target: a hit). Ranking a 400k catalogue costs about 7 ms
    a query; the counts, a few hundred microseconds.

    Args:
      scores: [Q, M] scores over the catalogue.
      item_ids: [M] ascending item id of every column.
      targets: [Q] raw target item ids; a target outside ``item_ids`` is a miss.
      k: list length.

    Returns:
      bool [Q].
    """
    n_items = item_ids.size
    rows = np.arange(len(targets))
    column = np.clip(np.searchsorted(item_ids, targets), 0, n_items - 1)
    listed = item_ids[column] == targets
    target_score = scores[rows, column].astype(np.float64)
    margin = 2.0 * (n_items + 1) * TIE_EPSILON
    # Thresholds in the scores' dtype, rounded outwards: the counts only get more cautious.
    high = _rounded(target_score + margin, scores.dtype, np.inf)
    low = _rounded(target_score - margin, scores.dtype, -np.inf)
    above = (scores > high[:, None]).sum(axis=1)
    reach = (scores >= low[:, None]).sum(axis=1)
    hit = listed & (reach <= k)
    unsure = listed & (above < k) & (reach > k)
    if unsure.any():
        lists = ranking.top_k_items(scores[unsure], item_ids, k)
        hit[unsure] = metrics.hit_ranks(lists, targets[unsure], k) > 0
    return hit


def _rounded(values: np.ndarray, dtype: np.dtype, direction: float) -> np.ndarray:
    """``values`` cast to ``dtype``, moved one step towards ``direction`` where the cast rounded
    the other way (comparing float32 scores with float32 thresholds is 3x faster)."""
    cast = values.astype(dtype)
    wrong = cast < values if direction > 0 else cast > values
    return np.where(wrong, np.nextafter(cast, np.asarray(direction, dtype=dtype)), cast)


def recall(
    model: M.TwoTowerModel,
    items: Cat.Catalogue,
    queries: ValidationQueries,
    vectors: np.ndarray | None = None,
) -> float:
    """Recall@50 of the validation queries with the model's current weights.

    Args:
      model: the two-tower model.
      items: the catalogue (its features as of the window's start).
      queries: the validation queries.
      vectors: the catalogue's candidate vectors, when already computed (the repeat term does not
        change them).

    Returns:
      The share of queries whose target is in their top 50 (0.0 without queries).
    """
    if queries.size == 0:
        return 0.0
    if vectors is None:
        vectors = Cat.item_vectors(model, items)
    hits, buffer = 0, None
    for users, rows, bonus, targets in _query_chunks(model, items, queries):
        if buffer is None:  # the first chunk is the largest; one buffer saves the page faults
            buffer = np.empty((len(users), len(vectors)), dtype=np.float32)
        scores = np.matmul(users, vectors.T, out=buffer[: len(users)])
        ranking.add_repeat_bonus(scores, rows, bonus)
        hits += int(hits_at_k(scores, items.ids, targets, RECALL_K).sum())
    return hits / queries.size


def calibrate(
    model: M.TwoTowerModel,
    items: Cat.Catalogue,
    queries: ValidationQueries,
    weights: tuple[float, ...] = PERSONAL_WEIGHTS,
    boosts: tuple[float, ...] = REPEAT_BOOSTS,
) -> tuple[float, float, dict[float, float], dict[float, float]]:
    """Sets the personal weight and the repeat boost to the pair with the best validation Recall@50.

    The personal weight scales ``u`` (item bias and repeat term kept). Where visitors' tastes say
    little (a shop whose visitors never return to an item, with popularity the strongest signal),
    the dot product the towers learned from the fit examples adds more noise than it explains on
    unseen events; a smaller weight shrinks the scores towards the item bias and the repeat term.

    The boost is added to every repeat bucket weight. The towers learn the item co-occurrences of
    the fit examples by heart within a few epochs, so on them a seen item competes with new items
    the model is overconfident about, and the learned repeat weights come out too small (or too
    large) for unseen events. One shared boost, chosen on the window, corrects that where the data
    says so.

    Every pair of the grid is scored (`grid_hits`: one dot product per query, whatever the grid's
    size). Of equal results the first pair wins: weight 1 and boost 0 come first, so equal results
    keep the model as trained.

    Returns:
      (the weight and the boost now set, {weight: Recall@50 with the chosen boost}, {boost:
      Recall@50 with the chosen weight}).
    """
    vectors = Cat.item_vectors(model, items)  # the item side does not change with either choice
    # Contiguous: the product with a column slice of the vectors took 3x as long.
    item_part, bias = np.ascontiguousarray(vectors[:, :-1]), vectors[:, -1]
    model.user_tower.personal_weight.assign(1.0)
    hits = np.zeros((len(weights), len(boosts)), dtype=np.int64)
    buffer = None
    for users, rows, bonus, targets in _query_chunks(model, items, queries):
        dots = users[:, :-1] @ item_part.T
        if buffer is None:  # the first chunk is the largest
            buffer = grid_buffer(len(dots), items.ids.size)
        hits += grid_hits(
            dots, bias, rows, bonus, items.ids, targets, weights, boosts, buffer=buffer
        )
    recalls = np.round(hits / max(queries.size, 1), 4)
    best_w, best_b = np.unravel_index(int(np.argmax(hits)), hits.shape)  # the first of equals
    weight, boost = float(weights[best_w]), float(boosts[best_b])
    model.user_tower.personal_weight.assign(weight)
    add_repeat_boost(model, boost)
    return (
        weight,
        boost,
        {float(w): float(r) for w, r in zip(weights, recalls[:, best_b], strict=True)},
        {float(b): float(r) for b, r in zip(boosts, recalls[best_w], strict=True)},
    )


def grid_hits(
    dots: np.ndarray,
    bias: np.ndarray,
    rows: np.ndarray,
    bonus: np.ndarray,
    item_ids: np.ndarray,
    targets: np.ndarray,
    weights: tuple[float, ...],
    boosts: tuple[float, ...],
    k: int = RECALL_K,
    buffer: np.ndarray | None = None,
) -> np.ndarray:
    """[weights, boosts] hits of queries scored ``weight * dots + bias`` plus ``bonus + boost`` on
    their profile items, by the protocol's tie rule (as `hits_at_k` on the full scores).

    Only the catalogue's top ``k + P`` by ``weight * dots + bias`` (P: the most profile items of
    any of the Q queries) and the profile items can rank before a target that scores above the
    last of that top: at least k of the top are not profile items, and no item outside both scores
    more than they do, whatever the boost. So each boost costs [Q, k + 2P] comparisons, not
    [Q, M]; a query whose target scores within the tie margin of that last item (a few per
    thousand) is decided on its full row. The top is ``topk.top_rows``' (``tf.math.top_k``'s
    selection, faster on a wide catalogue).

    Args:
      dots: float32 [Q, M] ``u . v`` of every query and catalogue column (personal weight 1).
      bias: [M] item bias of every column.
      rows: [Q, P] catalogue column of every profile position, -1 for none (padding, no row).
      bonus: [Q, P] repeat bonus of every profile position (boost 0). A profile holds an item once.
      item_ids: [M] ascending item id of every column.
      targets: [Q] raw target item ids; a target outside ``item_ids`` is a miss.
      weights: personal weights.
      boosts: repeat boosts.
      k: list length.
      buffer: scratch space from `grid_buffer` for at least Q queries, reused across calls
        (default: a new one; a fresh [Q, M] array costs its page faults every call).

    Returns:
      int64 [len(weights), len(boosts)] number of hits.
    """
    n_queries, n_items = dots.shape
    query = np.arange(n_queries)
    valid = rows >= 0
    safe_rows = np.where(valid, rows, 0)
    column = np.clip(np.searchsorted(item_ids, targets), 0, n_items - 1)
    listed = item_ids[column] == targets
    # How often the target is a profile item, and its bonus there (boost 0).
    at_target = valid & (rows == column[:, None])
    target_positions = at_target.sum(axis=1)
    target_bonus = np.where(at_target, bonus, 0.0).sum(axis=1, dtype=np.float64)
    profile_codes = (query[:, None] * n_items + rows)[valid]
    margin = 2.0 * (n_items + 1) * TIE_EPSILON
    width = min(k + int(valid.sum(axis=1).max(initial=0)), n_items)
    # The weighted scores, in one buffer padded with -inf to whole groups of `topk.top_rows`.
    padded = (grid_buffer(n_queries, n_items) if buffer is None else buffer)[:n_queries]
    weighted = padded[:, :n_items]
    bias32 = bias.astype(np.float32)
    step = np.asarray(boosts, dtype=np.float64)[:, None, None]  # [boosts, 1, 1]
    out = np.zeros((len(weights), len(boosts)), dtype=np.int64)
    for w_index, weight in enumerate(weights):
        if weight == 0:
            # Every query scores the catalogue's bias (0 * u.v + b is b exactly): one selection
            # serves them all.
            scores = np.broadcast_to(bias32[None, :], dots.shape)
            top_values, top_columns = tf.math.top_k(scores[:1], width)
            top_values = np.broadcast_to(top_values.numpy().astype(np.float64), (n_queries, width))
            top_columns = np.broadcast_to(top_columns.numpy(), (n_queries, width))
        else:
            np.multiply(dots, np.float32(weight), out=weighted)
            scores = np.add(weighted, bias32[None, :], out=weighted)
            top_columns = topk.top_rows(padded, width)
            top_values = np.take_along_axis(scores, top_columns, axis=1).astype(np.float64)
        last = top_values[:, -1] if width < n_items else np.full(n_queries, -np.inf)
        in_profile = np.isin(query[:, None] * n_items + top_columns, profile_codes)
        others = np.where(in_profile, -np.inf, top_values)  # [Q, width]: the top's other items
        profile = np.where(valid, scores[query[:, None], safe_rows], -np.inf).astype(np.float64)
        profile = profile + np.where(valid, bonus, 0.0)  # [Q, P]
        target = scores[query, column].astype(np.float64) + target_bonus
        # Every boost at once: [boosts, Q, ...].
        boosted = profile[None] + np.where(valid, step, 0.0)
        target_at = target[None] + step[:, :, 0] * target_positions[None]
        high = (target_at + margin)[:, :, None]
        low = (target_at - margin)[:, :, None]
        above = (others[None] > high).sum(axis=2) + (boosted > high).sum(axis=2)
        reach = (others[None] >= low).sum(axis=2) + (boosted >= low).sum(axis=2)
        complete = (low[:, :, 0] > last[None]) & listed[None]  # everything >= low was counted
        hit = complete & (reach <= k)
        unsure = listed[None] & ~hit & (above < k)
        for b_index, q in zip(*np.nonzero(unsure), strict=True):
            row = scores[q].astype(np.float64)
            add = np.where(valid[q], bonus[q] + boosts[b_index], 0.0)
            ranking.add_repeat_bonus(row[None], np.where(valid[q], rows[q], -1)[None], add[None])
            hit[b_index, q] = hits_at_k(row[None], item_ids, targets[q : q + 1], k)[0]
        out[w_index] = hit.sum(axis=1)
    return out


def grid_buffer(n_queries: int, n_items: int) -> np.ndarray:
    """Scratch space of `grid_hits` for up to ``n_queries`` queries: float32 [n_queries, the
    catalogue padded to whole groups of `topk.top_rows`], the padding -inf (never written)."""
    return np.full((n_queries, topk.padded_width(n_items)), -np.inf, dtype=np.float32)


def add_repeat_boost(model: M.TwoTowerModel, boost: float) -> None:
    """Adds a boost (chosen by `calibrate` on another model) to the repeat bucket weights."""
    repeat = model.repeat
    repeat.bucket_weights.assign(repeat.bucket_weights.numpy() + boost / M.REPEAT_SCALE)


class BestEpoch(tf.keras.callbacks.Callback):
    """Early stopping on the validation window: keeps the weights of the best epoch.

    Training stops after ``patience`` epochs without a better validation Recall@50. With a handful of train events per item the id embeddings memorise the fit examples within a
    few epochs and Recall@50 on unseen events falls (0.46 after 2 epochs, 0.41 after 8 on the
    default data, measured on held-out visitors), at an epoch count that depends on the data:
    measuring beats a fixed count.

    Keras hands the model being fit to the callback (``self.model``).

    Attributes:
      recalls: validation Recall@50 after every epoch.
      best_epoch: 0-based epoch of the best Recall (-1 before the first epoch).
    """

    def __init__(self, items: Cat.Catalogue, queries: ValidationQueries, patience: int):
        super().__init__()
        self._items = items
        self._queries = queries
        self._patience = patience
        self.recalls: list[float] = []
        self.best_epoch = -1
        self._best = -np.inf
        self._best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        score = recall(self.model, self._items, self._queries)
        self.recalls.append(round(score, 4))
        progress.report(
            "epoch %d: loss %.1f, validation Recall@50 %.4f",
            epoch + 1,
            float((logs or {}).get("loss", float("nan"))),
            score,
        )
        if score > self._best:
            self.best_epoch, self._best = epoch, score
            self._best_weights = self.model.get_weights()
        elif epoch - self.best_epoch >= self._patience:
            self.model.stop_training = True

    def restore_best(self) -> None:
        """Puts back the weights of the best epoch."""
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)
