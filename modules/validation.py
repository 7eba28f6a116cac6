"""Scoring the validation window exactly like the evaluation, to choose the epoch and the repeat boost.

The queries are those of ``modules.examples.validation_window`` (the eval protocol's shape inside
train). A query's score of a catalogue item is its dot product with the user vector plus the repeat
bonus of the visitor's profile items (``ranking.add_repeat_bonus``), over the whole catalogue, as
serving computes; a query is a hit when its target is in the top 50 by the protocol's tie rule
(``ranking.top_k_items`` then ``metrics.hit_ranks``); seen items are not excluded (the protocol's
default). Recall@50 is the share of hits; targets outside the catalogue are misses.

`BestEpoch` is the early-stopping callback (it keeps the weights of the best epoch; it is not
Keras' ``EarlyStopping``, which watches a logged metric); `calibrate_repeat` picks the repeat boost.
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
from modules import metrics, progress, ranking
from modules import model as M
from modules import transform as T
from modules.constants import TIE_EPSILON

RECALL_K = 50  # the gate's metric: Recall@50
# Boosts added to every repeat bucket weight; the first of equal results wins, so 0 comes first.
# The large negative boosts let a shop whose visitors never return to an item drop seen items.
REPEAT_BOOSTS = (0.0, -32.0, -8.0, -4.0, -1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# Weights of the personal part of the score tried by `calibrate_personal` (1: as trained).
PERSONAL_WEIGHTS = (1.0, 0.5, 0.25, 0.0)
_USER_BATCH = 1024  # queries per call of the user tower
_SCORE_CELLS = 1 << 24  # queries x catalogue cells scored at once (float32: 64 MiB)


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
      The transformed queries.
    """
    n = len(queries[F.ITEM_ID])
    keep = np.arange(n)
    if n > max_queries:
        rng = np.random.default_rng([seed, 13])
        keep = np.sort(rng.choice(n, max_queries, replace=False))
    kept = {name: values[keep] for name, values in queries.items()}
    transformed = C.transform_columns(layer, C.user_columns_of(kept), spec)
    features = {name: transformed[name] for name in T.USER_OUTPUTS}
    features[T.HISTORY_INDEX] = features[T.HISTORY_INDEX].astype(np.int32)
    return ValidationQueries(features=features, targets=kept[F.ITEM_ID].astype(np.int64))


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
    chunk = int(np.clip(_SCORE_CELLS // max(items.ids.size, 1), 1, _USER_BATCH))
    hits = 0
    for start in range(0, queries.size, chunk):
        part = {k: v[start : start + chunk] for k, v in queries.features.items()}
        scores = model.user_vectors(part).numpy() @ vectors.T
        profile = model.repeat.items(part).numpy()
        bonus = model.repeat.bonus(part).numpy()
        ranking.add_repeat_bonus(scores, items.row_of_index[profile], bonus)
        targets = queries.targets[start : start + chunk]
        hits += int(hits_at_k(scores, items.ids, targets, RECALL_K).sum())
    return hits / queries.size


def calibrate_repeat(
    model: M.TwoTowerModel,
    items: Cat.Catalogue,
    queries: ValidationQueries,
    boosts: tuple[float, ...] = REPEAT_BOOSTS,
) -> tuple[float, dict[float, float]]:
    """Adds to every repeat bucket weight the boost with the best validation Recall@50.

    The towers learn the item co-occurrences of the fit examples by heart within a few epochs, so
    on them a seen item competes with new items the model is overconfident about, and the learned
    repeat weights come out too small for unseen events. One shared boost, chosen on the window,
    corrects that where the data says so (and is 0 where it does not).

    Returns:
      (the boost now added to the model's repeat weights, {boost: validation Recall@50}).
    """
    repeat = model.repeat
    base = repeat.bucket_weights.numpy()
    vectors = Cat.item_vectors(model, items)
    results = []
    for boost in boosts:
        repeat.bucket_weights.assign(base + boost / M.REPEAT_SCALE)
        results.append(recall(model, items, queries, vectors))
    best = boosts[int(np.argmax(results))]  # the first of equal results
    repeat.bucket_weights.assign(base + best / M.REPEAT_SCALE)
    return float(best), dict(zip(boosts, [round(r, 4) for r in results], strict=True))


def calibrate_personal(
    model: M.TwoTowerModel,
    items: Cat.Catalogue,
    queries: ValidationQueries,
    weights: tuple[float, ...] = PERSONAL_WEIGHTS,
) -> tuple[float, dict[float, float]]:
    """Sets the user tower's personal weight (``u`` scaled; item bias and repeat term kept) to the
    one with the best validation Recall@50.

    Where visitors' tastes say little (a shop whose visitors never return to an item, with
    popularity the strongest signal), the dot product the towers learned from the fit examples
    adds more noise than it explains on unseen events; a smaller weight shrinks the scores towards
    the item bias (popularity and content) and the repeat term. 1 comes first: equal results keep
    the model as trained.

    Returns:
      (the weight now set, {weight: validation Recall@50}).
    """
    vectors = Cat.item_vectors(model, items)  # the item side does not change
    results = []
    for weight in weights:
        model.user_tower.personal_weight.assign(weight)
        results.append(recall(model, items, queries, vectors))
    best = weights[int(np.argmax(results))]
    model.user_tower.personal_weight.assign(best)
    return float(best), dict(zip(weights, [round(r, 4) for r in results], strict=True))


def add_repeat_boost(model: M.TwoTowerModel, boost: float) -> None:
    """Adds a boost (chosen by `calibrate_repeat` on another model) to the repeat bucket weights."""
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
