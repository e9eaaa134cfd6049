"""The grid as queued jobs (ARCHITECTURE.md section 4): enqueue, run a claimed job, `main --workers N`, status.

One job per (model, source cell, seed, recipe): its fine-tune and its evaluation, nested under the grid
run; plus one job for the baseline the evaluations compare against (a job that reaches its evaluation
before the baseline is FINISHED waits for it, so the baseline is never computed twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transfergrid import analysis_run, jobs, queue, slurm, stores
from transfergrid.config import (
    AnalysisConfig,
    BaselineConfig,
    EvaluateConfig,
    FinetuneConfig,
    GridConfig,
    LauncherConfig,
    MainConfig,
    QueueConfig,
    StatusConfig,
    to_dict,
)
from transfergrid.grid import Cell, on_task_gain
from transfergrid.redact import redact
from transfergrid.tracking import names, reader, writer

logger = logging.getLogger(__name__)

_QUEUE_FIELDS = set(QueueConfig.__dataclass_fields__) | set(LauncherConfig.__dataclass_fields__) | {"dry_run"}


def grid_study_name(cfg: GridConfig) -> str:
    """The Optuna study holding the grid's jobs: `cfg.study_name`, else `grid-<experiment>`."""
    return cfg.study_name or f"grid-{cfg.experiment}"


def plan_jobs(study: jobs.Study, cfg: GridConfig, plan: list[jobs.PlannedJob]) -> list[queue.Job]:
    """The queue jobs of a study plan: the baseline, then one fine-tune + evaluation job per source."""
    config = {k: v for k, v in to_dict(cfg).items() if k not in _QUEUE_FIELDS} | {"tracking_uri": study.tracking_uri}
    baseline = plan[0]
    out = [queue.Job(baseline.key, {"kind": "baseline", "config": config, "label": f"baseline {study.model.id}",
                                    "experiment_id": study.experiment_id}, [baseline.key], study.experiment_id)]
    for finetune, evaluate in zip(plan[1::2], plan[2::2]):
        payload = {"kind": "source", "config": config, "source": str(finetune.source), "baseline_key": baseline.key,
                   "label": f"{finetune.source} {study.model.id} seed={cfg.seed}", "experiment_id": study.experiment_id}
        out.append(queue.Job(finetune.key, payload, [finetune.key, evaluate.key], study.experiment_id))
    return out


def _pending(study: jobs.Study, queued: list[queue.Job]) -> list[queue.Job]:
    """Jobs with a run key not FINISHED in the tracking store (a FINISHED job is skipped, not enqueued)."""
    if study.experiment_id is None:  # a dry run before the experiment exists: nothing is FINISHED
        return list(queued)
    done = reader.finished_run_keys(study.tracking_uri, study.experiment_id, ("baseline", "finetune", "evaluate"))
    return [job for job in queued if any(key not in done for key in job.run_keys)]


@dataclass
class Enqueued:
    """What `enqueue_grid` did: the study context, the plan, the Optuna study name and counts."""

    study: jobs.Study
    plan: list
    study_name: str
    added: int
    pending: int
    to_enqueue: int = 0  # pending jobs not already waiting or running in the queue
    workers: list | None = None  # what `--workers N` started: local processes, or one `slurm.Array`
    problems: list[str] | None = None  # local workers (grid waits for them) that did not exit cleanly


def check_launcher(cfg: LauncherConfig) -> None:
    """Before any work: with `--launcher slurm`, sbatch is here and accepts the worker jobs' options.

    Raises:
        ValueError: no Slurm commands, or options sbatch refuses (its message).
    """
    if cfg.workers and cfg.launcher == "slurm":
        slurm.check_options(cfg)


def launch_workers(cfg: GridConfig, study, tracking_uri: str) -> list:
    """Start `cfg.workers` workers of the Optuna `study` on `cfg.launcher`: local processes or one Slurm job array."""
    if cfg.launcher == "slurm":
        return [slurm.submit(cfg, study, tracking_uri)]
    return queue.start_workers(cfg.workers, cfg, study_name=study.study_name, tracking_uri=tracking_uri)


def wait_for_workers(workers: list, study, cfg: LauncherConfig) -> list[str]:
    """Wait until every worker ended (progress bar of the study's jobs); returns the workers that did not end cleanly."""
    slurm_array = cfg.launcher == "slurm"
    codes = queue.wait_workers(workers, study, poll_seconds=cfg.slurm_poll_seconds if slurm_array else 2.0)
    if slurm_array:
        return [problem for array in workers for problem in array.problems()]
    return [f"worker pid {w.pid} exited with status {code}" for w, code in zip(workers, codes) if code]


