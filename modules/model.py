"""The two-tower retrieval model: towers, repeat term and the TFRS model. No TFX imports.

Scoring a (user, item) pair::

    score = [u, 1] . [v, b] + repeat(user history, item)

* Item tower: ``v`` = the item's id embedding (zero for the out-of-vocabulary bucket, i.e. items
  without train events) + a projection of its content (category and its 5 levels, hashed property
  tokens as an embedding bag, numeric properties, popularity); ``b`` a learned item bias from the
  same content plus a per-id bias that starts at the item's log share of the targets
  (`log_prior`). Appending the constant 1 to the user vector keeps the score a plain dot product,
  so an ANN index (ScaNN) still finds the best items.
* User tower: ``u`` = a weight (1 in training; chosen on the validation window, 0 leaves the item
  bias and the repeat term alone) times an encoder of the last N history items (``sequence="events"``, repeats
  included) or of the N most recently seen distinct items (``"distinct"``, the profile's first
  items), reading the SAME id embedding table as the item tower, or with ``history_content`` (the
  default) the item tower's own vectors of those items, content included (``mean``, ``position``
  (learned recency weights), ``attention`` or ``gru``), plus a projection of the context: counters,
  recency, hour and day of week, and optionally a visitor embedding (off by default: on real logs
  it hurt).
* Repeat term: exact identity over the visitor's long-term profile (every distinct train item,
  most recently seen first, up to its cap): a learned, signed weight per recency-rank bucket
  (0, 1-2, 3-6, 7-14, ...), a weight on log(count), a weight per strongest event type and a weight
  per bucket of days since the item's last event, added when the candidate is in the profile. It
  is not a dot product, so serving adds it exactly on top of brute-force or ANN candidates
  (`RepeatTerm.bonus` gives it per profile position).
* Loss: in-batch softmax (``tfrs.tasks.Retrieval``) with log-Q sampling-bias correction
  (``candidate_sampling_probability``) and accidental-hit removal (``candidate_ids``). The repeat
  term enters the task's dot product exactly: the query gets the [B, B] repeat matrix appended and
  every in-batch candidate a one-hot column, so query_i . candidate_j = score(i, j).

Feature names are the transformed names of ``modules.transform``; sizes come from the transform
output (`FeatureSizes`), never from constants.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from modules import transform as T
from modules.optimizer import CatchUpEmbedding

ENCODERS = ("mean", "position", "attention", "gru")
# What the user tower's encoder reads: the last events (``HISTORY_INDEX``, repeats included) or the
# most recently seen distinct items (the profile's first items).
SEQUENCES = ("events", "distinct")
NEGATIVES = ("in_batch", "history")
_MASKED = -1e9  # logit of a candidate taken out of a row's softmax
# The repeat weights are stored divided by this: a handful of scalars that must reach values of a few
# units in a few hundred Adam steps (each moves a parameter by about the learning rate).
REPEAT_SCALE = 10.0


@dataclasses.dataclass(frozen=True)
class FeatureSizes:
    """Index domains and widths of the transformed features (from the transform output).

    Attributes:
      items: rows of the item id table (padding 0, vocabulary, out-of-vocabulary last).
      categories: rows of the category table (same layout).
      text_buckets: rows of the property-token table (0 = padding).
      visitors: rows of the visitor table (same layout as items).
      item_numeric: width of ``ITEM_NUMERIC``.
      user_numeric: width of ``USER_NUMERIC``.
      category_columns: width of ``CATEGORY_INDEX`` (the category and its levels).
      history_length: width of ``HISTORY_INDEX``.
      profile_length: width of the ``PROFILE_*`` outputs.
    """

    items: int
    categories: int
    text_buckets: int
    visitors: int
    item_numeric: int
    user_numeric: int
    category_columns: int
    history_length: int
    profile_length: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture settings (defaults in ``modules.constants``; see ``modules.training``)."""

    embedding_dim: int = 64
    encoder: str = "position"
    use_visitor: bool = False
    use_time: bool = True
    category_dim: int = 16
    text_dim: int = 32
    hidden_dim: int = 128
    repeat_buckets: int = 10
    age_buckets: int = 10
    dropout: float = 0.0
    negatives: str = "in_batch"
    sequence: str = "events"
    history_items: int = 0
    profile_items: int = 0
    bias_prior: bool = True
    history_content: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.sequence not in SEQUENCES:
            raise ValueError(f"sequence {self.sequence!r} unknown; choose one of {SEQUENCES}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder {self.encoder!r} unknown; choose one of {ENCODERS}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives {self.negatives!r} unknown; choose one of {NEGATIVES}")


