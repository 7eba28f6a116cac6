"""The serving SavedModel: raw user features in, top-K catalogue item ids and scores out.

The model scores the whole catalogue by brute force with plain TensorFlow ops, so stock TF Serving
(or any process that imports only TensorFlow) serves it. It embeds the tf.Transform graph, so
requests carry the export's raw columns and are transformed exactly as the training examples were.

Signatures (names in the constants below):

* ``serving_default`` (`SERVING_SIGNATURE`): one tensor [B] per raw user column, as TF Serving's REST
  ``{"instances": [{...}, ...]}`` delivers them: ``visitorid`` int64, ``history`` string (space-
  separated item ids, most recent first, "" for none), ``profile`` string (the visitor's distinct
  items, most recently seen first, tokens ``<itemid>:<count>:<strongest event>:<last-seen ms>``,
  "" for none; ``retailrec recommend`` and the export build it), ``user_views``, ``user_addtocarts``,
  ``user_transactions``, ``user_distinct_items``, ``timestamp`` (ms of the request) and
  ``user_last_timestamp`` (ms of the visitor's last event, 0 for none), all int64. Returns
  ``item_ids`` int64 [B, K] (raw catalogue ids, best first) and ``scores`` float32 [B, K].
* ``serving_filtered`` (`FILTERED_SIGNATURE`): the inputs of ``serving_default`` plus ``exclude``
  string [B] (item ids to drop, space-separated like ``history``, e.g. the cart; "" for none;
  unknown or non-numeric tokens are ignored) and ``available_only`` int64 [B] (1: drop the items
  that were unavailable at the cutoff, 0: keep them). Same outputs as ``serving_default``: the K
  best *eligible* items. A catalogue with fewer than K eligible items pads the list with id -1 and
  score -inf. Availability is the catalogue's ``available`` column at the cutoff (1 available, 0
  not, -1 unknown); only 0 is dropped: an unknown state is a gap in the property log, not a sign
  that the item is out of stock, and a shop that never logs availability keeps full lists.
  ``serving_default`` is unchanged, because TF Serving requires every input of a signature in a
  request: old clients keep working, new ones name ``"signature_name": "serving_filtered"``.
* ``serve_tf_examples`` (`EVAL_SIGNATURE`): ``examples`` string [B] of serialized tf.Examples with
  those columns (the eval split's rows; other columns are ignored); returns ``classes`` int64 [B, EVAL_TOP_K]
  and ``scores`` [B, EVAL_TOP_K] (50 + the history length, so that ``exclude_seen`` can drop seen
  items and keep 50), the shape TFMA's ``SetMatchRecall(top_k=50)`` reads with the raw item id as
  the label.
* ``user_vectors`` (`QUERY_SIGNATURE`): the raw user columns -> ``query`` [B, dim + 1],
  ``history_rows`` int64 [B, N] (catalogue row of each profile item the repeat term reads, -1 for
  none) and ``repeat_bonus`` [B, N]: what an ANN index (ScaNN) needs to serve the same scores:
  retrieve K + N candidates by dot product, add each profile row's bonus, re-cut to K.
* ``catalogue`` (`CATALOGUE_SIGNATURE`): no input -> ``item_ids`` [M] (ascending), ``item_vectors``
  [M, dim + 1], the vectors the ANN index is built over, and ``available`` int64 [M] (1/0/-1 at
  the cutoff, what ``available_only`` reads).

score(user, item) = query . item_vector + repeat bonus, exactly as ``modules.offline.score_queries``
computes offline; ties go to the lower catalogue row, i.e. the lower item id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from modules import constants
from modules import features as F
from modules import transform as T

SERVING_SIGNATURE = "serving_default"
EVAL_SIGNATURE = "serve_tf_examples"
QUERY_SIGNATURE = "user_vectors"
CATALOGUE_SIGNATURE = "catalogue"
FILTERED_SIGNATURE = "serving_filtered"
# DESIGN 5 scores the top 50; the evaluator signature returns more so that ``exclude_seen`` can drop
# the visitor's train items (at most the history length) and still leave 50.
EVAL_TOP_K = constants.EVAL_CANDIDATES
# The outputs of serving_default and of the evaluator signature.
OUTPUT_ITEM_IDS = "item_ids"
OUTPUT_SCORES = "scores"
OUTPUT_CLASSES = "classes"

# The outputs of the catalogue signature.
CATALOGUE_IDS = "item_ids"
CATALOGUE_VECTORS = "item_vectors"
CATALOGUE_AVAILABLE = F.AVAILABLE

# The raw user columns a request carries, with their dtypes.
REQUEST_COLUMNS = {name: tf.int64 for name in T.RAW_USER_COLUMNS} | {
    F.HISTORY: tf.string,
    F.PROFILE: tf.string,
}
# The request inputs of serving_filtered beyond REQUEST_COLUMNS (request options, not features).
EXCLUDE = "exclude"
AVAILABLE_ONLY = "available_only"
FILTERED_REQUEST_COLUMNS = REQUEST_COLUMNS | {EXCLUDE: tf.string, AVAILABLE_ONLY: tf.int64}
# The catalogue's ``available`` values: only NOT_AVAILABLE is dropped by ``available_only``.
NOT_AVAILABLE = 0
UNKNOWN_AVAILABILITY = F.MISSING_ID
# The id and score of a slot no eligible item fills.
NO_ITEM = -1


class ServingModule(tf.Module):
    """Transform graph + user tower + catalogue vectors + repeat term, with the signatures above."""

    def __init__(
        self, trained: Any, tft_output: Any, top_k: int, available: np.ndarray | None = None
    ):
        """Builds the module.

        Args:
          trained: a ``modules.training.Trained``.
          tft_output: its ``TFTransformOutput``.
          top_k: list length of ``serving_default`` and ``serving_filtered``.
          available: int64 [M] the catalogue's ``available`` (1/0/-1) aligned with
            ``trained.catalogue_ids`` (`align_availability`); None: unknown for every item.

        Raises:
          ValueError: ``available`` is not one value per catalogue item.
        """
        super().__init__(name="retailrec_two_tower")
        n_items = len(trained.catalogue_ids)
        if available is None:
            available = np.full(n_items, UNKNOWN_AVAILABILITY, np.int64)
        available = np.asarray(available, dtype=np.int64)
        if available.shape != (n_items,):
            raise ValueError(
                f"available has shape {available.shape}; the catalogue has {n_items} items"
            )
        self.catalogue_available = tf.Variable(available, trainable=False, dtype=tf.int64)
        self.tft_layer = tft_output.transform_features_layer()
        self.user_tower = trained.model.user_tower
        self.repeat = trained.model.repeat
        self.catalogue_ids = tf.Variable(trained.catalogue_ids, trainable=False, dtype=tf.int64)
        self.catalogue_vectors = tf.Variable(
            trained.catalogue_vectors, trainable=False, dtype=tf.float32
        )
        self.row_of_index = tf.Variable(trained.row_of_index, trainable=False, dtype=tf.int64)
        self._top_k = int(min(top_k, len(trained.catalogue_ids)))
        self._eval_k = int(min(EVAL_TOP_K, len(trained.catalogue_ids)))
        spec = tft_output.raw_feature_spec()
        missing = [name for name in REQUEST_COLUMNS if name not in spec]
        if missing:
            raise ValueError(f"the transform graph has no raw column {missing}; got {sorted(spec)}")
        self._raw_spec = {name: spec[name] for name in REQUEST_COLUMNS}

    def _query(self, raw: dict[str, Any]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        transformed = self.tft_layer(raw)
        query = self.user_tower(transformed, training=False)
        rows = tf.gather(self.row_of_index, self.repeat.items(transformed))
        bonus = self.repeat.bonus(transformed)
        return query, rows, bonus

    def _top(self, raw: dict[str, Any], k: int) -> tuple[tf.Tensor, tf.Tensor]:
        query, rows, bonus = self._query(raw)
        scores = tf.matmul(query, self.catalogue_vectors, transpose_b=True)
        scores = add_repeat_bonus(scores, rows, bonus)
        best = tf.math.top_k(scores, k=k)
        return tf.gather(self.catalogue_ids, best.indices), best.values

    def _top_filtered(self, request: dict[str, tf.Tensor], k: int) -> tuple[tf.Tensor, tf.Tensor]:
        query, rows, bonus = self._query(self.raw_from_request(request))
        scores = tf.matmul(query, self.catalogue_vectors, transpose_b=True)
        scores = add_repeat_bonus(scores, rows, bonus)
        excluded = excluded_rows(request[EXCLUDE], self.catalogue_ids)
        eligible = eligible_mask(
            excluded, self.catalogue_available, tf.not_equal(request[AVAILABLE_ONLY], 0)
        )
        return filtered_top_k(scores, eligible, self.catalogue_ids, k)

    def raw_from_request(self, request: dict[str, tf.Tensor]) -> dict[str, Any]:
        """REST-shaped [B] tensors -> the structure the transform graph expects."""
        return {name: _as_spec(request[name], feature) for name, feature in self._raw_spec.items()}

    # The signatures are traced without AutoGraph: their Python branches are on feature specs and
    # settings, never on tensors, so AutoGraph would rewrite the source of every layer they call
    # into the same graph, at the cost of seconds per signature when the Trainer saves the model.
    @tf.function(
        input_signature=[{n: tf.TensorSpec([None], d, name=n) for n, d in REQUEST_COLUMNS.items()}],
        autograph=False,
    )
    def serve(self, request):
        """serving_default: top-K raw item ids and scores for raw user features."""
        ids, scores = self._top(self.raw_from_request(request), self._top_k)
        return {OUTPUT_ITEM_IDS: ids, OUTPUT_SCORES: scores}

    @tf.function(
        input_signature=[
            {n: tf.TensorSpec([None], d, name=n) for n, d in FILTERED_REQUEST_COLUMNS.items()}
        ],
        autograph=False,
    )
    def serve_filtered(self, request):
        """serving_filtered: serving_default without the excluded (and unavailable) items."""
        ids, scores = self._top_filtered(request, self._top_k)
        return {OUTPUT_ITEM_IDS: ids, OUTPUT_SCORES: scores}

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False
    )
    def serve_examples(self, examples):
        """Evaluator signature: serialized tf.Examples -> top ``classes`` and ``scores``."""
        raw = tf.io.parse_example(examples, self._raw_spec)
        ids, scores = self._top(raw, self._eval_k)
        return {OUTPUT_CLASSES: ids, OUTPUT_SCORES: scores}

    @tf.function(
        input_signature=[{n: tf.TensorSpec([None], d, name=n) for n, d in REQUEST_COLUMNS.items()}],
        autograph=False,
    )
    def user_vectors(self, request):
        """Query vectors, history catalogue rows and repeat bonuses (for an ANN index)."""
        query, rows, bonus = self._query(self.raw_from_request(request))
        return {"query": query, "history_rows": rows, "repeat_bonus": bonus}

    @tf.function(input_signature=[], autograph=False)
    def catalogue(self):
        """The catalogue's raw ids and candidate vectors."""
        return {
            CATALOGUE_IDS: tf.identity(self.catalogue_ids),
            CATALOGUE_VECTORS: tf.identity(self.catalogue_vectors),
            CATALOGUE_AVAILABLE: tf.identity(self.catalogue_available),
        }


