"""Directories built once into the transfergrid cache, atomically, and reused (built-in and converted models).

A build goes to a temporary directory beside the target and is renamed into place, so concurrent
callers never see a half-written directory; the loser of a race discards its copy. Temporary
directories that a killed process left behind are removed after an hour.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)


BUILD_INFO = "transfergrid_build.json"  # written last inside a build; marks a complete directory


def checked_build(target: Path, key: str, value: str, what: str) -> Path:
    """`target` if its `BUILD_INFO` says `key` = `value` (a complete build of this version), else a RuntimeError."""
    info = Path(target) / BUILD_INFO
    if not info.is_file() or json.loads(info.read_text()).get(key) != value:
        raise RuntimeError(f"{target} exists but is not a complete {what}; delete it and retry")
    return Path(target)


def build_once(target: Path, build_into: Callable[[Path], None]) -> bool:
    """Run `build_into(tmp)` and rename `tmp` to `target` unless `target` exists; True if this call built it."""
    target = Path(target)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(target.parent, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        build_into(tmp)
        _make_shareable(tmp)
        try:
            os.rename(tmp, target)  # atomic on one file system; fails if `target` appeared meanwhile
            return True
        except OSError:
            if not target.exists():
                raise
            logger.info("%s was built by another process meanwhile; discarding this build", target)
            return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_builds(parent: Path, name: str, max_age_s: float = 3600.0) -> None:
    """Delete temporary build directories that a killed process left behind (older than an hour)."""
    for path in parent.glob(f".{name}.building-*"):
        try:
            if time.time() - path.stat().st_mtime > max_age_s:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            pass  # another process removed it first


def _make_shareable(directory: Path) -> None:
    """Give the build the permissions of the umask (mkdtemp and safetensors create private files)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        if path.is_file():
            os.chmod(path, 0o666 & ~umask)
