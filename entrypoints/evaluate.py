"""`evaluate`: a finetune run's adapter on every target cell, with Δ against the matching baseline.

    mlflow run . -e evaluate --env-manager local [-P finetune_run_id=...]
    python -m entrypoints.evaluate [--finetune_run_id ...] [--config file.yaml]
"""

from __future__ import annotations

from transfergrid import cli, jobs
from transfergrid.config import EvaluateConfig
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> str:
    """Evaluate (running the baseline first if none exists); prints and returns the evaluate run id."""
    cli.setup_logging()
    cfg = cli.load_entry_config(EvaluateConfig, argv)
    with cli.user_errors():
        run_id = jobs.run_evaluate(cfg, launcher_run_id=launcher_run_id())
    print(f"evaluate run: {run_id}")
    return run_id


if __name__ == "__main__":
    main()