# ---------------------------------------------------------------- towers


class ItemTower(tf.keras.Model):
    """Item features -> [v, b] of width embedding_dim + 1."""

    def __init__(
        self,
        sizes: FeatureSizes,
        config: ModelConfig,
        item_embedding: tf.keras.layers.Embedding,
        bias_prior: np.ndarray | None = None,
    ):
        super().__init__(name="item_tower")
        init = tf.keras.initializers.GlorotUniform(seed=config.seed + 1)
        self._sizes = sizes
        self.item_embedding = item_embedding
        self.item_bias = CatchUpEmbedding(
            sizes.items,
            1,
            embeddings_initializer=(
                "zeros"
                if bias_prior is None
                else tf.keras.initializers.Constant(np.asarray(bias_prior, np.float32)[:, None])
            ),
            name="item_id_bias",
        )
        self.category_embedding = CatchUpEmbedding(
            sizes.categories,
            config.category_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(
                stddev=0.05, seed=config.seed + 2
            ),
            name="category_embedding",
        )
        self.text_embedding = CatchUpEmbedding(
            sizes.text_buckets,
            config.text_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(
                stddev=0.05, seed=config.seed + 3
            ),
            name="text_embedding",
        )
        self.hidden = tf.keras.layers.Dense(
            config.hidden_dim, activation="relu", kernel_initializer=init, name="item_hidden"
        )
        self.content = tf.keras.layers.Dense(
            config.embedding_dim,
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=config.seed + 4),
            name="item_content",
        )
        self.content_bias = tf.keras.layers.Dense(1, kernel_initializer="zeros", name="item_bias")

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        index = tf.cast(features[T.ITEM_INDEX], tf.int32)
        in_vocab = tf.cast((index > 0) & (index < self._sizes.items - 1), tf.float32)[:, None]
        categories = self.category_embedding(tf.cast(features[T.CATEGORY_INDEX], tf.int32))
        categories *= tf.cast(features[T.CATEGORY_INDEX] > 0, tf.float32)[:, :, None]
        tokens = tf.cast(features[T.TEXT_TOKENS], tf.int32)
        text = _masked_mean(self.text_embedding(tokens), tokens > 0)
        content = tf.concat(
            [
                tf.reshape(categories, [-1, categories.shape[1] * categories.shape[2]]),
                text,
                tf.cast(features[T.ITEM_NUMERIC], tf.float32),
            ],
            axis=1,
        )
        hidden = self.hidden(content)
        vector = self.item_embedding(index) * in_vocab + self.content(hidden)
        bias = self.content_bias(hidden) + self.item_bias(index) * in_vocab
        return tf.concat([vector, bias], axis=1)


