"""The catalogue as the model sees it: the items split transformed, indexed by item id and by
vocabulary index, and embedded by a model's item tower. No TFX imports.

Catalogue rows are sorted by ascending item id, the protocol's tie order (``modules.ranking``), so a
score matrix over the catalogue ranks with ``ranking.top_k_items(scores, catalogue.ids, k)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from modules import columns as C
from modules import features as F
from modules import model as M
from modules import transform as T

_VECTOR_BATCH = 8192  # catalogue rows per call of the item tower


@dataclasses.dataclass
class Catalogue:
    """The catalogue, transformed.

    Attributes:
      ids: [M] raw item ids, ascending (the tie rule's order).
      features: item-side transformed features, row r for ids[r].
      row_of_index: [items] catalogue row of each item-vocabulary index, -1 when none.
      table: item-side transformed features by vocabulary index (row i = index i; zeros for
        indices without a catalogue row), for embedding history items as training candidates.
    """

    ids: np.ndarray
    features: dict[str, np.ndarray]
    row_of_index: np.ndarray
    table: dict[str, np.ndarray]


def prepare_catalogue(
    layer: Any, item_columns: dict[str, np.ndarray], spec: dict[str, Any], sizes: M.FeatureSizes
) -> Catalogue:
    """Transforms the catalogue rows and indexes them by item id and by vocabulary index.

    Args:
      layer: the transform output's ``transform_features_layer()``.
      item_columns: raw columns of the catalogue (other columns are ignored).
      spec: the raw feature spec.
      sizes: feature domains (``sizes.items``: the item vocabulary with padding and OOV rows).

    Returns:
      The catalogue.

    Raises:
      ValueError: the catalogue is empty or has duplicate item ids.
    """
    item_columns = C.item_columns_of(item_columns)
    ids = item_columns[F.ITEM_ID]
    if ids.size == 0:
        raise ValueError("the item catalogue is empty")
    order = np.argsort(ids, kind="stable")
    if (np.diff(ids[order]) == 0).any():
        raise ValueError("the item catalogue has duplicate item ids")
    item_columns = {name: values[order] for name, values in item_columns.items()}
    features = C.transform_columns(layer, item_columns, spec)
    features = {name: features[name] for name in T.ITEM_OUTPUTS}
    row_of_index = np.full(sizes.items, -1, dtype=np.int64)
    index = features[T.ITEM_INDEX]
    known = (index > 0) & (index < sizes.items - 1)
    row_of_index[index[known]] = np.nonzero(known)[0]
    table = {}
    has_row = row_of_index >= 0
    for name, values in features.items():
        column = np.zeros((sizes.items, *values.shape[1:]), dtype=values.dtype)
        column[has_row] = values[row_of_index[has_row]]
        table[name] = column
    table[T.ITEM_INDEX] = np.arange(sizes.items, dtype=np.int64)
    return Catalogue(
        ids=item_columns[F.ITEM_ID], features=features, row_of_index=row_of_index, table=table
    )


def item_vectors(model: M.TwoTowerModel, items: Catalogue) -> np.ndarray:
    """[M, dim + 1] the catalogue's candidate vectors with the model's current weights."""
    return np.concatenate(
        [
            model.item_vectors(
                {k: v[s : s + _VECTOR_BATCH] for k, v in items.features.items()}
            ).numpy()
            for s in range(0, items.ids.size, _VECTOR_BATCH)
        ]
    )
