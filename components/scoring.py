"""Scores a retrieval SavedModel on an Examples split like the baselines (DESIGN section 5).

A library of the components (the RetrievalEvaluator and the ScannIndex both score models with it),
not a component.

Every eval example is one query; the model returns its top candidates over the whole catalogue
from the raw features (the Transform graph is inside the SavedModel); the lists are cut to 50
(after dropping seen items under ``exclude_seen``) and scored by ``modules.metrics`` — the
same code that scores the baselines.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from components import examples_io
from modules import constants, metrics, ranking, serving, topk
from modules import features as F

TRAIN_EVENTS = "train events"
EVAL_QUERIES = "eval queries"


def recommend(
    model_dir: str,
    eval_files: list[str],
    batch_size: int = constants.EVAL_BATCH_SIZE,
    query_time_ms: int | None = None,
):
    """Runs the model's evaluation signature over serialized eval examples.

    Returns:
      (visitors [n], targets [n], candidate ids [n, K]) in file order, K the signature's length.
    """
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    signature = model.signatures[serving.EVAL_SIGNATURE]
    visitors, targets, lists = [], [], []
    window = batch_size * _ORDERED_BATCHES
    for records, visitor, target in _eval_batches(eval_files, window, query_time_ms):
        visitors.append(visitor)
        targets.append(target)
        lists.append(_lists_by_profile_length(signature, records, batch_size))
    return np.concatenate(visitors), np.concatenate(targets), np.concatenate(lists)


# `recommend` orders the queries of this many batches at a time by profile length.
_ORDERED_BATCHES = 16


def _lists_by_profile_length(signature, records, batch_size: int) -> np.ndarray:
    """The signature's lists [n, K] of serialized examples, in their order, computed on batches of
    queries with similar profile lengths.

    The ScaNN model's search and merge grow with a batch's longest profile
    (``components.scann_index.serving.trim_history``): at RetailRocket scale a profile holds 5
    items at the median and 500 at most, and in file order nearly every batch of 512 held one of
    500. With an exact index the lists are those of file-order batches; ScaNN's batched
    asymmetric-hashing search may give a query another list beside other queries, in any order.
    """
    import tensorflow as tf

    parsed = tf.io.parse_example(records, {F.PROFILE: tf.io.VarLenFeature(tf.string)})
    profile = parsed[F.PROFILE]
    lengths = np.zeros(len(records), dtype=np.int64)
    lengths[profile.indices[:, 0].numpy()] = tf.strings.split(profile.values).row_lengths().numpy()
    order = np.argsort(lengths, kind="stable")
    parts = [
        signature(examples=tf.gather(records, order[at : at + batch_size]))[serving.OUTPUT_CLASSES]
        for at in range(0, len(order), batch_size)
    ]
    lists = np.empty((len(order), parts[0].shape[1]), dtype=np.int64)
    lists[order] = np.concatenate([part.numpy() for part in parts])
    return lists


def _eval_batches(eval_files: list[str], batch_size: int, query_time_ms: int | None = None):
    """Yields (serialized examples, their visitor ids, their target item ids), in file order.

    With ``query_time_ms`` every query's own timestamp is replaced by that time (an ablation:
    the baselines never see when a query happens; ``benchmarks/bench_ablations.py``).
    """
    import tensorflow as tf

    spec = {
        F.VISITOR_ID: tf.io.FixedLenFeature([], tf.int64),
        F.ITEM_ID: tf.io.FixedLenFeature([], tf.int64),
    }
    from modules import columns as C  # imports TensorFlow

    dataset = tf.data.TFRecordDataset(eval_files, compression_type="GZIP").batch(batch_size)
    for records in C.without_autotune(dataset):
        parsed = tf.io.parse_example(records, spec)
        if query_time_ms is not None:
            records = tf.constant([_at_time(r, query_time_ms) for r in records.numpy()])
        yield records, parsed[F.VISITOR_ID].numpy(), parsed[F.ITEM_ID].numpy()


def _at_time(record: bytes, time_ms: int) -> bytes:
    """The serialized example with its timestamp set to ``time_ms``."""
    import tensorflow as tf

    example = tf.train.Example.FromString(record)
    example.features.feature[F.TIMESTAMP].int64_list.value[:] = [time_ms]
    return example.SerializeToString()


def recommend_exact(
    model_dir: str,
    eval_files: list[str],
    batch_size: int = constants.EVAL_BATCH_SIZE,
    query_time_ms: int | None = None,
    k: int = serving.EVAL_TOP_K,
):
    """The brute-force model's eval lists from its own query and catalogue vectors (`ExactLists`).

    Args:
      k: the list length, at most the signature's (``serving.EVAL_TOP_K``): the first k of its
        list.

    Returns:
      (visitors [n], targets [n], candidate ids [n, k]) in file order.
    """
    import tensorflow as tf

    lists_of = ExactLists(tf.saved_model.load(model_dir), batch_size, k)
    visitors, targets, lists = [], [], []
    for records, visitor, target in _eval_batches(eval_files, batch_size, query_time_ms):
        visitors.append(visitor)
        targets.append(target)
        lists.append(lists_of(records))
    return np.concatenate(visitors), np.concatenate(targets), np.concatenate(lists)


class ExactLists:
    """A brute-force model's eval lists of serialized examples, from its query and catalogue vectors.

    The same scores as its evaluator signature (query . item vector + the repeat bonus at the
    history's catalogue rows, ``modules.serving``) and the same selection
    (``modules.topk.top_rows``), with the matrix product in numpy into one reused buffer: OpenBLAS
    does it about 3x faster than TensorFlow's CPU kernel for this shape (catalogue x 65), and a
    fresh [batch x catalogue] array per batch would cost as much again in page faults. At full
    scale this is most of the evaluation's time.
    """

    def __init__(
        self, model, batch_size: int = constants.EVAL_BATCH_SIZE, k: int = serving.EVAL_TOP_K
    ):
        """
        Args:
          model: the loaded brute-force SavedModel (``modules.serving``).
          batch_size: queries per matrix product (the buffer is [batch_size x catalogue]).
          k: the list length, at most the signature's (``serving.EVAL_TOP_K``).
        """
        catalogue = model.signatures[serving.CATALOGUE_SIGNATURE]()
        self._item_ids = catalogue["item_ids"].numpy().astype(np.int64)
        vectors = catalogue["item_vectors"].numpy().astype(np.float32)
        self._n_items, width = self._item_ids.size, topk.padded_width(self._item_ids.size)
        # Zero vectors in the padding columns, whose scores are then set to -inf: never selected.
        self._vectors_t = np.zeros((vectors.shape[1], width), dtype=np.float32)
        self._vectors_t[:, : self._n_items] = vectors.T
        self._buffer = np.empty((batch_size, width), dtype=np.float32)
        self._k = min(k, serving.EVAL_TOP_K, self._n_items)
        self._signature = model.signatures[serving.QUERY_SIGNATURE]
        self._query_spec = dict(self._signature.structured_input_signature[1])

    def __call__(self, records) -> np.ndarray:
        """Candidate ids [n, k] of serialized examples (a string tensor [n]), best first."""
        batch = len(self._buffer)
        return np.concatenate(
            [self._lists(records[at : at + batch]) for at in range(0, len(records), batch)]
            or [np.empty((0, self._k), dtype=np.int64)]
        )

    def _lists(self, records) -> np.ndarray:
        out = self._signature(**serving.parse_user_columns(records, self._query_spec))
        query = out["query"].numpy().astype(np.float32)
        scores = self._buffer[: len(query)]
        np.matmul(query, self._vectors_t, out=scores)
        scores[:, self._n_items :] = -np.inf
        rows, bonus = out["history_rows"].numpy(), out["repeat_bonus"].numpy()
        valid = rows >= 0
        np.add.at(scores, (np.nonzero(valid)[0], rows[valid]), bonus[valid].astype(np.float32))
        return self._item_ids[topk.top_rows(scores, self._k)]


@dataclasses.dataclass
class Scored:
    """One model scored on the eval split.

    Attributes:
      metrics: `modules.metrics.report`'s figures (Recall@K, NDCG@50, coverage@50, the Recall@50
        interval and the slices).
      curve: Recall@K for K = 1..50.
      read: rows read, ``{"train events": n, "eval queries": n}``, for the row-count checks.
      ranks: [n] hit rank of every eval query (0: miss), in file order, for paired comparisons.
      queries: the eval queries (visitors, targets, slices).
    """

    metrics: dict
    curve: np.ndarray
    read: dict[str, int]
    ranks: np.ndarray
    queries: metrics.Queries


def read_ids(
    examples_uri: str, train_split: str, eval_split: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The train split's visitor and item ids and the eval split's, with its event types.

    The read is handed over to the next scorer of the same files in this process
    (``modules.columns.hand_over``): under LocalDagRunner the ScannIndex reads them and the
    RetrievalEvaluator, right after it, takes them (7-10 s at RetailRocket scale). The columns
    are read-only.

    Returns:
      (``{visitor, item}`` of train, ``{visitor, item, event}`` of eval), in file order.
    """
    from modules import columns as C  # imports TensorFlow

    source = tuple(
        C.files_source(examples_io.split_files(examples_uri, split))
        for split in (train_split, eval_split)
    )
    kept = C.take_handed_over(source)
    if kept is None:
        train = examples_io.read_columns(
            examples_uri, train_split, {F.VISITOR_ID: "int64", F.ITEM_ID: "int64"}
        )
        rows = examples_io.read_columns(
            examples_uri,
            eval_split,
            {F.VISITOR_ID: "int64", F.ITEM_ID: "int64", F.EVENT: "string"},
        )
        for column in (*train.values(), *rows.values()):
            column.flags.writeable = False
        kept = (train, rows)
    C.hand_over(source, kept)
    return kept


