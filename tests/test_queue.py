"""The job queue on real Optuna storages (SQLite, PostgreSQL) with real worker processes: exactly once, retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

import helpers_queue as hq
from entrypoints import baseline as baseline_entry
from entrypoints import grid as grid_entry
from entrypoints import status as status_entry
from entrypoints import worker as worker_entry
from transfergrid import queue
from transfergrid.config import QueueConfig
from transfergrid.jobs import FAULT_SLEEP_ENV


@pytest.fixture
def pg_storage():
    """A throwaway PostgreSQL database for Optuna, dropped afterwards."""
    name = hq.create_database()
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    hq.drop_database(name)


def test_bad_storage_url_exits_2_naming_it_with_the_password_masked(capsys):
    with pytest.raises(SystemExit) as exit_info:
        worker_entry.main(["--storage", "postgres://tg:hunter2@db/optuna"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid Optuna storage URL 'postgres://tg:***@db/optuna'" in err and "postgresql://" in err
    assert "hunter2" not in err
    assert queue.STORAGE_ENV not in os.environ  # the refused URL does not stay behind for later commands in this process
    with pytest.raises(ValueError, match=r"cannot open Optuna storage .postgresql\+psycopg2://postgres:\*\*\*@127.0.0.1:1/x.*Connection refused"):
        queue.open_storage(QueueConfig(storage="postgresql://postgres:pw@127.0.0.1:1/x"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_workers_claim_each_job_exactly_once(backend, tmp_path, request):
    """Three worker processes start together on 40 enqueued jobs (enqueued twice): each job runs once."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}" if backend == "sqlite" else request.getfixturevalue("pg_storage")
    record = tmp_path / "record.jsonl"
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "fake")
    jobs = [queue.Job(f"k{i}", {"kind": "fake", "key": f"k{i}", "record": str(record)}) for i in range(40)]
    assert queue.enqueue(study, jobs) == (40, 0)
    assert queue.enqueue(study, jobs) == (0, 40)  # idempotent: waiting jobs are not enqueued again
    command = [sys.executable, str(hq.TESTS / "helpers_queue.py"), storage, "fake"]
    workers = [subprocess.Popen(command, env=hq.env(), stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
    done = [json.loads(line) for line in record.read_text().splitlines()]
    assert Counter(d["key"] for d in done) == {f"k{i}": 1 for i in range(40)}
    assert len({d["pid"] for d in done}) >= 2  # the work was shared
    assert {t.state.name for t in study.get_trials()} == {"COMPLETE"} and len(study.get_trials()) == 40


def _grid_args(storage: str) -> list[str]:
    return ["--storage", storage, "--num_epochs", "1", "--lora_r", "8", *hq.FAST_QUEUE[:4]]


def _runs(uri: str, experiment: str = "transfergrid"):
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], max_results=1000)


def _check_grid(uri: str, n_sources: int, experiment: str = "transfergrid") -> list:
    runs = _runs(uri, experiment)
    by_kind = Counter((r.data.tags["kind"], r.info.status) for r in runs)
    assert by_kind[("finetune", "FINISHED")] == by_kind[("evaluate", "FINISHED")] == n_sources, by_kind
    assert by_kind[("baseline", "FINISHED")] == 1
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags["kind"] != "grid"]
    keys = Counter(r.data.tags["run_key"] for r in finished)
    assert max(keys.values()) == 1, "a run key is FINISHED twice"
    return runs


