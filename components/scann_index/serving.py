"""The ScaNN serving SavedModel, built from the brute-force one (DESIGN section 7).

The brute-force model (``modules.serving``) scores the whole catalogue; this one answers the same
requests from a ScaNN index over the same item vectors. It wraps the loaded brute-force model and
uses two of its signatures, so the Transform graph and the towers are not rebuilt:

* ``user_vectors``: raw user columns -> ``query`` [B, d + 1], ``history_rows`` [B, N] (catalogue
  row of each history item, -1 for none) and ``repeat_bonus`` [B, N];
* ``catalogue``: ``item_ids`` [M] and ``item_vectors`` [M, d + 1], the index's vectors.

score(user, item) = query . item_vector + the summed repeat bonus of the item's history positions,
as the brute-force model computes it. A request is answered by

1. retrieving the K + W best rows by dot product from the index, W the batch's history width:
   its last filled position (at most N, the history length; `trim_history`). At most W of them
   are history items, so at least K are not, and no other item outside them scores more;
2. adding the history rows to those candidates, each distinct row once;
3. scoring every candidate exactly (query . vector + its repeat bonus), so the scores are the
   brute-force model's and not the index's quantised ones (`merge_candidates`);
4. cutting to K, best first, equal scores to the lower catalogue row (the brute-force tie rule).

The index is built with a pinned seed and a fixed number of training threads, and the placeholders
ScaNN leaves uninitialised are zeroed, so the same vectors and configuration give the same
variables, byte for byte.

With an exact index configuration (``index.exact_config()``) the lists equal the brute-force
model's. Signatures: ``serving_default`` and ``serve_tf_examples`` with exactly the brute-force
model's inputs and outputs, plus ``user_vectors`` and ``catalogue`` passed through, and, when the
brute-force model has it, ``serving_filtered`` (``exclude``, ``available_only``; the catalogue's
``available`` comes from the ``catalogue`` signature).

``serving_filtered`` asks the index for more candidates, since excluded and unavailable ones are
dropped after the search: C = serving_default's candidates (max(K, eval K) + W) + E (E: the
batch's largest number of excluded ids), times M / (available items) when a request of the batch
sets ``available_only``; a batch with no exclusion searches as ``serving_default`` does and gets
its lists. While some request of the batch has fewer than K eligible candidates (the index found
too few, or a tree's searched leaves held too few eligible items), C and the leaves searched are
doubled and the search repeated, up to every item and every leaf. Guarantee: K items come back,
every one eligible (not excluded; available when ``available_only``), whenever the catalogue has
K eligible items; they are the K best eligible candidates by exact score, so with
``index.exact_config()`` they are the brute-force model's ``serving_filtered`` list; with fewer
eligible items than K the rest is -1 and -inf. The cost is one search in the common case, at most
log2 of max(M / C, leaves / leaves searched) more.

The model needs the ScaNN ops at load time (``import scann``, or the ScaNN-enabled TF Serving
image) and is saved with ``SaveOptions(namespace_whitelist=["Scann"])``.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import tensorflow as tf

from components import examples_io
from components.scann_index import index
from modules import columns, constants, serving

SAVE_OPTIONS_NAMESPACES = ["Scann"]


def _scann_ops():
    from scann.scann_ops.py import scann_ops

    return scann_ops


def load_brute_force(brute_force_dir: str) -> Any:
    """Loads the brute-force SavedModel and checks it has the signatures this module needs.

    Raises:
      ValueError: a signature is missing (names the directory and what it has).
    """
    model = tf.saved_model.load(brute_force_dir)
    needed = (
        serving.SERVING_SIGNATURE,
        serving.EVAL_SIGNATURE,
        serving.QUERY_SIGNATURE,
        serving.CATALOGUE_SIGNATURE,
    )
    missing = [name for name in needed if name not in model.signatures]
    if missing:
        raise ValueError(
            f"{brute_force_dir}: the brute-force model has no signature {missing}; "
            f"got {sorted(model.signatures)}"
        )
    return model


def served_config(config: dict[str, Any], n_candidates: int) -> dict[str, Any]:
    """The configuration as served: reordering covers the K + N candidates a request asks for."""
    out = dict(config)
    if int(out["reorder"]) > 0:
        out["reorder"] = max(int(out["reorder"]), int(n_candidates))
    return out


class ScannServingModule(tf.Module):
    """The brute-force model's query side + a ScaNN index + exact re-scoring of the candidates."""

    def __init__(
        self,
        brute_force: Any,
        config: dict[str, Any],
        k: int | None = None,
        training_threads: int = constants.SCANN_THREADS,
    ):
        """Builds the index over the brute-force model's catalogue.

        Args:
          brute_force: the loaded brute-force SavedModel (`load_brute_force`).
          config: an index configuration (``components.scann_index.index``).
          k: list length of ``serving_default``; default (and at most) the brute-force model's.
          training_threads: ScaNN's training threads (a fixed number: the index is the same for
            any, but the build should not depend on the machine's core count).
        """
        super().__init__(name="retailrec_two_tower_scann")
        self.brute_force = brute_force
        serve = brute_force.signatures[serving.SERVING_SIGNATURE]
        evaluate = brute_force.signatures[serving.EVAL_SIGNATURE]
        query = brute_force.signatures[serving.QUERY_SIGNATURE]
        self._request_spec = dict(serve.structured_input_signature[1])
        self._examples_spec = dict(evaluate.structured_input_signature[1])
        self._query_spec = dict(query.structured_input_signature[1])
        catalogue = brute_force.signatures[serving.CATALOGUE_SIGNATURE]()
        vectors = catalogue["item_vectors"].numpy().astype(np.float32)
        self.n_items = int(vectors.shape[0])
        self.history_length = int(query.structured_outputs["history_rows"].shape[1])
        bf_k = int(serve.structured_outputs[serving.OUTPUT_ITEM_IDS].shape[1])
        self.k = bf_k if k is None else min(int(k), self.n_items)
        self.eval_k = int(evaluate.structured_outputs[serving.OUTPUT_CLASSES].shape[1])
        # The index's candidates for the longest history (``served_config``'s reordering covers
        # them); a batch asks for max(K, eval K) + its own history width (`_search`).
        self.base_candidates = max(self.k, self.eval_k)
        self.n_candidates = min(self.base_candidates + self.history_length, self.n_items)
        self.config = served_config(config, self.n_candidates)
        scann_ops = _scann_ops()
        text = index.scann_config(vectors, self.config, self.n_candidates, scann_ops)
        searcher = scann_ops.create_searcher(
            vectors, text, training_threads, shared_name=f"retailrec_scann/{uuid.uuid4()}"
        )
        self.searcher = searcher.serialize_to_module()
        _zero_absent_parts(self.searcher)

        self.filtered = serving.FILTERED_SIGNATURE in brute_force.signatures
        # The tree's leaves as built (``index.scann_config`` caps them at M); 0: no tree.
        leaves = min(int(self.config["num_leaves"]), self.n_items)
        self.num_leaves = leaves if leaves > 1 else 0
        self.leaves_to_search = min(int(self.config["leaves_to_search"]), self.num_leaves)
        if self.filtered:
            if serving.CATALOGUE_AVAILABLE not in catalogue:
                raise ValueError(
                    f"the brute-force model has {serving.FILTERED_SIGNATURE} but its catalogue "
                    f"signature has no '{serving.CATALOGUE_AVAILABLE}'; got {sorted(catalogue)}"
                )
            filtered = brute_force.signatures[serving.FILTERED_SIGNATURE]
            self._filtered_spec = dict(filtered.structured_input_signature[1])
            available = catalogue[serving.CATALOGUE_AVAILABLE].numpy()
            self.n_available = int((available != serving.NOT_AVAILABLE).sum())
            self.serve_filtered = tf.function(
                self._serve_filtered, input_signature=[self._filtered_spec]
            )

        self.serve = tf.function(self._serve, input_signature=[self._request_spec])
        self.serve_examples = tf.function(
            self._serve_examples, input_signature=[self._examples_spec]
        )
        self.user_vectors = tf.function(self._user_vectors, input_signature=[self._query_spec])
        self.catalogue = tf.function(self._catalogue, input_signature=[])

    # ---- signatures
    def _serve(self, request):
        rows, scores = self._search_request(request, self.k)
        return self._outputs(rows, scores, serving.OUTPUT_ITEM_IDS)

    def _serve_filtered(self, request):
        user = {name: request[name] for name in self._query_spec}
        out = self.brute_force.signatures[serving.QUERY_SIGNATURE](**user)
        catalogue = self._catalogue()
        excluded = serving.excluded_rows(request[serving.EXCLUDE], catalogue[serving.CATALOGUE_IDS])
        only = tf.not_equal(request[serving.AVAILABLE_ONLY], 0)
        available = catalogue[serving.CATALOGUE_AVAILABLE]

        def keep(rows):
            return serving.eligible_rows(rows, excluded, available, only)

        rows, scores = self._search_until_full(
            out["query"], out["history_rows"], out["repeat_bonus"], excluded, only, keep
        )
        return self._outputs(rows, scores, serving.OUTPUT_ITEM_IDS)

    def _search_until_full(self, query, history_rows, repeat_bonus, excluded, only, keep):
        """The K best eligible candidates; more candidates and leaves until K are eligible."""
        k, n_items = self.k, self.n_items
        history_rows, repeat_bonus, width = trim_history(
            history_rows, repeat_bonus, self._least_width(k)
        )
        # serving_default's search plus one candidate per excluded item: with no exclusion it is
        # the same search, so the same list.
        wanted = (
            tf.cast(self.base_candidates + width, tf.int64)
            + tf.shape(excluded, out_type=tf.int64)[1]
        )
        # Unavailable items are dropped after the search: ask for M / available times as many.
        n_available = max(self.n_available, 1)
        scaled = (wanted * n_items + n_available - 1) // n_available
        size = tf.minimum(tf.where(tf.reduce_any(only), scaled, wanted), n_items)
        size = tf.cast(size, tf.int32)
        leaves = tf.constant(self.leaves_to_search if self.num_leaves else -1, tf.int32)
        rows, scores = self._search(query, history_rows, repeat_bonus, k, size, leaves, keep)

        def short(rows, size, leaves):
            whole = (size >= n_items) & ((leaves < 0) | (leaves >= self.num_leaves))
            return tf.reduce_any(rows < 0) & tf.logical_not(whole)

        def wider(rows, scores, size, leaves):
            size = tf.minimum(2 * size, n_items)
            leaves = tf.where(leaves < 0, leaves, tf.minimum(2 * leaves, self.num_leaves))
            rows, scores = self._search(query, history_rows, repeat_bonus, k, size, leaves, keep)
            return rows, scores, size, leaves

        rows, scores, _, _ = tf.while_loop(
            lambda rows, scores, size, leaves: short(rows, size, leaves),
            wider,
            (rows, scores, size, leaves),
        )
        return rows, scores

    def _serve_examples(self, request):
        raw = serving.parse_user_columns(request["examples"], self._query_spec)
        rows, scores = self._search_request(raw, self.eval_k)
        return self._outputs(rows, scores, serving.OUTPUT_CLASSES)

    def _user_vectors(self, request):
        return self.brute_force.signatures[serving.QUERY_SIGNATURE](**request)

    def _catalogue(self):
        return self.brute_force.signatures[serving.CATALOGUE_SIGNATURE]()

    # ---- the search
    def _search_request(self, request, k: int):
        out = self.brute_force.signatures[serving.QUERY_SIGNATURE](**request)
        history_rows, repeat_bonus, width = trim_history(
            out["history_rows"], out["repeat_bonus"], self._least_width(k)
        )
        size = tf.minimum(self.base_candidates + width, self.n_items)
        return self._search(out["query"], history_rows, repeat_bonus, k, size)

    def _least_width(self, k: int) -> int:
        """The narrowest history the merge may get: candidates + history hold at least the
        min(k, M + N) columns the lists have whatever the batch (only a catalogue smaller than
        k needs more than 1)."""
        least = min(k, self.n_items + self.history_length) - min(self.base_candidates, self.n_items)
        return min(self.history_length, max(1, least))

    def _search(self, query, history_rows, repeat_bonus, k: int, size, leaves=None, keep=None):
        """``merge_candidates`` of ``size`` index results and the history (trimmed by the caller).

        ``leaves``: leaves searched (default the configuration's); ``keep``: eligibility of rows.
        """
        scann_ops = _scann_ops()
        searcher = scann_ops.searcher_from_module(self.searcher)
        k = min(k, self.n_items + self.history_length)
        if leaves is None:
            found = searcher.search_batched_parallel(query, final_num_neighbors=size)
        else:
            # Exact re-scoring of at least every returned candidate, as served_config sets it.
            reorder = int(self.config["reorder"])
            found = searcher.search_batched_parallel(
                query,
                final_num_neighbors=size,
                pre_reorder_num_neighbors=tf.maximum(size, reorder) if reorder > 0 else size,
                leaves_to_search=leaves,
            )
        return merge_candidates(
            query,
            self._catalogue()[serving.CATALOGUE_VECTORS],
            tf.cast(found.indices, tf.int64),
            tf.logical_not(tf.math.is_nan(found.distances)),
            history_rows,
            repeat_bonus,
            k,
            keep,
        )

    def _outputs(self, rows, scores, ids_name: str):
        ids = tf.gather(self._catalogue()[serving.CATALOGUE_IDS], tf.maximum(rows, 0))
        ids = tf.where(rows >= 0, ids, tf.constant(-1, tf.int64))
        return {ids_name: ids, serving.OUTPUT_SCORES: scores}


