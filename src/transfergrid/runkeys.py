"""Content keys: a run's identity is a hash of everything that determines its result (ARCHITECTURE.md 3)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

KEY_LENGTH = 20  # hex digits: 80 bits, no accidental collision in any realistic store


def run_key(kind: str, payload: Mapping[str, Any]) -> str:
    """Stable hash of (`kind`, `payload`): the same inputs give the same key in any process.

    Args:
        kind: run kind (`baseline`, `finetune`, ...), part of the key so kinds never collide.
        payload: JSON-serialisable description of everything that determines the result. Keys are
            sorted; lists keep their order (callers sort where order does not matter).
    """
    text = json.dumps({"kind": kind, **payload}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]
