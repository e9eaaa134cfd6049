"""The MLflow UI as a user meets it: a real `mlflow server`, the URL `main` prints, opened in headless Chromium.

Needs Debian's chromium (`apt-get install -y chromium`; .ci/run installs it); skipped with the reason without it.
The pages' screenshots are saved beside the test's store and their paths printed (`pytest -s` shows them).
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from urllib.parse import urlencode

import pytest
from helpers_queue import start_mlflow_server
from test_report_browser import CHROMIUM, FLAGS

from transfergrid.commands.main import main as main_command
from transfergrid.tracking import names

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)"),
]
SOURCES = ("syn_lookup.xn1", "syn_match.xs1")
GRID = ["--tasks", "syn_lookup,syn_match", "--languages", "xn1,xs1", "--limit", "8", "--num_epochs", "1"]


def _chromium(tmp_path, url: str, *args: str) -> str:
    """The DOM after the page's scripts ran (a virtual-time budget lets the single-page app fetch and render)."""
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1600,1000",
         "--virtual-time-budget=25000", *args, url],
        capture_output=True, text=True, timeout=180, check=True)
    return done.stdout


def _look(tmp_path, url: str, name: str) -> str:
    """The page's DOM; its screenshot is saved as `name`.png (path printed)."""
    shot = tmp_path / f"{name}.png"
    _chromium(tmp_path, url, f"--screenshot={shot}")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
    return _chromium(tmp_path, url, "--dump-dom")


@pytest.fixture
def study_on_server(tmp_path, monkeypatch, capsys):
    """A two-source demo study recorded on a real `mlflow server`; yields (server URL, what `main` printed)."""
    server, url = start_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.chdir(tmp_path)
    try:
        main_command(["--sources", ",".join(SOURCES), *GRID])
        yield url, capsys.readouterr().out
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_printed_link_opens_the_study_in_the_runs_view(study_on_server, tmp_path):
    url, printed = study_on_server
    link = re.search(r"MLflow UI, the evaluate runs side by side: (\S+)", printed).group(1)
    report_link = re.search(r"in the UI: (\S+)", printed).group(1)
    assert link.startswith(f"{url}/#/experiments/") and "workflowType=machine_learning" in link

    table = _look(tmp_path, link, "runs_table")
    assert "Detect Issues" not in table and "No data available" not in table  # not the GenAI overview
    assert "Model training" in table and 'col-id="runDateAndNestInfo"' in table  # the runs table
    assert f"{len(SOURCES)}</strong> matching runs" in table  # the evaluate runs, no parent row to expand
    cells = re.findall(r'id="cell-tags.`source_cell`-\d+" class="ag-cell-value">([^<]+)<', table)
    for source in SOURCES:
        assert f"evaluate {source} seed=42" in table  # the run's name
        assert source in cells  # the source-cell column
    for metric in names.REGIME_METRIC.values():
        assert f'col-id="metrics.`{metric}`"' in table  # a column per regime: mean Δ over its targets

    charts = _look(tmp_path, link + "&" + urlencode({"compareRunsMode": "CHART"}), "runs_charts")
    assert all(metric in charts for metric in names.REGIME_METRIC.values())  # the transfer/ charts

    artifacts = _look(tmp_path, report_link, "report_artifact")
    assert "report.html" in artifacts and 'class="mlflow-html-iframe"' in artifacts  # rendered as HTML, not text
    run_id = re.search(r"/runs/([0-9a-f]{32})/artifacts", report_link).group(1)
    with urllib.request.urlopen(f"{url}/get-artifact?{urlencode({'path': 'report.html', 'run_uuid': run_id})}") as page:
        html = page.read().decode()  # what the UI puts in that frame
    assert "<nav class='contents'>" in html and "Donors and Recipients" in html and "<style>" in html
