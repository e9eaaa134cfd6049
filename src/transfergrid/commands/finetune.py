"""`finetune`: LoRA fine-tune of one source cell with the paper's recipe ("Donors and Recipients").

    mlflow run . -e finetune --env-manager local [-P source=task.language] [-P lora_r=32]
    transfergrid finetune [--source task.language] [--lora_r 32] [--config file.yaml]
"""

from __future__ import annotations

from transfergrid import cli, jobs
from transfergrid.config import FinetuneConfig
from transfergrid.tracking.writer import launcher_run_id


def main(argv: list[str] | None = None) -> str:
    """Train (or reuse a FINISHED run with the same run key); prints and returns the finetune run id."""
    cli.setup_logging()
    cfg = cli.load_entry_config(FinetuneConfig, argv, __doc__)
    with cli.user_errors():
        run_id = jobs.run_finetune(cfg, launcher_run_id=launcher_run_id())
    print(f"finetune run: {run_id}")
    return run_id


if __name__ == "__main__":
    main()
