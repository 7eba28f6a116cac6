"""Metrics of the evaluation protocol (DESIGN section 5), for every model alike.

* Recall@K = mean over queries of 1[target in the top K]; NDCG@50 = mean of 1/log2(rank + 1) (one
  relevant item, rank 1-based, 0 when absent); coverage@50 = distinct items in all top-50 lists / items
  in train.
* Lists come from ``modules.ranking`` (or the SavedModel's equal TF selection), padded with
  ``ranking.PAD_ID``, which never counts as an item.

Plain numpy (no TensorFlow), unit-tested on hand-computed cases.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from modules import features as F
from modules.constants import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    COVERAGE_K,
    EVAL_KS,
    HISTORY_BUCKETS,
    NDCG_K,
    SLICE_KS,
)
from modules.ranking import LIST_LENGTH, PAD_ID


def metric_names() -> tuple[str, ...]:
    """Returns the metric keys of `evaluate`, in the order of DESIGN section 8."""
    return (*(f"recall@{k}" for k in EVAL_KS), f"ndcg@{NDCG_K}", f"coverage@{COVERAGE_K}")


# ---------------------------------------------------------------- from visitors to queries


def lists_for_queries(
    lists: np.ndarray, list_visitors: np.ndarray, query_visitors: np.ndarray
) -> np.ndarray:
    """Gives every query the list of its visitor.

    A visitor's state is frozen at the cutoff, so all its eval queries share one list; models rank
    once per visitor and this expands the lists to one row per query.

    Args:
      lists: [n_visitors, k] recommendation lists.
      list_visitors: [n_visitors] distinct visitor id of every row of `lists`.
      query_visitors: [n_queries] visitor id of every query.

    Returns:
      [n_queries, k] array: row q is the list of query q's visitor.

    Raises:
      ValueError: when a query's visitor has no list, or `list_visitors` has duplicates.
    """
    list_visitors = np.asarray(list_visitors)
    query_visitors = np.asarray(query_visitors)
    if len(list_visitors) != len(lists):
        raise ValueError(f"{len(list_visitors)} visitors for {len(lists)} lists")
    sorter = np.argsort(list_visitors, kind="stable")
    ordered = list_visitors[sorter]
    if ordered.size and (ordered[1:] == ordered[:-1]).any():
        raise ValueError("list_visitors has duplicate visitor ids")
    pos = np.searchsorted(ordered, query_visitors)
    found = pos < ordered.size
    found[found] = ordered[pos[found]] == query_visitors[found]
    if not found.all():
        missing = np.unique(query_visitors[~found])
        raise ValueError(f"{missing.size} query visitors have no list, e.g. {missing[:5].tolist()}")
    return lists[sorter[pos]]


# ---------------------------------------------------------------- metrics


def hit_ranks(recommended: np.ndarray, targets: np.ndarray, max_k: int = LIST_LENGTH) -> np.ndarray:
    """1-based rank of each query's target in its list (first max_k positions), 0 when absent.

    Args:
      recommended: [n_queries, >= max_k] item ids.
      targets: [n_queries] the relevant item of every query.
      max_k: positions to look at.

    Returns:
      int64 array [n_queries].

    Raises:
      ValueError: on shape mismatch or lists shorter than max_k.
    """
    recommended = np.asarray(recommended)
    targets = np.asarray(targets)
    if recommended.ndim != 2 or recommended.shape[0] != targets.shape[0]:
        raise ValueError(
            f"recommended has shape {recommended.shape}; expected ({targets.shape[0]}, >= {max_k})"
        )
    if recommended.shape[1] < max_k:
        raise ValueError(f"lists have {recommended.shape[1]} positions; metrics need {max_k}")
    hits = recommended[:, :max_k] == targets[:, None]
    hits &= recommended[:, :max_k] != PAD_ID  # a padded slot never matches, whatever the target
    # Ids are distinct within a list, so argmax finds the only hit; rows without one get 0.
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0).astype(np.int64)


def recall_curve(
    recommended: np.ndarray, targets: np.ndarray, max_k: int = LIST_LENGTH
) -> np.ndarray:
    """Recall@K for every K in 1..max_k (for the report's plot).

    Args:
      recommended: [n_queries, >= max_k] item ids.
      targets: [n_queries] relevant items.
      max_k: largest K.

    Returns:
      float64 array [max_k]; element K-1 is Recall@K.
    """
    ranks = hit_ranks(recommended, targets, max_k)
    if ranks.size == 0:
        raise ValueError("no queries to evaluate")
    hits_at = np.bincount(ranks, minlength=max_k + 1)[1:]
    return np.cumsum(hits_at) / ranks.size


def evaluate(recommended: np.ndarray, targets: np.ndarray, n_train_items: int) -> dict[str, float]:
    """Computes the protocol's metrics for one model.

    Args:
      recommended: [n_queries, >= 50] item ids per query (see `lists_for_queries`), padded with -1.
      targets: [n_queries] the relevant item of every query; targets never seen in train count as
        misses, they are not dropped.
      n_train_items: number of distinct items in train (the coverage denominator).

    Returns:
      {"recall@1", "recall@5", "recall@10", "recall@20", "recall@50", "ndcg@50", "coverage@50"}
      mapped to Python floats.

    Raises:
      ValueError: with no queries, a non-positive item count or malformed lists.
    """
    if n_train_items <= 0:
        raise ValueError(f"n_train_items must be positive; got {n_train_items}")
    ranks = hit_ranks(recommended, targets, LIST_LENGTH)
    if ranks.size == 0:
        raise ValueError("no queries to evaluate")
    metrics = {f"recall@{k}": float(np.mean((ranks >= 1) & (ranks <= k))) for k in EVAL_KS}
    gains = np.zeros(ranks.size)
    in_list = (ranks >= 1) & (ranks <= NDCG_K)
    gains[in_list] = 1.0 / np.log2(ranks[in_list] + 1.0)
    metrics[f"ndcg@{NDCG_K}"] = float(gains.mean())
    top = np.asarray(recommended)[:, :COVERAGE_K]
    metrics[f"coverage@{COVERAGE_K}"] = float(np.unique(top[top != PAD_ID]).size / n_train_items)
    return metrics


# ---------------------------------------------------------------- slices


@dataclasses.dataclass
class Queries:
    """The eval queries as the metrics see them (one row per eval event, in file order).

    Attributes:
      visitors: [n] visitor of every query (the bootstrap's unit).
      targets: [n] the relevant item of every query.
      slices: {slice name: [n] bool}; see `slice_names`.
    """

    visitors: np.ndarray
    targets: np.ndarray
    slices: dict[str, np.ndarray]


def slice_names() -> tuple[str, ...]:
    """The slices of every model's metrics, in report order.

    ``target_seen`` / ``target_new``: the visitor had / did not have the target item in train;
    ``target_cold``: the target item has no train event at all (a subset of ``target_new``);
    ``history_*``: the visitor's number of train events; ``event_*``: the target event's type.
    Each group (seen/new, history buckets, event types) partitions the queries.
    """
    return (
        "target_seen",
        "target_new",
        "target_cold",
        *(name for name, _, _ in HISTORY_BUCKETS),
        *(f"event_{event}" for event in F.EVENT_TYPES),
    )


def describe_queries(
    query_visitors: np.ndarray,
    query_items: np.ndarray,
    query_events: np.ndarray | None,
    train_visitors: np.ndarray,
    train_items: np.ndarray,
) -> Queries:
    """The slices of every eval query, from the train events (DESIGN 5's split).

    Args:
      query_visitors, query_items: [n] visitor and target item of every eval query.
      query_events: [n] the eval event's type (str or bytes: view, addtocart, transaction); None
        leaves out the event slices.
      train_visitors, train_items: [m] visitor and item of every train event.

    Returns:
      The queries with their slice masks.
    """
    query_visitors = np.asarray(query_visitors, dtype=np.int64)
    query_items = np.asarray(query_items, dtype=np.int64)
    train_visitors = np.asarray(train_visitors, dtype=np.int64)
    train_items = np.asarray(train_items, dtype=np.int64)
    n_items = int(max(query_items.max(initial=0), train_items.max(initial=0))) + 1
    pairs = np.unique(train_visitors * n_items + train_items)
    seen = np.isin(query_visitors * n_items + query_items, pairs)
    cold = ~np.isin(query_items, train_items)
    visitors, counts = np.unique(train_visitors, return_counts=True)
    position = np.searchsorted(visitors, query_visitors)
    known = (position < visitors.size) & (
        visitors[np.minimum(position, visitors.size - 1)] == query_visitors
    )
    history = np.where(known, counts[np.minimum(position, visitors.size - 1)], 0)
    slices = {"target_seen": seen, "target_new": ~seen, "target_cold": cold}
    for name, low, high in HISTORY_BUCKETS:
        slices[name] = (history >= low) & (history <= (np.inf if high is None else high))
    if query_events is None:
        return Queries(query_visitors, query_items, slices)
    events = np.array([e.decode() if isinstance(e, bytes) else str(e) for e in query_events])
    for event in F.EVENT_TYPES:
        slices[f"event_{event}"] = events == event
    return Queries(query_visitors, query_items, slices)


def slice_metrics(ranks: np.ndarray, slices: dict[str, np.ndarray]) -> dict[str, dict]:
    """``{slice: {"queries": n, "recall@10": x, "recall@50": x}}`` from hit ranks (`hit_ranks`).

    A slice without queries has recall None (not 0: there is nothing to measure).
    """
    out = {}
    for name, mask in slices.items():
        n = int(mask.sum())
        entry: dict = {"queries": n}
        for k in SLICE_KS:
            hits = (ranks[mask] >= 1) & (ranks[mask] <= k)
            entry[f"recall@{k}"] = float(hits.mean()) if n else None
        out[name] = entry
    return out


# ---------------------------------------------------------------- intervals


def bootstrap_recalls(
    ranks: dict[str, np.ndarray],
    visitors: np.ndarray,
    k: int = 50,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, np.ndarray]:
    """Recall@k of every model on each of ``resamples`` paired bootstrap resamples of the visitors.

    A resample draws as many visitors as there are, with replacement, uniformly; a visitor drawn
    w times counts all its queries w times. Every model is scored on the same draws (a paired
    bootstrap), and the draws depend only on the seed and the number of distinct visitors, so two
    calls over the same queries (e.g. in the Baselines and the RetrievalEvaluator) resample alike.

    Args:
      ranks: {model: [n] 1-based hit rank of every query (0: miss)}, all in the same query order.
      visitors: [n] visitor of every query.
      k: the recall cut.

    Returns:
      {model: float64 [resamples] Recall@k per resample}.
    """
    _, group = np.unique(np.asarray(visitors), return_inverse=True)
    n_groups = int(group.max(initial=-1)) + 1
    names = list(ranks)
    queries = np.bincount(group, minlength=n_groups).astype(np.float64)
    hits = np.stack(
        [
            np.bincount(group, weights=((r >= 1) & (r <= k)).astype(np.float64), minlength=n_groups)
            for r in ranks.values()
        ],
        axis=1,
    )
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, (1 << 23) // max(n_groups, 1)))
    samples = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = rng.integers(0, n_groups, size=(size, n_groups))
        offsets = (np.arange(size)[:, None] * n_groups + draws).ravel()
        weights = np.bincount(offsets, minlength=size * n_groups).reshape(size, n_groups)
        weights = weights.astype(np.float64)
        samples.append((weights @ hits) / (weights @ queries)[:, None])
    stacked = np.concatenate(samples) if samples else np.zeros((0, len(names)))
    return {name: stacked[:, i] for i, name in enumerate(names)}


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    """The percentile interval ``[low, high]`` of bootstrap samples (NaN samples ignored)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]


def compare(
    recall: float, samples: np.ndarray, other_recall: float, other_samples: np.ndarray
) -> dict:
    """Paired difference and ratio of two models' Recall@50 with their bootstrap intervals.

    Returns:
      ``{"diff": d, "diff_ci": [l, h], "ratio": r, "ratio_ci": [l, h]}``; the ratio is None when the
      other model's recall is 0 (resamples where it is 0 are left out of the ratio's interval).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(other_samples > 0, samples / other_samples, np.nan)
    ratio_ok = other_recall > 0 and np.isfinite(ratios).any()
    return {
        "diff": float(recall - other_recall),
        "diff_ci": interval(samples - other_samples),
        "ratio": float(recall / other_recall) if other_recall > 0 else None,
        "ratio_ci": interval(ratios) if ratio_ok else None,
    }


def report(
    recommended: np.ndarray, queries: Queries, n_train_items: int
) -> tuple[dict, np.ndarray]:
    """Every figure of one model: `evaluate`'s metrics, the Recall@50 interval and the slices.

    Returns:
      (metrics with ``recall@50_ci`` and ``slices`` added, [n] hit ranks for paired comparisons).
    """
    values = evaluate(recommended, queries.targets, n_train_items)
    ranks = hit_ranks(recommended, queries.targets)
    samples = bootstrap_recalls({"model": ranks}, queries.visitors)["model"]
    values["recall@50_ci"] = interval(samples)
    values["slices"] = slice_metrics(ranks, queries.slices)
    return values, ranks
