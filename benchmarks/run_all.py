"""``make bench``: every benchmark script on one data size, one after the other (never in parallel:
the figures are wall times on a 2-core machine).

    python benchmarks/run_all.py                 # the default data (data/generated/default), ~1 h
    python benchmarks/run_all.py --scale full    # the full preset (generated into /tmp/rr_full), hours

Each script prints its own medians; docs/benchmarks.md says which run gave which figure. The model
comparison (benchmarks/bench_model.py) is not in here: it trains several models per data set and is
run on its own (see its docstring).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = {"default": "data/generated/default", "full": "/tmp/rr_full"}


def _run(*args: str) -> None:
    print(f"\n$ {' '.join(args)}", flush=True)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(RAW), default="default")
    parser.add_argument("--repeats", default="3")
    args = parser.parse_args()
    raw = RAW[args.scale]
    work = Path(f"/tmp/retailrec_bench_{args.scale}")
    export_dir = work / "export"
    if not Path(raw, "events.csv").exists():
        _run("-m", "pipeline.cli", "generate", "--out", raw, "--preset", args.scale)
    if not (export_dir / "export_summary.json").exists():
        _run("-m", "pipeline.cli", "export", "--raw", raw, "--out", str(export_dir))
    _run("benchmarks/bench_export.py", "--raw", raw, "--repeats", args.repeats)
    _run("-m", "benchmarks.bench_baselines", "--raw", raw)
    _run("benchmarks/bench_beam.py", "--export", str(export_dir), "--repeats", args.repeats)
    _run("benchmarks/bench_ann.py", "--repeats", args.repeats)


if __name__ == "__main__":
    main()
