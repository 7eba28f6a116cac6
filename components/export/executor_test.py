"""The Export step: local folders, remote ones through TFX's filesystem layer, reuse, the executor.

Remote storage is TensorFlow's in-memory ``ram://`` filesystem: the same ``fileio`` calls that
serve ``gs://`` on Vertex, with no cloud.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

from components.export import executor as X
from components.export import export as E
from components.export.component import RawData
from data import generator
from modules import features as F


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    # 3,000 events: exported in a second or two.
    folder = tmp_path_factory.mktemp("raw")
    generator.generate(folder, preset="tiny", seed=0)
    return str(folder)


def _ram(name: str) -> str:
    return f"ram://retailrec-test-{uuid.uuid4().hex[:8]}/{name}"


def _upload(local: str, remote: str) -> None:
    fileio.makedirs(remote)
    for name in os.listdir(local):
        fileio.copy(os.path.join(local, name), f"{remote}/{name}")


def _tree(root: str) -> dict[str, bytes]:
    found = {}
    for folder, _, files in fileio.walk(root):
        for name in files:
            path = f"{str(folder).rstrip('/')}/{name}"
            with fileio.open(path, "rb") as fh:
                found[path[len(root) :]] = fh.read()
    return found


def test_is_local():
    assert X.is_local("/tmp/x") and X.is_local("relative/x")
    assert not X.is_local("gs://bucket/x") and not X.is_local("ram://x")


def test_local_export_is_export_export_and_reused(raw, tmp_path):
    out = str(tmp_path / "export")
    first = X.export_to(raw, out)
    assert first["reused"] is False
    assert first == {**E.read_summary(out), "reused": False}
    assert X.export_to(raw, out)["reused"] is True


def test_remote_raw_and_export_match_the_local_export(raw, tmp_path):
    local = E.export(raw, tmp_path / "local")
    remote_raw, remote_out = _ram("raw"), _ram("export")
    _upload(raw, remote_raw)

    summary = X.export_to(remote_raw, remote_out)

    assert summary["reused"] is False
    assert summary["fingerprint"] == local["fingerprint"]  # same bytes, same parameters
    assert summary["raw_dir"] == remote_raw  # the user's folder, not the staging copy
    written = _tree(remote_out)
    expected = {
        f"/{p.relative_to(tmp_path / 'local')}": p.read_bytes()
        for p in (tmp_path / "local").rglob("*.csv")
    }
    assert {k: v for k, v in written.items() if k.endswith(".csv")} == expected
    remote_summary = json.loads(written[f"/{F.EXPORT_SUMMARY_FILE}"])
    assert remote_summary["split"] == local["split"]
    assert remote_summary["raw_dir"] == remote_raw


def test_identical_remote_export_is_left_untouched(raw):
    remote_raw, remote_out = _ram("raw"), _ram("export")
    _upload(raw, remote_raw)
    X.export_to(remote_raw, remote_out)
    marker = f"{remote_out}/{F.TRAIN_SPLIT}/untouched.txt"
    with fileio.open(marker, "w") as fh:
        fh.write("an identical export is not uploaded again")

    again = X.export_to(remote_raw, remote_out)

    assert again["reused"] is True
    assert fileio.exists(marker)


def test_different_remote_export_is_replaced(raw, tmp_path):
    remote_raw, remote_out = _ram("raw"), _ram("export")
    _upload(raw, remote_raw)
    X.export_to(remote_raw, remote_out)
    stale = f"{remote_out}/{F.TRAIN_SPLIT}/stale.csv"
    with fileio.open(stale, "w") as fh:
        fh.write("from the previous export")

    other = X.export_to(remote_raw, remote_out, history_length=3)

    assert other["reused"] is False and other["params"]["history_length"] == 3
    assert not fileio.exists(stale)  # the pipeline owns the folder: the old export is gone
    with fileio.open(f"{remote_out}/{F.EXPORT_SUMMARY_FILE}") as fh:
        assert json.loads(fh.read())["params"]["history_length"] == 3


def test_missing_remote_file_names_the_remote_path(raw):
    remote_raw = _ram("raw")
    _upload(raw, remote_raw)
    fileio.remove(f"{remote_raw}/{F.RAW_CATEGORY_TREE_FILE}")
    with pytest.raises(
        E.ExportError, match=f"{remote_raw}/{F.RAW_CATEGORY_TREE_FILE}: file missing"
    ):
        X.export_to(remote_raw, _ram("export"))
    with pytest.raises(E.ExportError, match="raw data folder does not exist"):
        X.export_to(_ram("nothing"), _ram("export"))


def test_executor_publishes_where_the_export_is(raw, tmp_path):
    raw_artifact = RawData()
    raw_artifact.uri = raw
    output = standard_artifacts.String()
    output.uri = str(tmp_path / "value")
    out = str(tmp_path / "export")

    X.Executor().Do(
        {X.RAW_KEY: [raw_artifact]},
        {X.OUTPUT_KEY: [output]},
        {X.EXPORT_DIR_KEY: out, "cutoff": "2015-08-01", "sample_items": None, "history_length": 5},
    )

    summary = E.read_summary(out)
    assert summary["params"]["history_length"] == 5
    assert output.read() == out
    assert output.get_int_custom_property("n_train") == summary["split"]["n_train"]
    assert output.get_string_custom_property("fingerprint") == summary["fingerprint"]
