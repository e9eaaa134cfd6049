"""The console: one progress display per level, whole lines when not a terminal, known noise filtered, and
`main`'s closing summary, measured on a real (small) study run as a subprocess writing to a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from transfergrid import console, report

COMMAND = Path(sys.executable).parent / "transfergrid"
STUDY = ["main", "--sources", "syn_lookup.xn1,syn_match.xs1", "--tasks", "syn_lookup,syn_match",
         "--languages", "xn1,xs1", "--limit", "8", "--num_epochs", "1"]


def test_not_a_terminal_the_outer_level_prints_whole_lines_and_inner_levels_stay_silent(capsys):
    assert console.mode() == "lines"  # pytest's captured stderr is not a terminal
    with console.progress(total=100, desc="outer", unit="job") as outer:
        for i in range(100):
            outer.set_postfix_str(f"job {i}")
            for _ in console.progress(range(50), desc="inner", unit="step"):
                pass
            outer.update(1)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and "inner" not in err
    assert 10 <= len(lines) <= 11 and lines[-1].startswith("outer: 100/100 jobs") and lines[-1].endswith("job 99")
    for _ in console.progress(range(5), desc="short", unit="item"):
        pass
    assert len(capsys.readouterr().err.splitlines()) == 5  # a short level: a line per item


def test_known_noise_is_filtered_and_other_warnings_stay_visible():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.filter_known_noise()
        warnings.warn_explicit("`is_gradient_checkpointing` is deprecated", FutureWarning, "modeling_utils.py", 1,
                               module="transformers.modeling_utils")
        warnings.warn_explicit("a problem in our code", FutureWarning, "jobs.py", 1, module="transfergrid.jobs")
        warnings.warn_explicit("adapter has no trainable weights", UserWarning, "peft.py", 1, module="peft.tuners")
    assert [str(w.message) for w in caught] == ["a problem in our code", "adapter has no trainable weights"]


def test_statsmodels_fit_warnings_go_to_their_report_section_not_the_console(tmp_path):
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    builder = report._Builder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report._guarded(builder, "variance", lambda: warnings.warn("MLE did not converge", ConvergenceWarning))
        report._guarded(builder, "typology", lambda: [warnings.warn("something else", RuntimeWarning) for _ in range(50)])
    assert builder.sections["variance"].paragraphs == ["Fit warnings: ConvergenceWarning: MLE did not converge."]
    assert [str(w.message) for w in caught] == ["something else"]  # passed on once, not 50 times


def _run(cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", PROGRESS)}
    with (cwd / "console.txt").open("w") as out:  # a file: not a terminal
        done = subprocess.run([str(COMMAND), *STUDY], stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                              env={**env, "OMP_NUM_THREADS": "1"}, timeout=900)
    text = (cwd / "console.txt").read_text()
    assert done.returncode == 0, text[-3000:]
    return text


PROGRESS = console.PROGRESS_ENV


@pytest.mark.slow
def test_main_console_in_a_file_is_short_lines_and_ends_with_the_summary(tmp_path):
    text = _run(tmp_path)
    lines = text.splitlines()
    assert "\r" not in text  # no carriage-return frames
    # a line per job plus at most 20 (the analysis, the summary): `make demo`'s 25 jobs stay well under 100 lines
    assert len(lines) <= 5 + 20, text
    assert [line.split(",")[0] for line in lines if line.startswith("study jobs:")] == [
        f"study jobs: {i}/5 jobs" for i in range(1, 6)]
    for noise in ("Downloading artifacts", "FutureWarning", "Loading weights", "it/s]", "Map:"):
        assert noise not in text, noise
    assert "job runs: 5 created, 0 reused (already FINISHED)" in text
    assert re.search(r"^MT-ML\s+2\s+[+-]\d+\.\d\d\s+\d+\.\d%\s+\d+\.\d%$", text, re.M)  # the regime table
    report_path = Path(re.search(r"^report: (\S+)$", text, re.M).group(1))
    assert report_path.is_file() and report_path.name == "report.html" and tmp_path in report_path.parents
    assert re.search(r"^MLflow UI, the evaluate runs side by side: http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?"
                     r"workflowType=machine_learning&viewStateShareKey=transfergrid-study$", text, re.M)
    again = _run(tmp_path)
    assert "job runs: 0 created, 5 reused (already FINISHED)" in again and "study jobs:" not in again
