"""`ablation`: an Optuna study over LoRA rank, recipe (lora | full), alpha rule and learning rate, as in the paper's appendix.

Each trial is a finetune + evaluate pair of runs nested under one `ablation` run, which logs the Pareto
front (on-task gain up, off-task harm rate down), the rank summaries and the Optuna study + storage.
Rerunning the same command resumes: completed trials are not redone.

    mlflow run . -e ablation --env-manager local -P ranks=8,16,32,64,128 -P sources=syn_lookup.xs1
    transfergrid ablation --ranks 2,8,32 --recipes lora,full --alpha_rules 2r,rslora [--workers 2]
"""

from __future__ import annotations

import os

from transfergrid import ablation, cli, queue
from transfergrid.config import AblationConfig
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> str:
    """Run or resume the ablation; prints the trials (Pareto front marked) and returns the ablation run id."""
    cli.setup_logging()
    cfg = cli.load_entry_config(AblationConfig, argv, __doc__)
    cfg.storage = cfg.storage or os.environ.get(queue.STORAGE_ENV, "")
    with cli.user_errors():
        run_id, table = ablation.run_ablation(cfg, launcher_run_id=launcher_run_id())
    print(table.drop(columns=[ablation.FINETUNE_RUN_ID, ablation.EVALUATE_RUN_ID]).to_string(index=False))
    print(f"ablation run: {run_id}")
    return run_id


if __name__ == "__main__":
    main()
