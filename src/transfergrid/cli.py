"""Shared command-line plumbing of the entry points: logging set-up and config loading."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Sequence

from transfergrid.config import load_config
from transfergrid.models import study_model
from transfergrid.redact import redact


def setup_logging(download_bars: bool = False) -> None:
    """INFO logs to stderr with timestamps; quiet the chattiest libraries (`console.filter_known_noise`); MLflow
    offline-friendly."""
    from transfergrid import console

    console.filter_known_noise(download_bars)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # TRL pings the Hub when a trainer is built
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _RedactingFormatter):
            handler.setFormatter(_RedactingFormatter(handler.formatter))
    sys.excepthook = _redacting_excepthook
    for noisy in ("alembic", "httpx", "urllib3", "mlflow.store", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with every URL password masked, e.g. a tracking URI's in an MLflow retry."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def _redacting_excepthook(kind, error, tb) -> None:
    """An uncaught exception's traceback with every URL password masked."""
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, error, tb))))


def load_entry_config(cls: type, argv: Sequence[str] | None, doc: str | None = None):
    """Parse an entry point's config; the model's recommended recipe sits between defaults and the YAML file.

    `--help` (or `-h`) prints `doc` (the command's description) and its keys with their defaults, and exits 0.
    Exits with status 2 and a one-line message on any configuration error (nothing has run yet).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help" in argv or "-h" in argv:
        print(entry_help(cls, doc))
        raise SystemExit(0)
    try:
        cfg = load_config(cls, argv)
        if hasattr(cfg, "model"):
            cfg = load_config(cls, argv, overrides=_recipe_overrides(cfg))
    except ValueError as error:
        print(f"error: {redact(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    return cfg


def entry_help(cls: type, doc: str | None) -> str:
    """`--help`: the command's description, then every `--key` with its default (`--config FILE` holds any of them)."""
    from dataclasses import MISSING, fields

    lines = [(doc or cls.__doc__ or "").strip(), "", "keys (--key value; a YAML file of key: value with --config FILE):"]
    for f in sorted(fields(cls), key=lambda f: f.name):
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        lines.append(f"  --{f.name:<24} default: {'(empty)' if shown in ('', None) else shown}")
    return "\n".join(lines)


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
    from transfergrid.gguf_models import RealModelUnavailable
    from transfergrid.hub import HubUnavailable

    try:
        with stopping.stop_on_signals():
            yield
    except (ValueError, HubUnavailable, RealModelUnavailable) as error:
        logging.getLogger(__name__).debug("user error", exc_info=True)
        print(f"error: {redact(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as error:
        print(f"{stopping.reason(error)}: open runs ended KILLED; rerun the same command to continue", file=sys.stderr)
        raise SystemExit(stopping.exit_status(error)) from None
