"""Workers as Slurm jobs (`--launcher slurm`), tested against a real one-node cluster (tests/helpers_slurm.py).

The cluster tests are skipped, with the reason, where the daemons cannot start (no `slurm-wlm`/`munge`,
not root); the unit tests at the top need no cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

import helpers_queue as hq
import helpers_slurm as hs
from entrypoints import ablation as ablation_entry
from entrypoints import baseline as baseline_entry
from entrypoints import grid as grid_entry
from entrypoints import status as status_entry
from transfergrid import queue, slurm
from transfergrid.config import GridConfig, QueueConfig, load_config
from transfergrid.jobs import FAULT_SLEEP_ENV

PASSWORD = "s3cr3t-pw"  # trust auth ignores it; it must reach no script, log or command line


# --- without a cluster ---------------------------------------------------------------------------------------------


def test_batch_script_carries_the_researchers_options_and_no_storage_url():
    cfg = load_config(GridConfig, [
        "--storage", f"postgresql://tg:{PASSWORD}@db/optuna", "--launcher", "slurm", "--workers", "8",
        "--slurm_partition", "gpu", "--slurm_account", "proj42", "--slurm_qos", "high", "--slurm_time", "2-00:00:00",
        "--slurm_gpus_per_worker", "1", "--slurm_cpus_per_worker", "8", "--slurm_mem", "64G",
        "--slurm_sbatch", "constraint=a100,#SBATCH --exclusive,-x node7,--hint nomultithread",
    ])
    command = queue.worker_command(cfg, "grid-transfergrid", threads=8)
    text = slurm.batch_script(cfg, command, workers=8, logs=Path("/logs"), job_name="tg-grid-transfergrid")
    options = [line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH ")]
    assert options == [
        "--job-name=tg-grid-transfergrid", "--array=0-7", "--output=/logs/%A_%a.log", f"--chdir={Path.cwd()}",
        "--nodes=1", "--ntasks=1", "--cpus-per-task=8", "--partition=gpu", "--account=proj42", "--qos=high",
        "--time=2-00:00:00", "--mem=64G", "--gres=gpu:1", "--signal=B:USR1@120", "--constraint=a100", "--exclusive",
        "-x node7", "--hint nomultithread",
    ]
    (exec_line,) = [line for line in text.splitlines() if line.startswith("exec ")]
    assert exec_line.endswith("-m transfergrid.commands.worker --study_name grid-transfergrid --heartbeat_interval 30 "
                              "--grace_period 120 --max_retries 2 --torch_threads 8")
    assert PASSWORD not in text and "postgresql" not in text
    env = queue.worker_env(cfg, "http://login:5000", threads=8)
    assert env[queue.STORAGE_ENV] == cfg.storage and env["OMP_NUM_THREADS"] == "8"  # the URL travels in the environment


@pytest.mark.parametrize("args, message", [
    (["--launcher", "slurm"], "--launcher slurm submits --workers N worker jobs: give N > 0"),
    (["--launcher", "slurmm", "--workers", "2"], "unknown launcher 'slurmm' (did you mean 'slurm'?); valid: local, slurm"),
    (["--launcher", "slurm", "--workers", "2", "--slurm_time", "2h"], "slurm_time '2h' is not a Slurm time limit"),
    (["--launcher", "slurm", "--workers", "2", "--slurm_mem", "64GB"], "slurm_mem '64GB' is not a memory size"),
    (["--launcher", "slurm", "--workers", "2", "--slurm_sbatch", "# a comment"], "slurm_sbatch entry '# a comment' is not"),
])
def test_bad_launcher_options_exit_2_naming_the_valid_ones(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        grid_entry.main(["--storage", f"sqlite:///{tmp_path / 'optuna.db'}", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()  # nothing was enqueued


def test_launcher_slurm_without_the_slurm_commands_exits_2_before_enqueueing(tracking_uri, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(SystemExit) as exit_info:
        grid_entry.main(["--storage", storage, "--launcher", "slurm", "--workers", "2"])
    assert exit_info.value.code == 2
    assert "--launcher slurm needs the Slurm commands (sbatch, squeue not found on PATH)" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()


def test_sacct_and_squeue_lines_are_read_per_array_task():
    # `sacct --noheader --parsable2 --allocations --format=JobID,State,NodeList,Elapsed,ExitCode`, array 12 of 3 tasks
    sacct = "12_0|COMPLETED|gpu01|01:02:03|0:0\n12_1|CANCELLED by 1000|gpu02|00:10:00|0:15\n12_2|TIMEOUT|gpu03|24:00:00|0:0\n"
    assert slurm._parse(sacct, exit_code=True) == {
        "12_0": {"state": "COMPLETED", "node": "gpu01", "elapsed": "01:02:03", "reason": ""},
        "12_1": {"state": "CANCELLED", "node": "gpu02", "elapsed": "00:10:00", "reason": "exit code 0:15"},
        "12_2": {"state": "TIMEOUT", "node": "gpu03", "elapsed": "24:00:00", "reason": ""},
    }
    # `squeue --array --format=%i|%T|%N|%M|%r`: a pending task has no node yet
    assert slurm._parse("13_0|PENDING||0:00|Resources\n13_1|RUNNING|gpu04|5:01|None\n") == {
        "13_0": {"state": "PENDING", "node": "", "elapsed": "0:00", "reason": "Resources"},
        "13_1": {"state": "RUNNING", "node": "gpu04", "elapsed": "5:01", "reason": ""},
    }


def test_status_away_from_the_cluster_still_reports_the_queue(tracking_uri, tmp_path, monkeypatch, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")
    queue.enqueue(study, [queue.Job("k", {"kind": "source", "label": "syn_lookup.xs1"})])
    study.set_user_attr(f"{slurm.ARRAY_ATTR}77", {"job_id": "77", "workers": 2, "log_dir": "/logs", "script": "/logs/w.sbatch",
                                                  "submitted": "2026-01-01T00:00:00Z"})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status_entry.main(["--storage", storage])
    out = capsys.readouterr().out
    assert "Slurm workers: job array 77 (2 workers, submitted 2026-01-01T00:00:00Z; logs in /logs)" in out
    assert "77_1         UNKNOWN    (squeue not found on PATH: ask on the cluster's login node)" in out


# --- on a real one-node cluster -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    started, why = hs.start_cluster()
    if started is None:
        pytest.skip(why[:3000])
    yield started
    started.stop()


@pytest.fixture
def slurm_env(cluster, monkeypatch):
    """The Slurm clients of this process and of the workers it submits talk to the test cluster."""
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    return cluster


def _wait_until(condition, timeout: float, what: str, cluster: hs.Cluster):
    deadline = time.time() + timeout
    while not (value := condition()):
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                                 + cluster.run("squeue", "-t", "all", "-a", check=False))
        time.sleep(0.5)
    return value


def _states(array: slurm.Array) -> dict[str, str]:
    return {task: s["state"] for task, s in array.states().items()}


@pytest.mark.slow  # starts the cluster
def test_sbatch_refusing_the_options_exits_2_before_enqueueing(slurm_env, tracking_uri, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        grid_entry.main(["--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--launcher", "slurm", "--workers", "2",
                         "--slurm_partition", "nope"])
    assert exit_info.value.code == 2
    assert "sbatch refuses the worker jobs' options: sbatch: error: invalid partition specified: nope" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()


@pytest.fixture
def pg_storage():
    """An Optuna storage URL with a password on a throwaway PostgreSQL database (trust auth ignores the password)."""
    name = hq.create_database()
    yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/{name}"
    hq.drop_database(name)


@pytest.mark.slow
@pytest.mark.e2e  # `main` as a subprocess
def test_main_on_two_slurm_workers_runs_the_12_source_grid_exactly_once(slurm_env, pg_storage, tracking_uri, tmp_path,
                                                                         capsys):
    """`main --launcher slurm --workers 2` on a login node: a PostgreSQL queue, one GPU per worker."""
    storage, url = pg_storage, tracking_uri
    logs = tmp_path / "slurm-logs"
    command = [sys.executable, "-m", "entrypoints.main", "--launcher", "slurm", "--workers", "2",
               "--slurm_gpus_per_worker", "1", "--slurm_cpus_per_worker", "1", "--slurm_mem", "1G", "--slurm_time", "30",
               "--slurm_sbatch", "comment=transfergrid-test", "--slurm_log_dir", str(logs), "--slurm_poll_seconds", "2",
               "--num_epochs", "1", "--lora_r", "8", "--heartbeat_interval", "1", "--grace_period", "5"]
    main = subprocess.Popen(command, env=hq.env(TRANSFERGRID_STORAGE=storage, MLFLOW_TRACKING_URI=url), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")

    def submitted() -> list:
        assert main.poll() is None or slurm.arrays(study), main.communicate()[0][-4000:]
        return slurm.arrays(study)

    (array,) = _wait_until(submitted, 180, "the submission", slurm_env)
    _wait_until(lambda: "RUNNING" in _states(array).values(), 60, "a running worker", slurm_env)
    status_entry.main(["--storage", storage])
    running = capsys.readouterr().out
    assert f"Slurm workers: job array {array.job_id} (2 workers" in running and f"logs in {logs})" in running
    assert any(line.split()[:2] == [f"{array.job_id}_0", state] for line in running.splitlines()
               for state in ("PENDING", "RUNNING")), running
    output, _ = main.communicate(timeout=600)
    assert main.returncode == 0, output[-4000:]
    assert f"logs in {logs}" in output  # the command says where the workers' logs are

    assert _states(array) == {f"{array.job_id}_0": "COMPLETED", f"{array.job_id}_1": "COMPLETED"}
    status_entry.main(["--storage", storage])
    done = capsys.readouterr().out
    assert "study grid-transfergrid: 13 jobs: 13 done, 0 running, 0 waiting, 0 failed" in done
    assert [line.split()[:2] for line in done.splitlines() if line.strip().startswith(f"{array.job_id}_")] == [
        [f"{array.job_id}_0", "COMPLETED"], [f"{array.job_id}_1", "COMPLETED"]]
    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name("transfergrid").experiment_id], max_results=1000)
    assert Counter((r.data.tags["kind"], r.info.status) for r in runs) == {
        ("grid", "FINISHED"): 1, ("baseline", "FINISHED"): 1, ("finetune", "FINISHED"): 12, ("evaluate", "FINISHED"): 12,
        ("analysis", "FINISHED"): 1}
    assert len({r.data.tags["run_key"] for r in runs}) == len(runs)  # every job FINISHED exactly once
    trials = study.get_trials()
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 13} and {t.user_attrs[queue.ATTEMPT] for t in trials} == {1}
    assert len({t.user_attrs[queue.WORKER] for t in trials}) == 2  # both Slurm workers took jobs

    job = slurm_env.run("scontrol", "show", "job", f"{array.job_id}_0")
    for option in ("TresPerNode=gres:gpu:1", "MinMemoryNode=1G", "Comment=transfergrid-test", "TimeLimit=00:30:00"):
        assert option in job, job  # the researcher's options reached the scheduler
    worker_logs = sorted(logs.glob("*.log"))
    assert [p.name for p in worker_logs] == [f"{array.job_id}_0.log", f"{array.job_id}_1.log"]
    for path in [*worker_logs, *logs.glob("*.sbatch")]:
        assert PASSWORD not in path.read_text(), path
    assert all("worker ran" in p.read_text() for p in worker_logs)
    assert PASSWORD not in output + job + slurm_env.run("squeue", "-t", "all", "-o", "%all")


@pytest.mark.slow
def test_scancel_time_limit_and_warning_signal_give_the_job_back_and_nothing_runs_twice(
        slurm_env, tracking_uri, tmp_path, monkeypatch, capsys):
    """Workers sleeping inside their fine-tune are cancelled, hit their time limit, or get the --signal warning.

    A grace period of 600 s: each job comes back through the worker's own signal handling, at once.
    """
    grid = ["--tasks", "syn_lookup", "--languages", "xs1,xn1"]
    baseline_entry.main(grid)  # first: the victims' jobs are fine-tunes
    storage, logs = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "logs"
    args = [*grid, "--storage", storage, "--num_epochs", "1", "--lora_r", "8", "--heartbeat_interval", "1",
            "--grace_period", "600", "--launcher", "slurm", "--slurm_log_dir", str(logs)]
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), "grid-transfergrid")

    def given_back(signal_name: str) -> int:
        return sum(signal_name in t.user_attrs.get(queue.FAILURE_REASON, "") for t in study.get_trials())

    def sleeping(task: str) -> bool:  # the worker is inside its fine-tune run (jobs.FAULT_SLEEP_ENV)
        log = logs / f"{task}.log"
        return log.exists() and "fault injection: sleeping" in log.read_text()

    monkeypatch.setenv(FAULT_SLEEP_ENV, "300")
    enqueued = grid_entry.main([*args, "--workers", "2", "--slurm_time", "2", "--slurm_signal_seconds", "0"])
    assert enqueued.added == 2
    (victims,) = enqueued.workers
    first, second = victims.task_ids()
    _wait_until(lambda: sleeping(first) and sleeping(second), 110, "both victims inside a fine-tune", slurm_env)

    slurm_env.run("scancel", first)  # SIGTERM, then SIGKILL after KillWait
    _wait_until(lambda: given_back("(SIGTERM)") == 1, 60, "the cancelled worker's job given back", slurm_env)

    (warned,) = grid_entry.main([*args, "--workers", "1"]).workers  # claims the job given back
    _wait_until(lambda: sleeping(f"{warned.job_id}_0"), 120, "the third victim inside a fine-tune", slurm_env)
    slurm_env.run("scancel", "--signal=USR1", "--batch", f"{warned.job_id}_0")  # what --signal=B:USR1@N sends
    _wait_until(lambda: given_back("(SIGUSR1)") == 1, 60, "the warned worker's job given back", slurm_env)

    _wait_until(lambda: _states(victims)[second] == "TIMEOUT", 240, "the time limit", slurm_env)
    _wait_until(lambda: given_back("(SIGTERM)") == 2, 60, "the timed-out worker's job given back", slurm_env)
    assert _states(victims) == {first: "CANCELLED", second: "TIMEOUT"}
    _wait_until(lambda: _states(warned) == {f"{warned.job_id}_0": "FAILED"}, 60, "the warned worker's end", slurm_env)

    monkeypatch.delenv(FAULT_SLEEP_ENV)
    (rest,) = grid_entry.main([*args, "--workers", "2"]).workers
    _wait_until(lambda: rest.poll() is not None, 300, "the last workers", slurm_env)
    assert rest.returncode == 0, rest.problems()

    status_entry.main(["--storage", storage])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("    ") and "_" in line.split()[0]}
    assert rows == {first: "CANCELLED", second: "TIMEOUT", f"{warned.job_id}_0": "FAILED",
                    f"{rest.job_id}_0": "COMPLETED", f"{rest.job_id}_1": "COMPLETED"}, out
    assert "study grid-transfergrid: 2 jobs: 2 done, 0 running, 0 waiting, 0 failed" in out
    trials = study.get_trials()
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 2, "FAIL": 3}
    assert sorted(t.user_attrs[queue.ATTEMPT] for t in trials if t.state.name == "COMPLETE") == [2, 3]
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("transfergrid").experiment_id], max_results=1000)
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags["kind"] != "grid"]
    assert Counter(r.data.tags["kind"] for r in finished) == {"baseline": 1, "finetune": 2, "evaluate": 2}
    assert len({r.data.tags["run_key"] for r in finished}) == len(finished)  # 0 duplicates
    stopped = [r for r in runs if r.info.status != "FINISHED"]
    assert [r.data.tags["kind"] for r in stopped] == ["finetune"] * 3  # none left RUNNING
    assert sorted(r.data.tags["failure_reason"].split("stopped by ")[1] for r in stopped) == [
        "signal 10 (SIGUSR1)", "signal 15 (SIGTERM)", "signal 15 (SIGTERM)"]


@pytest.mark.slow
def test_ablation_trials_run_on_a_slurm_worker(slurm_env, tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_id = ablation_entry.main([
        "--tasks", "syn_lookup", "--languages", "xs1,xn1", "--sources", "syn_lookup.xs1", "--ranks", "8",
        "--num_epochs", "1", "--storage", storage, "--launcher", "slurm", "--workers", "1",
        "--slurm_poll_seconds", "1", "--heartbeat_interval", "1", "--grace_period", "5"])
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FINISHED"
    (name,) = optuna.get_all_study_names(queue.open_storage(QueueConfig(storage=storage)))
    study = queue.open_study(queue.open_storage(QueueConfig(storage=storage)), name, ("maximize", "minimize"))
    (array,) = slurm.arrays(study)
    assert _states(array) == {f"{array.job_id}_0": "COMPLETED"}
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"]
    assert {t.user_attrs[queue.WORKER_PID] for t in trials} != {os.getpid()}  # the Slurm worker ran them
