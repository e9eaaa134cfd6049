"""Time to an error when the tracking store cannot be used: MLflow's own first call vs transfergrid's store check.

Two cases: a tracking server that is down (`http://127.0.0.1:9`, nothing listens) and a new SQLite store
whose folder cannot be written (a path under a regular file). "MLflow" is what a command did before the
check existed: its first tracking call (`get_experiment_by_name`) with MLflow's default retries, until it
raises. "transfergrid" is `python -m entrypoints.main --dry_run` as a subprocess (imports included) until
it exits with status 2 and its one-line error. Reports both wall times and their ratio.

    python benchmarks/store_check.py [--cases dead-server,unwritable-sqlite] [--no-append]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common


def cases(tmp: Path) -> dict[str, str]:
    (tmp / "a-file").write_text("not a folder")
    return {"dead-server": "http://127.0.0.1:9", "unwritable-sqlite": f"sqlite:///{tmp / 'a-file' / 'mlflow.db'}"}


def mlflow_seconds(uri: str) -> tuple[float, str]:
    """Seconds until MLflow's first call on `uri` raises (in a subprocess: a fresh client, default retries)."""
    code = ("import mlflow, sys\ntry:\n    mlflow.MlflowClient(sys.argv[1]).get_experiment_by_name('transfergrid')\n"
            "except Exception as e:\n    print(type(e).__name__)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    return time.perf_counter() - start, (done.stdout.strip() or "no error").splitlines()[-1]


def transfergrid_seconds(uri: str, cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(_common.ROOT), str(_common.ROOT / "src")])}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "entrypoints.main", "--dry_run"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:90]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="dead-server,unwritable-sqlite")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        uris = cases(Path(tmp))
        for name in args.cases.split(","):
            ours, message = transfergrid_seconds(uris[name], Path(tmp))
            theirs, error = mlflow_seconds(uris[name])
            rows.append({"case": name, "MLflow first call (s)": f"{theirs:.1f}", "MLflow raises": error,
                         "transfergrid check (s)": f"{ours:.1f}", "transfergrid says": message.replace("|", "/"),
                         "ratio": f"{theirs / ours:.0f}x"})
            print(rows[-1], flush=True)
    table = _common.markdown_table(rows)
    print(table)
    if not args.no_append:
        _common.append_results("store_check: time to an error on an unusable tracking store",
                               f"python benchmarks/store_check.py --cases {args.cases}", table,
                               "Goal: one line naming the URI in about 3 s instead of minutes of retries.")


if __name__ == "__main__":
    main()