def _zero_absent_parts(state: tf.Module) -> None:
    """Sets the placeholders of absent parts of a serialized searcher to 0, in place.

    ``scann_to_tensors`` marks a part the searcher does not have (e.g. the int8 dataset of an AH
    index) with a rank-0 tensor it never initialises, and ``tensors_to_scann`` ignores rank-0
    inputs whatever their value. Left as they are, those scalars hold whatever memory they got,
    so two exports of the same index differ in their variables' bytes.
    """
    for variable in state.variables:
        if variable.dtype != tf.string and int(tf.rank(variable)) == 0:
            variable.assign(tf.zeros([], variable.dtype))


def query_vectors(
    brute_force: Any, files: list[str], max_queries: int, seed: int, batch_size: int = 2048
) -> tuple[np.ndarray, list[bytes]]:
    """User query vectors of eval examples, and the first serialized examples.

    Args:
      brute_force: the loaded brute-force model.
      files: gzipped TFRecord files of serialized tf.Examples with the raw user columns.
      max_queries: how many query vectors to return (a seeded sample when there are more).
      seed: the sample's seed.
      batch_size: examples per ``user_vectors`` call.

    Returns:
      (float32 [n, d + 1] query vectors, the first ``max_queries`` serialized examples).

    Raises:
      ValueError: the files hold no example.
    """
    signature = brute_force.signatures[serving.QUERY_SIGNATURE]
    spec = dict(signature.structured_input_signature[1])
    # Two passes over the files (count, then keep the sample), not every record held in memory.
    n_records = examples_io.count_file_records(files)
    if not n_records:
        raise ValueError(f"{files}: no eval example to take queries from")
    pick = np.arange(n_records)
    if n_records > max_queries:
        pick = np.sort(np.random.default_rng(seed).choice(n_records, max_queries, replace=False))
    # Only the sampled queries go through the user tower (at RetailRocket scale 2,000 of 207,677).
    sampled, first, start = [], [], 0
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size)
    for batch in columns.without_autotune(dataset).as_numpy_iterator():
        rows = pick[(pick >= start) & (pick < start + len(batch))] - start
        sampled.extend(batch[rows].tolist())
        first.extend(batch[: max_queries - len(first)].tolist())
        start += len(batch)
    parts = [
        signature(**serving.parse_user_columns(tf.constant(sampled[at : at + batch_size]), spec))[
            "query"
        ].numpy()
        for at in range(0, len(sampled), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32), first


def trim_history(history_rows, repeat_bonus, least: int = 1):
    """The history cut after the batch's last filled position: (rows, bonus, width W).

    The query signature pads every profile to N positions (500 by default), but at RetailRocket
    scale a profile holds 5 items at the median: merging N columns per request, and asking the
    index for N more candidates, cost most of the ScaNN model's time. The columns cut hold no
    row (-1) in any request, so the lists are the same. W is at least ``least`` (and at most N).
    """
    n = tf.shape(history_rows)[1]
    filled = tf.where(
        history_rows >= 0, tf.range(1, n + 1)[None, :], tf.zeros_like(history_rows, tf.int32)
    )
    width = tf.minimum(tf.maximum(tf.reduce_max(filled), least), n)
    return history_rows[:, :width], repeat_bonus[:, :width], width


def merge_candidates(
    query, vectors, ann_rows, ann_valid, history_rows, repeat_bonus, k: int, keep=None
):
    """Exact scores of the ANN candidates and the history items; the top k, ties to the lower row.

    Every candidate (index result or history item) is scored as the brute-force model scores it:
    query . vector plus the summed repeat bonus of the history positions holding its row (what
    ``modules.serving`` adds with ``tf.tensor_scatter_nd_add``, ``modules.ranking.add_repeat_bonus``
    in numpy). The candidates are then sorted by row, which drops duplicates (an item both found
    and in the history, or twice in the history) and makes ``tf.math.top_k``, which keeps equal
    values in index order, give equal scores to the lower row.

    Args:
      query: float [B, D] query vectors.
      vectors: float [M, D] catalogue vectors.
      ann_rows: int64 [B, C] rows the index returned.
      ann_valid: bool [B, C] which of them are real (ScaNN pads short results).
      history_rows: int64 [B, N] catalogue rows of the history items, -1 for none.
      repeat_bonus: float [B, N] bonus of each history position.
      k: list length.
      keep: None, or a function of rows int64 [B, C] -> bool [B, C], the candidates a request
        may get (``serving_filtered``'s exclusions); the others are dropped before the cut.

    Returns:
      (rows int64 [B, k], scores float32 [B, k]); -1 and -inf where fewer than k candidates.
    """
    in_history = history_rows >= 0
    rows = tf.concat([ann_rows, history_rows], axis=1)
    valid = tf.concat([ann_valid, in_history], axis=1)
    bonus = _summed_bonus(rows, history_rows, repeat_bonus)
    # Sort by row (invalid slots last), then keep the first of each run of equal rows.
    last = tf.constant(np.iinfo(np.int64).max, tf.int64)
    keyed = tf.where(valid, rows, last)
    order = tf.argsort(keyed, axis=1, stable=True)
    rows = tf.gather(keyed, order, batch_dims=1)
    repeated = tf.pad(tf.equal(rows[:, 1:], rows[:, :-1]), [[0, 0], [1, 0]])
    valid = tf.not_equal(rows, last) & tf.logical_not(repeated)
    if keep is not None:
        valid &= keep(tf.where(valid, rows, -tf.ones_like(rows)))
    safe = tf.where(valid, rows, tf.zeros_like(rows))
    scores = tf.einsum("bd,bcd->bc", query, tf.gather(vectors, safe))
    scores = scores + tf.gather(bonus, order, batch_dims=1)
    scores = tf.where(valid, scores, tf.fill(tf.shape(scores), -np.inf))
    rows = tf.where(valid, rows, -tf.ones_like(rows))
    width = scores.shape[1]
    best = tf.math.top_k(scores, k=k if width is None else min(k, width))
    return tf.gather(rows, best.indices, batch_dims=1), best.values


def _summed_bonus(rows, history_rows, repeat_bonus):
    """[B, C]: the summed repeat bonus of the history positions holding each candidate row.

    By binary search in each query's sorted history rows: O(B x (C + N) log N) time and [B, C]
    memory, where comparing every candidate with every position would take [B, C, N] (gigabytes
    for a 500-item profile). A row held once (every row of a profile) gets its bonus exactly; a
    row held at several positions (a history with repeats) the difference of running sums.
    """
    biggest = tf.constant(np.iinfo(np.int64).max, tf.int64)
    keyed = tf.where(history_rows >= 0, history_rows, biggest)
    order = tf.argsort(keyed, axis=1, stable=True)
    held = tf.gather(keyed, order, batch_dims=1)
    values = tf.gather(tf.where(history_rows >= 0, repeat_bonus, 0.0), order, batch_dims=1)
    running = tf.pad(tf.cumsum(values, axis=1), [[0, 0], [1, 0]])
    lo = tf.searchsorted(held, rows, side="left")
    hi = tf.searchsorted(held, rows, side="right")
    once = tf.gather(values, tf.minimum(lo, tf.shape(values)[1] - 1), batch_dims=1)
    several = tf.gather(running, hi, batch_dims=1) - tf.gather(running, lo, batch_dims=1)
    bonus = tf.where(hi - lo == 1, once, several)
    return tf.where(hi > lo, bonus, tf.zeros_like(bonus))


def export_scann_model(
    brute_force_dir: str,
    out_dir: str,
    config: dict[str, Any],
    k: int | None = None,
    training_threads: int = constants.SCANN_THREADS,
) -> str:
    """Writes the ScaNN serving SavedModel (``out_dir`` is the SavedModel folder).

    Args:
      brute_force_dir: the brute-force SavedModel (``modules.serving.export``'s output).
      out_dir: where to save (e.g. a Model artifact's ``serving_model_dir``).
      config: the index configuration (``index.tune``'s choice, or ``index.exact_config()``).
      k: list length of ``serving_default``; default the brute-force model's.
      training_threads: ScaNN's training threads.

    Returns:
      ``out_dir``.
    """
    module = ScannServingModule(load_brute_force(brute_force_dir), config, k, training_threads)
    signatures = {
        serving.SERVING_SIGNATURE: module.serve.get_concrete_function(),
        serving.EVAL_SIGNATURE: module.serve_examples.get_concrete_function(),
        serving.QUERY_SIGNATURE: module.user_vectors.get_concrete_function(),
        serving.CATALOGUE_SIGNATURE: module.catalogue.get_concrete_function(),
    }
    if module.filtered:
        signatures[serving.FILTERED_SIGNATURE] = module.serve_filtered.get_concrete_function()
    tf.saved_model.save(
        module,
        out_dir,
        signatures=signatures,
        options=tf.saved_model.SaveOptions(namespace_whitelist=SAVE_OPTIONS_NAMESPACES),
    )
    return out_dir


def load(model_dir: str) -> Any:
    """Loads a ScaNN serving SavedModel (registers the ScaNN ops first)."""
    _scann_ops()
    return tf.saved_model.load(model_dir)
