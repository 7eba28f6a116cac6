"""Shared, expensive fixtures: one pipeline run on the real RetailRocket slices per test session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from data import fixtures
from pipeline import cli, configs, local_runner, results


@dataclass
class Run:
    """A finished ``retailrec run``: its arguments, paths, ML Metadata view and metrics."""

    argv: list[str]
    where: dict[str, str]
    nodes: dict[str, results.NodeResult]
    metrics: dict


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("real_run")
    raw = fixtures.real_sample_raw(root / "raw")
    argv = ["run", "--raw", str(raw), "--output", str(root / "out")]
    assert cli.main(argv) == 0
    where = local_runner.paths(root / "out")
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    return Run(argv, where, nodes, json.loads(Path(where["metrics"]).read_text()))
