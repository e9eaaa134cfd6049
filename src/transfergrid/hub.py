"""Hugging Face Hub availability: fail in seconds, with the fix, when a model or dataset cannot be had.

Before any heavy work, a study checks every Hub model and dataset it needs. Without network (the Hub
endpoint does not answer within a few seconds) or with `HF_HUB_OFFLINE=1`, only the local Hugging Face
cache can serve them: if one is missing there, `HubUnavailable` names it, its revision, and how to
pre-fill the cache. With a pre-filled cache the study runs offline.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
_TRUTHY = {"1", "true", "yes", "on"}
_probe_result: bool | None = None


class HubUnavailable(RuntimeError):
    """A model or dataset is neither reachable on the Hub nor in the local cache."""


def offline_requested() -> bool:
    """Whether the user asked for offline mode (`HF_HUB_OFFLINE` or `HF_DATASETS_OFFLINE`)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUTHY for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable() -> bool:
    """Whether the Hub endpoint accepts a TCP connection within `PROBE_TIMEOUT_S` (probed once per process)."""
    global _probe_result
    if _probe_result is None:
        url = urlparse(endpoint())
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname, port), timeout=PROBE_TIMEOUT_S):
                _probe_result = True
        except OSError as exc:
            logger.info("Hugging Face Hub %s unreachable (%s)", endpoint(), exc)
            _probe_result = False
    return _probe_result


def _cache_dir(variable: str, name: str) -> Path:
    """`$variable`, else `$HF_HOME/<name>`, else `~/.cache/huggingface/<name>`."""
    if os.environ.get(variable):
        return Path(os.environ[variable])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / name


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    return _cache_dir("HF_HUB_CACHE", "hub")


def datasets_cache_dir() -> Path:
    """The `datasets` cache: $HF_DATASETS_CACHE, else $HF_HOME/datasets."""
    return _cache_dir("HF_DATASETS_CACHE", "datasets")


def model_cached(repo_id: str, revision: str) -> bool:
    """Whether the model's snapshot (at `revision`) is in the local hub cache."""
    return cached_snapshot(repo_id, revision, "model") is not None


def dataset_cached(repo_id: str, revision: str) -> bool:
    """Whether the dataset is in the hub cache (raw files) or the `datasets` cache (prepared Arrow)."""
    if cached_snapshot(repo_id, revision, "dataset") is not None:
        return True
    prepared = datasets_cache_dir() / repo_id.replace("/", "___")
    return prepared.is_dir() and any(prepared.iterdir())


def go_offline() -> None:
    """Make huggingface_hub/datasets/transformers use the local cache only (no retries against a dead network)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import sys

    if "huggingface_hub" in sys.modules:  # constants are read at import time
        import huggingface_hub.constants as constants

        constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True


def check_available(models: list[tuple[str, str]], datasets: list[tuple[str, str]], *, suite: str = "", model_arg: str = "") -> None:
    """Raise `HubUnavailable` (naming what is missing and how to pre-fill the cache) when offline and uncached.

    Args:
        models: (Hub model id, revision) pairs the study loads.
        datasets: (Hub dataset id, revision) pairs the study loads.
        suite, model_arg: the command's `--suite` / `--model`, for the suggested prefetch command.
    """
    if not models and not datasets:
        return
    offline = offline_requested()
    if not offline and hub_reachable():
        return
    if not offline:
        go_offline()
    missing = [("model", m, r) for m, r in models if not model_cached(m, r)]
    missing += [("dataset", d, r) for d, r in datasets if not dataset_cached(d, r)]
    if not missing:
        logger.info("Hugging Face Hub not used (%s): every model and dataset comes from the local cache",
                    "HF_HUB_OFFLINE is set" if offline else f"{endpoint()} unreachable")
        return
    why = "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set" if offline else f"no network: {endpoint()} did not answer within {PROBE_TIMEOUT_S:.0f} s"
    raise HubUnavailable(missing_message(missing, why, suite=suite, model_arg=model_arg))


def missing_message(missing: list[tuple[str, str, str]], why: str, *, suite: str = "", model_arg: str = "") -> str:
    """What is missing (kind, id, revision), why the Hub is not used, and how to pre-fill the cache."""
    lines = [f"{why}, and these are not in the local Hugging Face cache ({hub_cache_dir()}):"]
    lines += [f"  {kind} {name} (revision {rev})" for kind, name, rev in missing]
    downloads = [
        f"  hf download {name} --revision {rev}{' --repo-type dataset' if kind == 'dataset' else ''}"
        for kind, name, rev in missing
    ]
    if model_arg and not _is_hub_id(model_arg):  # a local folder or built-in model: nothing to fetch for it, and
        # its path means nothing on the machine with network; without --model, prefetch would fetch the suite's models
        lines += ["To pre-fill the cache, on a machine with network and the same HF_HOME run:", *downloads]
    else:
        prefetch = "transfergrid prefetch" + (f" --suite {suite}" if suite else "") + (f" --model {model_arg}" if model_arg else "")
        lines += [
            "To pre-fill the cache, on a machine with network and the same HF_HOME run:",
            f"  {prefetch}",
            "(it downloads each model and dataset snapshot at its pinned revision), or the same by hand:",
            *downloads,
        ]
    lines.append("then copy the cache directory here (or point HF_HOME at it) and run again with HF_HUB_OFFLINE=1.")
    return "\n".join(lines)


def _is_hub_id(model: str) -> bool:
    """A Hub repo id (`org/name`), not a built-in model or a local folder."""
    from transfergrid.models import BUILTIN_PREFIX

    return not model.startswith(BUILTIN_PREFIX) and not Path(model).expanduser().exists()


def cached_snapshot(repo_id: str, revision: str, repo_type: str) -> str | None:
    """The local snapshot directory of a Hub repo at `revision`, or None when it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_files_only=True,
                                 cache_dir=hub_cache_dir())
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None


def prefetch(model_ids: list[tuple[str, str]], suite, cells) -> None:
    """Download the models' and datasets' snapshots, then read every split `cells` use (a check that they load)."""
    from huggingface_hub import snapshot_download
    from transfergrid.console import progress

    for model_id, revision in model_ids:
        logger.info("downloading model %s (revision %s)", model_id, revision)
        snapshot_download(model_id, revision=revision, cache_dir=hub_cache_dir())
    for dataset_id, revision in suite.hub_datasets(cells) if hasattr(suite, "hub_datasets") else []:
        logger.info("downloading dataset %s (revision %s)", dataset_id, revision)
        snapshot_download(dataset_id, repo_type="dataset", revision=revision, cache_dir=hub_cache_dir())
    for cell in progress(list(cells), desc="datasets", unit="cell"):
        for split in ("train", "test") if suite.tasks[cell.task].train_format is not None else ("test",):
            items = suite.items(cell, split)
            logger.info("%s %s: %d items", cell, split, len(items))
