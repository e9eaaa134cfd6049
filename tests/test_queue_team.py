"""The team set-up: workers on a PostgreSQL Optuna storage, tracking through `mlflow server` on PostgreSQL over HTTP."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import helpers_queue as hq
from entrypoints import grid as grid_entry
from entrypoints import status as status_entry

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
PASSWORD = "s3cr3t-pw"  # trust auth ignores it; it must still never be logged


@pytest.fixture
def team(tmp_path, monkeypatch):
    """(Optuna storage URL with a password, tracking server URL) on two throwaway PostgreSQL databases."""
    optuna_db, mlflow_db = hq.create_database(), hq.create_database()
    server, url = hq.start_mlflow_server(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{mlflow_db}",
                                         tmp_path / "artifacts", tmp_path / "server.log")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/{optuna_db}", url
    server.terminate()
    server.wait(timeout=30)
    hq.drop_database(optuna_db)
    hq.drop_database(mlflow_db)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_three_workers_on_postgresql_through_an_mlflow_server(team, tmp_path):
    storage, url = team
    args = ["--storage", storage, "--num_epochs", "1", "--lora_r", "8", *hq.FAST_QUEUE[:4]]
    assert grid_entry.main(args).added == 13
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    hq.wait_all([hq.start_worker(storage, log=log) for log in logs], logs, timeout=600)

    client = MlflowClient(url)
    experiment_id = client.get_experiment_by_name("transfergrid").experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    by_kind = Counter((r.data.tags["kind"], r.info.status) for r in runs)
    assert by_kind == {("grid", "FINISHED"): 1, ("baseline", "FINISHED"): 1, ("finetune", "FINISHED"): 12,
                       ("evaluate", "FINISHED"): 12}
    assert len({r.data.tags["run_key"] for r in runs}) == len(runs)  # no duplicate run key
    (grid_run,) = [r for r in runs if r.data.tags["kind"] == "grid"]
    assert grid_run.data.tags["optuna_storage"] == storage.replace(PASSWORD, "***")

    # The password appears in no param, tag or artifact of any run.
    for run in runs:
        assert PASSWORD not in repr(run.data.params) + repr(run.data.tags), run.info.run_id
        local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl" / run.info.run_id)))
        for path in _files(local):
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert "config.yaml" in {p.name for p in _files(tmp_path / "dl" / grid_run.info.run_id)}

    table, counts = status_entry.main(["--storage", storage])
    assert Counter(table["state"]) == {"COMPLETE": 13}
    assert counts.set_index("kind").loc["finetune", "runs"] == 12
