"""Shared, expensive fixtures: pipeline runs on tiny data, once per test session."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from data import fixtures, generator
from pipeline import cli, configs, local_runner
from reporting import results


@dataclass
class Run:
    """A finished ``retailrec run``: arguments, exit code, paths, ML Metadata view, metrics."""

    argv: list[str]
    exit_code: int
    where: dict[str, str]
    nodes: dict[str, results.NodeResult]
    metrics: dict
    stdout: str


class _Tee(io.StringIO):
    """Keeps what is written and passes it on (pytest still shows it on failure)."""

    def __init__(self, other):
        super().__init__()
        self._other = other

    def write(self, text: str) -> int:
        self._other.write(text)
        return super().write(text)


def run_cli(argv: list[str]) -> Run:
    """Runs ``retailrec`` with ``argv`` (a ``run`` command) and reads back what it recorded."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        code = cli.main(argv)
    out = argv[argv.index("--output") + 1]
    where = local_runner.paths(out)
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    metrics = json.loads(Path(where["metrics"]).read_text())
    return Run(argv, code, where, nodes, metrics, tee.getvalue())


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Run:
    """The whole DAG on the real RetailRocket slices (too small for the model to win).

    It runs Beam in multi_processing mode, the one ``auto`` picks for large exports, so that the
    Beam components are proven in both modes (tiny_run: in_memory).
    """
    root = tmp_path_factory.mktemp("real_run")
    raw = fixtures.real_sample_raw(root / "raw")
    argv = ["run", "--raw", str(raw), "--output", str(root / "out"), "--epochs", "2"]
    return run_cli([*argv, "--beam-mode", "multi_processing", "--beam-workers", "2"])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Run:
    """The whole DAG on generated tiny data with only the threshold bar: blessed and pushed."""
    root = tmp_path_factory.mktemp("tiny_run")
    generator.generate(root / "raw", preset="tiny", seed=0)
    argv = ["run", "--raw", str(root / "raw"), "--output", str(root / "out")]
    return run_cli([*argv, "--epochs", "2", "--no-baselines", "--min-recall", "0"])
