"""What ``available_only`` costs in Recall@50 (issue 16): eval queries with and without it.

A shop may not want to recommend items that are out of stock. ``serving_filtered`` with
``available_only`` = 1 drops the items whose catalogue ``available`` was 0 at the cutoff; an eval
target can be such an item (a visitor views or buys an item the property log last showed as
unavailable), and then the filtered list cannot hit it, while every other query's list gains
the items that moved up. This script scores every eval query of a finished run through the
model's ``serving_filtered`` signature twice (``available_only`` 0 and 1, nothing excluded) and
prints Recall@50 for both, with how many eval targets were unavailable at the cutoff.

The model is the run's Trainer model, found in ML Metadata (as ``bench_ablations.py`` finds it).
A model trained before ``serving_filtered`` existed lacks the signature; it is then wrapped in a
module with the same signature (``modules.serving``'s functions over the model's ``user_vectors``
and ``catalogue``, the availability aligned from the export's ``items.csv``), saved to a
temporary folder and loaded back. Nothing is written into the run's folder.

    python benchmarks/bench_available.py --output output/default [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tfx.utils import path_utils  # noqa: E402

from components import examples_io  # noqa: E402
from modules import columns as C  # noqa: E402
from modules import constants, serving  # noqa: E402
from modules import features as F  # noqa: E402
from pipeline import configs, local_runner  # noqa: E402
from reporting import results  # noqa: E402

K = 50


def _run_artifacts(output: str) -> tuple[str, str, str]:
    """(model dir, examples uri, export folder) of the latest run in ``output``."""
    where = local_runner.paths(output)
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    model = nodes["Trainer"].outputs["model"][0].uri
    examples = nodes["CsvExampleGen"].outputs["examples"][0].uri
    return path_utils.serving_model_path(model), examples, where["export"]


class _WithFiltered(tf.Module):
    """``serving_filtered`` over a brute-force model that predates it (same computation)."""

    def __init__(self, model, available: np.ndarray, k: int):
        super().__init__(name="with_serving_filtered")
        self.model = model
        catalogue = model.signatures[serving.CATALOGUE_SIGNATURE]()
        self.ids = tf.Variable(catalogue[serving.CATALOGUE_IDS], trainable=False)
        self.vectors = tf.Variable(catalogue[serving.CATALOGUE_VECTORS], trainable=False)
        self.available = tf.Variable(available.astype(np.int64), trainable=False)
        self.k = k

    @tf.function(
        input_signature=[
            {
                n: tf.TensorSpec([None], d, name=n)
                for n, d in serving.FILTERED_REQUEST_COLUMNS.items()
            }
        ]
    )
    def serve_filtered(self, request):
        user = {name: request[name] for name in serving.REQUEST_COLUMNS}
        out = self.model.signatures[serving.QUERY_SIGNATURE](**user)
        scores = tf.matmul(out["query"], self.vectors, transpose_b=True)
        scores = serving.add_repeat_bonus(scores, out["history_rows"], out["repeat_bonus"])
        excluded = serving.excluded_rows(request[serving.EXCLUDE], self.ids)
        only = tf.not_equal(request[serving.AVAILABLE_ONLY], 0)
        eligible = serving.eligible_mask(excluded, self.available, only)
        ids, scores = serving.filtered_top_k(scores, eligible, self.ids, self.k)
        return {serving.OUTPUT_ITEM_IDS: ids, serving.OUTPUT_SCORES: scores}


def _filtered_model(model_dir: str, export_dir: str, scratch: str):
    """(the loaded model with ``serving_filtered``, catalogue ids, their availability, how)."""
    model = tf.saved_model.load(model_dir)
    catalogue = model.signatures[serving.CATALOGUE_SIGNATURE]()
    ids = catalogue[serving.CATALOGUE_IDS].numpy()
    if serving.FILTERED_SIGNATURE in model.signatures:
        return model, ids, catalogue[serving.CATALOGUE_AVAILABLE].numpy(), "the model's own"
    items = C.read_csv_columns(os.path.join(export_dir, F.ITEMS_SPLIT, F.ITEMS_FILE))
    available = serving.align_availability(ids, items[F.ITEM_ID], items[F.AVAILABLE])
    k = int(
        model.signatures[serving.SERVING_SIGNATURE]
        .structured_outputs[serving.OUTPUT_ITEM_IDS]
        .shape[1]
    )
    module = _WithFiltered(model, available, k)
    path = os.path.join(scratch, "with_filtered")
    tf.saved_model.save(
        module,
        path,
        signatures={serving.FILTERED_SIGNATURE: module.serve_filtered.get_concrete_function()},
    )
    how = "added to a copy (the model predates it; items.csv availability)"
    return tf.saved_model.load(path), ids, available, how


def score(model, eval_files: list[str], batch_size: int = constants.EVAL_BATCH_SIZE) -> dict:
    """Each eval query's target, its availability at its event and both settings' top 50."""
    fn = model.signatures[serving.FILTERED_SIGNATURE]
    user_spec = {
        name: spec
        for name, spec in fn.structured_input_signature[1].items()
        if name in serving.REQUEST_COLUMNS
    }
    target_spec = {
        F.ITEM_ID: tf.io.FixedLenFeature([], tf.int64),
        # The target's availability as of its own event (after the cutoff), for comparison.
        F.AVAILABLE: tf.io.FixedLenFeature([], tf.int64, default_value=F.MISSING_ID),
    }
    out = {"targets": [], "available_at_event": [], 0: [], 1: []}
    dataset = tf.data.TFRecordDataset(eval_files, compression_type="GZIP").batch(batch_size)
    for records in dataset:
        user = serving.parse_user_columns(records, user_spec)
        target = tf.io.parse_example(records, target_spec)
        out["targets"].append(target[F.ITEM_ID].numpy())
        out["available_at_event"].append(target[F.AVAILABLE].numpy())
        n = tf.shape(records)[0]
        for only in (0, 1):
            answer = fn(
                **user,
                **{
                    serving.EXCLUDE: tf.fill([n], ""),
                    serving.AVAILABLE_ONLY: tf.fill([n], tf.constant(only, tf.int64)),
                },
            )
            out[only].append(answer[serving.OUTPUT_ITEM_IDS].numpy()[:, :K])
    return {key: np.concatenate(parts) for key, parts in out.items()}


def figures(lists: dict, ids: np.ndarray, available: np.ndarray) -> dict:
    """Recall@50 of both settings, overall and by the target's availability at the cutoff."""
    targets = lists["targets"]
    slot = np.clip(np.searchsorted(ids, targets), 0, len(ids) - 1)
    in_catalogue = ids[slot] == targets
    state = np.where(in_catalogue, available[slot], serving.UNKNOWN_AVAILABILITY)
    unavailable = in_catalogue & (state == serving.NOT_AVAILABLE)
    hits = {only: (lists[only] == targets[:, None]).any(axis=1) for only in (0, 1)}
    n = len(targets)
    row = {
        "queries": int(n),
        "targets_unavailable": int(unavailable.sum()),
        "targets_unknown": int((in_catalogue & (state == serving.UNKNOWN_AVAILABILITY)).sum()),
        "targets_not_in_catalogue": int((~in_catalogue).sum()),
        "targets_unavailable_at_their_event": int(
            (lists["available_at_event"] == serving.NOT_AVAILABLE).sum()
        ),
    }
    for only in (0, 1):
        name = "available_only" if only else "all_items"
        row[f"recall@50_{name}"] = float(hits[only].mean())
        row[f"recall@50_{name}_other_targets"] = float(hits[only][~unavailable].mean())
        row[f"recall@50_{name}_unavailable_targets"] = (
            float(hits[only][unavailable].mean()) if unavailable.any() else None
        )
    row["items_unavailable"] = int((available == serving.NOT_AVAILABLE).sum())
    row["items"] = int(len(ids))
    # Queries the filter changed: a hit lost (its target unavailable) or won (it moved up).
    row["hits_lost"] = int((hits[0] & ~hits[1]).sum())
    row["hits_won"] = int((~hits[0] & hits[1]).sum())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=configs.DEFAULT_OUTPUT_DIR, help="a finished run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    model_dir, examples, export_dir = _run_artifacts(args.output)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_available_") as scratch:
        model, ids, available, how = _filtered_model(model_dir, export_dir, scratch)
        lists = score(model, examples_io.split_files(examples, F.EVAL_SPLIT))
    row = figures(lists, ids, available) | {
        "model": model_dir,
        "signature": how,
        "seconds": round(time.perf_counter() - started, 1),
    }
    n, bad = row["queries"], row["targets_unavailable"]
    print(f"model {model_dir}\nserving_filtered: {how}")
    print(
        f"catalogue: {row['items']} items, {row['items_unavailable']} unavailable at the cutoff; "
        f"eval: {n} queries, {bad} targets unavailable at the cutoff ({bad / n:.1%}), "
        f"{row['targets_unknown']} unknown, {row['targets_not_in_catalogue']} not in the "
        f"catalogue ({row['targets_unavailable_at_their_event']} unavailable at their event time)"
    )
    # "other": every query whose target was not unavailable (available, unknown or not listed).
    print(f"{'setting':<22}{'R@50 all':>10}{'R@50 other targets':>21}{'R@50 unavail.':>15}")
    for name in ("all_items", "available_only"):
        unavail = row[f"recall@50_{name}_unavailable_targets"]
        print(
            f"{name:<22}{row[f'recall@50_{name}']:>10.4f}"
            f"{row[f'recall@50_{name}_other_targets']:>21.4f}"
            f"{'-' if unavail is None else f'{unavail:.4f}':>15}"
        )
    print(
        f"available_only: {row['hits_lost']} hits lost, {row['hits_won']} won; "
        f"{row['seconds']:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