def unfinished_jobs_error(table, problems: list[str]) -> RuntimeError | None:
    """A RuntimeError naming the jobs not COMPLETE after the workers ended (and the workers' problems), else None."""
    left = table[table["state"] != "COMPLETE"]
    if not len(left):
        if problems:
            logger.warning("every job is done, but: %s", "; ".join(problems))
        return None
    failed = left[left["state"] == "FAIL"]
    return RuntimeError(
        f"{len(left)} jobs not done after the workers ended ({len(failed)} FAILED"
        + "".join(f"; {row.what}: {row.reason}" for row in failed.itertuples()) + ")"
        + (f"; workers: {'; '.join(problems)}" if problems else "")
        + "; rerun the same command to retry them"
    )


def enqueue_grid(
    cfg: GridConfig, *, launcher_run_id: str | None = None, parent_run_id: str | None = None, study: jobs.Study | None = None
) -> Enqueued:
    """Validate the grid and enqueue its unfinished jobs in the Optuna study (idempotent).

    Args:
        study: the study context when the caller has it (the experiment `mlflow run` chose, for instance).

    Raises:
        ValueError: a bad storage URL, model, suite or cell (before any work).
    """
    queue.check_storage_url(cfg.storage)
    study = study or jobs.open_study(cfg, launcher_run_id, create=not cfg.dry_run)
    plan = jobs.plan_study(study, cfg)
    name = grid_study_name(cfg)
    pending = _pending(study, plan_jobs(study, cfg, plan))
    if not pending:
        return Enqueued(study, plan, name, 0, 0)
    if cfg.dry_run:  # read the queue if it exists; never create the storage or the study
        existing = queue.existing_study(cfg, name)
        live = queue.live_job_keys(existing) if existing is not None else set()
        return Enqueued(study, plan, name, 0, len(pending), len([job for job in pending if job.key not in live]))
    optuna_study = queue.open_study(queue.open_storage(cfg), name)
    to_enqueue = len([job for job in pending if job.key not in queue.live_job_keys(optuna_study)])
    added, _ = queue.enqueue(optuna_study, pending, parent_run_id=parent_run_id)
    return Enqueued(study, plan, name, added, len(pending), to_enqueue)


def _grid_tags(study: jobs.Study, cfg: GridConfig, plan, study_name: str) -> dict:
    return {names.MODEL: study.model.id, names.BENCHMARK_SUITE: study.suite.name, names.SEED: cfg.seed,
            names.RUN_KEY: jobs.grid_key(plan),
            names.OPTUNA_STUDY: study_name, names.OPTUNA_STORAGE: redact(queue.check_storage_url(cfg.storage))}


def run_grid(cfg: GridConfig, *, launcher_run_id: str | None = None) -> Enqueued:
    """`grid`: enqueue the jobs under a `grid` run (plan, study name and storage logged; password masked).

    With `cfg.workers`, then start that many workers while any job is left: a Slurm array is submitted
    and left running; local workers are waited for. Two `grid` at once on one study: the second waits
    while the first enqueues (the grid's run key is claimed), then finds nothing left to enqueue.
    """
    if not cfg.dry_run:
        check_launcher(cfg)
    study = jobs.open_study(cfg, launcher_run_id, create=not cfg.dry_run)
    probe = enqueue_grid(GridConfig(**{**to_dict(cfg), "dry_run": True}), study=study)
    if cfg.dry_run:
        logger.info("dry run")
        return probe
    with jobs.claimed(probe.study, jobs.grid_key(probe.plan), f"enqueueing the grid of study {probe.study_name}"):
        probe = enqueue_grid(GridConfig(**{**to_dict(cfg), "dry_run": True}), study=probe.study)  # as it is now
        done = _enqueue_under_grid_run(cfg, probe, launcher_run_id)
    if cfg.workers and probe.pending:
        optuna_study = queue.open_study(queue.open_storage(cfg), done.study_name)
        done.workers = launch_workers(cfg, optuna_study, done.study.tracking_uri)
        if cfg.launcher == "local":
            done.problems = wait_for_workers(done.workers, optuna_study, cfg)
    return done


def _enqueue_under_grid_run(cfg: GridConfig, probe: Enqueued, launcher_run_id: str | None) -> Enqueued:
    if not probe.to_enqueue:
        logger.info("nothing to enqueue: every job is FINISHED, waiting or running")
        return probe
    study = probe.study
    with writer.open_run(
        study.tracking_uri, study.experiment_id, kind="grid", tags=_grid_tags(study, cfg, probe.plan, probe.study_name),
        run_name=f"grid {study.model.id} {study.suite.name} seed={cfg.seed}", adopt_run_id=launcher_run_id,
    ) as grid:
        grid.log_config(to_dict(cfg))
        grid.log_text("\n".join(map(str, probe.plan)) + "\n", "plan.txt")
        done = enqueue_grid(cfg, parent_run_id=grid.run_id, study=study)
        grid.log_metrics({"jobs_total": len(probe.plan), "jobs_enqueued": done.added})
    return done


