"""TFDV's statistics of a finished run's train and eval splits, read the pipeline's way or Beam's.

Runs ``tfdv.GenerateStatistics`` over the train and eval splits of ``--pipeline-root``'s latest
CsvExampleGen output with the local Beam arguments (``--mode``, 2 workers), as the pipeline's
StatisticsGen does, once per ``--variants`` entry and ``--repeats`` times, interleaved:

* ``tfdata``: the pipeline's reader (``components.batched_reads.TFExampleFiles``: tf.data's C++
  reader, one file per worker, batches of 8,192);
* ``beam``: TFXIO's own ``TFExampleRecord`` source (Beam's Python TFRecord reader) in batches of
  8,192, the code before 2026-12-04.

Prints every wall time and each variant's example counts, and checks, feature by feature, that
the variants' statistics are equal, numbers to 9 significant digits (sums in another order). The
medians and histograms are left out: TFDV builds them from quantile sketches, which are
approximate and depend on the order in which the records' partial sketches are merged.

Usage::

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/bench_statistics.py \\
        --pipeline-root OUT/pipeline_root [--work /tmp/bench_statistics] [--repeats 2]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import apache_beam as beam  # noqa: E402
import tensorflow_data_validation as tfdv  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tfx_bsl.tfxio import tf_example_record  # noqa: E402

from components.batched_reads import executor as batched_reads  # noqa: E402
from modules import features as F  # noqa: E402
from pipeline import beam_patches, local_runner  # noqa: E402

VARIANTS = ("tfdata", "beam")
SPLITS = (F.TRAIN_SPLIT, F.EVAL_SPLIT)


def run_statistics(examples_uri: str, out: Path, variant: str, mode: str) -> float:
    """Seconds of one statistics pass over the train and eval splits, written under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    options = PipelineOptions(local_runner.beam_args(mode, 2))
    start = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        for split in SPLITS:
            tfxio = tf_example_record.TFExampleRecord(
                file_pattern=f"{examples_uri}/Split-{split}/*", telemetry_descriptors=["bench"]
            )
            source = (
                batched_reads.faster(tfxio)
                if variant == "tfdata"
                else batched_reads.BatchedTFXIO(tfxio)
            )
            _ = (
                pipeline
                | f"Read[{split}]" >> source.BeamSource()
                | f"Statistics[{split}]" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                | f"Write[{split}]" >> tfdv.WriteStatisticsToBinaryFile(str(out / f"{split}.pb"))
            )
    return time.perf_counter() - start


def _exact_parts(path: str) -> dict[str, str]:
    """Each feature's statistics without the sketched ones, as text, numbers to 9 digits."""
    features = {}
    for feature in tfdv.load_stats_binary(path).datasets[0].features:
        feature = type(feature).FromString(feature.SerializeToString())
        if feature.HasField("num_stats"):
            feature.num_stats.ClearField("median")
            feature.num_stats.ClearField("histograms")
        for part in ("num_stats", "string_stats", "bytes_stats", "struct_stats"):
            if feature.HasField(part):
                getattr(feature, part).common_stats.ClearField("num_values_histogram")
        text = text_format.MessageToString(feature)
        name = "/".join(feature.path.step) or feature.name
        features[name] = re.sub(r"-?\d+\.\d+(e[-+]?\d+)?", lambda m: f"{float(m[0]):.9g}", text)
    return features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--work", default="/tmp/bench_statistics")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mode", default="multi_processing")
    args = parser.parse_args(argv)

    beam_patches.apply()
    found = sorted(
        glob.glob(f"{args.pipeline_root}/CsvExampleGen/examples/*"), key=lambda p: int(Path(p).name)
    )
    if not found:
        raise SystemExit(f"no CsvExampleGen output under {args.pipeline_root}")
    work = Path(args.work)
    seconds: dict[str, list[float]] = {v: [] for v in args.variants}
    for repeat in range(args.repeats):
        for variant in args.variants:
            wall = run_statistics(found[-1], work / variant, variant, args.mode)
            seconds[variant].append(round(wall, 1))
            print(f"{variant}: run {repeat + 1}: {wall:.1f} s", flush=True)
    first, *others = args.variants
    for variant in args.variants:
        counts = {
            s: tfdv.load_stats_binary(str(work / variant / f"{s}.pb")).datasets[0].num_examples
            for s in SPLITS
        }
        print(f"{variant}: examples {counts}")
    for variant in others:
        for split in SPLITS:
            mine = _exact_parts(str(work / variant / f"{split}.pb"))
            theirs = _exact_parts(str(work / first / f"{split}.pb"))
            differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            verdict = f"DIFFERENT in {differ}" if differ else f"equal ({len(mine)} features)"
            print(
                f"{variant} vs {first}, {split}: statistics {verdict} (medians, histograms aside)"
            )
    for variant, runs in seconds.items():
        print(f"{variant}: median {statistics.median(runs):.1f} s of {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
