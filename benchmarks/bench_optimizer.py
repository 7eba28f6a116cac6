"""One optimiser step on an item-embedding table: Keras's Adam vs `modules.optimizer.CatchUpAdam`.

The two-tower's training step looks up a batch of ``--batch`` examples x (``--history`` history
items + 1 candidate) in an item table of ``--rows`` x ``--dim`` (398,546 x 64 at RetailRocket
scale) and updates it. Keras's Adam updates every row at every step; `CatchUpAdam` only the rows
the batch names (brought up to date before the batch reads them, as `CatchUpEmbedding` does, and
updated after). Prints the median milliseconds per step of
``--repeats`` timings of ``--steps`` steps each, per optimiser and table size.

Usage::

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/bench_optimizer.py [--rows 10000 398546]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from modules.optimizer import CatchUpAdam  # noqa: E402

OPTIMIZERS = {
    "adam": tf.keras.optimizers.Adam,
    "catch_up_adam": lambda learning_rate: CatchUpAdam(learning_rate, min_rows=0),
}


def milliseconds_per_step(name: str, rows: int, args: argparse.Namespace) -> float:
    table = tf.Variable(np.random.default_rng(0).normal(size=(rows, args.dim)).astype(np.float32))
    optimizer = OPTIMIZERS[name](learning_rate=0.003)
    lookups = np.random.default_rng(1).integers(0, rows, (args.batch, args.history + 1))
    lookups = tf.constant(lookups, tf.int32)

    optimizer.build([table])

    @tf.function
    def step():
        if isinstance(
            optimizer, CatchUpAdam
        ):  # every table size here; as CatchUpEmbedding does before a batch reads
            optimizer.catch_up_rows(table, lookups)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table, lookups)))
        optimizer.apply_gradients([(tape.gradient(loss, table), table)])

    step()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        times.append((time.perf_counter() - started) / args.steps * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 38_259, 398_546])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    figures = []
    for rows in args.rows:
        for name in OPTIMIZERS:
            ms = milliseconds_per_step(name, rows, args)
            figures.append({"rows": rows, "optimizer": name, "ms_per_step": round(ms, 1)})
            print(f"{rows:>9,} rows  {name:<14} {ms:7.1f} ms/step", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
