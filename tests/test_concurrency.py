"""Work is never duplicated, lost or stuck: two launches at once, signals at the worst moment, a failing artifact
store, killed processes. Real processes, real signals, real SQLite stores."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import helpers_queue as hq
from transfergrid import queue
from transfergrid.config import QueueConfig
from transfergrid.jobs import FAULT_SLEEP_ENV
from transfergrid.tracking import writer

GRID = ["--tasks", "syn_lookup", "--languages", "xs1,xn1", "--num_epochs", "1", "--lora_r", "8"]  # 2 sources


def _runs(uri: str, experiment: str = "transfergrid") -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []


def _start(entry: str, args: list[str], log: Path, **extra_env) -> subprocess.Popen:
    command = [sys.executable, "-m", f"entrypoints.{entry}", *args]
    return subprocess.Popen(command, env=hq.env(**extra_env), stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for(condition, process, log: Path, timeout: float = 180, what: str = ""):
    deadline = time.time() + timeout
    while not (found := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-3000:]}"
        assert process.poll() is None, f"exited {process.returncode} before {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    return found


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except FileNotFoundError:
        return False


def _running(uri: str, kind: str) -> list:
    return [r for r in _runs(uri) if r.data.tags.get("kind") == kind and r.info.status == "RUNNING"]


def test_a_failed_artifact_write_ends_the_run_failed_first(tracking_uri, tmp_path):
    """The artifact store fails (its folder is a file; root ignores a read-only folder): the run still ends FAILED."""
    blocked = tmp_path / "mlartifacts"
    blocked.write_text("not a folder")
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("blocked", artifact_location=blocked.as_uri())
    with pytest.raises(OSError):
        with writer.open_run(tracking_uri, experiment_id, kind="finetune", tags={}, run_name="r") as run:
            run.log_text("x", "config.yaml")
    (failed,) = client.search_runs([experiment_id])
    assert failed.info.status == "FAILED" and failed.info.end_time
    assert "Error" in failed.data.tags["failure_reason"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_signalled_while_it_claims_gives_the_job_back(tmp_path, signum):
    """A stop signal in the middle of a claim: no trial is left RUNNING without a heartbeat; the job is retried."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    record = tmp_path / "record.jsonl"
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "fake")
    jobs = [queue.Job(f"k{i}", {"kind": "fake", "key": f"k{i}", "record": str(record)}) for i in range(2)]
    queue.enqueue(study, jobs)
    command = [sys.executable, str(hq.TESTS / "helpers_queue.py"), storage, "fake"]
    log = tmp_path / "victim.log"
    victim = subprocess.Popen(command, env=hq.env(**{queue.CLAIM_FAULT_SLEEP_ENV: "2"}), stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    _wait_for(lambda: "inside the claim" in log.read_text(), victim, log, 60, "the claim")
    victim.send_signal(signum)
    assert victim.wait(timeout=30) != 0
    states = Counter(t.state.name for t in study.get_trials())
    assert states == {"FAIL": 1, "WAITING": 2}, states  # given back at once, not RUNNING with no heartbeat
    (failed,) = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert f"stopped by signal {int(signum)}" in failed.user_attrs[queue.FAILURE_REASON]
    helper = subprocess.run(command, env=hq.env(), capture_output=True, text=True, timeout=120)
    assert helper.returncode == 0, helper.stderr[-3000:]
    done = Counter(json.loads(line)["key"] for line in record.read_text().splitlines())
    assert done == {"k0": 1, "k1": 1}


def test_two_grids_at_once_on_a_fresh_store_enqueue_each_job_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    logs = [tmp_path / f"grid{i}.log" for i in range(2)]
    grids = [_start("grid", [*GRID, "--storage", storage], log, MLFLOW_TRACKING_URI=uri) for log in logs]
    for process, log in zip(grids, logs):
        assert process.wait(timeout=300) == 0, log.read_text()[-4000:]
    assert [r.data.tags["kind"] for r in _runs(uri)] == ["grid"]
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")
    waiting = [t.user_attrs[queue.JOB_KEY] for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(waiting) == len(set(waiting)) == 3  # the baseline + 2 sources, once each


def _check_once(uri: str) -> list:
    runs = _runs(uri)
    finished = Counter(r.data.tags["run_key"] for r in runs if r.info.status == "FINISHED")
    assert finished and max(finished.values()) == 1, f"run keys FINISHED twice: {finished}"
    assert Counter(r.data.tags["kind"] for r in runs if r.info.status == "FINISHED") == {
        "grid": 1, "baseline": 1, "finetune": 2, "evaluate": 2, "analysis": 1}
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("store", ["existing", "fresh"])
def test_two_mains_at_once_run_each_run_key_once(tmp_path, monkeypatch, store):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if store == "existing":
        writer.ensure_experiment(uri, "transfergrid")
    logs = [tmp_path / f"main{i}.log" for i in range(2)]
    mains = [_start("main", GRID, log, MLFLOW_TRACKING_URI=uri) for log in logs]
    for process, log in zip(mains, logs):
        assert process.wait(timeout=600) == 0, log.read_text()[-4000:]
    runs = _check_once(uri)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert any("waiting for it" in log.read_text() for log in logs)  # one waited for the other, then reused its runs


@pytest.mark.slow
def test_stopped_or_killed_main_leaves_no_running_run(tmp_path, monkeypatch):
    """SIGTERM ends the open runs KILLED with the signal as the reason (one line, no traceback); after a SIGKILL,
    the rerun marks the runs the dead process left RUNNING as FAILED (abandoned) and completes the study."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    writer.ensure_experiment(uri, "transfergrid")  # created before this test polls it
    log = tmp_path / "stopped.log"
    stopped = _start("main", GRID, log, MLFLOW_TRACKING_URI=uri, **{FAULT_SLEEP_ENV: "120"})
    _wait_for(lambda: _running(uri, "finetune"), stopped, log, what="a running finetune")
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(timeout=60) == 128 + signal.SIGTERM
    text = log.read_text()
    assert "Traceback" not in text and "stopped by signal 15 (SIGTERM)" in text
    ended = {r.data.tags["kind"]: r for r in _runs(uri) if r.info.status != "FINISHED"}
    assert {kind: r.info.status for kind, r in ended.items()} == {"grid": "KILLED", "finetune": "KILLED"}
    assert {r.data.tags["failure_reason"] for r in ended.values()} == {"stopped by signal 15 (SIGTERM)"}

    log = tmp_path / "killed.log"
    killed = _start("main", GRID, log, MLFLOW_TRACKING_URI=uri, **{FAULT_SLEEP_ENV: "120"})
    (left,) = _wait_for(lambda: _running(uri, "finetune"), killed, log, what="a running finetune")
    left_grid = _running(uri, "grid")
    killed.kill()
    killed.wait()
    log = tmp_path / "rerun.log"
    rerun = _start("main", GRID, log, MLFLOW_TRACKING_URI=uri)
    assert rerun.wait(timeout=600) == 0, log.read_text()[-4000:]
    runs = _check_once(uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for run_id in [left.info.run_id] + [r.info.run_id for r in left_grid]:
        run = MlflowClient(uri).get_run(run_id)
        assert run.info.status == "FAILED" and run.data.tags["failure_reason"].startswith(
            f"abandoned: its process {run.data.tags['host']}:{killed.pid} is gone")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_signal_to_main_alone_stops_its_workers(tmp_path, monkeypatch, signum):
    """SIGINT (or even SIGKILL) sent to the `main --workers 2` process only: its workers stop and give their jobs
    back at once."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    writer.ensure_experiment(uri, "transfergrid")  # created before this test polls it
    log = tmp_path / "main.log"
    main = _start("main", [*GRID, "--workers", "2", "--storage", storage, *hq.FAST_QUEUE[:4]], log,
                  MLFLOW_TRACKING_URI=uri, **{FAULT_SLEEP_ENV: "120"})
    _wait_for(lambda: _running(uri, "finetune"), main, log, what="a running finetune")
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")
    workers = {t.user_attrs[queue.WORKER_PID] for t in study.get_trials() if queue.WORKER_PID in t.user_attrs}
    assert workers
    main.send_signal(signum)
    assert main.wait(timeout=90) == (128 + signal.SIGINT if signum == signal.SIGINT else -signal.SIGKILL)
    deadline = time.time() + 60
    while [pid for pid in workers if _alive(pid)]:
        assert time.time() < deadline, "workers left running"
        time.sleep(0.5)
    assert not [t for t in study.get_trials() if t.state.name == "RUNNING"]
    left = [r.data.tags["kind"] for r in _runs(uri) if r.info.status == "RUNNING"]
    if signum == signal.SIGINT:
        assert "Traceback" not in log.read_text() and not left
    else:  # main itself could not react: its grid run waits for the rerun to mark it abandoned
        assert left == ["grid"]


def test_a_running_trial_left_without_a_worker_by_an_older_claim_expires(tmp_path):
    """What an older version left behind when signalled inside its claim (RUNNING, no heartbeat, no worker): the
    next worker fails it after the grace period and runs the job again, instead of waiting for it forever."""
    from optuna.trial import TrialState

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    record = tmp_path / "record.jsonl"
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "fake")
    queue.enqueue(study, [queue.Job("k0", {"kind": "fake", "key": "k0", "record": str(record)})])
    (trial,) = study.get_trials()
    study._storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING)  # the cut-off claim
    command = [sys.executable, str(hq.TESTS / "helpers_queue.py"), storage, "fake"]  # grace period 3 s
    helper = subprocess.run(command, env=hq.env(), capture_output=True, text=True, timeout=60)
    assert helper.returncode == 0, helper.stderr[-3000:]
    assert Counter(t.state.name for t in study.get_trials()) == {"FAIL": 1, "COMPLETE": 1}
    assert [json.loads(line)["key"] for line in record.read_text().splitlines()] == ["k0"]


