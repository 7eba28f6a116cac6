"""``retailrec recommend``: top-K items for a visitor from a pushed model, and TF Serving requests.

The visitor's state is the one the pipeline evaluates with: its train history frozen at the cutoff
(read from the export beside the serving folder). ``--history`` describes a visitor the model has
never seen. ``predict_request`` builds the gRPC ``PredictRequest`` TF Serving expects.

Exclusions (``--exclude``, ``--available-only``) go to the model's ``serving_filtered`` signature;
without them the request goes to ``serving_default``, which every pushed model has.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from modules import constants
from modules import features as F
from modules.errors import RetailrecError

SIGNATURE = "serving_default"
# modules.serving's FILTERED_SIGNATURE, EXCLUDE and AVAILABLE_ONLY (not imported: it loads
# tf.Transform, seconds of a one-shot command; recommend_test checks they agree).
FILTERED_SIGNATURE = "serving_filtered"
EXCLUDE = "exclude"
AVAILABLE_ONLY = "available_only"


def latest_version(model_dir: str) -> Path:
    """The highest numeric version under a TF Serving model folder (or the folder itself)."""
    base = Path(model_dir)
    if (base / "saved_model.pb").is_file():
        return base
    versions = sorted((p for p in base.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise RetailrecError(
            f"{model_dir}: no SavedModel version (expected <model>/<version>/saved_model.pb)"
        )
    return versions[-1]


def visitor_state(export_dir: str, visitor: int, history_length: int | None = None) -> dict:
    """The visitor's raw user features at the cutoff: the state the export gives its eval queries.

    It is computed from the export's train interactions by the export's own definition
    (``export.visitor_states``: the same event order, counters, history and profile).

    Args:
      export_dir: the export folder of the run that trained the model.
      visitor: the visitor id.
      history_length: items kept in the history (default: the export's ``--history-length``).

    Raises:
      RetailrecError: the visitor has no train event.
    """
    from components.export import export

    path = os.path.join(export_dir, F.TRAIN_SPLIT, F.INTERACTIONS_FILE)
    if not os.path.isfile(path):
        raise RetailrecError(f"{path}: missing; pass --export with the run's export folder")
    if history_length is None:
        summary_file = os.path.join(export_dir, F.EXPORT_SUMMARY_FILE)
        history_length = constants.HISTORY_LENGTH
        if os.path.isfile(summary_file):
            history_length = export.read_summary(export_dir)["params"]["history_length"]
    state = export.visitor_states(path, [visitor], history_length=history_length).get(visitor)
    if state is None:
        raise RetailrecError(
            f"visitor {visitor} has no train event in {path}; use --history ITEM,ITEM,... "
            "to recommend for a visitor the model has never seen"
        )
    return state


def history_state(visitor: int, items: list[int], now_ms: int) -> dict:
    """Raw user features of a visitor known only by recent items (most recent first, viewed now)."""
    distinct = list(dict.fromkeys(items))
    counts = {item: items.count(item) for item in distinct}
    sep = F.PROFILE_SEPARATOR
    return {
        F.VISITOR_ID: visitor,
        F.HISTORY: " ".join(map(str, items)),
        F.PROFILE: " ".join(
            f"{item}{sep}{counts[item]}{sep}{F.EVENT_TYPES[0]}{sep}{now_ms}" for item in distinct
        ),
        F.USER_VIEWS: len(items),
        F.USER_ADDTOCARTS: 0,
        F.USER_TRANSACTIONS: 0,
        F.USER_DISTINCT_ITEMS: len(set(items)),
        F.USER_LAST_TIMESTAMP: now_ms if items else 0,
    }


def exclusions(exclude: list[int] | None = None, available_only: bool = False) -> dict:
    """The ``serving_filtered`` inputs beyond the user state ({} when nothing is filtered)."""
    if not exclude and not available_only:
        return {}
    return {EXCLUDE: " ".join(map(str, exclude or [])), AVAILABLE_ONLY: int(bool(available_only))}


def recommend(
    model_dir: str,
    state: dict,
    k: int,
    now_ms: int | None = None,
    exclude: list[int] | None = None,
    available_only: bool = False,
) -> list[tuple[int, float]]:
    """Calls the pushed model like TF Serving would; returns (item, score), best first.

    Args:
      model_dir: a TF Serving model folder (its highest version) or a SavedModel folder.
      state: the raw user features (``visitor_state``, ``history_state``).
      k: items to return (at most the model's list length).
      now_ms: the request time (default: now).
      exclude: item ids never to return (e.g. the cart).
      available_only: drop the items that were unavailable at the cutoff.

    Raises:
      RetailrecError: exclusions were asked of a model without ``serving_filtered``.
    """
    import tensorflow as tf

    version = latest_version(model_dir)
    model = tf.saved_model.load(str(version))
    filters = exclusions(exclude, available_only)
    name = FILTERED_SIGNATURE if filters else SIGNATURE
    if name not in model.signatures:
        raise RetailrecError(
            f"{version}: the model has no '{name}' signature (pushed before exclusions were "
            f"served; retrain it); got {sorted(model.signatures)}"
        )
    fn = model.signatures[name]
    request = {**state, **filters, F.TIMESTAMP: now_ms or int(time.time() * 1000)}
    inputs = {
        name: tf.constant([request[name]], dtype=spec.dtype)
        for name, spec in fn.structured_input_signature[1].items()
    }
    out = fn(**inputs)
    ids, scores = out["item_ids"].numpy()[0], out["scores"].numpy()[0]
    # -1: a slot no eligible item fills (fewer than K eligible items in the catalogue).
    return [(int(i), float(s)) for i, s in zip(ids[:k], scores[:k], strict=True) if i >= 0]


def describe(export_dir: str, items: list[int]) -> dict[int, dict]:
    """Category, availability and the first numeric properties of items, from the catalogue."""
    path = os.path.join(export_dir, F.ITEMS_SPLIT, F.ITEMS_FILE)
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")  # a long scan draws one on stdout
        frame = con.execute(
            f"SELECT * FROM read_csv(?, header = true) WHERE {F.ITEM_ID} IN (SELECT unnest(?))",
            [path, items],
        ).fetchdf()
    finally:
        con.close()
    return {int(r[F.ITEM_ID]): r.to_dict() for _, r in frame.iterrows()}


def predict_request(
    state: dict,
    now_ms: int,
    model_name: str = "retailrec",
    exclude: list[int] | None = None,
    available_only: bool = False,
):
    """The gRPC ``PredictRequest`` for TF Serving (tensorflow-serving-api).

    It names ``serving_default``, or ``serving_filtered`` with ``exclude`` / ``available_only``.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    filters = exclusions(exclude, available_only)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = FILTERED_SIGNATURE if filters else SIGNATURE
    for name, value in {**state, **filters, F.TIMESTAMP: now_ms}.items():
        dtype = tf.string if name in (F.HISTORY, F.PROFILE, EXCLUDE) else tf.int64
        request.inputs[name].CopyFrom(tf.make_tensor_proto([value], dtype=dtype))
    return request
