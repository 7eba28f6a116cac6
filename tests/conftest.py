"""Shared, expensive fixtures: pipeline runs on tiny data, once per test session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from data import fixtures, generator
from pipeline import cli, configs, local_runner, results


@dataclass
class Run:
    """A finished ``retailrec run``: arguments, exit code, paths, ML Metadata view, metrics."""

    argv: list[str]
    exit_code: int
    where: dict[str, str]
    nodes: dict[str, results.NodeResult]
    metrics: dict


def run_cli(argv: list[str]) -> Run:
    """Runs ``retailrec`` with ``argv`` (a ``run`` command) and reads back what it recorded."""
    code = cli.main(argv)
    out = argv[argv.index("--output") + 1]
    where = local_runner.paths(out)
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    return Run(argv, code, where, nodes, json.loads(Path(where["metrics"]).read_text()))


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Run:
    """The whole DAG on the real RetailRocket slices (too small for the model to win)."""
    root = tmp_path_factory.mktemp("real_run")
    raw = fixtures.real_sample_raw(root / "raw")
    return run_cli(["run", "--raw", str(raw), "--output", str(root / "out"), "--epochs", "2"])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Run:
    """The whole DAG on generated tiny data with only the threshold bar: blessed and pushed."""
    root = tmp_path_factory.mktemp("tiny_run")
    generator.generate(root / "raw", preset="tiny", seed=0)
    argv = ["run", "--raw", str(root / "raw"), "--output", str(root / "out")]
    return run_cli([*argv, "--epochs", "2", "--no-baselines", "--min-recall", "0"])
