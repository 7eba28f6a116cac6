"""``retailrec stats``: TFDV's renderings, anomalies, the offline table and the Facets notice."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from modules import features as F
from pipeline import cli
from reporting import stats_report

REPO = Path(__file__).resolve().parents[1]


def _history_stats() -> statistics_pb2.DatasetFeatureStatistics:
    """4 examples; history present in 3, its top value a 20-item blob."""
    stats = statistics_pb2.DatasetFeatureStatistics(num_examples=4)
    feature = stats.features.add()
    feature.path.step.append(F.HISTORY)
    feature.string_stats.common_stats.num_non_missing = 3
    feature.string_stats.unique = 3
    for value, count in ((" ".join(str(100 + i) for i in range(20)), 2), ("7", 1)):
        top = feature.string_stats.top_values.add()
        top.value, top.frequency = value, count
    event = stats.features.add()
    event.path.step.append(F.EVENT)
    event.string_stats.common_stats.num_non_missing = 4
    top = event.string_stats.top_values.add()
    top.value, top.frequency = "view", 4
    return stats


def test_token_features_show_short_values_and_token_counts(tmp_path):
    csv_file = tmp_path / "interactions.csv"
    # Histories of 3, 1 and 0 (missing) and 20 tokens: present values 3 -> mean 8.0, median 3.
    blob = " ".join(str(100 + i) for i in range(20))
    csv_file.write_text(f"{F.VISITOR_ID},{F.HISTORY}\n1,1 2 3\n2,7\n3,\n4,{blob}\n")
    counts = stats_report.token_counts(str(csv_file), F.HISTORY)
    assert counts == {"values": 3, "mean": 8.0, "min": 1, "p50": 3, "p90": 20, "max": 20}
    assert stats_report.token_counts(str(csv_file), F.ITEM_TEXT) is None  # no such column
    assert stats_report.token_counts(str(tmp_path / "missing.csv"), F.HISTORY) is None

    rows = stats_report._feature_rows(_history_stats(), {F.HISTORY: counts})
    present, missing, figures = rows[F.HISTORY]
    assert (present, missing) == ("3", "25.0%")
    assert "100 101 102 103 … (20 tokens) (2)" in figures and "104" not in figures
    assert "7 (1)" in figures
    assert "tokens per value: mean 8.0 · min 1 · median 3 · p90 20 · max 20" in figures
    assert rows[F.EVENT][2] == "0 unique · top: view (4)"  # other strings: whole values


def test_short_value_by_hand():
    assert stats_report.short_value("1 2 3 4 5 6") == "1 2 3 4 … (6 tokens)"
    assert stats_report.short_value("1 2 3 4") == "1 2 3 4"
    assert stats_report.short_value("x" * 60) == "x" * 39 + "…"
    # Whole tokens only: the fourth would pass 40 characters.
    text = "112:337755 159:1235519 202:393888 202:4711 6:1"
    assert stats_report.short_value(text) == "112:337755 159:1235519 202:393888 … (5 tokens)"
    assert stats_report.short_value("y" * 50 + " 1") == "y" * 39 + "… … (2 tokens)"


@pytest.mark.slow
def test_stats_page_of_a_run(real_run, tmp_path):
    page = tmp_path / "stats.html"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "stats", "--output", real_run.where["output"]]
        + ["--html", str(page)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Only its own output: no TensorFlow C++ lines, no library warnings.
    assert done.stdout == f"TFDV statistics page written: {page}\n" and done.stderr == ""
    text = page.read_text()
    assert "facets-overview" in text  # TFDV's own train vs eval rendering
    assert f"id='{stats_report.FACETS_NOTICE_ID}'" in text and "without a network" in text
    assert "Anomalies: train" in text and "Anomalies: eval" in text
    assert "Curated schema" in text and "visitorid" in text
    # The real slices keep no text property: item_text is empty there ("no value").
    for name, figures in ((F.HISTORY, "tokens per value: mean"), (F.ITEM_TEXT, "tokens per value")):
        row = re.search(rf"<tr><td>{name}</td>.*?</tr>", text).group(0)
        assert row.count(figures) == 2  # train and eval
        # No blob: every shown value has at most 4 tokens.
        shown = re.findall(r"(?:top: |, )([^,()]*?)(?: … \(\d+ tokens\))? \(\d+\)", row)
        assert all(len(value.split()) <= 4 for value in shown), shown
        assert shown or name == F.ITEM_TEXT


@pytest.mark.slow
def test_facets_notice_stays_visible_offline(real_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (make test installs it with apt-get when it can)")
    page = tmp_path / "stats.html"
    stats_report.write(real_run.where["output"], str(page))
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        + ["--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000"]
        + [f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    notice = re.search(rf'<p id="{stats_report.FACETS_NOTICE_ID}"[^>]*>', dom).group(0)
    assert "display: none" not in notice  # Facets could not load: the page says so


def test_stats_of_a_folder_without_a_run(tmp_path, capsys):
    assert cli.main(["stats", "--output", str(tmp_path), "--html", str(tmp_path / "x.html")]) == 2
    assert "no ML Metadata store" in capsys.readouterr().err
