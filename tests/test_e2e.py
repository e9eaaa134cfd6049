"""End to end: `mlflow run . -e finetune` and `-e evaluate` against a real `mlflow server` over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers_queue import start_mlflow_server

from transfergrid.data import get_suite
from transfergrid.grid import Cell
from transfergrid.tracking import names

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server on 127.0.0.1 with a SQLite backend and proxied artifacts."""
    server, url = start_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log")
    yield url
    server.terminate()
    server.wait(timeout=30)


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

