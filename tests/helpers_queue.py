"""Helpers of the queue tests: worker subprocesses, a throwaway PostgreSQL database, run listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FAST_QUEUE = ["--heartbeat_interval", "1", "--grace_period", "5", "--poll_seconds", "0.5"]


def env(**extra) -> dict:
    """The test process's environment for a subprocess, with this checkout first on the import path."""
    out = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), out.get("PYTHONPATH", "")])
    out.pop("MLFLOW_RUN_ID", None)
    return out


def start_worker(storage: str, *args: str, log: Path, **extra_env) -> subprocess.Popen:
    """`python -m entrypoints.worker` with fast heartbeats (1 s, stale after 5 s) and one torch thread."""
    command = [sys.executable, "-m", "entrypoints.worker", "--storage", storage, "--torch_threads", "1", *FAST_QUEUE, *args]
    return subprocess.Popen(command, env=env(**extra_env), stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_all(processes, logs, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    for process, log in zip(processes, logs):
        process.wait(timeout=max(1, deadline - time.time()))
        assert process.returncode == 0, log.read_text()[-4000:]


def create_database() -> str:
    """A fresh PostgreSQL database on 127.0.0.1:5432 (trust auth); returns its name."""
    import psycopg2

    import pytest

    name = f"tg_{uuid.uuid4().hex[:12]}"
    try:
        connection = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    except psycopg2.OperationalError as error:  # a machine without the server (CI and dev machines have it)
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}: {str(error).strip()}")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return name


def drop_database(name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(PG_ADMIN)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    connection.close()


# A fake job for the claim tests: record who ran which job, take a little time, succeed.
def record_job(job: dict, context) -> list[float]:
    with open(job["record"], "a") as handle:
        handle.write(json.dumps({"key": job["key"], "pid": os.getpid(), "trial": context.trial_number}) + "\n")
    time.sleep(0.02)
    return [0.0]


def fake_worker_main() -> None:
    """A worker process running `record_job` (argv: storage URL, study name)."""
    from transfergrid import queue
    from transfergrid.config import WorkerConfig

    storage, study_name = sys.argv[1:3]
    queue.run_worker(WorkerConfig(storage=storage, study_name=study_name, heartbeat_interval=1, grace_period=3,
                                  poll_seconds=0.2), record_job)


if __name__ == "__main__":
    fake_worker_main()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(backend_store_uri: str, artifacts: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` on 127.0.0.1 (proxied artifacts); returns (process, URL) once healthy."""
    import urllib.request

    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend_store_uri, "--artifacts-destination", str(artifacts)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
        assert server.poll() is None, log.read_text()
    server.kill()
    raise AssertionError("mlflow server did not become healthy in 120 s:\n" + log.read_text())