def run_main_on_workers(cfg: MainConfig, *, launcher_run_id: str | None = None) -> list:
    """`main --workers N`: enqueue, run N workers (local processes with one torch thread each, or a Slurm job
    array), wait for them, then the analysis. A second `main` on the same study waits for the first (the
    study's run key is claimed), then reuses its runs.

    Raises:
        RuntimeError: a job is not done after the workers stopped (reasons in the message; the grid run FAILED).
    """
    if not cfg.dry_run:
        check_launcher(cfg)
    study = jobs.open_study(cfg, launcher_run_id, create=not cfg.dry_run)
    probe = enqueue_grid(MainConfig(**{**to_dict(cfg), "dry_run": True}), study=study)
    if cfg.dry_run:
        return probe.plan
    what = f"the study of {probe.study.model.id} on {probe.study.suite.name}"
    with jobs.claimed(probe.study, jobs.grid_key(probe.plan), what):
        probe = enqueue_grid(MainConfig(**{**to_dict(cfg), "dry_run": True}), study=probe.study)  # as it is now
        _main_on_workers(cfg, probe, launcher_run_id)
    return probe.plan


def _main_on_workers(cfg: MainConfig, probe: Enqueued, launcher_run_id: str | None) -> None:
    study, analysis_cfg = probe.study, AnalysisConfig(experiment=cfg.experiment, tracking_uri=cfg.tracking_uri)
    if not probe.pending and jobs.analysis_done(study, analysis_cfg):
        logger.info("nothing to do: every job and the analysis are FINISHED")
        return
    with writer.open_run(
        study.tracking_uri, study.experiment_id, kind="grid", tags=_grid_tags(study, cfg, probe.plan, probe.study_name),
        run_name=f"study {study.model.id} {study.suite.name} seed={cfg.seed} ({cfg.workers} workers)",
        adopt_run_id=launcher_run_id,
    ) as grid:
        grid.log_config(to_dict(cfg))
        grid.log_text("\n".join(map(str, probe.plan)) + "\n", "plan.txt")
        done = enqueue_grid(cfg, parent_run_id=grid.run_id, study=study)
        logger.info("%d jobs enqueued in study %s; starting %d workers (%s)", done.added, done.study_name, cfg.workers,
                    cfg.launcher)
        storage = queue.open_storage(cfg)
        optuna_study = queue.open_study(storage, done.study_name)
        problems = wait_for_workers(launch_workers(cfg, optuna_study, study.tracking_uri), optuna_study, cfg) \
            if probe.pending else []
        table = queue.job_table(storage, done.study_name)
        grid.log_dataframe(table, "jobs.csv")
        grid.log_metrics({"jobs_total": len(probe.plan), "jobs_run": done.added,
                          "jobs_failed": int((table["state"] == "FAIL").sum())})
        if error := unfinished_jobs_error(table, problems):
            raise error
        analysis_run.run_analysis(analysis_cfg, experiment_id=study.experiment_id, parent_run_id=grid.run_id)


def job_config(cls, data: dict, context: queue.JobContext):
    """A `cls` config from a job's stored config, with the worker's tracking URI and device when it sets them."""
    values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
    if context.tracking_uri:
        values["tracking_uri"] = context.tracking_uri
    if context.device:
        values["device"] = context.device
    return cls(**values)


def study_for(cfg, context: queue.JobContext, experiment_id: str | None) -> jobs.Study:
    """The worker's `jobs.Study` for this config, opened once per process (the base model stays loaded).

    `experiment_id` (stored with the job) keeps the runs in the experiment the grid was enqueued from,
    e.g. the one `mlflow run` chose, whatever `experiment` says.
    """
    key = (cfg.tracking_uri, experiment_id or cfg.experiment, cfg.model, cfg.suite, tuple(cfg.tasks), tuple(cfg.languages))
    if key not in context.cache:
        context.cache[key] = jobs.open_study(cfg, experiment_id=experiment_id)
    return context.cache[key]


