"""``retailrec recommend`` on a pushed model, and the gRPC PredictRequest helper."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from modules import features as F
from pipeline import cli
from reporting import recommend

pytestmark = pytest.mark.slow


def _a_train_visitor(run) -> int:
    path = Path(run.where["export"]) / F.TRAIN_SPLIT / F.INTERACTIONS_FILE
    with open(path, newline="") as fh:
        return int(next(csv.DictReader(fh))[F.VISITOR_ID])


def test_recommend_for_a_known_visitor(tiny_run, capsys):
    visitor = _a_train_visitor(tiny_run)
    model = str(Path(tiny_run.where["serving"]) / "retailrec")
    assert cli.main(["recommend", "--model", model, "--visitor", str(visitor), "--k", "5"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if ". item " in line]
    assert len(lines) == 5 and lines[0].lstrip().startswith("1. item")
    assert "category" in lines[0]


def test_recommend_for_a_new_visitor_by_history_and_unknown_ids(tiny_run, capsys):
    model = str(Path(tiny_run.where["serving"]) / "retailrec")
    assert cli.main(["recommend", "--model", model, "--history", "1,2,3", "--k", "3"]) == 0
    assert capsys.readouterr().out.count(". item ") == 3
    assert cli.main(["recommend", "--model", model, "--visitor", "999999999"]) == cli.EXIT_BAD_INPUT
    assert "has no train event" in capsys.readouterr().err
    assert cli.main(["recommend", "--model", model, "--history", "7,x"]) == cli.EXIT_BAD_INPUT
    assert "not a list of item ids" in capsys.readouterr().err
    assert (
        cli.main(["recommend", "--model", "/nonexistent", "--history", "1"]) == cli.EXIT_BAD_INPUT
    )


REPO = Path(__file__).resolve().parents[1]
# TensorFlow's C++ log lines ("2024-01-01 12:00:00.123456: E external/.../cuda_dnn.cc:10575] Unable
# to register cuDNN factory ...") and absl's ("W0000 00:00:1700000000.000000  123 file.cc:12] ...").
CPP_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} )")


def test_recommend_prints_only_its_answer(tiny_run):
    """A fresh process, as a user runs it: no TensorFlow C++ or library warnings before the answer."""
    visitor = _a_train_visitor(tiny_run)
    model = str(Path(tiny_run.where["serving"]) / "retailrec")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = [sys.executable, "-m", "pipeline.cli", "recommend", "--model", model]
    done = subprocess.run(
        [*argv, "--visitor", str(visitor), "--k", "3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert not [line for line in lines if CPP_LOG_LINE.match(line)]
    assert "Unable to register" not in done.stderr and "Warning" not in done.stderr
    assert done.stderr == ""
    assert lines[0].startswith(f"visitor {visitor}, history: ")
    assert [line.split(".")[0].strip() for line in lines[1:]] == ["1", "2", "3"]


def test_grpc_predict_request_round_trip():
    state = recommend.history_state(42, [10, 20], now_ms=1_438_400_000_000)
    request = recommend.predict_request(state, now_ms=1_438_400_000_000)
    parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert parsed.model_spec.name == "retailrec"
    assert parsed.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(parsed.inputs[F.HISTORY]).tolist() == [b"10 20"]
    assert tf.make_ndarray(parsed.inputs[F.VISITOR_ID]).tolist() == [42]
    assert tf.make_ndarray(parsed.inputs[F.TIMESTAMP]).dtype.name == "int64"
    assert set(parsed.inputs) == {
        F.VISITOR_ID,
        F.HISTORY,
        *F.USER_COUNTER_FEATURES,
        F.TIMESTAMP,
        F.USER_LAST_TIMESTAMP,
    }
