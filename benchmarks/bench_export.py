"""Export time and peak memory on a raw folder (default: the full-scale generated data).

Each repeat runs ``retailrec export`` in a fresh process into a new folder; the figures are the
wall time and the peak RSS of that process (``ru_maxrss`` of the child). Prints one line per repeat
and the medians, as quoted in docs/benchmarks.md.

    python benchmarks/bench_export.py --raw /tmp/rr_full [--repeats 3] [--generate full]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _one(raw: str, out: str, extra: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "export", "--raw", raw, "--out", out, *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: run repeats largest-last safe.
    return seconds, max(peak, before) / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default="/tmp/rr_full")
    parser.add_argument("--generate", help="generate this preset into --raw first if absent")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the exports (default: a temp dir)")
    args, extra = parser.parse_known_args()
    if args.generate and not Path(args.raw, "events.csv").exists():
        from data import generator

        generator.generate(args.raw, preset=args.generate)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_export_"))
    times, peaks = [], []
    summary = None
    for i in range(args.repeats):
        out = work / f"export_{i}"
        shutil.rmtree(out, ignore_errors=True)
        seconds, peak_gib = _one(args.raw, str(out), extra)
        times.append(seconds)
        peaks.append(peak_gib)
        summary = json.loads((out / "export_summary.json").read_text())
        print(f"repeat {i + 1}: {seconds:7.1f} s, peak RSS {peak_gib:5.2f} GiB", flush=True)
        if i < args.repeats - 1:
            shutil.rmtree(out, ignore_errors=True)
    sp = summary["split"]
    print(
        json.dumps(
            {
                "raw": args.raw,
                "events_read": summary["events"]["rows_read"],
                "property_rows_read": summary["properties"]["rows_read"],
                "n_train": sp["n_train"],
                "n_eval_queries": sp["n_eval_queries"],
                "n_items": sp["n_items"],
                "median_seconds": round(statistics.median(times), 1),
                "median_peak_rss_gib": round(statistics.median(peaks), 2),
                "cpus": os.cpu_count(),
                "output_bytes": sum(
                    f.stat().st_size for f in (work / f"export_{args.repeats - 1}").rglob("*")
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
