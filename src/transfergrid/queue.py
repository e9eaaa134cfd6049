"""Optuna storage as the job queue (ARCHITECTURE.md section 4): enqueue once, claim atomically, heartbeat, retry.

A job is an Optuna trial: enqueued WAITING with its description in the user attributes (`job`, and the
stable `job_key`, e.g. the finetune run key). A worker claims a WAITING trial by moving it to RUNNING in
one transaction (a row lock on PostgreSQL; `BEGIN IMMEDIATE` on SQLite, whose default deferred
transactions would let two workers claim the same trial), records heartbeats while it works, and tells
the trial COMPLETE with its objective values, or FAIL with `failure_reason`. A worker killed mid-job
stops sending heartbeats: the next worker that polls fails the stale trial
(`optuna.storages.fail_stale_trials`), marks the MLflow runs the dead attempt left RUNNING as FAILED, and
enqueues the job again (at most `max_retries` times; then the job stays FAILED with the reason).

Nothing here knows what a job does: `run_worker` calls an `execute(job, context)` function.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from transfergrid import stopping, stores
from transfergrid.config import QueueConfig, WorkerConfig
from transfergrid.redact import redact

logger = logging.getLogger(__name__)

# Trial user attributes.
JOB = "job"  # the job's description (JSON): kind, config, ...
JOB_KEY = "job_key"  # stable identity of the job: one job, one key, however often it is enqueued
RUN_KEYS = "run_keys"  # MLflow run keys the job produces (to find the runs of a dead attempt)
EXPERIMENT_ID = "experiment_id"
ATTEMPT = "attempt"  # 1 for the first try, 2 for the first retry, ...
RETRY_OF = "retry_of"  # trial number of the attempt this one retries
WORKER = "worker"  # host:pid of the worker running the attempt
WORKER_PID = "worker_pid"
FAILURE_REASON = "failure_reason"
DUPLICATE_OF = "duplicate_of"  # a second copy of a job that was running already (pruned, not run)

STORAGE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql")
STORAGE_FILE = "optuna.db"
STORAGE_ENV = "TRANSFERGRID_STORAGE"  # how the storage URL (which may hold a password) reaches worker processes


@dataclass
class Job:
    """One unit of work to enqueue: identity, description, and the MLflow run keys it produces."""

    key: str
    payload: dict
    run_keys: list[str] = field(default_factory=list)
    experiment_id: str = ""
    params: dict = field(default_factory=dict)  # Optuna parameters (ablation trials), shown in optuna-dashboard


@dataclass
class JobContext:
    """What a job's `execute` function gets besides the job: where it runs and a per-process cache."""

    study: "optuna.Study"
    trial_number: int
    trial_id: int
    tracking_uri: str | None  # the worker's override, or None: the URI the job was enqueued with
    device: str | None
    cache: dict
    poll_seconds: float = 2.0

    def wait_for_job(self, job_key: str) -> None:
        """Block while the job `job_key` of this study is WAITING or RUNNING (e.g. the baseline evaluations need).

        Raises:
            RuntimeError: the job failed for good.
        """
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        while True:
            attempts = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get(JOB_KEY) == job_key]
            live = [t for t in attempts if t.state in (TrialState.WAITING, TrialState.RUNNING)]
            if not attempts or any(t.state == TrialState.COMPLETE for t in attempts):
                return
            if not live:
                reasons = "; ".join(failure_reason(t) for t in attempts if t.state == TrialState.FAIL)
                raise RuntimeError(f"job {job_key} this job depends on failed: {reasons}")
            fail_stale_trials(self.study)
            time.sleep(self.poll_seconds)


def default_storage() -> str:
    """`sqlite:///<cwd>/optuna.db`, beside the default tracking store."""
    return f"sqlite:///{Path.cwd() / STORAGE_FILE}"


@contextlib.contextmanager
def storage_in_environment(storage: str) -> Iterator[None]:
    """`$TRANSFERGRID_STORAGE` set to `storage` while the body runs, so that a worker's jobs claim their run keys in
    its queue when the tracking store is a server (`claims`); restored afterwards, so nothing leaks into the caller."""
    previous = os.environ.get(STORAGE_ENV)
    if storage:
        os.environ[STORAGE_ENV] = storage
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(STORAGE_ENV, None)
        else:
            os.environ[STORAGE_ENV] = previous