def _as_spec(values: tf.Tensor, feature: Any) -> Any:
    """A dense [B] column as the feature spec's tensor: dense [B, ...] or sparse (empty = absent)."""
    if isinstance(feature, tf.io.FixedLenFeature):
        values = tf.cast(values, feature.dtype) if values.dtype != feature.dtype else values
        return (
            tf.reshape(values, tf.concat([[-1], tf.constant(feature.shape, tf.int32)], 0))
            if feature.shape
            else values
        )
    if isinstance(feature, tf.io.VarLenFeature):
        if feature.dtype == tf.string:
            if values.dtype != tf.string:
                values = tf.strings.as_string(values)
            present = tf.not_equal(values, "")
        else:
            if values.dtype == tf.string:
                values = tf.strings.to_number(
                    tf.where(tf.equal(values, ""), "nan", values), tf.float64
                )
            values = tf.cast(values, feature.dtype)
            present = (
                tf.logical_not(tf.math.is_nan(tf.cast(values, tf.float64)))
                if feature.dtype.is_floating
                else tf.ones_like(values, tf.bool)
            )
        rows = tf.where(present)[:, 0]
        return tf.SparseTensor(
            indices=tf.stack([rows, tf.zeros_like(rows)], 1),
            values=tf.boolean_mask(values, present),
            dense_shape=tf.stack(
                [tf.shape(values, out_type=tf.int64)[0], tf.constant(1, tf.int64)]
            ),
        )
    raise ValueError(f"unsupported raw feature spec {feature}")


