"""Where a study writes: the tracking store URI and the Optuna storage URL, normalised and checked before any work.

A dead tracking server or an unwritable SQLite folder is found here in seconds with one line naming the
URI (password masked) and the fix, instead of after minutes of MLflow's retries and a traceback.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from transfergrid.redact import redact

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
_FIX = "set MLFLOW_TRACKING_URI (or --tracking_uri) to a reachable store, e.g. sqlite:///$PWD/mlflow.db or http://host:5000"
_warned: set[str] = set()
_checked: set[str] = set()


class StoreUnavailable(ValueError):
    """A tracking store that cannot be used: unsupported scheme, unreachable server, unwritable SQLite folder."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///path` URL (None for another scheme or an in-memory database)."""
    if not url.startswith("sqlite:"):
        return None
    path = url.partition(":///")[2].partition("?")[0]
    return Path(path).expanduser() if path and path != ":memory:" else None


def absolute_sqlite(url: str, what: str) -> str:
    """`sqlite:///rel.db` (a path relative to the current folder) as an absolute URL, saying so once.

    Relative SQLite paths silently land in whatever folder a command runs from, and a worker started
    elsewhere would use another file; the absolute URL is what every process of the study then uses.
    """
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    head, _, rest = url.partition(":///")
    query = rest.partition("?")[2]
    absolute = f"{head}:///{path.resolve()}" + (f"?{query}" if query else "")
    if url not in _warned:
        _warned.add(url)
        logger.warning("%s %s is a path relative to the current folder: using %s", what, redact(url), redact(absolute))
    return absolute


def normalize_tracking_uri(uri: str) -> str:
    """A relative SQLite path made absolute; `postgresql://` given the driver we install (psycopg2)."""
    if uri.startswith("postgresql://"):  # SQLAlchemy 2.1's default driver is psycopg 3, which is not installed
        uri = "postgresql+psycopg2://" + uri[len("postgresql://"):]
    return absolute_sqlite(uri, "tracking URI")


def check_tracking_store(uri: str) -> None:
    """Check, in at most about 3 s, that MLflow can use the tracking store `uri` (once per process and URI).

    Raises:
        StoreUnavailable: an unsupported scheme (the valid ones named), an unreachable tracking server, a
            database that refuses the connection, or a SQLite file that cannot be created or written.
    """
    if uri in _checked:
        return
    shown = redact(uri)
    scheme = uri.partition("://")[0] if "://" in uri else uri.partition(":")[0]
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise StoreUnavailable(
            f"tracking URI {shown!r}: MLflow's file store is in maintenance mode and refused unless "
            "MLFLOW_ALLOW_FILE_STORE=true; use sqlite:///path/to/mlflow.db (mlflow migrate-filestore converts "
            "an existing folder)")
    if scheme.split("+")[0] not in TRACKING_SCHEMES + ("file",):
        raise StoreUnavailable(
            f"unsupported tracking URI {shown!r} (scheme {scheme!r}); valid: sqlite:///path/to/mlflow.db, "
            "http(s)://host:port (an MLflow server), postgresql://user@host/db or mysql://user@host/db")
    if scheme in ("http", "https"):
        _check_server(uri, shown)
    elif scheme == "sqlite":
        _check_sqlite(uri, shown)
    elif scheme not in ("databricks", "file"):
        _check_database(uri, shown)
    _checked.add(uri)


def _check_server(uri: str, shown: str) -> None:
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]  # credentials are not needed to see that the server answers
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        urllib.request.urlopen(url, timeout=CHECK_TIMEOUT_S).close()  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):  # an MLflow server with authentication: it is there
            return
        raise StoreUnavailable(
            f"tracking URI {shown} does not answer as an MLflow tracking server (HTTP {error.code} on /health); "
            f"check the host and port, or {_FIX}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise StoreUnavailable(
            f"tracking server {shown} is not reachable ({redact(reason)}); start it (mlflow server --host 0.0.0.0 "
            f"--port 5000 ...) or {_FIX}") from None


def _check_sqlite(uri: str, shown: str) -> None:
    path = sqlite_path(uri)
    if path is None:
        return
    if path.exists() and not path.is_file():
        raise StoreUnavailable(f"tracking store {shown}: {path} is not a file; {_FIX}")
    # MLflow creates missing folders: the nearest one that exists must be a writable folder
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not folder.is_dir():
        raise StoreUnavailable(f"tracking store {shown}: {folder} is a file, not a folder; {_FIX}")
    try:  # a real write (root passes os.access checks that a read-only mount still refuses)
        tempfile.TemporaryFile(dir=folder).close()
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as error:
        raise StoreUnavailable(
            f"tracking store {shown}: cannot write in {folder} ({error.strerror or error}); "
            f"make the folder writable or {_FIX}") from None


def _check_database(uri: str, shown: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": int(CHECK_TIMEOUT_S)})
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as error:
        raise StoreUnavailable(f"tracking store {shown}: its database driver {error.name!r} is not installed; "
                               "use postgresql:// (psycopg2 is installed)") from None
    except Exception as error:  # sqlalchemy's OperationalError, a bad URL, ...
        first = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StoreUnavailable(f"tracking store {shown} cannot be reached ({redact(first)}); {_FIX}") from None