def score_model(
    model_dir: str,
    examples_uri: str,
    *,
    exclude_seen: bool,
    train_split: str,
    eval_split: str,
    exact_vectors: bool = False,
    query_time_ms: int | None = None,
) -> Scored:
    """Scores a SavedModel on the eval split under the protocol (DESIGN 5).

    Args:
      exact_vectors: score with the model's query and catalogue vectors (``recommend_exact``,
        brute-force models) instead of its evaluator signature (``recommend``, any model, e.g.
        the ScaNN one).
      query_time_ms: replace every query's own timestamp by this time (an ablation).

    Raises:
      ValueError: the eval split's rows are not the ones the model was given (a reader bug).
    """
    train, rows = read_ids(examples_uri, train_split, eval_split)
    files = examples_io.split_files(examples_uri, eval_split)
    if exact_vectors:
        # Without exclude_seen only the first LIST_LENGTH candidates are ever read.
        k = serving.EVAL_TOP_K if exclude_seen else ranking.LIST_LENGTH
        visitors, targets, lists = recommend_exact(
            model_dir, files, query_time_ms=query_time_ms, k=k
        )
    else:
        visitors, targets, lists = recommend(model_dir, files, query_time_ms=query_time_ms)
    if not (
        np.array_equal(visitors, rows[F.VISITOR_ID]) and np.array_equal(targets, rows[F.ITEM_ID])
    ):
        raise ValueError(f"{examples_uri}: the eval rows were read in two different orders")
    if exclude_seen:
        lists = ranking.drop_seen(
            lists, visitors, train[F.VISITOR_ID], train[F.ITEM_ID], ranking.LIST_LENGTH
        )
    else:
        lists = lists[:, : ranking.LIST_LENGTH]
    queries = metrics.describe_queries(
        visitors, targets, rows[F.EVENT], train[F.VISITOR_ID], train[F.ITEM_ID]
    )
    n_train_items = int(np.unique(train[F.ITEM_ID]).size)
    values, ranks = metrics.report(lists, queries, n_train_items)
    read = {TRAIN_EVENTS: int(train[F.ITEM_ID].size), EVAL_QUERIES: int(targets.size)}
    return Scored(values, metrics.recall_curve(lists, targets), read, ranks, queries)