def add_repeat_bonus(scores: tf.Tensor, rows: tf.Tensor, bonus: tf.Tensor) -> tf.Tensor:
    """``scores`` [B, M] plus each history item's repeat bonus at its catalogue column.

    The TF twin of ``modules.ranking.add_repeat_bonus`` (the SavedModel keeps TF ops): ``rows``
    [B, N] are catalogue columns (-1: none), ``bonus`` [B, N] their bonuses; an item at two
    history positions gets both.
    """
    rows = tf.cast(rows, tf.int64)
    valid = rows >= 0
    batch_row = tf.broadcast_to(
        tf.range(tf.shape(rows, out_type=tf.int64)[0])[:, None], tf.shape(rows, out_type=tf.int64)
    )
    indices = tf.stack([tf.boolean_mask(batch_row, valid), tf.boolean_mask(rows, valid)], 1)
    values = tf.cast(tf.boolean_mask(bonus, valid), scores.dtype)
    return tf.tensor_scatter_nd_add(scores, indices, values)


def align_availability(
    catalogue_ids: np.ndarray, item_ids: np.ndarray, available: np.ndarray | None
) -> np.ndarray:
    """The catalogue's ``available`` column in catalogue row order (ascending item id).

    Args:
      catalogue_ids: [M] the catalogue's item ids, ascending (``Trained.catalogue_ids``).
      item_ids: the raw item column (``items.csv`` order).
      available: its ``available`` column (1, 0, -1), or None: unknown for every item.

    Returns:
      int64 [M]; -1 (unknown) for a catalogue item the columns lack.
    """
    out = np.full(len(catalogue_ids), UNKNOWN_AVAILABILITY, np.int64)
    if available is None or len(item_ids) == 0:
        return out
    item_ids = np.asarray(item_ids, np.int64)
    slot = np.clip(np.searchsorted(catalogue_ids, item_ids), 0, len(catalogue_ids) - 1)
    found = catalogue_ids[slot] == item_ids
    out[slot[found]] = np.asarray(available)[found].astype(np.int64)
    return out


