"""`status`: the grid's progress: jobs done, running, waiting and failed (with reasons), and the runs.

    python -m entrypoints.status [--storage URL] [--study_name NAME] [--experiment transfergrid]
"""

from __future__ import annotations

import os

from transfergrid import cli, gridjobs, queue
from transfergrid.config import StatusConfig


def main(argv: list[str] | None = None):
    """Print per-study job counts by state, the failed jobs with their reasons, and run counts; returns both tables."""
    cli.setup_logging()
    cfg = cli.load_entry_config(StatusConfig, argv)
    cfg.storage = cfg.storage or os.environ.get(queue.STORAGE_ENV, "")
    with cli.user_errors():
        jobs, runs = gridjobs.status(cfg)
    print(gridjobs.format_status(jobs, runs))
    return jobs, runs


if __name__ == "__main__":
    main()
