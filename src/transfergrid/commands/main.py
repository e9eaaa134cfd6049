"""`main` (the default entry point): the whole study on a suite, for one model or the suite's default models.

Baseline, every source cell's fine-tune and evaluation, then the analysis; anything already
FINISHED with the same run key is skipped, so rerunning after a crash redoes only what is missing.
Ends with a summary: runs created and reused, the regime table, where the report is, the MLflow UI link.

    mlflow run . --env-manager local --experiment-name transfergrid [-P model=...] [-P suite=...]
    transfergrid main [--sources a.x,b.y] [--dry_run] [--config file.yaml]
"""

from __future__ import annotations

import os
import time

from transfergrid import cli, jobs, queue
from transfergrid.config import MainConfig
from transfergrid.tracking import reader, writer
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> list[jobs.PlannedJob]:
    """Run (or with --dry_run, print) the study plan."""
    cli.setup_logging()
    cfg = cli.load_entry_config(MainConfig, argv, __doc__)
    cfg.storage = cfg.storage or os.environ.get(queue.STORAGE_ENV, "")  # the queue of `--workers N`; a password stays off argv
    launcher, since_ms = launcher_run_id(), int(time.time() * 1000)
    with cli.user_errors():
        plan = jobs.run_main(cfg, launcher_run_id=launcher)
    if cfg.dry_run:
        print(jobs.describe_plan(cfg, plan))
        return plan
    uri = writer.resolve_tracking_uri(cfg.tracking_uri)
    experiment_id = reader.get_run(uri, launcher).info.experiment_id if launcher else reader.experiment_id(uri, cfg.experiment)
    print(jobs.study_summary(cfg, plan, experiment_id=experiment_id, since_ms=since_ms))
    return plan


if __name__ == "__main__":
    main()
