"""TFX's Transform executor alone, as the pipeline runs it, on a finished run's Examples and schema.

Runs the pipeline's Transform executor (``components.batched_reads``: TFX's own, reading through
tf.data; or TFX's as it is, see the variants) (analysis of the train split, nothing
materialised, no statistics: the pipeline's settings) with the local Beam arguments
(``--mode``, 2 workers), once per ``--variants`` entry and ``--repeats`` times, interleaved, each
into a fresh folder; prints every wall time and checks that every variant's transform graph gives
the first one's outputs on ``--rows`` train rows (the visitor index aside when only one variant
builds the visitor vocabulary).

Variants: ``default`` (this code: the pipeline's executor, ``components.batched_reads``, reading
through tf.data in batches of 8,192; no analyzer cache, no visitor vocabulary), ``cache`` (the
analyzer cache written, as TFX does by default), ``visitor`` (the visitor vocabulary built,
``use_visitor``), ``cache+visitor`` (the settings before 2026-12-03), ``beam-reader`` (the
default settings read by TFXIO's own Beam reader in batches of 8,192: the code before
2026-12-04) and ``stock-executor`` (TFX's executor as it is: Beam's reader and batches).

Usage::

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/bench_transform.py \\
        --pipeline-root OUT/pipeline_root --work /tmp/bench_transform \\
        [--variants default cache+visitor] [--repeats 2]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from tfx.components.transform import executor as transform_executor  # noqa: E402
from tfx.proto import transform_pb2  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402
from tfx.utils import proto_utils  # noqa: E402

from components.batched_reads import executor as batched_reads  # noqa: E402
from modules import features as F  # noqa: E402
from modules import transform as T  # noqa: E402
from pipeline import local_runner  # noqa: E402

VARIANTS = ("default", "cache", "visitor", "cache+visitor", "beam-reader", "stock-executor")
_STOCK_PROCESSOR = transform_executor.TransformProcessor  # before any swap


class _BeamReaderProcessor(batched_reads._BatchedTransformProcessor):  # noqa: SLF001
    """The pipeline's processor (batches of 8,192) with TFXIO's own Beam reader."""

    def _CreateTFXIO(self, dataset, schema):  # noqa: N802 (TFX's interface)
        return _STOCK_PROCESSOR._CreateTFXIO(self, dataset, schema)


class _BeamReaderExecutor(transform_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802
        with batched_reads._swapped(  # noqa: SLF001
            transform_executor, "TransformProcessor", _BeamReaderProcessor
        ):
            super().Do(input_dict, output_dict, exec_properties)


def _executor(variant: str):
    if variant == "stock-executor":
        return transform_executor.Executor
    if variant == "beam-reader":
        return _BeamReaderExecutor
    return batched_reads.TransformExecutor


def _latest(pattern: str) -> str:
    found = sorted(glob.glob(pattern), key=lambda p: int(Path(p).name))
    if not found:
        raise SystemExit(f"nothing matches {pattern}")
    return found[-1]


def run_transform(root: str, out: Path, variant: str, mode: str) -> float:
    """Seconds of one Transform execution of ``variant`` into ``out`` (emptied first)."""
    shutil.rmtree(out, ignore_errors=True)
    examples = standard_artifacts.Examples()
    examples.uri = _latest(f"{root}/CsvExampleGen/examples/*")
    examples.split_names = json.dumps([F.TRAIN_SPLIT, F.EVAL_SPLIT, F.ITEMS_SPLIT])
    schema = standard_artifacts.Schema()
    schema.uri = _latest(f"{root}/CurateSchema/schema/*")
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(out / "transform_graph")
    outputs = {"transform_graph": [graph]}
    cache = "cache" in variant
    if cache:
        updated = standard_artifacts.TransformCache()
        updated.uri = str(out / "updated_analyzer_cache")
        outputs["updated_analyzer_cache"] = [updated]
    for artifact in outputs.values():
        os.makedirs(artifact[0].uri)
    splits = transform_pb2.SplitsConfig(analyze=[F.TRAIN_SPLIT], transform=[])
    properties = {
        "preprocessing_fn": f"{T.__name__}.preprocessing_fn",
        "custom_config": json.dumps({"use_visitor": "visitor" in variant}),
        "splits_config": proto_utils.proto_to_json(splits),
        "disable_statistics": 1,
        "force_tf_compat_v1": 0,
        "disable_analyzer_cache": int(not cache),
    }
    context = transform_executor.base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=local_runner.beam_args(mode, 2), tmp_dir=str(out / "tmp")
    )
    start = time.perf_counter()
    _executor(variant)(context).Do(
        {"examples": [examples], "schema": [schema]}, outputs, properties
    )
    return time.perf_counter() - start


def transformed(graph_dir: Path, records: tf.Tensor) -> dict[str, np.ndarray]:
    output = tft.TFTransformOutput(str(graph_dir))
    parsed = tf.io.parse_example(records, output.raw_feature_spec())
    out = output.transform_raw_features(parsed)
    return {
        name: (value.to_dense() if isinstance(value, tf.SparseTensor) else value).numpy()
        for name, value in out.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--work", default="/tmp/bench_transform")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mode", default="multi_processing")
    parser.add_argument("--rows", type=int, default=4096, help="train rows compared")
    parser.add_argument("--json", help="write the timings here")
    args = parser.parse_args(argv)

    work = Path(args.work)
    seconds: dict[str, list[float]] = {v: [] for v in args.variants}
    for repeat in range(args.repeats):
        for variant in args.variants:
            wall = run_transform(args.pipeline_root, work / variant, variant, args.mode)
            seconds[variant].append(round(wall, 1))
            print(f"{variant}: run {repeat + 1}: {wall:.1f} s", flush=True)

    files = sorted(
        glob.glob(
            f"{_latest(args.pipeline_root + '/CsvExampleGen/examples/*')}/Split-{F.TRAIN_SPLIT}/*"
        )
    )
    records = next(
        iter(tf.data.TFRecordDataset(files[:1], compression_type="GZIP").batch(args.rows))
    )
    first, *others = args.variants
    reference = transformed(work / first / "transform_graph", records)
    for variant in others:
        outputs = transformed(work / variant / "transform_graph", records)
        differing = sorted(n for n in reference if not np.array_equal(reference[n], outputs[n]))
        expected = [] if ("visitor" in first) == ("visitor" in variant) else [T.VISITOR_INDEX]
        verdict = "as expected" if differing == expected else "UNEXPECTED"
        print(f"{variant} vs {first}: {len(reference)} outputs, differing {differing} ({verdict})")
    for variant, runs in seconds.items():
        print(f"{variant}: median {statistics.median(runs):.1f} s of {runs}")
    if args.json:
        Path(args.json).write_text(json.dumps(seconds, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
