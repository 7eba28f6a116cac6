"""The whole ``retailrec run``, raw files to pushed models, timed and counted (issue 12).

Runs the CLI exactly as a user would (a fresh process, a fresh output folder unless ``--output``
is given), samples the resident memory of its whole process tree (Beam workers included) every
half second, and reads what the run wrote: per-component wall time and peak memory, every model's
Recall@50, the blessing, and the row counts at every boundary. Fails (exit 1) when any count
differs from the export's, so a figure is only reported for a run that lost nothing.

    python benchmarks/bench_run.py --raw /tmp/rr_full [--repeats 1] [-- --beam-mode in_memory]

Prints one JSON object per run and a summary table; ``--json FILE`` keeps them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
_PROGRESS = re.compile(r"^\[pipeline\] (\S+)\s+(running \.\.\.|done in\s+([\d.]+) s)")


class TreeMemory(threading.Thread):
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, period_s: float = 0.5):
        super().__init__(daemon=True)
        self._root = psutil.Process(pid)
        self._period = period_s
        self._stop = threading.Event()
        self.peak_bytes = 0
        self.current: str | None = None  # the component running now (set by the reader)
        self.peak_by_component: dict[str, int] = {}

    def sample(self) -> int:
        total = 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def run(self) -> None:
        while not self._stop.wait(self._period):
            rss = self.sample()
            self.peak_bytes = max(self.peak_bytes, rss)
            key = self.current or "export"
            self.peak_by_component[key] = max(self.peak_by_component.get(key, 0), rss)

    def stop(self) -> None:
        self._stop.set()


def one_run(raw: str, output: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--raw", raw, "--output", output, *extra]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    memory = TreeMemory(proc.pid)
    memory.start()
    export_done = None
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
        if line.startswith("[pipeline] running the TFX pipeline") and export_done is None:
            export_done = time.perf_counter() - started
        if (match := _PROGRESS.match(line)) and match[2].startswith("running"):
            memory.current = match[1]  # until the next one starts (the gaps count to it)
    code = proc.wait()
    wall = time.perf_counter() - started
    memory.stop()
    result: dict = {
        "exit_status": code,
        "wall_s": round(wall, 1),
        "export_s": round(export_done, 1) if export_done else None,
        "peak_tree_rss_gib": round(memory.peak_bytes / 2**30, 2),
        "peak_rss_gib_by_component": {
            k: round(v / 2**30, 2) for k, v in memory.peak_by_component.items()
        },
    }
    metrics_file = Path(output, "metrics.json")
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        result["timings_s"] = metrics.get("timings_s")
        result["recall@50"] = {
            name: round(m["recall@50"], 4) for name, m in metrics["models"].items()
        }
        result["blessed"] = metrics.get("blessed")
        result["counts"] = metrics.get("counts")
        result["ann"] = {
            k: metrics.get("ann", {}).get(k) for k in ("recall_vs_exact@50", "speedup")
        }
    return result


def count_mismatches(counts: dict | None) -> list[str]:
    """The boundaries whose count differs from what they should have read (metrics.counts)."""
    if not counts:
        return ["metrics.json has no counts"]
    return [
        f"{c['component']} {c['what']}: expected {c['expected']:,}, found {c['found']:,}"
        for c in counts.get("checks", [])
        if c["expected"] != c["found"]
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True)
    parser.add_argument("--output", help="reuse this output folder (default: a fresh one per run)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="append each run's JSON object to this file")
    parser.add_argument("extra", nargs="*", help="arguments after -- go to `retailrec run`")
    args = parser.parse_args()
    results = []
    for repeat in range(args.repeats):
        work = args.output or tempfile.mkdtemp(prefix="retailrec_bench_run_")
        try:
            result = one_run(args.raw, work, args.extra)
        finally:
            if not args.output:
                shutil.rmtree(work, ignore_errors=True)
        result["repeat"] = repeat
        result["mismatches"] = count_mismatches(result.get("counts"))
        print(json.dumps(result, indent=2), flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(result) + "\n")
        results.append(result)
    walls = [r["wall_s"] for r in results]
    peaks = [r["peak_tree_rss_gib"] for r in results]
    print(
        f"\n{len(results)} run(s): wall median {statistics.median(walls):.0f} s "
        f"(min {min(walls):.0f}, max {max(walls):.0f}); peak tree RSS median "
        f"{statistics.median(peaks):.1f} GiB; exit statuses {[r['exit_status'] for r in results]}"
    )
    bad = [m for r in results for m in r["mismatches"]]
    for line in bad:
        print(f"COUNT MISMATCH: {line}")
    return 1 if bad or any(r["exit_status"] != 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