class UserTower(tf.keras.Model):
    """User features -> [u, 1] of width embedding_dim + 1."""

    def __init__(
        self, sizes: FeatureSizes, config: ModelConfig, item_embedding: tf.keras.layers.Embedding
    ):
        super().__init__(name="user_tower")
        self._config = config
        self._sizes = sizes
        dim = config.embedding_dim
        self.item_embedding = item_embedding
        n = sequence_width(sizes, config)
        if config.encoder == "position":
            self.position_logits = self.add_weight(
                name="position_logits", shape=[n], initializer="zeros"
            )
        elif config.encoder == "attention":
            self.position_embedding = CatchUpEmbedding(
                n,
                dim,
                embeddings_initializer=tf.keras.initializers.RandomNormal(
                    stddev=0.05, seed=config.seed + 5
                ),
                name="position_embedding",
            )
            self.attention_query = tf.keras.layers.Dense(
                dim,
                kernel_initializer=tf.keras.initializers.GlorotUniform(seed=config.seed + 6),
                name="attention_query",
            )
        elif config.encoder == "gru":
            self.gru = tf.keras.layers.GRU(
                dim,
                kernel_initializer=tf.keras.initializers.GlorotUniform(seed=config.seed + 7),
                recurrent_initializer=tf.keras.initializers.Orthogonal(seed=config.seed + 8),
                name="history_gru",
            )
        if config.use_time:
            self.hour_embedding = CatchUpEmbedding(24, 4, name="hour_embedding")
            self.day_embedding = CatchUpEmbedding(7, 4, name="day_embedding")
        if config.use_visitor:
            self.visitor_embedding = CatchUpEmbedding(
                sizes.visitors,
                dim,
                embeddings_initializer=tf.keras.initializers.RandomNormal(
                    stddev=0.01, seed=config.seed + 9
                ),
                name="visitor_embedding",
            )
        self.hidden = tf.keras.layers.Dense(
            config.hidden_dim,
            activation="relu",
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=config.seed + 10),
            name="user_hidden",
        )
        self.dropout = tf.keras.layers.Dropout(config.dropout, seed=config.seed + 11)
        self.project = tf.keras.layers.Dense(
            dim,
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=config.seed + 12),
            name="user_project",
        )
        # The weight of the personal part u . v against the item bias: not learned, chosen on the
        # validation window (`modules.validation.calibrate`); 1 while training.
        self.personal_weight = self.add_weight(
            name="personal_weight", shape=[], initializer="ones", trainable=False
        )

    def attach_items(self, item_tower: tf.keras.Model, item_table: dict[str, tf.Variable]):
        """Lets the encoder read the history items' item-tower vectors (``history_content``)."""
        self.history_item_tower = item_tower
        self.history_item_table = item_table

    def history_vectors(self, history: tf.Tensor) -> tf.Tensor:
        """[B, N, dim] what the encoder reads of each history item.

        The id embedding, or with ``history_content`` the item tower's vector (id embedding +
        content: category path, property tokens, numbers), computed once per distinct item of the
        batch. Content reaches the user side through items seen too rarely to have a trained id
        embedding, and ties what the visitor had to items like them.
        """
        if not self._config.history_content:
            return self.item_embedding(history)
        vectors = item_vectors_by_index(self.history_item_tower, self.history_item_table, history)
        return vectors[..., : self._config.embedding_dim]

    def encode_history(self, history: tf.Tensor, context: tf.Tensor) -> tf.Tensor:
        """Pools the history's item vectors (`history_vectors`) into one [B, dim] vector."""
        mask = history_mask(history, self._sizes.items)
        embedded = self.history_vectors(history)
        encoder = self._config.encoder
        if encoder == "mean":
            return _masked_mean(embedded, mask)
        if encoder == "position":
            logits = tf.broadcast_to(self.position_logits[None, :], tf.shape(mask))
            return _masked_softmax_pool(embedded, logits, mask)
        if encoder == "attention":
            keys = embedded + self.position_embedding(tf.range(tf.shape(history)[1]))[None]
            query = self.attention_query(tf.concat([_masked_mean(embedded, mask), context], 1))
            logits = tf.einsum("bnd,bd->bn", keys, query) / np.sqrt(self._config.embedding_dim)
            return _masked_softmax_pool(embedded, logits, mask)
        # GRU: oldest to newest, so the last state is closest to the most recent item.
        return self.gru(tf.reverse(embedded, axis=[1]), mask=tf.reverse(mask, axis=[1]))

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        name = T.HISTORY_INDEX if self._config.sequence == "events" else T.PROFILE_INDEX
        history = tf.cast(features[name], tf.int32)[:, : sequence_width(self._sizes, self._config)]
        parts = [tf.cast(features[T.USER_NUMERIC], tf.float32)]
        if self._config.use_time:
            parts += [
                self.hour_embedding(tf.cast(features[T.HOUR], tf.int32)),
                self.day_embedding(tf.cast(features[T.DAY_OF_WEEK], tf.int32)),
            ]
        if self._config.use_visitor:
            parts.append(self.visitor_embedding(tf.cast(features[T.VISITOR_INDEX], tf.int32)))
        context = tf.concat(parts, axis=1)
        pooled = self.encode_history(history, context)
        hidden = self.dropout(self.hidden(tf.concat([pooled, context], 1)), training=training)
        user = (pooled + self.project(hidden)) * self.personal_weight
        return tf.concat([user, tf.ones_like(user[:, :1])], axis=1)


