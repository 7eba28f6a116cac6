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


LISTED = re.compile(r"^\s*\d+\. item (\d+)\s.* available (\S+)")


def _listed(out: str) -> list[tuple[int, str]]:
    """(item, available) of each listed line of ``recommend``'s output."""
    return [(int(m[1]), m[2]) for m in map(LISTED.match, out.splitlines()) if m]


def test_recommend_excludes_items_and_unavailable_ones(tiny_run, capsys):
    visitor = _a_train_visitor(tiny_run)
    model = str(Path(tiny_run.where["serving"]) / "retailrec")
    argv = ["recommend", "--model", model, "--visitor", str(visitor), "--k", "10"]
    assert cli.main(argv) == 0
    plain = _listed(capsys.readouterr().out)
    assert len(plain) == 10
    dropped = [plain[0][0], plain[3][0]]
    exclude = ",".join(map(str, dropped))
    assert cli.main([*argv, "--exclude", exclude]) == 0
    out = capsys.readouterr().out
    assert f"excluded: {dropped[0]} {dropped[1]}" in out.splitlines()[0]
    listed = _listed(out)
    # Still 10 items; the rest keep their order and move up.
    assert len(listed) == 10 and not set(dropped) & {item for item, _ in listed}
    kept = [item for item, _ in plain if item not in dropped]
    assert [item for item, _ in listed][:8] == kept

    assert cli.main([*argv, "--exclude", exclude, "--available-only"]) == 0
    out = capsys.readouterr().out
    assert "available items only" in out.splitlines()[0]
    listed = _listed(out)
    assert len(listed) == 10 and not set(dropped) & {item for item, _ in listed}
    assert all(available != "0" for _, available in listed), listed

    assert cli.main([*argv, "--exclude", "12,abc"]) == cli.EXIT_BAD_INPUT
    assert "--exclude: '12,abc' is not a list of item ids" in capsys.readouterr().err


def test_available_only_drops_what_the_unfiltered_list_had(tiny_run, capsys):
    """Some visitor's unfiltered top 10 holds an unavailable item; available-only replaces it."""
    model = str(Path(tiny_run.where["serving"]) / "retailrec")
    for history in ("", "1,2,3", "5,8,13,21"):
        argv = ["recommend", "--model", model, "--history", history, "--k", "10"]
        assert cli.main(argv) == 0
        plain = _listed(capsys.readouterr().out)
        if any(available == "0" for _, available in plain):
            break
    else:
        pytest.skip("no unfiltered list holds an unavailable item in this tiny run")
    assert cli.main([*argv, "--available-only"]) == 0
    listed = _listed(capsys.readouterr().out)
    assert len(listed) == 10 and all(available != "0" for _, available in listed)
    assert [i for i, a in plain if a != "0"] == [i for i, _ in listed][
        : sum(a != "0" for _, a in plain)
    ]


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
    assert tf.make_ndarray(parsed.inputs[F.PROFILE]).tolist() == [
        b"10:1:view:1438400000000 20:1:view:1438400000000"
    ]
    assert set(parsed.inputs) == {
        F.VISITOR_ID,
        F.HISTORY,
        F.PROFILE,
        *F.USER_COUNTER_FEATURES,
        F.TIMESTAMP,
        F.USER_LAST_TIMESTAMP,
    }


def test_grpc_predict_request_with_exclusions_names_the_filtered_signature():
    from modules import serving

    state = recommend.history_state(42, [10, 20], now_ms=1_438_400_000_000)
    request = recommend.predict_request(
        state, 1_438_400_000_000, exclude=[7, 9], available_only=True
    )
    parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert parsed.model_spec.signature_name == serving.FILTERED_SIGNATURE
    assert tf.make_ndarray(parsed.inputs[serving.EXCLUDE]).tolist() == [b"7 9"]
    assert tf.make_ndarray(parsed.inputs[serving.AVAILABLE_ONLY]).tolist() == [1]
    assert set(parsed.inputs) == set(serving.FILTERED_REQUEST_COLUMNS)
    # recommend's own copies of the names are modules.serving's.
    assert (recommend.FILTERED_SIGNATURE, recommend.EXCLUDE, recommend.AVAILABLE_ONLY) == (
        serving.FILTERED_SIGNATURE,
        serving.EXCLUDE,
        serving.AVAILABLE_ONLY,
    )
    # Only available_only: an empty exclude string, still the filtered signature.
    only = recommend.predict_request(state, 1_438_400_000_000, available_only=True)
    assert tf.make_ndarray(only.inputs[serving.EXCLUDE]).tolist() == [b""]