def execute(job: dict, context: queue.JobContext) -> list[float]:
    """Run one claimed job (`queue.run_worker`'s `execute`): a grid job, or an ablation trial.

    Returns:
        The trial's objective values: the on-task gain (pp) of a source job, 0 for the baseline job;
        (on-task gain, off-task harm rate) for an ablation trial.
    """
    if job.get("kind") == "ablation":
        from transfergrid import ablation

        return ablation.run_trial(job, context)
    if job.get("kind") not in ("baseline", "source"):
        raise ValueError(f"unknown job kind {job.get('kind')!r}; valid kinds: baseline, source, ablation")
    cfg = job_config(MainConfig, job["config"], context)
    study = study_for(cfg, context, job.get("experiment_id"))
    parent = job.get("parent_run_id")
    if job["kind"] == "baseline":
        jobs.run_baseline(jobs.subconfig(BaselineConfig, cfg), study=study, parent_run_id=parent)
        return [0.0]
    tags = {names.OPTUNA_STUDY: context.study.study_name, names.OPTUNA_TRIAL: context.trial_number}
    source = Cell.parse(job["source"])
    ft_cfg = jobs.subconfig(FinetuneConfig, cfg, source=str(source))
    ft_id = jobs.run_finetune(ft_cfg, study=study, parent_run_id=parent, extra_tags=tags)
    context.wait_for_job(job["baseline_key"])
    ev_cfg = jobs.subconfig(EvaluateConfig, cfg, finetune_run_id=ft_id)
    ev_id = jobs.run_evaluate(ev_cfg, study=study, parent_run_id=parent, extra_tags=tags)
    return [on_task_gain(source, names.cell_values(reader.get_run(study.tracking_uri, ev_id).data.metrics, names.DELTA))]


def status(cfg: StatusConfig):
    """Progress of every job (Optuna storage), the Slurm workers launched for it, and the runs per kind and status.

    Returns:
        (jobs table of `queue.job_table` over the selected studies, run counts of `reader.run_counts`,
        Slurm workers of `slurm.worker_table` with their states read from the scheduler now).

    Raises:
        ValueError: a bad storage URL, an unknown study name (the valid ones are listed).
    """
    import pandas as pd

    storage = queue.open_storage(QueueConfig(storage=cfg.storage), create=False)
    selected = queue.study_names(storage, cfg.study_name)
    tables = [queue.job_table(storage, name) for name in selected]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["study", "state"])
    workers = slurm.worker_table(storage, selected)
    runs = pd.DataFrame(columns=["kind", "status", "runs"])
    try:  # the queue is worth showing even when the tracking server is down
        uri = writer.checked_tracking_uri(cfg.tracking_uri)
    except stores.StoreUnavailable as error:
        runs.attrs["unavailable"] = str(error)
        return table, runs, workers
    experiment_id = writer.find_experiment(uri, cfg.experiment, deleted_ok=True)
    if experiment_id:
        runs = reader.run_counts(uri, experiment_id, ("baseline", "finetune", "evaluate", "ablation", "grid", "analysis"))
    return table, runs, workers


_STATE_WORDS = {"COMPLETE": "done", "RUNNING": "running", "WAITING": "waiting", "FAIL": "failed", "PRUNED": "skipped"}


def format_status(table, runs, workers=None) -> str:
    """The `status` report: per study, jobs done / running / waiting / failed; failed jobs with reasons; the
    Slurm workers with their scheduler states; runs."""
    lines = []
    for study_name, group in table.groupby("study", sort=True) if len(table) else []:
        counts = group["state"].map(_STATE_WORDS).value_counts()
        summary = ", ".join(f"{counts.get(word, 0)} {word}" for word in ("done", "running", "waiting", "failed"))
        lines.append(f"study {study_name}: {len(group)} jobs: {summary}")
        for row in group[group["state"] == "RUNNING"].itertuples():
            lines.append(f"  running  {row.what} on {row.worker} (trial {row.trial}, attempt {row.attempts})")
        for row in group[group["state"] == "FAIL"].itertuples():
            lines.append(f"  FAILED   {row.what} after {row.attempts} attempt(s): {row.reason}")
        if workers is not None and len(workers):
            lines += _format_workers(workers[workers["study"] == study_name])
    if not lines:
        lines.append("no jobs in this storage")
    if runs.attrs.get("unavailable"):
        lines += ["", f"runs: not shown: {runs.attrs['unavailable']}"]
    if len(runs):
        pivot = runs.pivot_table(index="kind", columns="status", values="runs", fill_value=0, aggfunc="sum")
        lines += ["", "runs in the tracking store:", pivot.to_string()]
    return "\n".join(lines)


def _format_workers(workers) -> list[str]:
    """Per Slurm worker array: its log folder, then one line per worker: job id, state, node, time, reason."""
    lines = []
    for array, group in workers.groupby("array", sort=False):
        first = group.iloc[0]
        lines.append(f"  Slurm workers: job array {array} ({len(group)} workers, submitted {first.submitted}; "
                     f"logs in {first.log_dir})")
        for row in group.itertuples():
            detail = " ".join(part for part in (row.node and f"on {row.node}", row.elapsed and f"for {row.elapsed}",
                                                 row.reason and f"({row.reason})") if part)
            lines.append(f"    {row.slurm_job:<12} {row.state:<10} {detail}".rstrip())
    return lines
