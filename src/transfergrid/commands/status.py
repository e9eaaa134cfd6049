"""`status`: the grid's progress: jobs done, running, waiting and failed (with reasons), the Slurm workers, the runs.

    transfergrid status [--storage URL] [--study_name NAME] [--experiment transfergrid]
"""

from __future__ import annotations

import os

from transfergrid import cli, gridjobs, queue
from transfergrid.config import StatusConfig
from transfergrid.tracking import writer


def main(argv: list[str] | None = None):
    """Print per-study job counts by state, failed jobs with their reasons, Slurm workers' states and run counts.

    Returns:
        (jobs table, run counts); the Slurm workers are in the printed report.
    """
    cli.setup_logging()
    cfg = cli.load_entry_config(StatusConfig, argv, __doc__)
    launcher = writer.launcher_run_id()  # `mlflow run -e ...`: noted at the end, never adopted by job runs
    cfg.storage = cfg.storage or os.environ.get(queue.STORAGE_ENV, "")
    with cli.user_errors():
        jobs, runs, workers = gridjobs.status(cfg)
    text = gridjobs.format_status(jobs, runs, workers)
    print(text)
    if run_id := launcher:  # `mlflow run -e status`: the report is the launcher run's note
        writer.note_run(writer.resolve_tracking_uri(cfg.tracking_uri), run_id, f"```\n{text}\n```")
    return jobs, runs


if __name__ == "__main__":
    main()
