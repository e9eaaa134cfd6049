"""Workers as a Slurm job array: the batch script, `sbatch`, and the workers' states read back from the scheduler.

`--launcher slurm --workers N` writes one batch script into the log folder, submits it as an N-task job
array (`sbatch --export=ALL`), and records the array in the Optuna study (user attribute
`slurm_array:<job id>`), so that `status` can ask the scheduler about those workers later. The queue's
storage stays the one source of truth about the jobs; Slurm only places the workers. The storage URL
and the tracking URI reach the workers through the environment sbatch exports, never through the
script or a command line, so a password lands in no file and no log.

Each worker `exec`s into `python -m transfergrid.commands.worker` (`transfergrid worker`), so the batch shell *is* the worker: `scancel`
and a time limit send it SIGTERM, and `--signal=B:USR1@<seconds>` sends it SIGUSR1 before the time
limit; on either it fails its trial and gives the job back at once (the queue's stop signals).

States come from `squeue --states=all` (pending and running jobs, and ended ones slurmctld still holds:
`MinJobAge`, 300 s by default), then from `sacct` for older ones on clusters that keep accounting.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from transfergrid import queue
from transfergrid.config import LauncherConfig, QueueConfig

logger = logging.getLogger(__name__)

ARRAY_ATTR = "slurm_array:"  # Optuna study user attribute prefix: one per submitted worker array
SIGNAL = "USR1"  # the pre-termination warning; `B:` sends it to the batch shell, which exec'd into the worker
# Job states in which a worker may still run (squeue's long names); any other state is final
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
UNKNOWN = "UNKNOWN"
WORKER_COLUMNS = ["study", "array", "slurm_job", "state", "node", "elapsed", "reason", "log", "log_dir", "submitted"]
_TIMEOUT_S = 60  # a scheduler command that hangs longer than this is an error, not a wait


@dataclass
class Array:
    """A submitted worker array: one Slurm job per worker, `<job_id>_<i>` for i < workers.

    `poll()` and `returncode` make it look like a finished-or-not worker process to `queue.wait_workers`.
    """

    job_id: str
    workers: int
    log_dir: str
    script: str
    submitted: str  # UTC, ISO 8601
    returncode: int | None = None

    def task_ids(self) -> list[str]:
        return [f"{self.job_id}_{i}" for i in range(self.workers)]

    def log(self, task_id: str) -> str:
        return str(Path(self.log_dir) / f"{task_id}.log")

    def states(self) -> dict[str, dict]:
        """task id -> {state, node, elapsed, reason}, from the scheduler now."""
        found = job_states([self.job_id])
        return {task: found.get(task, _unknown()) for task in self.task_ids()}

    def poll(self) -> int | None:
        """None while a worker may still run; then 0 when every worker COMPLETED, else 1."""
        states = self.states()
        if any(s["state"] in ACTIVE_STATES for s in states.values()):
            return None
        self.returncode = int(any(s["state"] != "COMPLETED" for s in states.values()))
        return self.returncode

    def problems(self) -> list[str]:
        """The workers that did not end COMPLETED, with their state and log file."""
        return [f"Slurm job {task} {s['state']} (log: {self.log(task)})"
                for task, s in self.states().items() if s["state"] != "COMPLETED"]


def _unknown() -> dict:
    return {"state": UNKNOWN, "node": "", "elapsed": "",
            "reason": "no longer in squeue, and sacct has no record of it (no accounting on this cluster?)"}


def check_available() -> None:
    """Raises ValueError unless the Slurm client commands are on PATH (a login node)."""
    missing = [name for name in ("sbatch", "squeue") if shutil.which(name) is None]
    if missing:
        raise ValueError(f"--launcher slurm needs the Slurm commands ({', '.join(missing)} not found on PATH): run it "
                         "on the cluster's login node; valid launchers: local, slurm")


def log_dir(cfg: LauncherConfig, study_name: str) -> Path:
    """`cfg.slurm_log_dir`, else `./slurm-logs/<study name>` (absolute: the workers start elsewhere)."""
    return Path(cfg.slurm_log_dir or Path("slurm-logs") / study_name).expanduser().resolve()


def batch_script(cfg: LauncherConfig, command: list[str], *, workers: int, logs: Path, job_name: str) -> str:
    """The sbatch script of a worker array: the researcher's options as #SBATCH lines, then `exec` the worker."""
    options = [f"--job-name={job_name}", f"--array=0-{workers - 1}", f"--output={logs}/%A_%a.log",
               f"--chdir={Path.cwd()}", "--nodes=1", "--ntasks=1", f"--cpus-per-task={cfg.slurm_cpus_per_worker}"]
    for flag, value in (("partition", cfg.slurm_partition), ("account", cfg.slurm_account), ("qos", cfg.slurm_qos),
                        ("time", cfg.slurm_time), ("mem", cfg.slurm_mem)):
        if value:
            options.append(f"--{flag}={value}")
    if cfg.slurm_gpus_per_worker:
        options.append(f"--gres=gpu:{cfg.slurm_gpus_per_worker}")
    if cfg.slurm_signal_seconds:
        options.append(f"--signal=B:{SIGNAL}@{cfg.slurm_signal_seconds}")
    lines = ["#!/bin/bash", *(f"#SBATCH {option}" for option in [*options, *cfg.slurm_sbatch]), "",
             "# transfergrid queue worker. The Optuna storage URL and the MLflow tracking URI come from the",
             "# environment sbatch exported (--export=ALL), never from this file. `exec`: the worker replaces this",
             "# shell, so scancel, the time limit and the --signal warning reach it and it gives its job back.",
             'echo "transfergrid worker: Slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname)"',
             f"exec {shlex.join(command)}", ""]
    return "\n".join(lines)


