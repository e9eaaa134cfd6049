"""`worker`: claim enqueued jobs (grid jobs, ablation trials) from the Optuna storage and run them until none is left.

Start any number, on any machine that reaches the storage and the tracking server:

    mlflow run . -e worker --env-manager local -P storage=postgresql://user:password@host/optuna
    TRANSFERGRID_STORAGE=postgresql://... MLFLOW_TRACKING_URI=http://host:5000 transfergrid worker
"""

from __future__ import annotations

import os

from transfergrid import cli, gridjobs, queue
from transfergrid.config import WorkerConfig
from transfergrid.tracking import writer


def main(argv: list[str] | None = None) -> int:
    """Run jobs until the queue is empty; returns how many this worker ran."""
    cli.setup_logging()
    cfg = cli.load_entry_config(WorkerConfig, argv, __doc__)
    launcher = writer.launcher_run_id()  # `mlflow run -e ...`: noted at the end, never adopted by job runs
    cfg.storage = cfg.storage or os.environ.get(queue.STORAGE_ENV, "")  # a password stays out of the command line
    cfg.tracking_uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    with cli.user_errors():
        queue.check_storage_url(cfg.storage)
        if cfg.tracking_uri:  # else each job's own URI, checked when its study opens
            writer.checked_tracking_uri(cfg.tracking_uri)
        with queue.storage_in_environment(cfg.storage):  # its jobs claim their run keys there too (see `claims`)
            done = queue.run_worker(cfg, gridjobs.execute)
    print(f"worker ran {done} jobs")
    if run_id := launcher:  # `mlflow run -e worker`: say where the work went
        writer.note_run(writer.resolve_tracking_uri(cfg.tracking_uri), run_id,
                        f"Worker process: ran {done} queued jobs; their runs are linked to their grid run (tag study_run_id) or nested under their ablation run.")
    return done


if __name__ == "__main__":
    main()
