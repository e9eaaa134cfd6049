"""Small pieces of the queue and the ablation objectives: configs, URLs, redaction, objectives, status errors."""

from __future__ import annotations

import pytest

from entrypoints import status as status_entry
from transfergrid import queue
from transfergrid.config import MainConfig, QueueConfig, load_config
from transfergrid.grid import Cell, off_task_harm_rate, on_task_gain
from transfergrid.redact import redact


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--heartbeat_interval", "10", "--grace_period", "5"], "need 0 < heartbeat_interval < grace_period"),
        (["--max_retries", "-1"], "max_retries must be >= 0"),
        (["--workers", "-2"], "workers must be >= 0"),
    ],
)
def test_bad_queue_settings_name_the_value(argv, message):
    with pytest.raises(ValueError, match=message):
        load_config(MainConfig, argv)


def test_redact_masks_url_passwords_only():
    assert redact("postgresql://tg:p@ss@db:5432/x") != "postgresql://tg:p@ss@db:5432/x"
    assert "s3cr3t" not in redact("see postgresql+psycopg2://u:s3cr3t@h/d and http://a:b@c")
    assert redact("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"
    assert redact("postgresql://user@host/db") == "postgresql://user@host/db"


@pytest.mark.parametrize("url", ["", "sqlite:///x.db", "postgresql://u:p@h:5432/d", "postgresql+psycopg2://h/d"])
def test_valid_storage_urls(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert queue.check_storage_url(url).startswith(("sqlite:///", "postgresql"))


@pytest.mark.parametrize("url", ["optuna.db", "redis://localhost", "sqlite://", "postgres://h/d"])
def test_invalid_storage_urls(url):
    with pytest.raises(ValueError, match="invalid Optuna storage URL"):
        queue.check_storage_url(url)


def test_objectives_of_a_source():
    source = Cell("a", "x")
    deltas = {Cell("a", "x"): 10.0, Cell("a", "y"): 2.0, Cell("a", "z"): 4.0, Cell("b", "x"): -1.0, Cell("b", "y"): 0.5}
    assert on_task_gain(source, deltas) == pytest.approx((10.0 + 3.0) / 2)
    assert off_task_harm_rate(source, deltas) == pytest.approx(50.0)  # -1.0 is harm (<= -1 pp), 0.5 is not
    assert off_task_harm_rate(source, {Cell("a", "x"): 1.0}) == 0.0
    with pytest.raises(ValueError, match="on-task gain"):
        on_task_gain(source, {Cell("b", "x"): 1.0})


def test_status_of_an_unknown_study_exits_2_listing_the_studies(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")
    with pytest.raises(SystemExit) as exit_info:
        status_entry.main(["--storage", storage, "--study_name", "grid-transfergrd", "--tracking_uri", f"sqlite:///{tmp_path}/m.db"])
    assert exit_info.value.code == 2
    assert "unknown study 'grid-transfergrd' (did you mean 'grid-transfergrid'?)" in capsys.readouterr().err


def test_a_job_enqueued_twice_at_once_runs_once(tmp_path):
    """Two enqueuers racing can both add a job; the copy claimed while the first runs is pruned, not run."""
    study = queue.open_study(queue.open_storage(QueueConfig(storage=f"sqlite:///{tmp_path / 'optuna.db'}")), "dup")
    for _ in range(2):  # what two `grid` processes starting together may do
        study.enqueue_trial({}, user_attrs={queue.JOB_KEY: "k", queue.JOB: {"kind": "fake"}})
    first = queue.claim(study)
    assert first is not None and first.number == 0
    assert queue.claim(study) is None  # the copy was claimed, found running elsewhere, and pruned
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {0: "RUNNING", 1: "PRUNED"} and study.get_trials()[1].user_attrs[queue.DUPLICATE_OF] == 0
    assert queue.live_job_keys(study) == {"k"}