@pytest.mark.slow
@pytest.mark.e2e
def test_two_mains_at_once_through_a_tracking_server_claim_in_the_postgresql_storage(tmp_path, monkeypatch):
    """A tracking server over HTTP has no database of ours: the run keys are claimed in the queue's storage."""
    optuna_db, mlflow_db = hq.create_database(), hq.create_database()
    server, url = hq.start_mlflow_server(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{mlflow_db}",
                                         tmp_path / "artifacts", tmp_path / "server.log")
    try:
        monkeypatch.chdir(tmp_path)
        storage = f"postgresql://postgres@127.0.0.1:5432/{optuna_db}"
        writer.ensure_experiment(url, "transfergrid")
        logs = [tmp_path / f"main{i}.log" for i in range(2)]
        mains = [_start("main", [*GRID, "--storage", storage], log, MLFLOW_TRACKING_URI=url) for log in logs]
        for process, log in zip(mains, logs):
            assert process.wait(timeout=600) == 0, log.read_text()[-4000:]
        _check_once(url)
        assert any("waiting for it" in log.read_text() for log in logs)
        assert not (tmp_path / "optuna.db").exists()  # the claims went to PostgreSQL
    finally:
        server.terminate()
        server.wait(timeout=30)
        hq.drop_database(optuna_db)
        hq.drop_database(mlflow_db)
