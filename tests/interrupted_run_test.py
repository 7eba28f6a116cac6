"""A run killed (SIGKILL) while the Trainer runs completes when started again, reusing the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import generator
from pipeline import configs, local_runner
from reporting import results

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_killed_during_training_then_rerun_completes(tmp_path):
    generator.generate(tmp_path / "raw", preset="tiny", seed=1)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "pipeline.cli", "run", "--raw", str(tmp_path / "raw")]
    argv += ["--output", str(out), "--epochs", "2", "--no-baselines", "--min-recall", "0"]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    for line in proc.stdout:  # progress lines: kill as soon as the Trainer starts
        if "Trainer" in line and "running" in line:
            time.sleep(3)  # well inside training
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "the Trainer never started"
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "serving" / "retailrec").exists()  # nothing half-pushed

    rerun = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    where = local_runner.paths(out)
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    # What finished before the kill comes from the cache; the Trainer ran again, whole.
    for node in ("CsvExampleGen", "StatisticsGen", "Transform"):
        assert nodes[node].state == "cached", (node, nodes[node].state)
    assert nodes["Trainer"].state == "complete"
    model_uri = nodes["Trainer"].outputs["model"][0].uri
    assert (Path(model_uri) / "Format-Serving" / "saved_model.pb").is_file()
    assert len(list((out / "serving" / "retailrec").iterdir())) == 1