class RepeatTerm(tf.keras.layers.Layer):
    """Signed bonus for candidates that are in the user's long-term profile (exact identity).

    For the item at profile position p (the p-th most recently seen distinct item):
    bonus = w_rank[bucket(p)] + w_count * log(its count) + w_event[its strongest event]
    + w_age[age bucket(days since its last event)], with bucket(x) = min(floor(log2(x + 1)),
    buckets - 1). Weights start at 0 and are learned with the towers; the profile reaches every
    item the visitor had (up to the profile's cap), however long ago.
    """

    def __init__(self, width: int, buckets: int, age_buckets: int, item_rows: int, **kwargs):
        super().__init__(name="repeat_term", **kwargs)
        self._width = width
        self._buckets = buckets
        self._age_buckets = age_buckets
        self._bucket_of_position = tf.constant(_log2_bucket(np.arange(width), buckets))
        self._item_rows = item_rows
        self.bucket_weights = self.add_weight(
            name="bucket_weights", shape=[buckets], initializer="zeros"
        )
        self.count_weight = self.add_weight(name="count_weight", shape=[], initializer="zeros")
        self.event_weights = self.add_weight(name="event_weights", shape=[3], initializer="zeros")
        self.age_weights = self.add_weight(
            name="age_weights", shape=[age_buckets], initializer="zeros"
        )

    @property
    def weights_by_bucket(self) -> tf.Tensor:
        """[buckets] the learned weight of each recency-rank bucket."""
        return self.bucket_weights * REPEAT_SCALE

    @property
    def weight_of_count(self) -> tf.Tensor:
        """The learned weight of log(the item's count)."""
        return self.count_weight * REPEAT_SCALE

    @property
    def weights_by_event(self) -> tf.Tensor:
        """[3] the learned weight of the strongest event (view, addtocart, transaction)."""
        return self.event_weights * REPEAT_SCALE

    @property
    def weights_by_age(self) -> tf.Tensor:
        """[age buckets] the learned weight of floor(log2(1 + days since the last event))."""
        return self.age_weights * REPEAT_SCALE

    def items(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """[B, W] item index of each profile position read (0: padding)."""
        return tf.cast(features[T.PROFILE_INDEX], tf.int32)[:, : self._width]

    def bonus(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """[B, W] bonus of each profile position's item (0 for padding and unknown items).

        Serving scatters these onto the catalogue scores (the item at position p gets bonus[p]).
        """
        items = self.items(features)
        width = tf.shape(items)[1]
        count = tf.cast(features[T.PROFILE_COUNT], tf.float32)[:, :width]
        event = tf.cast(features[T.PROFILE_EVENT], tf.int32)[:, :width]
        age = tf.cast(features[T.PROFILE_AGE], tf.float32)[:, :width]
        age_bucket = tf.cast(
            tf.minimum(
                tf.floor(tf.math.log(1.0 + tf.maximum(age, 0.0)) / np.log(2.0)),
                self._age_buckets - 1,
            ),
            tf.int32,
        )
        values = (
            tf.gather(self.weights_by_bucket, self._bucket_of_position[:width])[None, :]
            + self.weight_of_count * tf.math.log(tf.maximum(count, 1.0))
            + tf.gather(self.weights_by_event, tf.clip_by_value(event, 0, 2))
            + tf.gather(self.weights_by_age, age_bucket)
        )
        return tf.where(history_mask(items, self._item_rows), values, tf.zeros_like(values))

    @tf.autograph.experimental.do_not_convert  # plain TF ops (see TwoTowerModel.user_vectors)
    def matrix(self, features: dict[str, tf.Tensor], candidates: tf.Tensor) -> tf.Tensor:
        """[B, C] repeat term of every (user b, candidate c) pair (training, in-batch)."""
        return scatter_to_candidates(
            self.items(features), candidates, self.bonus(features), self._item_rows
        )


def _log2_bucket(values: np.ndarray, buckets: int) -> np.ndarray:
    return np.minimum(np.floor(np.log2(values + 1)), buckets - 1).astype(np.int32)


def sequence_width(sizes: FeatureSizes, config: ModelConfig) -> int:
    """How many items the user tower's encoder reads (``history_items``, 0: all there are)."""
    width = sizes.history_length if config.sequence == "events" else sizes.profile_length
    return min(config.history_items or width, width)


def profile_width(sizes: FeatureSizes, config: ModelConfig) -> int:
    """How many profile items the repeat term reads (``profile_items``, 0: all there are)."""
    return min(config.profile_items or sizes.profile_length, sizes.profile_length)


def scatter_to_candidates(
    history: tf.Tensor, candidates: tf.Tensor, values: tf.Tensor, item_rows: int
) -> tf.Tensor:
    """[B, C]: the sum of values[b, n] over history positions n whose item is candidate c.

    History items are matched to the distinct candidates by binary search: O(B * N * log C), not a
    [B, N, C] comparison.
    """
    history = tf.cast(history, tf.int32)
    candidates = tf.cast(candidates, tf.int32)
    distinct, column_of_candidate = tf.unique(candidates)
    order = tf.argsort(distinct)
    ordered = tf.gather(distinct, order)
    flat = tf.reshape(history, [-1])
    slot = tf.minimum(tf.searchsorted(ordered, flat), tf.size(ordered) - 1)
    mask = tf.reshape(history_mask(history, item_rows), [-1])
    hit = mask & tf.equal(tf.gather(ordered, slot), flat)
    rows = tf.repeat(tf.range(tf.shape(history)[0]), tf.shape(history)[1])
    indices = tf.stack(
        [tf.boolean_mask(rows, hit), tf.boolean_mask(tf.gather(order, slot), hit)], 1
    )
    by_distinct = tf.scatter_nd(
        indices,
        tf.boolean_mask(tf.reshape(tf.cast(values, tf.float32), [-1]), hit),
        tf.stack([tf.shape(history)[0], tf.size(distinct)]),
    )
    return tf.gather(by_distinct, column_of_candidate, axis=1)


# ---------------------------------------------------------------- the TFRS model


class TwoTowerModel(tfrs.Model):
    """The two-tower retrieval model (see the module docstring)."""

    def __init__(
        self,
        sizes: FeatureSizes,
        config: ModelConfig,
        candidate_probability: np.ndarray,
        item_table: dict[str, np.ndarray] | None = None,
    ):
        """Builds the model.

        Args:
          sizes: feature domains from the transform output.
          config: architecture settings.
          candidate_probability: [sizes.items] probability of each item index being an in-batch
            candidate (its share of the training targets), for the log-Q correction.
          item_table: item-side transformed features of every item index (row i = index i), the
            catalogue's; needed by ``negatives="history"`` to embed history items as candidates.

        Raises:
          ValueError: on sizes that disagree, or a missing item table.
        """
        super().__init__()
        if len(candidate_probability) != sizes.items:
            raise ValueError(
                f"candidate_probability has {len(candidate_probability)} entries; "
                f"the item table has {sizes.items} rows"
            )
        if config.negatives == "history" and item_table is None:
            raise ValueError("negatives='history' needs the item features by index (item_table)")
        if config.history_content and item_table is None:
            raise ValueError("history_content needs the item features by index (item_table)")
        self.sizes = sizes
        self.config = config
        self.item_embedding = CatchUpEmbedding(
            sizes.items,
            config.embedding_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(
                stddev=0.05, seed=config.seed
            ),
            name="item_embedding",
        )
        self.user_tower = UserTower(sizes, config, self.item_embedding)
        self.item_tower = ItemTower(
            sizes,
            config,
            self.item_embedding,
            log_prior(candidate_probability) if config.bias_prior else None,
        )
        self.repeat = RepeatTerm(
            profile_width(sizes, config), config.repeat_buckets, config.age_buckets, sizes.items
        )
        self._candidate_probability = tf.constant(candidate_probability, tf.float32)
        self._item_table = (
            {
                name: tf.Variable(item_table[name], trainable=False, name=f"table_{name}")
                for name in T.ITEM_OUTPUTS
            }
            if item_table is not None
            else None
        )
        if config.history_content:
            self.user_tower.attach_items(self.item_tower, self._item_table)
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True)

    # The towers, the repeat term and the history loss are plain TF ops under Python conditions on
    # settings, never on tensors: AutoGraph would only rewrite their source (and every Keras layer
    # and helper they call) into the same graph. Left unconverted, the fit's first step came 5.6 s
    # sooner (on a quarter of a RetailRocket train file), with the same losses (docs/benchmarks.md).
    # The retrieval task (TFRS's ``Retrieval.call`` needs AutoGraph) stays converted.
    @tf.autograph.experimental.do_not_convert
    def user_vectors(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """[B, dim + 1] query vectors."""
        return self.user_tower(features, training=training)

    @tf.autograph.experimental.do_not_convert
    def item_vectors(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """[B, dim + 1] candidate vectors."""
        return self.item_tower(features)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users = self.user_vectors(features, training=training)
        items = self.item_vectors(features)
        candidates = tf.cast(features[T.ITEM_INDEX], tf.int32)
        batch = tf.shape(items)[0]
        # Inclusion probability of an item among the batch's positives (log-Q correction).
        probability = tf.minimum(
            tf.gather(self._candidate_probability, candidates) * tf.cast(batch, tf.float32), 1.0
        )
        repeat = self.repeat.matrix(features, candidates)
        if self.config.negatives == "in_batch":
            # The repeat term enters the task's dot product: [u, R_i] . [v_j, e_j] = u.v_j + R_ij.
            one_hot = tf.eye(batch, dtype=items.dtype)
            return self.task(
                tf.concat([users, repeat], axis=1),
                tf.concat([items, one_hot], axis=1),
                candidate_sampling_probability=probability,
                candidate_ids=candidates,
                compute_metrics=False,
            )
        return self._history_softmax_loss(users, items, candidates, features, repeat, probability)

    @tf.autograph.experimental.do_not_convert
    def _history_softmax_loss(self, users, items, candidates, features, repeat, probability):
        """Softmax over the batch's positives (sampled, log-Q corrected) + the user's own history.

        Each user's own history items are always candidates, exactly (no correction, inclusion
        probability 1); a batch positive that is in the user's history is taken out of that row so
        that no item counts twice, as is a history copy of the row's own target. This is the
        competition that decides Recall@K: a seen item against everything else, which in-batch
        negatives alone almost never show the model, so the repeat weights stay near zero.
        """
        batch = tf.shape(items)[0]
        history = self.repeat.items(features)  # distinct items: each is its own first occurrence
        first = history_mask(history, self.sizes.items)
        bonus = self.repeat.bonus(features)
        in_history = (
            scatter_to_candidates(history, candidates, tf.cast(first, tf.float32), self.sizes.items)
            > 0
        )
        eye = tf.cast(tf.eye(batch), tf.bool)
        duplicate = tf.equal(candidates[:, None], candidates[None, :]) & ~eye
        scores = tf.matmul(users, items, transpose_b=True) + repeat
        scores = tfrs.layers.loss.SamplingProbablityCorrection()(scores, probability)
        scores = tf.where((in_history & ~eye) | duplicate, _MASKED, scores)

        vectors = item_vectors_by_index(self.item_tower, self._item_table, history)
        own = tf.einsum("bd,bnd->bn", users, vectors) + bonus
        own = tf.where(first & tf.not_equal(history, candidates[:, None]), own, _MASKED)

        logits = tf.concat([scores, own], axis=1)
        labels = tf.eye(batch, tf.shape(logits)[1])
        return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels, logits))

    def get_config(self) -> dict[str, Any]:
        return {"sizes": dataclasses.asdict(self.sizes), "config": dataclasses.asdict(self.config)}


# ---------------------------------------------------------------- helpers


def log_prior(probability: np.ndarray) -> np.ndarray:
    """The per-id item bias to start from: log of each item's share of the targets, centred.

    With the log-Q correction the logits estimate log P(item | user) up to a constant, so an
    item's popularity belongs in its bias. Learned from zero, a bias moves by about the learning
    rate per step and needs thousands of steps to span the few units between a popular and a rare
    item: on a small shop training stops long before. Started at the log prior, epoch 1 already
    ranks like popularity and the towers learn what the visitor adds. Items without a target get
    the smallest observed share; padding and the out-of-vocabulary row get 0.
    """
    probability = np.asarray(probability, np.float64)
    prior = np.zeros(probability.shape, np.float32)
    inner = probability[1:-1]
    if inner.size == 0 or not (inner > 0).any():
        return prior
    logs = np.log(np.maximum(inner, inner[inner > 0].min()))
    prior[1:-1] = logs - logs.mean()
    return prior


def item_vectors_by_index(
    item_tower: tf.keras.layers.Layer, table: dict[str, tf.Variable], index: tf.Tensor
) -> tf.Tensor:
    """[..., dim + 1] the item tower's vector of each item index of ``index`` (any shape).

    ``table`` holds the item-side features of every item index (row i = index i); each distinct
    index of ``index`` is run through the tower once.
    """
    distinct, position = tf.unique(tf.reshape(index, [-1]))
    rows = {name: tf.gather(values, distinct) for name, values in table.items()}
    vectors = tf.gather(item_tower(rows), position)
    shaped = tf.reshape(vectors, tf.concat([tf.shape(index), [-1]], 0))
    shaped.set_shape(index.shape.concatenate(vectors.shape[-1:]))
    return shaped


def history_mask(history: tf.Tensor, item_rows: int) -> tf.Tensor:
    """True at history positions holding a known item (not padding, not out-of-vocabulary)."""
    return (history > 0) & (history < item_rows - 1)


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    weights = tf.cast(mask, values.dtype)[:, :, None]
    return tf.reduce_sum(values * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1)


def _masked_softmax_pool(values: tf.Tensor, logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), -1e9))
    weights = tf.nn.softmax(logits, axis=1) * tf.cast(mask, values.dtype)
    return tf.einsum("bn,bnd->bd", weights, values)
