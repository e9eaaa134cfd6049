"""The `transfergrid` command: `transfergrid NAME --key value ...` runs the entry point NAME.

Each entry point's logic lives in `transfergrid.commands.NAME` (a `main(argv)` function); the MLproject's
`entrypoints/NAME.py` modules are thin wrappers around the same functions, so `mlflow run . -e NAME -P key=value`,
`transfergrid NAME --key value` (from a checkout) and `transfergrid NAME --key value` (anywhere) take the
same arguments. Runs are recorded in $MLFLOW_TRACKING_URI, else in `./mlflow.db` (artifacts in `./mlartifacts`)
of the folder the command runs in.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "main": "the whole study: baseline, every source's fine-tune and evaluation, then the analysis",
    "baseline": "zero-shot evaluation of the base model on every cell of the grid",
    "finetune": "LoRA fine-tune of one source cell",
    "evaluate": "fine-tuned adapters on every target cell, with Δ against the baseline",
    "analysis": "read the FINISHED runs back and log the report",
    "import_results": "log an external results table or lm-eval output as runs",
    "prefetch": "fill the local Hugging Face cache with a study's models and datasets (needs network)",
    "grid": "enqueue the study's jobs for worker processes",
    "worker": "run enqueued jobs until none is left",
    "status": "the grid's progress: jobs by state, failures, workers, runs",
    "ablation": "an Optuna study over LoRA rank, recipe, alpha rule and learning rate",
}


def usage() -> str:
    """The command list of `transfergrid --help`."""
    width = max(map(len, COMMANDS))
    lines = ["usage: transfergrid COMMAND [--key value ...]   (transfergrid COMMAND --help lists its keys)", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def run(argv: list[str] | None = None):
    """Dispatch `transfergrid NAME ...` to `transfergrid.commands.NAME.main`; returns what it returns."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return None
    name, rest = argv[0].replace("-", "_"), argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    return importlib.import_module(f"transfergrid.commands.{name}").main(rest)


def console() -> None:
    """The `transfergrid` console script (its return value is not an exit status)."""
    run()
