"""Scores a retrieval SavedModel on the eval split exactly like the baselines (DESIGN section 5).

Every eval example is one query; the model returns its top candidates over the whole catalogue
from the raw features (the Transform graph is inside the SavedModel); the lists are cut to 50
(after dropping seen items under ``exclude_seen``) and scored by ``modules.evaluation`` — the
same code that scores the baselines.
"""

from __future__ import annotations

import numpy as np

from components import examples_io
from modules import evaluation, serving
from modules import features as F
from pipeline import configs

TRAIN_EVENTS = "train events"
EVAL_QUERIES = "eval queries"


def seen_codes(visitors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Sorted unique (visitor, item) codes, for fast membership tests."""
    return np.unique(_codes(visitors, items))


def _codes(visitors: np.ndarray, items: np.ndarray) -> np.ndarray:
    # Ids are below 2**31 in RetailRocket; the pair packs into one int64 without collisions.
    return visitors.astype(np.int64) * (1 << 31) + items.astype(np.int64)


def drop_seen(lists: np.ndarray, visitors: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Removes each query's train items from its list, keeping order, padded with -1 to ``k``."""
    codes = _codes(np.repeat(visitors, lists.shape[1]).reshape(lists.shape), lists)
    position = np.searchsorted(seen, codes)
    hit = (position < len(seen)) & (seen[np.minimum(position, len(seen) - 1)] == codes)
    out = np.full((lists.shape[0], k), evaluation.PAD_ID, dtype=np.int64)
    for row in range(lists.shape[0]):  # a loop over eval queries, each a short vector op
        kept = lists[row][~hit[row] & (lists[row] != evaluation.PAD_ID)][:k]
        out[row, : len(kept)] = kept
    return out


def recommend(model_dir: str, eval_files: list[str], batch_size: int = configs.EVAL_BATCH_SIZE):
    """Runs the model's evaluation signature over serialized eval examples.

    Returns:
      (visitors [n], targets [n], candidate ids [n, K]) in file order, K the signature's length.
    """
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    signature = model.signatures[serving.EVAL_SIGNATURE]
    spec = {
        F.VISITOR_ID: tf.io.FixedLenFeature([], tf.int64),
        F.ITEM_ID: tf.io.FixedLenFeature([], tf.int64),
    }
    visitors, targets, lists = [], [], []
    dataset = tf.data.TFRecordDataset(eval_files, compression_type="GZIP").batch(batch_size)
    for records in dataset:
        parsed = tf.io.parse_example(records, spec)
        out = signature(examples=records)
        visitors.append(parsed[F.VISITOR_ID].numpy())
        targets.append(parsed[F.ITEM_ID].numpy())
        lists.append(out[serving.OUTPUT_CLASSES].numpy().astype(np.int64))
    return np.concatenate(visitors), np.concatenate(targets), np.concatenate(lists)


def evaluate_model(
    model_dir: str, examples_uri: str, *, exclude_seen: bool, train_split: str, eval_split: str
) -> tuple[dict[str, float], np.ndarray]:
    """Recall@K, NDCG@50 and coverage@50 of a SavedModel on the eval split.

    Returns:
      (metrics, recall curve for K = 1..50, rows read: ``{"train events": n, "eval queries": n}``
      for the row-count checks).
    """
    train = examples_io.read_columns(
        examples_uri, train_split, {F.VISITOR_ID: "int64", F.ITEM_ID: "int64"}
    )
    visitors, targets, lists = recommend(
        model_dir, examples_io.split_files(examples_uri, eval_split)
    )
    if exclude_seen:
        lists = drop_seen(
            lists,
            visitors,
            seen_codes(train[F.VISITOR_ID], train[F.ITEM_ID]),
            evaluation.LIST_LENGTH,
        )
    else:
        lists = lists[:, : evaluation.LIST_LENGTH]
    n_train_items = int(np.unique(train[F.ITEM_ID]).size)
    metrics = evaluation.evaluate(lists, targets, n_train_items)
    read = {TRAIN_EVENTS: int(train[F.ITEM_ID].size), EVAL_QUERIES: int(targets.size)}
    return metrics, evaluation.recall_curve(lists, targets), read
