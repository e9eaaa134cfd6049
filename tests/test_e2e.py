"""End to end: `mlflow run . -e finetune` and `-e evaluate` against a real `mlflow server` over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from transfergrid.data import get_suite
from transfergrid.grid import Cell
from transfergrid.tracking import names

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server on 127.0.0.1 with a SQLite backend and proxied artifacts."""
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        assert server.poll() is None, (tmp_path / "server.log").read_text()
    else:
        server.kill()
        pytest.fail("mlflow server did not become healthy in 90 s:\n" + (tmp_path / "server.log").read_text())
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


def mlflow_run(url: str, entry: str, *params: str) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_RUN_ID", None)
    args = [str(BIN / "mlflow"), "run", str(ROOT), "-e", entry, "--env-manager", "local", "--experiment-name", "e2e"]
    for param in params:
        args += ["-P", param]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout + done.stderr


def test_mlflow_run_finetune_then_evaluate_over_http(mlflow_server):
    from mlflow.tracking import MlflowClient

    suite = get_suite("synthetic")
    task = next(iter(suite.tasks))
    languages = list(suite.tasks[task].languages)[:2]
    source = f"{task}.{languages[0]}"
    mlflow_run(mlflow_server, "finetune", f"source={source}", "num_epochs=1")
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("e2e")
    (ft,) = client.search_runs([experiment.experiment_id], "tags.kind = 'finetune'")
    assert ft.info.status == "FINISHED"
    tags = ft.data.tags
    assert (tags[names.SOURCE_TASK], tags[names.SOURCE_LANGUAGE]) == (task, languages[0])
    assert tags[names.MODEL] == "builtin:tiny-llama" and tags[names.RECIPE] == "lora" and tags[names.LORA_R] == "32"
    assert tags[names.SEED] == "42" and tags[names.BENCHMARK_SUITE] == "synthetic" and len(tags[names.RUN_KEY]) == 20
    assert tags[names.SCHEMA] == names.SCHEMA_VERSION
    loss_history = client.get_metric_history(ft.info.run_id, "train/loss")
    assert len(loss_history) > 3 and len({m.step for m in loss_history}) == len(loss_history)  # per step
    assert client.get_metric_history(ft.info.run_id, "eval/loss")
    adapter = {a.path for a in client.list_artifacts(ft.info.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= adapter
    assert "config.yaml" in {a.path for a in client.list_artifacts(ft.info.run_id)}

    grid = [f"tasks={task}", f"languages={','.join(languages)}"]
    mlflow_run(mlflow_server, "evaluate", f"finetune_run_id={ft.info.run_id}", *grid)
    (ev,) = client.search_runs([experiment.experiment_id], "tags.kind = 'evaluate'")
    (base,) = client.search_runs([experiment.experiment_id], "tags.kind = 'baseline'")
    assert ev.info.status == base.info.status == "FINISHED"
    assert ev.data.tags[names.FINETUNE_RUN_ID] == ft.info.run_id and ev.data.tags[names.BASELINE_RUN_ID] == base.info.run_id
    for language in languages:
        for family in ("score", "acc", "delta"):
            assert f"{family}/{task}/{language}" in ev.data.metrics
    assert {"transfer/mt_ml", "transfer/mt_cl"} <= set(ev.data.metrics)
    assert ev.data.metrics[f"delta/{task}/{languages[0]}"] > 0  # the adapter learned its source cell
    path = client.download_artifacts(ev.info.run_id, "predictions.parquet")
    predictions = pd.read_parquet(path)
    assert len(predictions) == sum(len(suite.items(Cell(task, language), "test")) for language in languages)

    # The same command again reuses the FINISHED run: no second evaluate run.
    mlflow_run(mlflow_server, "evaluate", f"finetune_run_id={ft.info.run_id}", *grid)
    assert len(client.search_runs([experiment.experiment_id], "tags.kind = 'evaluate'")) == 1

