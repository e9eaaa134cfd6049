"""`analysis`: read FINISHED baseline/evaluate runs back and log the full report (report.html, tables, figures).

    mlflow run . -e analysis --env-manager local [-P filter="tags.model = 'builtin:tiny-llama'"]
        [-P models=m1,m2] [-P suites=synthetic] [-P seeds=17,42] [-P recipes=lora] [-P lora_ranks=32]
        [-P significance=false]
    transfergrid analysis [--filter ...] [--models ...] [--experiment transfergrid]

Artifacts of the analysis run: report.html, tidy.parquet, tables/*.csv, figures/*.png.
"""

from __future__ import annotations

from transfergrid import analysis_run, cli
from transfergrid.config import AnalysisConfig
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> str:
    """Run the analysis (or reuse one over exactly the same runs); prints and returns its run id."""
    cli.setup_logging()
    cfg = cli.load_entry_config(AnalysisConfig, argv, __doc__)
    with cli.user_errors():
        run_id = analysis_run.run_analysis(cfg, launcher_run_id=launcher_run_id())
    print(f"analysis run: {run_id}")
    return run_id


if __name__ == "__main__":
    main()