def check_storage_url(url: str) -> str:
    """The storage URL (default when empty), checked before anything connects.

    Raises:
        ValueError: not a URL of a supported database; the message masks any password.
    """
    url = stores.absolute_sqlite(url or default_storage(), "Optuna storage")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in STORAGE_SCHEMES or not rest.strip("/"):
        raise ValueError(
            f"invalid Optuna storage URL {redact(url)!r}; valid: sqlite:///path/to/optuna.db (one machine) or "
            f"postgresql://user:password@host:5432/database (a team); supported schemes: {', '.join(STORAGE_SCHEMES)}"
        )
    return url


def _serialize_sqlite(engine) -> None:
    """Make every SQLite transaction `BEGIN IMMEDIATE`, so that a claim's read-check-write is atomic."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record):  # noqa: ARG001 - SQLAlchemy's signature
        dbapi_connection.isolation_level = None  # no implicit BEGIN from the driver: we emit our own

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed are dropped


def open_storage(cfg: QueueConfig, on_stale: Callable | None = None, *, create: bool = True):
    """An Optuna `RDBStorage` with heartbeats on `cfg.storage` (SQLite or PostgreSQL).

    Args:
        cfg: storage URL, heartbeat interval and grace period.
        on_stale: called as `on_stale(study, frozen_trial)` for each trial this process fails as stale.
        create: make a missing SQLite file (enqueueing); off for readers (`worker`, `status`), for which a
            missing file is a mistyped path.

    Raises:
        ValueError: a bad URL, a missing SQLite file (`create` off), or a database that cannot be reached
            (password masked).
    """
    import optuna

    url = check_storage_url(cfg.storage)
    path = stores.sqlite_path(url)
    if not create and path is not None and not path.is_file():
        raise ValueError(f"no Optuna storage at {redact(url)}: {path} does not exist; check --storage (or "
                         f"${STORAGE_ENV}), or enqueue the jobs first (grid, or main/ablation --workers N)")
    if url.startswith("postgresql://"):  # SQLAlchemy 2.1's default driver is psycopg 3; ours is psycopg2 (pinned)
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    sqlite = url.startswith("sqlite")
    if sqlite:
        Path(url.partition(":///")[2]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and fail_stale_trials are "experimental" since Optuna 2.9; say so once, in the docs, not per poll
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from transfergrid.claims import retry_first_use

    try:
        storage = retry_first_use(lambda: optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=cfg.heartbeat_interval,
            grace_period=cfg.grace_period, heartbeat_stale_trial_callback=on_stale,
        ), f"Optuna storage {redact(url)}", url)
    except Exception as error:  # sqlalchemy's OperationalError, a missing driver, ...
        raise ValueError(f"cannot open Optuna storage {redact(url)!r}: {redact(str(error).splitlines()[0])}") from None
    if sqlite:
        _serialize_sqlite(storage.engine)
    return storage


def existing_study(cfg: QueueConfig, study_name: str):
    """The study `study_name` if its storage and the study exist, else None; creates neither (dry runs)."""
    import optuna

    path = stores.sqlite_path(check_storage_url(cfg.storage))
    if path is not None and not path.is_file():
        return None
    storage = open_storage(cfg, create=False)
    if study_name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=study_name, storage=storage)


def study_names(storage, study_name: str = "") -> list[str]:
    """`[study_name]` if the storage holds it, or every study's name when `study_name` is empty.

    Raises:
        ValueError: an unknown study name; the message lists the storage's studies.
    """
    import optuna

    names = optuna.get_all_study_names(storage)
    if not study_name:
        return names
    if study_name not in names:
        from transfergrid.grid import suggest

        raise ValueError(f"unknown study {study_name!r}{suggest(study_name, names)} in this storage; its studies: "
                         f"{', '.join(sorted(names)) or '(none: enqueue jobs with grid first)'}")
    return [study_name]


def open_study(storage, study_name: str, directions: Sequence[str] = ("maximize",)):
    """Create or load the study `study_name` (safe when several processes do it at once)."""
    import optuna

    return optuna.create_study(study_name=study_name, storage=storage, directions=list(directions), load_if_exists=True)


def failure_reason(trial) -> str:
    """Why a FAILED trial failed: its `failure_reason`, or a lost heartbeat when the worker died silently."""
    if FAILURE_REASON in trial.user_attrs:
        return str(trial.user_attrs[FAILURE_REASON])
    return f"worker {trial.user_attrs.get(WORKER, '?')} stopped sending heartbeats (killed or lost)"


def _latest_attempts(study) -> dict[str, object]:
    """job_key -> its newest trial (the latest attempt); pruned duplicate copies do not count."""
    latest = {}
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get(JOB_KEY)
        if key is None or DUPLICATE_OF in trial.user_attrs:
            continue
        if key not in latest or trial.number > latest[key].number:
            latest[key] = trial
    return latest


def live_job_keys(study) -> set[str]:
    """Keys of the jobs whose latest attempt is WAITING or RUNNING (enqueueing them again does nothing)."""
    from optuna.trial import TrialState

    return {key for key, trial in _latest_attempts(study).items() if trial.state in (TrialState.WAITING, TrialState.RUNNING)}


def enqueue(study, jobs: Sequence[Job], *, parent_run_id: str | None = None) -> tuple[int, int]:
    """Enqueue each job unless it is WAITING or RUNNING already (idempotent); returns (added, skipped).

    Jobs whose latest attempt COMPLETEd or FAILED are enqueued again: the caller passes only jobs whose
    runs are not FINISHED in the tracking store, and a retry of a failed job is what a rerun should do.
    """
    from optuna.trial import TrialState

    latest = _latest_attempts(study)
    added = skipped = 0
    for job in jobs:
        current = latest.get(job.key)
        if current is not None and current.state in (TrialState.WAITING, TrialState.RUNNING):
            skipped += 1
            continue
        attempt = 1 if current is None else int(current.user_attrs.get(ATTEMPT, 1)) + 1
        payload = {**job.payload, **({"parent_run_id": parent_run_id} if parent_run_id else {})}
        study.enqueue_trial(
            dict(job.params),
            user_attrs={JOB_KEY: job.key, JOB: payload, RUN_KEYS: list(job.run_keys), EXPERIMENT_ID: job.experiment_id,
                        ATTEMPT: attempt},
        )
        added += 1
    logger.info("study %s: %d jobs enqueued, %d already waiting or running", study.study_name, added, skipped)
    return added, skipped


def _trial_id(trial) -> int:
    """The storage id of a trial (the storage API takes ids; `FrozenTrial` keeps it in `_trial_id`)."""
    return trial._trial_id  # noqa: SLF001


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


CLAIM_FAULT_SLEEP_ENV = "TRANSFERGRID_FAULT_CLAIM_SLEEP_S"  # tests: a worker pauses inside its claim (to signal it)


def claim(study):
    """Claim the oldest WAITING trial of `study` (WAITING -> RUNNING, atomically); returns it or None.

    The trial's first heartbeat is recorded before the claim (a heartbeat row of a WAITING trial means
    nothing): a worker killed at any point after the claim leaves a trial that `fail_stale_trials` sees
    and retries. Callers hold the stop signals back around it (`stopping.hold_signals`), so a SIGTERM
    never splits a claim from its worker attributes.

    A claimed trial whose job another trial is already running (the job was enqueued twice by two
    enqueuers at once) is told PRUNED with `duplicate_of`, and the next one is tried.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage  # noqa: SLF001 - the storage API is public; Study has no accessor
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = _trial_id(trial)
        storage.record_heartbeat(trial_id)  # first: there is no moment when the claim has no heartbeat
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        if seconds := float(os.environ.get(CLAIM_FAULT_SLEEP_ENV) or 0):
            logger.warning("fault injection: sleeping %.1f s inside the claim of trial %d", seconds, trial.number)
            time.sleep(seconds)
        storage.set_trial_user_attr(trial_id, WORKER, worker_id())
        storage.set_trial_user_attr(trial_id, WORKER_PID, os.getpid())
        claimed = storage.get_trial(trial_id)
        if (first := _running_copy(study, claimed)) is not None:
            storage.set_trial_user_attr(trial_id, DUPLICATE_OF, first.number)
            study.tell(claimed.number, state=TrialState.PRUNED)
            logger.info("trial %d duplicates running trial %d of job %s: pruned", claimed.number, first.number,
                        claimed.user_attrs.get(JOB_KEY))
            continue
        return claimed
    return None