@pytest.mark.slow
def test_three_workers_on_sqlite_run_the_12_job_grid(tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    enqueued = grid_entry.main(_grid_args(storage))
    assert enqueued.added == 13  # the baseline + 12 sources
    assert grid_entry.main(_grid_args(storage)).added == 0  # a second `grid` enqueues nothing
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [hq.start_worker(storage, log=log) for log in logs]
    hq.wait_all(workers, logs)
    runs = _check_grid(tracking_uri, 12)
    (grid_run,) = [r for r in runs if r.data.tags["kind"] == "grid"]
    children = [r for r in runs if r.data.tags["kind"] != "grid"]
    assert all(r.data.tags["study_run_id"] == grid_run.info.run_id for r in children)  # rows of their own in the UI
    assert not any("mlflow.parentRunId" in r.data.tags for r in children)
    assert {r.data.tags["optuna_study"] for r in children if r.data.tags["kind"] == "finetune"} == {"grid-transfergrid"}
    jobs, counts = status_entry.main(["--storage", storage])
    assert Counter(jobs["state"]) == {"COMPLETE": 13}
    assert sum(1 for log in logs if "worker ran 0 jobs" not in log.read_text()) >= 2  # shared


def _wait_for_running_finetune(client: MlflowClient, victim, log) -> str:
    """Wait (up to 120 s) until the victim worker has a finetune run open; returns the experiment id."""
    experiment_id = client.get_experiment_by_name("transfergrid").experiment_id
    deadline = time.time() + 120
    while not client.search_runs([experiment_id], "tags.kind = 'finetune' and attributes.status = 'RUNNING'"):
        assert time.time() < deadline and victim.poll() is None, log.read_text()[-3000:]
        time.sleep(0.3)
    return experiment_id


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_and_its_run_ends_failed(tracking_uri, tmp_path):
    """SIGKILL a worker inside its finetune run: another worker notices the lost heartbeat, fails the run, retries."""
    grid = ["--tasks", "syn_lookup", "--languages", "xs1,xn1"]
    baseline_entry.main(grid)  # done first, so the victim's first job is a fine-tune
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert grid_entry.main([*grid, *_grid_args(storage)]).added == 2
    victim = hq.start_worker(storage, "--max_jobs", "1", log=tmp_path / "victim.log", **{FAULT_SLEEP_ENV: "120"})
    client = MlflowClient(tracking_uri)
    experiment_id = _wait_for_running_finetune(client, victim, tmp_path / "victim.log")
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")
    (running,) = study.get_trials(states=[queue_state("RUNNING")])
    assert running.user_attrs[queue.WORKER_PID] == victim.pid
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    hq.wait_all([hq.start_worker(storage, log=log) for log in logs], logs)

    runs = _check_grid(tracking_uri, 2)
    killed = [r for r in runs if r.data.tags["kind"] == "finetune" and r.info.status != "FINISHED"]
    assert [r.info.status for r in killed] == ["FAILED"]
    assert "stopped sending heartbeats" in killed[0].data.tags["failure_reason"]
    trials = study.get_trials()
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 2, "FAIL": 1}
    (retry,) = [t for t in trials if queue.RETRY_OF in t.user_attrs]
    assert retry.user_attrs[queue.RETRY_OF] == running.number and retry.user_attrs[queue.ATTEMPT] == 2
    table, _ = status_entry.main(["--storage", storage])
    assert set(table["state"]) == {"COMPLETE"} and table["attempts"].max() == 2


def queue_state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


@pytest.mark.slow
def test_a_job_killed_more_than_max_retries_stays_failed_with_the_reason(tracking_uri, tmp_path):
    grid = ["--tasks", "syn_lookup", "--languages", "xs1"]
    baseline_entry.main(grid)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    grid_entry.main([*grid, *_grid_args(storage), "--max_retries", "0"])
    victim = hq.start_worker(storage, "--max_jobs", "1", log=tmp_path / "victim.log", **{FAULT_SLEEP_ENV: "120"})
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")
    deadline = time.time() + 120
    while not study.get_trials(states=[queue_state("RUNNING")]):
        assert time.time() < deadline and victim.poll() is None
        time.sleep(0.3)
    time.sleep(1.5)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    log = tmp_path / "worker.log"
    hq.wait_all([hq.start_worker(storage, "--max_retries", "0", log=log)], [log])
    assert [t.state.name for t in study.get_trials()] == ["FAIL"]
    table, _ = status_entry.main(["--storage", storage])
    assert "stopped sending heartbeats" in table["reason"].item()


