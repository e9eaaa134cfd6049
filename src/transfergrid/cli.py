"""Shared command-line plumbing of the entry points: logging set-up and config loading."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Sequence

from transfergrid.config import load_config
from transfergrid.models import study_model


def setup_logging() -> None:
    """INFO logs to stderr with timestamps; quiet the chattiest libraries; MLflow offline-friendly."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # TRL pings the Hub when a trainer is built
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    for noisy in ("alembic", "httpx", "urllib3", "mlflow.store", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_entry_config(cls: type, argv: Sequence[str] | None):
    """Parse an entry point's config; the model's recommended recipe sits between defaults and the YAML file.

    Exits with status 2 and a one-line message on any configuration error (nothing has run yet).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg = load_config(cls, argv)
        if hasattr(cfg, "model"):
            cfg = load_config(cls, argv, overrides=_recipe_overrides(cfg))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return cfg


def _recipe_overrides(cfg) -> dict:
    """The model's recommended recipe; with no --model, the one every default model of the suite shares."""
    from transfergrid.data import get_suite

    ids = [cfg.model] if cfg.model else get_suite(cfg.suite).models
    overrides = [study_model(cfg, i).train_overrides for i in ids]
    return overrides[0] if overrides and all(o == overrides[0] for o in overrides) else {}


@contextlib.contextmanager
def user_errors():
    """Turn a ValueError (bad input found by validation) into a one-line message and exit status 2.

    Validation runs before any model is loaded; if a run was already open, it ended FAILED with the
    full traceback in its `error.txt` artifact.

    A stop signal (SIGTERM, Ctrl-C, SIGUSR1) ends the open runs KILLED and exits with 128 + its number,
    with one line instead of a traceback.
    """
    from transfergrid import stopping
    from transfergrid.hub import HubUnavailable

    try:
        with stopping.stop_on_signals():
            yield
    except (ValueError, HubUnavailable) as error:
        logging.getLogger(__name__).debug("user error", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as error:
        print(f"{stopping.reason(error)}: open runs ended KILLED; rerun the same command to continue", file=sys.stderr)
        raise SystemExit(stopping.exit_status(error)) from None
