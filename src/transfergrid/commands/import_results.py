"""`import_results`: log an external results table or lm-eval output as baseline/evaluate runs.

    mlflow run . -e import_results --env-manager local -P path=results/transfer_results.csv
    transfergrid import_results --path results.csv [--format auto|csv|lmeval] [--experiment transfergrid]

Reads the authors' released `results/transfer_results.csv` in its 26-column header (seed-aggregated:
runs tagged seed=mean, std/SE kept as each run's `cell_statistics.csv`), a per-seed CSV with a `seed`
column, or lm-eval `results_*.json` files (a directory, or one `.json` file); validates it completely
before creating any run (scores in [0, 1], no empty table); runs already imported (same run_key) are skipped.
"""

from __future__ import annotations

from transfergrid import cli
from transfergrid.config import ImportConfig


def main(argv: list[str] | None = None):
    """Import `--path`; prints how many runs were created and skipped, and returns the summary."""
    cli.setup_logging()
    cfg = cli.load_entry_config(ImportConfig, argv, __doc__)
    with cli.user_errors():
        from transfergrid.importer import import_results

        summary = import_results(cfg)
    print(f"imported {summary.created} runs from {summary.rows} rows; skipped {summary.skipped} already imported")
    return summary


if __name__ == "__main__":
    main()
