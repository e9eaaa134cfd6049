"""Run-key claims: two launches of the same work (two `main`, `main` beside `worker`s) run each run key once.

Before a job works on a run key it claims the key: one row per key in a `transfergrid_claims` table,
inserted atomically (the key is the primary key). A process that finds the key claimed waits until the
holder releases it, then reuses the holder's FINISHED run (or, if the holder failed, does the work
itself). A holder refreshes its row's heartbeat while it works; a claim whose process is gone (same
machine) or whose heartbeat is older than the grace period (any machine) is taken over.

Where the table lives, so that every process touching one tracking store shares it:
- the tracking store's own database when it is one (`sqlite:///.../mlflow.db`, `postgresql://...`);
- else (a tracking server over HTTP) the queue's storage (`--storage`, or the one a worker was started
  with; PostgreSQL is shared across machines), or the default `sqlite:///<cwd>/optuna.db`, which
  coordinates the processes of one machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

from transfergrid import stopping
from transfergrid.redact import redact

logger = logging.getLogger(__name__)

TABLE = "transfergrid_claims"
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql")

_held: dict[tuple[str, str], int] = {}  # (database, key) -> depth: a process re-entering its own claim goes on
_engines: dict[str, object] = {}


# What a store says when another process is creating its tables at the same moment (SQLite, PostgreSQL, MySQL)
_CREATION_RACE = ("already exists", "unique constraint failed", "duplicate key", "out-of-date database schema",
                  "database is locked", "duplicate entry")


@contextlib.contextmanager
def _first_use_lock(url: str) -> Iterator[None]:
    """On a SQLite database: one process at a time creates its tables (an exclusive `flock` of the file itself,
    which SQLite's own locks ignore)."""
    path = url.partition(":///")[2] if url.startswith("sqlite:///") else ""
    if not path:
        yield
        return
    import fcntl

    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retry_first_use(action, what: str, url: str = "", attempts: int = 30):
    """`action()` (the first use of the store at `url`), safe when two processes create a fresh store at once:
    serialized on SQLite, retried while another process is creating the tables elsewhere; any other error is
    raised at once."""
    for attempt in range(attempts):
        try:
            with _first_use_lock(url):
                return action()
        except Exception as error:
            if attempt == attempts - 1 or not any(text in str(error).lower() for text in _CREATION_RACE):
                raise
            logger.info("%s is being created by another process; trying again", what)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def claims_url(tracking_uri: str, storage: str = "") -> str:
    """The database of the claims: the tracking store's, else the queue's storage, else the default queue's."""
    from transfergrid import queue

    if tracking_uri.partition("://")[0] in DATABASE_SCHEMES:
        return tracking_uri
    return queue.check_storage_url(storage or os.environ.get(queue.STORAGE_ENV, ""))


def _engine(url: str):
    """One SQLAlchemy engine per database and process, with the claims table created (race-safe)."""
    if url in _engines:
        return _engines[url]
    import sqlalchemy as sa

    driver_url = "postgresql+psycopg2://" + url[len("postgresql://"):] if url.startswith("postgresql://") else url
    sqlite = driver_url.startswith("sqlite")
    if sqlite:
        Path(driver_url.partition(":///")[2]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(driver_url, **({"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True}))
    metadata = sa.MetaData()
    table = sa.Table(
        TABLE, metadata,
        sa.Column("run_key", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),
    )
    for attempt in range(20):  # two processes creating the table at once: the loser sees it on the next try
        try:
            metadata.create_all(engine, checkfirst=True)
            break
        except sa.exc.DBAPIError as error:
            if attempt == 19:
                raise ValueError(f"cannot create the run-key claims table in {redact(url)!r}: "
                                 f"{redact(str(error).splitlines()[0])}") from None
            time.sleep(0.1 * (attempt + 1))
    _engines[url] = (engine, table)
    return _engines[url]


class Claims:
    """Claims of run keys in one database (see the module docstring).

    Args:
        url: the database (`claims_url`).
        heartbeat_interval: seconds between heartbeats of a held claim.
        grace_period: seconds without a heartbeat after which a claim of another machine counts as abandoned.
        poll_seconds: how often a waiting process looks again.
    """

    def __init__(self, url: str, heartbeat_interval: float = 30, grace_period: float = 120, poll_seconds: float = 2.0):
        self.url = url
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.poll_seconds = poll_seconds
        self.host = socket.gethostname()

    @contextlib.contextmanager
    def hold(self, key: str, what: str = "") -> Iterator[dict | None]:
        """Claim `key` for the body, waiting while another live process holds it; yields the abandoned claim
        this one took over (its `host` and `pid`), or None."""
        if _held.get((self.url, key)):
            _held[(self.url, key)] += 1
            try:
                yield None
            finally:
                _held[(self.url, key)] -= 1
            return
        owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        taken_over = self._acquire(key, owner, what or key)
        _held[(self.url, key)] = 1
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(key, owner, stop), name=f"claim-{key[:12]}", daemon=True)
        thread.start()
        try:
            yield taken_over
        finally:
            stop.set()
            thread.join()
            _held.pop((self.url, key), None)
            self._release(key, owner)

    def _acquire(self, key: str, owner: str, what: str) -> dict | None:
        import sqlalchemy as sa

        engine, table = _engine(self.url)
        taken_over, waited = None, False
        while True:
            try:
                with engine.begin() as connection:
                    connection.execute(table.insert().values(run_key=key, owner=owner, host=self.host, pid=os.getpid(),
                                                             heartbeat=time.time()))
                if waited:
                    logger.info("%s: the other process is done with it; going on", what)
                return taken_over
            except sa.exc.IntegrityError:
                pass
            with engine.begin() as connection:
                row = connection.execute(sa.select(table).where(table.c.run_key == key)).mappings().first()
            if row is None:
                continue
            if self._abandoned(row):
                with engine.begin() as connection:
                    gone = connection.execute(table.delete().where(
                        (table.c.run_key == key) & (table.c.owner == row["owner"])
                        & (table.c.heartbeat == row["heartbeat"])))
                if gone.rowcount:
                    logger.warning("%s: taking over the claim of %s:%s, which is gone", what, row["host"], row["pid"])
                    taken_over = dict(row)
                continue
            if not waited:
                logger.info("%s is being run by process %s on %s: waiting for it", what, row["pid"], row["host"])
                waited = True
            time.sleep(self.poll_seconds)

    def _abandoned(self, row) -> bool:
        if row["host"] == self.host and not stopping.process_alive(int(row["pid"])):
            return True
        return time.time() - float(row["heartbeat"]) > self.grace_period

    def _beat(self, key: str, owner: str, stop: threading.Event) -> None:
        engine, table = _engine(self.url)
        while not stop.wait(self.heartbeat_interval):
            try:
                with engine.begin() as connection:
                    connection.execute(table.update().where((table.c.run_key == key) & (table.c.owner == owner))
                                       .values(heartbeat=time.time()))
            except Exception:  # a flaky connection must not kill the job; the next beat retries
                logger.warning("heartbeat of the claim of %s failed", key, exc_info=True)

    def _release(self, key: str, owner: str) -> None:
        engine, table = _engine(self.url)
        try:
            with engine.begin() as connection:
                connection.execute(table.delete().where((table.c.run_key == key) & (table.c.owner == owner)))
        except Exception:  # the database went away: the claim expires after the grace period
            logger.warning("could not release the claim of %s; it expires in %.0f s", key, self.grace_period,
                           exc_info=True)
