"""report.html opens in a headless browser with every section and no missing figure (issue 4, "Done when").

Needs Debian's chromium (`apt-get install -y chromium`); skipped with the reason when no binary is found.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import pytest

from report_data import planted_tidy, predictions_for
from test_report import FAST, assert_images_are_pngs, parse_page
from transfergrid import report

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# Appended to a copy of the page: after load, count the images the browser actually decoded.
PROBE = ("<script>window.addEventListener('load', () => document.body.setAttribute('data-decoded', "
         "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length));</script>")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)"),
]


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True,
                          text=True, timeout=120, check=True)


def test_report_renders_every_section_and_figure_in_chromium(tmp_path):
    tidy = planted_tidy()
    summary = report.build_report(tidy, tmp_path / "report", options=replace(FAST, n_boot=100),
                                  predictions=predictions_for(tidy))
    probe = tmp_path / "report" / "probe.html"
    probe.write_text(summary.html.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    page = parse_page(dom)
    assert page.sections == [s for s in report.SECTIONS if s != "planted"]
    assert_images_are_pngs(page)
    assert len(page.images) == len(summary.figures)
    assert f'data-decoded="{len(summary.figures)}"' in dom  # every <img> decoded: no missing figure
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", summary.html.as_uri())
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
