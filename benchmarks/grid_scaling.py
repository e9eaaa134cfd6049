"""Wall time of the 12-source synthetic grid (13 queue jobs: the baseline + 12 fine-tune/evaluate pairs)
run by 1 vs 2 local `worker` processes with one torch thread each, on a SQLite Optuna storage and a
SQLite tracking store. Each configuration runs in a fresh directory; the tiny model is built once
beforehand (not timed); the clock runs from the workers' start until the last one exits (the analysis
is not included). Reports the wall time, jobs per minute and the speed-up ratio.

    python benchmarks/grid_scaling.py [--epochs 1] [--lora-r 8] [--workers 1,2] [--no-append]
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

FAST = ["--heartbeat_interval", "5", "--grace_period", "60"]


def environment(workdir: Path, cache: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "TRANSFERGRID_CACHE": str(cache),
           "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    env["PYTHONPATH"] = os.pathsep.join([str(_common.ROOT), str(_common.ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("MLFLOW_RUN_ID", None)
    return env


def run_grid(n_workers: int, args, cache: Path) -> dict:
    """Enqueue the grid in a fresh directory, then time `n_workers` worker processes until the queue is empty."""
    with tempfile.TemporaryDirectory(prefix="grid-scaling-") as tmp:
        workdir = Path(tmp)
        env, storage = environment(workdir, cache), f"sqlite:///{workdir / 'optuna.db'}"
        common = ["--storage", storage, *FAST]
        subprocess.run([sys.executable, "-m", "entrypoints.grid", *common, "--num_epochs", str(args.epochs),
                        "--lora_r", str(args.lora_r)], env=env, cwd=workdir, check=True, capture_output=True)
        start = time.perf_counter()
        workers = [subprocess.Popen([sys.executable, "-m", "entrypoints.worker", *common, "--torch_threads", "1"],
                                    env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(n_workers)]
        codes = [w.wait() for w in workers]
        seconds = time.perf_counter() - start
        if any(codes):
            raise RuntimeError(f"workers exited with {codes}")
        done = subprocess.run([sys.executable, "-m", "entrypoints.status", "--storage", storage], env=env, cwd=workdir,
                              check=True, capture_output=True, text=True).stdout
        if "13 done" not in done:
            raise RuntimeError(f"not every job finished:\n{done}")
    return {"workers": n_workers, "wall_s": round(seconds, 1), "jobs": 13, "jobs_per_min": round(13 / seconds * 60, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--notes", default="", help="e.g. the other load on the machine during the run")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grid-scaling-cache-") as cache:
        subprocess.run([sys.executable, "-c", "from transfergrid import tiny_model, models; tiny_model.ensure_built(models.cache_dir())"],
                       env=environment(Path(cache), Path(cache)), check=True)
        rows = [run_grid(int(n), args, Path(cache)) for n in args.workers.split(",")]
    for row in rows:
        row["speedup"] = round(rows[0]["wall_s"] / row["wall_s"], 2)
    table = _common.markdown_table(rows)
    print(table)
    load = os.getloadavg()
    notes = (f"Tiny model, synthetic suite, {args.epochs} epoch(s), LoRA r={args.lora_r}; one torch thread per worker. "
             f"Load average after the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. {args.notes}").strip()
    if not args.no_append:
        command = " ".join(["python", "benchmarks/grid_scaling.py", *sys.argv[1:]])
        _common.append_results("Grid on a queue: 1 vs 2 workers", command, table, notes)


if __name__ == "__main__":
    main()