def excluded_rows(exclude: tf.Tensor, catalogue_ids: tf.Tensor) -> tf.Tensor:
    """The catalogue rows of each request's ``exclude`` ids.

    Args:
      exclude: string [B], item ids separated by whitespace ("" for none).
      catalogue_ids: int64 [M] the catalogue's ids, ascending.

    Returns:
      int64 [B, E] catalogue rows, -1 for padding and for tokens that are no catalogue id
      (unknown ids, junk: ignored, as ``history`` ignores them).
    """
    tokens = tf.strings.split(exclude)
    flat = tokens.flat_values
    numeric = tf.strings.regex_full_match(flat, "[0-9]{1,18}")
    ids = tf.strings.to_number(tf.where(numeric, flat, "-1"), tf.int64)
    last = tf.size(catalogue_ids, out_type=tf.int64) - 1
    slot = tf.minimum(tf.searchsorted(catalogue_ids, ids, out_type=tf.int64), last)
    found = numeric & tf.equal(tf.gather(catalogue_ids, slot), ids)
    rows = tokens.with_flat_values(tf.where(found, slot, tf.constant(-1, tf.int64)))
    return rows.to_tensor(default_value=tf.constant(-1, tf.int64))


def eligible_mask(
    excluded: tf.Tensor, available: tf.Tensor, available_only: tf.Tensor
) -> tf.Tensor:
    """bool [B, M]: which catalogue rows each request may get.

    Args:
      excluded: int64 [B, E] rows to drop, -1 for none (`excluded_rows`).
      available: int64 [M] the catalogue's availability (1/0/-1; only 0 is unavailable).
      available_only: bool [B], whether to drop the unavailable rows.
    """
    shape = tf.stack([tf.shape(excluded, out_type=tf.int64)[0], tf.size(available, tf.int64)])
    valid = excluded >= 0
    batch_row = tf.broadcast_to(
        tf.range(tf.shape(excluded, out_type=tf.int64)[0])[:, None],
        tf.shape(excluded, out_type=tf.int64),
    )
    indices = tf.stack([tf.boolean_mask(batch_row, valid), tf.boolean_mask(excluded, valid)], 1)
    hit = tf.scatter_nd(indices, tf.ones(tf.shape(indices)[:1], tf.int32), shape) > 0
    unavailable = tf.equal(available, NOT_AVAILABLE)[None, :] & available_only[:, None]
    return tf.logical_not(hit | unavailable)


