"""`evaluate`: finetune runs' adapters on every target cell, with Δ against the matching baseline.

One base model load for any number of adapters (PEFT adapters are swapped, not merged).

    mlflow run . -e evaluate --env-manager local [-P finetune_run_id=...]
    transfergrid evaluate [--finetune_run_id ID | --finetune_run_ids ID,ID,...
                                    | --finetune_filter "tags.source_task = 'syn_lookup'"] [--config file.yaml]
"""

from __future__ import annotations

from transfergrid import cli, jobs
from transfergrid.config import EvaluateConfig
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> str | list[str]:
    """Evaluate (running the baseline first if none exists); prints and returns the evaluate run id(s).

    Returns:
        The evaluate run id, or the list of them when several finetune runs were selected.
    """
    cli.setup_logging()
    cfg = cli.load_entry_config(EvaluateConfig, argv, __doc__)
    with cli.user_errors():
        run_ids = jobs.run_evaluate_many(cfg, launcher_run_id=launcher_run_id())
    for run_id in run_ids:
        print(f"evaluate run: {run_id}")
    return run_ids[0] if len(run_ids) == 1 else run_ids


if __name__ == "__main__":
    main()
