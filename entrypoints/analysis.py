"""`analysis`: read FINISHED baseline/evaluate runs back and log the tidy data and regime summary.

    mlflow run . -e analysis --env-manager local [-P filter="tags.model = 'builtin:tiny-llama'"]
    python -m entrypoints.analysis [--filter ...] [--experiment transfergrid]
"""

from __future__ import annotations

from transfergrid import cli, jobs
from transfergrid.config import AnalysisConfig
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> str:
    """Run the analysis (or reuse one over exactly the same runs); prints and returns its run id."""
    cli.setup_logging()
    cfg = cli.load_entry_config(AnalysisConfig, argv)
    with cli.user_errors():
        run_id = jobs.run_analysis(cfg, launcher_run_id=launcher_run_id())
    print(f"analysis run: {run_id}")
    return run_id


if __name__ == "__main__":
    main()