def _run(args: list[str], *, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)


def _first_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [f"exit status {result.returncode}"])[0].strip()


def check_options(cfg: LauncherConfig) -> None:
    """Let sbatch judge the worker array's options before any work (`sbatch --test-only`, nothing submitted).

    Raises:
        ValueError: the Slurm commands are missing, or sbatch refuses the options (its message).
    """
    check_available()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "check.sbatch"
        script.write_text(batch_script(cfg, ["true"], workers=cfg.workers, logs=Path(tmp), job_name="transfergrid-check"))
        result = _run(["sbatch", "--test-only", str(script)])
    if result.returncode != 0:
        raise ValueError(f"sbatch refuses the worker jobs' options: {_first_error(result)}")


def submit(cfg: LauncherConfig | QueueConfig, study, tracking_uri: str) -> Array:
    """Submit `cfg.workers` workers of `study` as one job array; recorded in the study for `status`.

    Raises:
        ValueError: sbatch is missing or refuses the job (its message).
    """
    check_available()
    logs = log_dir(cfg, study.study_name)
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    script = logs / f"workers-{stamp}.sbatch"
    threads = cfg.slurm_cpus_per_worker
    command = queue.worker_command(cfg, study.study_name, threads)
    script.write_text(batch_script(cfg, command, workers=cfg.workers, logs=logs, job_name=f"tg-{study.study_name}"))
    result = _run(["sbatch", "--parsable", "--export=ALL", str(script)], env=queue.worker_env(cfg, tracking_uri, threads))
    if result.returncode != 0:
        raise ValueError(f"sbatch refused the worker jobs ({script}): {_first_error(result)}")
    job_id = result.stdout.strip().split(";")[0]  # `--parsable`: "<job id>[;<cluster>]"
    array = Array(job_id, cfg.workers, str(logs), str(script), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    record = asdict(array)
    record.pop("returncode")
    study.set_user_attr(f"{ARRAY_ATTR}{job_id}", record)
    logger.info("submitted %d workers of study %s as Slurm job array %s; logs in %s", cfg.workers, study.study_name,
                job_id, logs)
    return array


def arrays(study) -> list[Array]:
    """The worker arrays submitted for `study`, oldest first."""
    found = [Array(**value) for key, value in study.user_attrs.items() if key.startswith(ARRAY_ATTR)]
    return sorted(found, key=lambda a: (a.submitted, int(a.job_id) if a.job_id.isdigit() else 0))


def job_states(job_ids: list[str]) -> dict[str, dict]:
    """Array task id (`<job>_<i>`) -> {state, node, elapsed, reason} of the given array jobs.

    squeue first (it knows pending, running and recently ended jobs), then sacct for the arrays squeue
    no longer knows (where the cluster keeps accounting). Arrays neither knows are left out.

    Raises:
        ValueError: squeue is missing or fails for another reason than unknown job ids.
    """
    if not job_ids:
        return {}
    if shutil.which("squeue") is None:
        raise ValueError("squeue not found on PATH: ask on the cluster's login node")
    result = _run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(job_ids)}",
                   "--format=%i|%T|%N|%M|%r"])
    if result.returncode != 0 and "invalid job id" not in (result.stderr + result.stdout).lower():
        raise ValueError(f"squeue failed: {_first_error(result)}")
    states = _parse(result.stdout if result.returncode == 0 else "")
    missing = [job for job in job_ids if not any(task.split("_")[0] == job for task in states)]
    if missing and shutil.which("sacct") is not None:
        result = _run(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={','.join(missing)}",
                       "--format=JobID,State,NodeList,Elapsed,ExitCode"])
        if result.returncode == 0:
            states.update(_parse(result.stdout, exit_code=True))
        else:  # "Slurm accounting storage is disabled": squeue is all there is
            logger.debug("sacct: %s", _first_error(result))
    return states


def _parse(text: str, *, exit_code: bool = False) -> dict[str, dict]:
    """`id|state|node|elapsed|reason` lines (squeue) or `...|exit code` (sacct `--parsable2`)."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 5 or "_" not in parts[0] or "[" in parts[0]:
            continue
        task, state, node, elapsed, reason = parts[:5]
        state = state.split()[0] if state.strip() else UNKNOWN  # sacct: "CANCELLED by 1234"
        if exit_code:
            reason = "" if reason == "0:0" else f"exit code {reason}"
        out[task] = {"state": state, "node": node, "elapsed": elapsed, "reason": "" if reason == "None" else reason}
    return out


def worker_table(storage, study_names: list[str]):
    """One row per Slurm worker launched for the studies, with its state read from the scheduler now."""
    import optuna
    import pandas as pd

    launched = [(name, array) for name in study_names
                for array in arrays(optuna.load_study(study_name=name, storage=storage))]
    if not launched:
        return pd.DataFrame(columns=WORKER_COLUMNS)
    try:
        states = job_states(sorted({array.job_id for _, array in launched}))
        fallback = _unknown()
    except ValueError as error:  # status from a machine outside the cluster: the queue part still works
        states, fallback = {}, {"state": UNKNOWN, "node": "", "elapsed": "", "reason": str(error)}
    rows = [{"study": name, "array": array.job_id, "slurm_job": task, **states.get(task, fallback),
             "log": array.log(task), "log_dir": array.log_dir, "submitted": array.submitted}
            for name, array in launched for task in array.task_ids()]
    return pd.DataFrame(rows, columns=WORKER_COLUMNS)