def eligible_rows(
    rows: tf.Tensor, excluded: tf.Tensor, available: tf.Tensor, available_only: tf.Tensor
) -> tf.Tensor:
    """bool [B, C]: which candidate rows (-1: none) a request may get; `eligible_mask` by row."""
    rows = tf.cast(rows, tf.int64)
    hit = tf.reduce_any(
        tf.equal(rows[:, :, None], excluded[:, None, :]) & (excluded >= 0)[:, None, :], axis=2
    )
    unavailable = tf.equal(tf.gather(available, tf.maximum(rows, 0)), NOT_AVAILABLE)
    unavailable &= available_only[:, None]
    return (rows >= 0) & tf.logical_not(hit | unavailable)


def filtered_top_k(
    scores: tf.Tensor, eligible: tf.Tensor, catalogue_ids: tf.Tensor, k: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """The top k eligible items of ``scores`` [B, M]: (ids int64 [B, k], scores [B, k]).

    Equal scores go to the lower row (``tf.math.top_k`` keeps index order); slots no eligible
    item fills hold id -1 and score -inf.
    """
    masked = tf.where(eligible, scores, tf.constant(-np.inf, scores.dtype))
    best = tf.math.top_k(masked, k=k)
    filled = tf.gather(eligible, best.indices, batch_dims=1)
    ids = tf.where(filled, tf.gather(catalogue_ids, best.indices), tf.constant(NO_ITEM, tf.int64))
    return ids, best.values


def parse_user_columns(examples: tf.Tensor, query_spec: dict[str, tf.TensorSpec]) -> dict:
    """Serialized tf.Examples [B] -> the dense [B] raw user columns ``user_vectors`` takes.

    Args:
      examples: string [B] serialized tf.Examples (e.g. eval rows; other features are ignored).
      query_spec: the ``user_vectors`` signature's input specs (name -> TensorSpec [None]).

    Returns:
      ``{name: [B] tensor}``; a column absent from an example reads as 0 or "" (what a REST
      request sends for "none").
    """
    parsed = tf.io.parse_example(
        examples, {name: tf.io.VarLenFeature(spec.dtype) for name, spec in query_spec.items()}
    )
    return {name: _first_or_default(value) for name, value in parsed.items()}


def _first_or_default(value: tf.SparseTensor) -> tf.Tensor:
    """A parsed scalar column [B] from its sparse form; absent -> 0 or ""."""
    default = "" if value.dtype == tf.string else tf.zeros([], value.dtype)
    dense = tf.sparse.to_dense(value, default_value=default)
    padding = tf.fill([tf.shape(dense)[0], 1], default)
    return tf.concat([dense, padding], axis=1)[:, 0]


def export(
    trained: Any,
    tft_output: Any,
    export_dir: str,
    top_k: int = 50,
    available: np.ndarray | None = None,
) -> str:
    """Writes the serving SavedModel with the signatures of the module docstring.

    Args:
      trained: a ``modules.training.Trained``.
      tft_output: its ``TFTransformOutput``.
      export_dir: the SavedModel folder (e.g. the Trainer's ``serving_model_dir``).
      top_k: list length of ``serving_default`` and ``serving_filtered``.
      available: int64 [M] the catalogue's ``available`` at the cutoff, aligned with
        ``trained.catalogue_ids`` (`align_availability`); None: unknown for every item, so
        ``available_only`` drops nothing.

    Returns:
      ``export_dir``.
    """
    module = ServingModule(trained, tft_output, top_k, available)
    signatures = {
        SERVING_SIGNATURE: module.serve.get_concrete_function(),
        FILTERED_SIGNATURE: module.serve_filtered.get_concrete_function(),
        EVAL_SIGNATURE: module.serve_examples.get_concrete_function(),
        QUERY_SIGNATURE: module.user_vectors.get_concrete_function(),
        CATALOGUE_SIGNATURE: module.catalogue.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir
