"""The Arrow ExampleGen writes exactly the examples TFX's CsvExampleGen writes, row for row."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from components.csv_example_gen import component, csv_examples, executor
from components.export import export
from data import fixtures, generator
from modules import features as F
from pipeline import local_runner, pipeline


def _examples(split_dir: Path) -> list[dict]:
    """Every example of a split, as {feature: (kind, values)}, in file order."""
    rows = []
    for path in sorted(split_dir.glob("*.gz")):
        for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            rows.append(
                {
                    name: (
                        feature.WhichOneof("kind"),
                        tuple(getattr(feature, feature.WhichOneof("kind")).value)
                        if feature.WhichOneof("kind")
                        else (),
                    )
                    for name, feature in example.features.feature.items()
                }
            )
    return rows


def _key(row: dict) -> str:
    return repr(sorted(row.items()))


def _run_both(export_dir: Path, root: Path) -> tuple[Path, Path]:
    """TFX's CsvExampleGen and ours on the same export; returns their Examples URIs."""
    config = pipeline.example_gen_input_config()
    theirs = tfx.components.CsvExampleGen(input_base=str(export_dir), input_config=config)
    ours = component.CsvExampleGen(str(export_dir), config).with_id("ArrowExampleGen")
    dag = tfx.dsl.Pipeline(
        pipeline_name="equivalence",
        pipeline_root=str(root / "pipeline_root"),
        components=[theirs, ours],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")
        ),
        beam_pipeline_args=local_runner.beam_args("in_memory"),
    )
    local_runner.beam_patches.apply()
    tfx.orchestration.LocalDagRunner().run(dag)
    uris = {}
    for node in ("CsvExampleGen", "ArrowExampleGen"):
        [uri] = list((root / "pipeline_root" / node / "examples").iterdir())
        uris[node] = uri
    return uris["CsvExampleGen"], uris["ArrowExampleGen"]


@pytest.mark.parametrize("source", ["generated_tiny", "real_sample"])
def test_same_examples_as_tfx_csv_example_gen(tmp_path, monkeypatch, source):
    if source == "generated_tiny":
        # Many pieces per split (one piece below PIECE_ROWS rows, as on the real sample).
        monkeypatch.setattr(executor, "PIECE_ROWS", 7)
        raw = tmp_path / "raw"
        generator.generate(raw, preset="tiny", seed=0)
    else:
        raw = fixtures.real_sample_raw(tmp_path / "raw")
    export.export(raw, tmp_path / "export")
    theirs, ours = _run_both(tmp_path / "export", tmp_path)
    for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT, F.ITEMS_SPLIT):
        a = _examples(theirs / f"Split-{split}")
        b = _examples(ours / f"Split-{split}")
        assert len(a) == len(b) > 0, split
        # Both shuffle before writing: compare as multisets.
        assert sorted(map(_key, a)) == sorted(map(_key, b)), split


def _table(text: str, tmp_path: Path) -> pa.Table:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return csv_examples.read_split([str(path)])


def test_type_inference_follows_csv_example_gen(tmp_path):
    table = _table(
        "i,f,s,u,big,mixed\n1,1.5,a,,9223372036854775807,1\n-2,,b,,1,x\n,3,,,,2.5\n", tmp_path
    )
    types = csv_examples.infer_types(table)
    T = csv_examples.ColumnType
    assert types == {
        "i": T.INT,
        "f": T.FLOAT,  # an integer cell in a float column stays FLOAT
        "s": T.STRING,
        "u": T.UNKNOWN,  # no non-empty cell
        "big": T.INT,  # int64's maximum is still INT
        "mixed": T.STRING,
    }
    rows = [
        tf.train.Example.FromString(r)
        for b in csv_examples.serialized_examples(table, types)
        for r in b
    ]
    assert len(rows) == 3
    assert list(rows[0].features.feature["i"].int64_list.value) == [1]
    assert rows[2].features.feature["i"].WhichOneof("kind") == "int64_list"  # empty cell: []
    assert list(rows[2].features.feature["i"].int64_list.value) == []
    assert rows[0].features.feature["u"].WhichOneof("kind") is None  # UNKNOWN: no kind
    assert list(rows[2].features.feature["f"].float_list.value) == [3.0]


def test_headers_must_agree_and_blank_lines_are_skipped(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n\n3,4\n")
    (tmp_path / "b.csv").write_text("x,z\n1,2\n")
    table = csv_examples.read_split([str(tmp_path / "a.csv")])
    assert table.num_rows == 2
    with pytest.raises(csv_examples.CsvFormatError, match=r"b\.csv: header \['x', 'z'\]"):
        csv_examples.read_split([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    (tmp_path / "c.csv").write_text("x,y\n1,2,3\n")
    with pytest.raises(csv_examples.CsvFormatError, match=r"c\.csv"):
        csv_examples.read_split([str(tmp_path / "c.csv")])