def expire_unclaimed(study, grace_period: float) -> None:
    """Fail and retry RUNNING trials that no worker owns, claimed more than `grace_period` s ago.

    A claim records its heartbeat and its worker before anyone can stop it; a RUNNING trial without a worker
    was cut off inside its claim by an older version (which had no heartbeat to go stale either), and would
    otherwise stay RUNNING forever, with every waiting worker waiting for it.
    """
    from datetime import datetime

    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage  # noqa: SLF001
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if WORKER in trial.user_attrs or trial.datetime_start is None:
            continue
        if (datetime.now() - trial.datetime_start).total_seconds() <= grace_period:
            continue
        try:
            if not storage.set_trial_state_values(_trial_id(trial), state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another worker expired it first
            continue
        callback = storage.get_heartbeat_stale_trial_callback()
        logger.warning("trial %d of %s: RUNNING for %.0f s without a worker: failed, its job retried", trial.number,
                       study.study_name, (datetime.now() - trial.datetime_start).total_seconds())
        if callback is not None:
            callback(study, storage.get_trial(_trial_id(trial)))


def _running_copy(study, claimed):
    """Another RUNNING trial of the same job that was claimed before `claimed`, or None."""
    from optuna.trial import TrialState

    key = claimed.user_attrs.get(JOB_KEY)
    for other in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if other.number != claimed.number and other.user_attrs.get(JOB_KEY) == key:
            if (other.datetime_start, other.number) < (claimed.datetime_start, claimed.number):
                return other
    return None


@contextlib.contextmanager
def heartbeat(storage, trial_id: int, interval: float) -> Iterator[None]:
    """Record the trial's heartbeat every `interval` seconds in a background thread while the body runs."""
    stop = threading.Event()

    def beat():
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a flaky connection must not kill the job; the next beat retries
                logger.warning("heartbeat of trial id %d failed", trial_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class StaleJobHandler:
    """Called for each trial this worker failed as stale: fail its RUNNING MLflow runs, retry the job.

    Args:
        tracking_uri: the worker's tracking URI override (None: the one the job was enqueued with).
        max_retries: how many times one job is retried after its worker died.
    """

    def __init__(self, tracking_uri: str | None, max_retries: int):
        self.tracking_uri = tracking_uri
        self.max_retries = max_retries

    def __call__(self, study, trial) -> None:
        attrs = trial.user_attrs
        reason = f"{failure_reason(trial)}; noticed by worker {worker_id()} (trial {trial.number})"
        logger.warning("job %s: %s", attrs.get(JOB_KEY), reason)
        self._fail_runs(attrs, reason)
        attempt = int(attrs.get(ATTEMPT, 1))
        if attempt > self.max_retries:
            logger.error("job %s failed %d times: not retried again", attrs.get(JOB_KEY), attempt)
            return
        study.enqueue_trial(
            dict(trial.params) or dict((attrs.get(JOB) or {}).get("params", {})),
            user_attrs={k: attrs[k] for k in (JOB_KEY, JOB, RUN_KEYS, EXPERIMENT_ID) if k in attrs}
            | {ATTEMPT: attempt + 1, RETRY_OF: trial.number},
        )

    def _fail_runs(self, attrs: dict, reason: str) -> None:
        from transfergrid.tracking import reader, writer

        uri = writer.resolve_tracking_uri(self.tracking_uri or (attrs.get(JOB) or {}).get("config", {}).get("tracking_uri"))
        experiment_id = attrs.get(EXPERIMENT_ID)
        if not experiment_id:
            return
        try:
            for key in attrs.get(RUN_KEYS, []):
                for run_id in reader.running_run_ids(uri, experiment_id, key):
                    writer.fail_run(uri, run_id, f"worker died: {reason}")
        except Exception:  # the tracking server may be down; the job is still retried
            logger.exception("could not mark the runs of the dead attempt FAILED on %s", redact(uri))


# SIGTERM: `docker stop`, `scancel`, a Slurm time limit; SIGUSR1: Slurm's warning before the time limit (--signal);
# SIGINT: Ctrl-C. Each ends the job's runs KILLED and gives the job back at once (see `stopping`).
STOP_SIGNALS = stopping.STOP_SIGNALS


def run_worker(cfg: WorkerConfig, execute: Callable[[dict, JobContext], Sequence[float]], *, cache: dict | None = None) -> int:
    """Claim and run jobs until none is WAITING or RUNNING (or `cfg.max_jobs` are done); returns the jobs run.

    With `cfg.study_name` empty, every study in the storage is served. A job raising an exception is
    told FAIL with `failure_reason` (not retried: it would fail again); a worker that dies leaves its
    job to be retried by another one after `grace_period` seconds.
    """
    storage = open_storage(cfg, StaleJobHandler(cfg.tracking_uri, cfg.max_retries), create=False)
    study_names(storage, cfg.study_name)  # a mistyped name fails here, listing the studies
    cache = {} if cache is None else cache
    with stopping.stop_on_signals():
        return _serve(cfg, storage, execute, cache)


def _serve(cfg: WorkerConfig, storage, execute, cache: dict) -> int:
    import optuna
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    from transfergrid.console import progress

    done = 0
    with progress(desc=f"worker {worker_id()}", unit="job") as bar:
        while not cfg.max_jobs or done < cfg.max_jobs:
            names = [cfg.study_name] if cfg.study_name else optuna.get_all_study_names(storage)
            busy, claimed = False, None
            for name in names:
                study = optuna.load_study(study_name=name, storage=storage)
                fail_stale_trials(study)
                expire_unclaimed(study, cfg.grace_period)
                held = stopping.hold_signals()  # a stop signal now waits until the claimed job can be given back
                try:
                    claimed = claim(study)
                finally:
                    if claimed is None:
                        stopping.release_signals(held)
                if claimed is not None:
                    break
                busy |= bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if claimed is None:
                if busy and cfg.wait:  # a running job may still fail and come back: stay until it is done
                    time.sleep(cfg.poll_seconds)
                    continue
                break
            context = JobContext(study, claimed.number, _trial_id(claimed), cfg.tracking_uri, cfg.device, cache, cfg.poll_seconds)
            _run_claimed(storage, study, claimed, context, execute, cfg.heartbeat_interval, held)
            done += 1
            bar.update()
    logger.info("worker %s: %d jobs run, nothing left", worker_id(), done)
    return done


def _run_claimed(storage, study, trial, context: JobContext, execute, interval: float, held: bool) -> None:
    """Run a claimed trial's job; `held`: `hold_signals`' value (a stop signal held back since the claim
    is delivered inside, and gives the job back)."""
    from optuna.trial import TrialState

    job = trial.user_attrs.get(JOB) or {}
    try:
        stopping.release_signals(held)
        logger.info("trial %d of %s: job %s (%s, attempt %s)", trial.number, study.study_name,
                    trial.user_attrs.get(JOB_KEY), job.get("kind"), trial.user_attrs.get(ATTEMPT, 1))
        with heartbeat(storage, _trial_id(trial), interval):
            values = execute(job, context)
    except BaseException as error:
        if _still_running(storage, trial):
            storage.set_trial_user_attr(_trial_id(trial), FAILURE_REASON, redact(stopping.reason(error))[:2000])
            study.tell(trial.number, state=TrialState.FAIL)
            if not isinstance(error, Exception):  # SIGTERM / Ctrl-C: the job is not at fault, give it back
                StaleJobHandler(context.tracking_uri, max_retries=10**6)(study, storage.get_trial(_trial_id(trial)))
        if not isinstance(error, Exception):
            raise
        logger.exception("trial %d (job %s) failed", trial.number, trial.user_attrs.get(JOB_KEY))
        return
    if _still_running(storage, trial):
        study.tell(trial.number, list(values))


def _still_running(storage, trial) -> bool:
    """False when another worker failed this trial as stale meanwhile (heartbeats delayed past the grace period).

    The job was enqueued again then; its runs are FINISHED under the same run keys, so the retry reuses them.
    """
    from optuna.trial import TrialState

    if storage.get_trial(_trial_id(trial)).state == TrialState.RUNNING:
        return True
    logger.warning("trial %d was failed as stale by another worker while it ran; its retry reuses the finished runs",
                   trial.number)
    return False


def job_table(storage, study_name: str):
    """One row per job of the study: its latest attempt's state, attempts, worker, reason and values."""
    import optuna
    import pandas as pd

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    attempts: dict[str, int] = {}
    for trial in trials:
        if JOB_KEY in trial.user_attrs and DUPLICATE_OF not in trial.user_attrs:
            attempts[trial.user_attrs[JOB_KEY]] = attempts.get(trial.user_attrs[JOB_KEY], 0) + 1
    rows = []
    for key, trial in _latest_attempts(study).items():
        job = trial.user_attrs.get(JOB) or {}
        rows.append({
            "study": study_name, "job_key": key, "kind": job.get("kind"), "what": job.get("label", ""),
            "state": trial.state.name, "trial": trial.number, "attempts": attempts.get(key, 1),
            "worker": trial.user_attrs.get(WORKER, ""),
            "reason": failure_reason(trial) if trial.state.name == "FAIL" else "",
            "values": ",".join(f"{v:.3g}" for v in (trial.values or [])),
        })
    return pd.DataFrame(rows, columns=["study", "job_key", "kind", "what", "state", "trial", "attempts", "worker",
                                       "reason", "values"])


def worker_env(cfg: QueueConfig, tracking_uri: str, threads: int = 1) -> dict:
    """The environment of a `worker` process: storage URL and tracking URI (never on its command line: `ps`)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "MLFLOW_TRACKING_URI": tracking_uri, STORAGE_ENV: check_storage_url(cfg.storage)}
    env.pop("MLFLOW_RUN_ID", None)
    root = Path(__file__).resolve().parents[2]  # a checkout not installed: analysis/ and src/ on the path
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), str(root / "src"), env.get("PYTHONPATH", "")) if p)
    return env


def worker_command(cfg: QueueConfig, study_name: str, threads: int = 1) -> list[str]:
    """The `worker` command line serving `study_name` with the queue's heartbeat settings (no URL in it)."""
    return [sys.executable, "-m", "transfergrid.commands.worker", "--study_name", study_name,
            "--heartbeat_interval", str(cfg.heartbeat_interval), "--grace_period", str(cfg.grace_period),
            "--max_retries", str(cfg.max_retries), "--torch_threads", str(threads)]


def start_workers(n: int, cfg: QueueConfig, *, study_name: str, tracking_uri: str, cwd: Path | None = None) -> list:
    """Start `n` local `worker` processes with one torch thread each (2 threads per process run 4x slower on 2 cores)."""
    env, args = worker_env(cfg, tracking_uri), worker_command(cfg, study_name)
    return [subprocess.Popen(args, env=env, cwd=cwd, preexec_fn=stopping.die_with_parent()) for _ in range(n)]


def wait_workers(processes: list, study=None, poll_seconds: float = 2.0) -> list[int]:
    """Wait for every worker process, with a progress bar of the study's finished jobs; returns the exit codes.

    Stopped itself (a signal to this process alone, an error), it stops the workers first: each gives its job back.
    """
    try:
        return _wait_workers(processes, study, poll_seconds)
    except BaseException:
        stop_workers(processes)
        raise


def stop_workers(processes: list, timeout: float = 60.0) -> None:
    """SIGTERM to each running worker process (it ends its runs and gives its job back), SIGKILL after `timeout` s."""
    running = [p for p in processes if hasattr(p, "send_signal") and p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.time() + timeout
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if running:
        logger.warning("stopped %d worker processes", len(running))


def _wait_workers(processes: list, study, poll_seconds: float) -> list[int]:
    from transfergrid.console import progress

    def finished() -> tuple[int, int]:
        latest = _latest_attempts(study).values()
        return sum(t.state.is_finished() for t in latest), len(latest)

    if study is None:
        return [process.wait() for process in processes]
    with progress(desc=f"jobs of {study.study_name}", unit="job") as bar:
        while any(process.poll() is None for process in processes):
            done, total = finished()
            bar.total = total
            bar.update(done - bar.n)
            time.sleep(poll_seconds)
        done, total = finished()
        bar.total = total
        bar.update(done - bar.n)
    return [process.returncode for process in processes]
