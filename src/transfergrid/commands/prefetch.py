"""`prefetch`: fill the local Hugging Face cache with a study's models and datasets (needs network).

Run it on a machine with network, copy the cache (`$HF_HOME`, default ~/.cache/huggingface) to the
machine without, and run the study there with HF_HUB_OFFLINE=1.

    transfergrid prefetch --suite paper [--model Qwen/Qwen2.5-0.5B-Instruct] [--tasks ...] [--languages ...]
"""

from __future__ import annotations

from transfergrid import cli, hub
from transfergrid.config import StudyConfig
from transfergrid.data import get_suite, suite_cells
from transfergrid.models import is_hub_model, study_model


def main(argv: list[str] | None = None) -> None:
    """Download every Hub model (the suite's default models without --model) and every dataset split."""
    cli.setup_logging(download_bars=True)
    cfg = cli.load_entry_config(StudyConfig, argv, __doc__)
    with cli.user_errors():
        suite = get_suite(cfg.suite)
        cells = suite_cells(suite, cfg.tasks, cfg.languages)
        specs = [study_model(cfg, m) for m in ([cfg.model] if cfg.model else suite.models)]
        models = [(s.id, s.revision) for s in specs if is_hub_model(s)]
        hub.check_available(models, suite.hub_datasets(cells) if hasattr(suite, "hub_datasets") else [],
                            suite=cfg.suite, model_arg=cfg.model)  # offline: only a check of the cache
        hub.prefetch(models, suite, cells)
    print(f"cached: {len(specs)} models, {len(cells)} cells of suite {suite.name}")


if __name__ == "__main__":
    main()
