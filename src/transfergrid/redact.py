"""Credentials never reach a log, a run or an artifact: passwords in URLs are replaced by `***`."""

from __future__ import annotations

import re

# scheme://user:password@host  ->  scheme://user:***@host (the password may hold anything but '@' and whitespace)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\s@/]*)(?P<at>@)")
MASK = "***"


def redact(text) -> str:
    """`text` as a string with the password of every URL in it masked.

    Example: `postgresql://tg:secret@db:5432/optuna` -> `postgresql://tg:***@db:5432/optuna`.
    """
    return _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"], str(text))
