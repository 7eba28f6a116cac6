"""``retailrec stats`` on a real run: TFDV's renderings, anomalies and the offline table."""

from __future__ import annotations

import pytest

from pipeline import cli

pytestmark = pytest.mark.slow


def test_stats_page_of_a_run(real_run, tmp_path):
    page = tmp_path / "stats.html"
    assert cli.main(["stats", "--output", real_run.where["output"], "--html", str(page)]) == 0
    text = page.read_text()
    assert "facets-overview" in text  # TFDV's own train vs eval rendering
    assert "Anomalies: train" in text and "Anomalies: eval" in text
    assert "Curated schema" in text and "visitorid" in text
    assert "<td>history</td>" in text  # the offline per-feature table


def test_stats_of_a_folder_without_a_run(tmp_path, capsys):
    assert cli.main(["stats", "--output", str(tmp_path), "--html", str(tmp_path / "x.html")]) == 2
    assert "no ML Metadata store" in capsys.readouterr().err
