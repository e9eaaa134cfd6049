"""`grid`: enqueue the study's jobs (baseline, one fine-tune + evaluation per source) for `worker` processes.

Jobs already FINISHED (same run key) or already waiting/running are not enqueued again.

    mlflow run . -e grid --env-manager local -P storage=sqlite:///$PWD/optuna.db
    transfergrid grid [--storage URL] [--sources a.x,b.y] [--dry_run]   # then start workers
    transfergrid grid --storage URL --launcher slurm --workers 8 --slurm_gpus_per_worker 1   # on Slurm
"""

from __future__ import annotations

import os

from transfergrid import cli, gridjobs, queue
from transfergrid.config import GridConfig
from transfergrid.redact import redact
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> gridjobs.Enqueued:
    """Enqueue (or with --dry_run, print) the grid's jobs; with --workers N start N workers, else say how to."""
    cli.setup_logging()
    cfg = cli.load_entry_config(GridConfig, argv, __doc__)
    cfg.storage = cfg.storage or os.environ.get(queue.STORAGE_ENV, "")
    with cli.user_errors():
        done = gridjobs.run_grid(cfg, launcher_run_id=launcher_run_id())
    where = f"Optuna study {done.study_name!r} on {redact(queue.check_storage_url(cfg.storage))}"
    if cfg.dry_run:
        print("\n".join(f"  {job}" for job in done.plan))
        print(f"dry run: {done.to_enqueue} jobs (for the {len(done.plan)} planned runs) would be enqueued in {where}")
        return done
    print(f"{done.added} jobs enqueued ({done.pending} not FINISHED) in {where}")
    if not done.workers:
        print(f"start workers: transfergrid worker --study_name {done.study_name} --storage <storage URL>"
              if done.pending else "nothing left to run: every job is FINISHED")
    elif cfg.launcher == "slurm":
        (array,) = done.workers
        print(f"submitted {array.workers} Slurm workers: job array {array.job_id} (jobs {array.job_id}_0 .. "
              f"{array.job_id}_{array.workers - 1})")
        print(f"batch script and worker logs: {array.log_dir}")
        print(f"follow them: transfergrid status --study_name {done.study_name} (or squeue -j {array.job_id}); "
              f"stop them: scancel {array.job_id}")
    else:
        print(f"{len(done.workers)} local workers ended" + (f"; {'; '.join(done.problems)}" if done.problems else ""))
    return done


if __name__ == "__main__":
    main()
