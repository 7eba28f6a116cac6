"""The Pusher's push: one copy per new model, atomic, the served version never pushed twice."""

from __future__ import annotations

from pathlib import Path

from components.pusher import component as P


def _model(folder: Path, weights: bytes) -> str:
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
    (folder / "saved_model.pb").write_bytes(b"graph")
    return str(folder)


def test_a_new_model_becomes_a_new_numeric_version(tmp_path):
    model = _model(tmp_path / "m1", b"w1")
    version, path, written, digest = P.push(model, str(tmp_path / "serving"))
    assert written and version.isdigit() and Path(path).name == version
    assert (Path(path) / "variables" / "variables.data-00000-of-00001").read_bytes() == b"w1"
    assert digest == P.model_digest(path) == P.model_digest(model)
    assert [p.name for p in (tmp_path / "serving").iterdir()] == [version]  # no temp left


def test_the_served_model_is_not_pushed_again(tmp_path):
    serving = str(tmp_path / "serving")
    first = P.push(_model(tmp_path / "m1", b"w1"), serving)
    again = P.push(_model(tmp_path / "m1_copy", b"w1"), serving)  # same bytes, another artifact
    assert again[:3] == (first[0], first[1], False)
    assert P.serving_versions(serving) == [int(first[0])]


def test_a_changed_model_gets_a_higher_version_even_within_a_second(tmp_path):
    serving = str(tmp_path / "serving")
    first, _, _, d1 = P.push(_model(tmp_path / "m1", b"w1"), serving)
    second, _, written, d2 = P.push(_model(tmp_path / "m2", b"w2"), serving)
    assert written and int(second) > int(first) and d1 != d2
    # Going back to the first model is a new push: TF Serving serves the highest version.
    third, _, written, _ = P.push(_model(tmp_path / "m3", b"w1"), serving)
    assert written and int(third) > int(second)


def test_a_killed_push_leaves_no_version_and_does_not_block(tmp_path):
    serving = tmp_path / "serving"
    half = serving / f"{P._TEMP_PREFIX}123"
    half.mkdir(parents=True)
    (half / "partial").write_bytes(b"x")
    assert P.serving_versions(str(serving)) == []  # TF Serving ignores it as well
    version, path, written, _ = P.push(_model(tmp_path / "m1", b"w1"), str(serving))
    assert written and P.serving_versions(str(serving)) == [int(version)]
    assert [p.name for p in serving.iterdir()] == [version]  # the leftover is cleaned up


def test_digest_sees_names_and_bytes(tmp_path):
    a = _model(tmp_path / "a", b"w")
    b = _model(tmp_path / "b", b"w")
    assert P.model_digest(a) == P.model_digest(b)
    (Path(b) / "assets").mkdir()
    (Path(b) / "assets" / "vocab").write_bytes(b"")
    assert P.model_digest(a) != P.model_digest(b)
