"""The run report renders in a real browser (headless Chromium) with its key numbers and plots."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        # `make test` installs Debian's chromium where it can (root + apt); elsewhere say why.
        pytest.skip("chromium is not installed (make test installs it with apt-get when it can)")
    return path


def test_report_renders_with_key_numbers(real_run, tmp_path):
    """The headline, the slice table and the intervals render; a screenshot is kept."""
    chromium = _chromium()
    report = Path(real_run.where["report"])
    assert report.is_file()
    url = report.resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    metrics = json.loads(Path(real_run.where["metrics"]).read_text())
    for name, values in metrics["models"].items():
        assert name in dom
        assert f"{values['recall@50']:.4f}" in dom  # the table shows what metrics.json holds
    assert "Gate decision" in dom and "Lineage" in dom and "Model card" in dom
    assert 'class="headline' in dom and "two_tower Recall@50" in dom  # the headline
    assert "Recall by slice" in dom and "target_seen" in dom and "history_6_20" in dom
    two_tower = metrics["models"]["two_tower"]
    low, high = two_tower["recall@50_ci"]
    assert f"{low:.4f}–{high:.4f}" in dom  # the interval beside the point estimate
    assert "Two-tower against each model" in dom
    assert "Row counts" in dom and "MISMATCH" not in dom  # every boundary's count, all equal
    assert f"{metrics['protocol']['n_eval_queries']:,}" in dom
    assert 'src="data:image/png;base64,' in dom  # the plot is embedded, no network needed

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            *profile,
            f"--screenshot={shot}",
            "--window-size=1200,1800",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    artifacts = Path(real_run.where["output"]) / "report.png"
    shutil.copy(shot, artifacts)
