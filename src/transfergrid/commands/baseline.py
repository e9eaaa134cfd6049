"""`baseline`: zero-shot multiple-choice evaluation of the base model on every cell of the grid.

    mlflow run . -e baseline --env-manager local [-P model=...] [-P suite=...]
    transfergrid baseline [--model ...] [--suite ...] [--config file.yaml]
"""

from __future__ import annotations

from transfergrid import cli, jobs
from transfergrid.config import BaselineConfig
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> str:
    """Run the baseline (or reuse a FINISHED one with the same run key); prints and returns its run id."""
    cli.setup_logging()
    cfg = cli.load_entry_config(BaselineConfig, argv, __doc__)
    with cli.user_errors():
        run_id = jobs.run_baseline(cfg, launcher_run_id=launcher_run_id())
    print(f"baseline run: {run_id}")
    return run_id


if __name__ == "__main__":
    main()