@pytest.mark.slow
def test_main_with_workers_runs_the_study_on_local_worker_processes(tracking_uri, tmp_path):
    from entrypoints import main as main_entry

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = ["--tasks", "syn_lookup,syn_match", "--languages", "xs1,xn1", "--workers", "2", *_grid_args(storage)]
    main_entry.main(args)
    runs = _check_grid(tracking_uri, 4)
    by_kind = Counter(r.data.tags["kind"] for r in runs)
    assert by_kind == {"grid": 1, "baseline": 1, "finetune": 4, "evaluate": 4, "analysis": 1}
    assert all(r.info.status == "FINISHED" for r in runs)
    (grid_run,) = [r for r in runs if r.data.tags["kind"] == "grid"]
    assert all(r.data.tags["study_run_id"] == grid_run.info.run_id for r in runs if r is not grid_run)
    workers = {t.user_attrs[queue.WORKER_PID] for t in queue.open_study(
        queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid").get_trials()}
    assert 1 <= len(workers) <= 2 and os.getpid() not in workers  # worker processes did the work
    main_entry.main(args)
    assert len(_runs(tracking_uri)) == len(runs), "a second main must not create any run"


@pytest.mark.slow
def test_sigterm_gives_the_job_back_at_once(tracking_uri, tmp_path):
    """`docker stop` sends SIGTERM: the run ends KILLED, the job is enqueued again without waiting for the grace
    period."""
    grid = ["--tasks", "syn_lookup", "--languages", "xs1"]
    baseline_entry.main(grid)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    grid_entry.main([*grid, *_grid_args(storage), "--grace_period", "600", "--heartbeat_interval", "1"])
    victim = hq.start_worker(storage, "--grace_period", "600", log=tmp_path / "victim.log", **{FAULT_SLEEP_ENV: "120"})
    _wait_for_running_finetune(MlflowClient(tracking_uri), victim, tmp_path / "victim.log")
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(timeout=60) != 0
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]  # given back, not left RUNNING
    assert "stopped by signal 15" in study.get_trials()[0].user_attrs[queue.FAILURE_REASON]
    log = tmp_path / "worker.log"
    hq.wait_all([hq.start_worker(storage, "--grace_period", "600", log=log)], [log])  # no grace period to wait for
    runs = _check_grid(tracking_uri, 1)
    stopped = [r for r in runs if r.info.status != "FINISHED"]
    assert [(r.data.tags["kind"], r.info.status) for r in stopped] == [("finetune", "KILLED")]


@pytest.mark.slow
def test_jobs_land_in_the_experiment_mlflow_run_chose(tracking_uri, tmp_path, monkeypatch):
    """`mlflow run -e grid` without --experiment-name puts the launcher in `Default`: the workers' runs follow it."""
    client = MlflowClient(tracking_uri)
    launcher = client.create_run(client.create_experiment("chosen-by-mlflow-run")).info
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher.run_id)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    grid_entry.main(["--tasks", "syn_lookup", "--languages", "xs1", *_grid_args(storage)])
    log = tmp_path / "worker.log"
    hq.wait_all([hq.start_worker(storage, log=log)], [log])
    runs = client.search_runs([launcher.experiment_id])
    assert Counter(r.data.tags.get("kind") for r in runs) == {"grid": 1, "baseline": 1, "finetune": 1, "evaluate": 1}
    assert client.get_experiment_by_name("transfergrid") is None


def test_mlflow_run_launcher_of_status_gets_the_report_as_its_note(tracking_uri, tmp_path, monkeypatch):
    """`mlflow run -e status` creates a launcher run before the command starts (MLFLOW_RUN_ID): it is not left empty."""
    client = MlflowClient(tracking_uri)
    launcher = client.create_run(client.create_experiment("launch")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    queue.open_storage(QueueConfig(storage=storage))  # an empty queue (status refuses a storage that does not exist)
    status_entry.main(["--storage", storage])
    note = client.get_run(launcher).data.tags["mlflow.note.content"]
    assert note.startswith("```\n") and "no jobs in this storage" in note.lower()
