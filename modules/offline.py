"""Offline scoring of a trained model, for tests and benchmarks (the pipeline scores through the
serving SavedModel). No TFX imports.

`score_queries` computes what the serving model computes (``modules.serving``): the query's dot
product with every catalogue vector plus the repeat bonus of its profile items
(``ranking.add_repeat_bonus``); `recommend` selects the top k with the protocol's tie rule
(``ranking.top_k_items``). ``modules/serving_test.py`` checks that both paths agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modules import columns as C
from modules import features as F
from modules import ranking
from modules import transform as T

if TYPE_CHECKING:
    from modules.training import Trained


def query_parts(
    trained: Trained, tft_output: Any, query_columns: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User vectors and repeat bonuses of queries: ([Q, dim + 1], [Q, N] rows, [Q, N] bonus)."""
    spec = tft_output.raw_feature_spec()
    layer = tft_output.transform_features_layer()
    transformed = C.transform_columns(layer, C.user_columns_of(query_columns), spec)
    users, items, bonus = [], [], []
    n = len(transformed[T.HISTORY_INDEX])
    for start in range(0, n, C.TRANSFORM_BATCH):
        chunk = {k: v[start : start + C.TRANSFORM_BATCH] for k, v in transformed.items()}
        users.append(trained.model.user_vectors(chunk).numpy())
        items.append(trained.model.repeat.items(chunk).numpy())
        bonus.append(trained.model.repeat.bonus(chunk).numpy())
    rows = trained.row_of_index[np.concatenate(items)]
    return np.concatenate(users), rows, np.concatenate(bonus)


def score_queries(
    trained: Trained, tft_output: Any, query_columns: dict[str, np.ndarray]
) -> np.ndarray:
    """[Q, M] catalogue scores of every query (dot product + repeat term), as serving computes."""
    users, rows, bonus = query_parts(trained, tft_output, query_columns)
    return ranking.add_repeat_bonus(users @ trained.catalogue_vectors.T, rows, bonus)


def recommend(
    trained: Trained,
    tft_output: Any,
    query_columns: dict[str, np.ndarray],
    k: int = 50,
    exclude: Any = None,
    chunk: int = 2048,
) -> np.ndarray:
    """Top-k raw item ids per query, with the protocol's tie rule (``ranking.top_k_items``).

    Args:
      trained: the trained model.
      tft_output: its transform output.
      query_columns: raw user columns of the queries (eval rows).
      k: list length.
      exclude: optional [Q, M] boolean mask (or scipy.sparse) of catalogue items to drop.
      chunk: queries scored at once.

    Returns:
      int64 [Q, k] item ids, best first, padded with ``ranking.PAD_ID``.
    """
    n = len(query_columns[F.VISITOR_ID])
    lists = [np.full((0, k), ranking.PAD_ID, dtype=np.int64)]
    for start in range(0, n, chunk):
        part = {name: values[start : start + chunk] for name, values in query_columns.items()}
        scores = score_queries(trained, tft_output, part)
        mask = None if exclude is None else exclude[start : start + chunk]
        lists.append(ranking.top_k_items(scores, trained.catalogue_ids, k, exclude=mask))
    return np.concatenate(lists)
