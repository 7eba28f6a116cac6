"""ImportCuratedSchema reads the schema beside the code that runs it, or the path it is given."""

from __future__ import annotations

import os

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.curated_schema import component as C
from modules.errors import RetailrecError


def _schema_artifact(tmp_path):
    artifact = standard_artifacts.Schema()
    artifact.uri = str(tmp_path / "out")
    os.makedirs(artifact.uri)
    return artifact


def _read(artifact) -> schema_pb2.Schema:
    path = os.path.join(artifact.uri, C.OUTPUT_FILE)
    return io_utils.parse_pbtxt_file(path, schema_pb2.Schema())


def test_relative_path_is_read_under_the_running_project():
    assert C.resolve(C.SCHEMA_FILE) == str(C.PROJECT_ROOT / "schema" / "schema.pbtxt")
    assert C.resolve("/abs/schema.pbtxt") == "/abs/schema.pbtxt"
    assert C.resolve("gs://bucket/schema.pbtxt") == "gs://bucket/schema.pbtxt"


def test_default_is_the_curated_schema(tmp_path):
    out = _schema_artifact(tmp_path)
    C.ImportCuratedSchema.test_call(schema=out)
    expected = io_utils.parse_pbtxt_file(str(C.PROJECT_ROOT / C.SCHEMA_FILE), schema_pb2.Schema())
    assert _read(out) == expected
    assert any(f.name == "visitorid" for f in expected.feature)


def test_a_schema_elsewhere(tmp_path):
    path = tmp_path / "mine.pbtxt"
    path.write_text('feature { name: "x" type: INT }\n')
    out = _schema_artifact(tmp_path)
    C.ImportCuratedSchema.test_call(schema=out, schema_file=str(path))
    assert [f.name for f in _read(out).feature] == ["x"]


def test_missing_or_bad_file_names_it(tmp_path):
    with pytest.raises(RetailrecError, match="nowhere.pbtxt: curated schema not found"):
        C.ImportCuratedSchema.test_call(
            schema=_schema_artifact(tmp_path), schema_file="nowhere.pbtxt"
        )
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("feature { nme: 1 }\n")
    with pytest.raises(RetailrecError, match="bad.pbtxt: not a Schema in text format"):
        C.ImportCuratedSchema.test_call(
            schema=_schema_artifact(tmp_path / "b"), schema_file=str(bad)
        )
