"""Integration: the jobs on the tiny model and synthetic suite, in-process, against a SQLite store."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from entrypoints import analysis as analysis_entry
from entrypoints import evaluate as evaluate_entry
from entrypoints import finetune as finetune_entry
from entrypoints import main as main_entry
from transfergrid import jobs
from transfergrid.data import get_suite
from transfergrid.tracking import names

pytestmark = pytest.mark.slow


def runs(uri: str, experiment: str = "transfergrid") -> pd.DataFrame:
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


def small_grid(train: bool = True) -> list[str]:
    """Two tasks x two languages, one epoch: the study's shape at a quarter of its cost."""
    suite = get_suite("synthetic")
    tasks = list(suite.tasks)[:2]
    languages = list(suite.tasks[tasks[0]].languages)[:2]
    return ["--tasks", ",".join(tasks), "--languages", ",".join(languages)] + (["--num_epochs", "1"] if train else [])


def test_main_runs_the_study_and_a_second_main_redoes_nothing(tracking_uri, monkeypatch):
    loads = []
    real_load = jobs.load_model
    monkeypatch.setattr(jobs, "load_model", lambda spec, device=None: loads.append(spec.id) or real_load(spec, device))
    main_entry.main(small_grid())
    first = runs(tracking_uri)
    kinds = first["tags.kind"].value_counts().to_dict()
    assert kinds == {"grid": 1, "baseline": 1, "finetune": 4, "evaluate": 4, "analysis": 1}
    assert (first["status"] == "FINISHED").all()
    # one base model for the baseline and all four evaluations, plus one fresh copy per fine-tune
    assert len(loads) == 1 + 4
    grid_id = first.loc[first["tags.kind"] == "grid", "run_id"].item()
    children = first[first["tags.kind"] != "grid"]
    assert (children[f"tags.{names.STUDY_RUN_ID}"] == grid_id).all()  # linked, not nested: rows of their own in the UI
    assert f"tags.{names.PARENT_RUN_ID}" not in children or children[f"tags.{names.PARENT_RUN_ID}"].isna().all()
    evaluate = first[first["tags.kind"] == "evaluate"]
    assert set(evaluate[f"tags.{names.SOURCE_CELL}"]) == set(evaluate["tags.source_task"] + "." + evaluate["tags.source_language"])

    main_entry.main(small_grid())
    second = runs(tracking_uri)
    assert len(second) == len(first), "a second main must not create any run"


def test_evaluate_logs_delta_against_baseline_and_analysis_reads_it_back(tracking_uri):
    ft_id = finetune_entry.main(small_grid())
    ev_id = evaluate_entry.main(small_grid(train=False) + ["--finetune_run_id", ft_id])
    client = mlflow.tracking.MlflowClient(tracking_uri)
    ev = client.get_run(ev_id)
    base = client.get_run(ev.data.tags[names.BASELINE_RUN_ID])
    assert base.data.tags[names.KIND] == "baseline" and base.info.status == "FINISHED"
    assert ev.data.tags[names.FINETUNE_RUN_ID] == ft_id
    score_keys = [k for k in ev.data.metrics if k.startswith("score/")]
    assert len(score_keys) == 4
    predictions = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=ev_id, artifact_path="predictions.parquet"))
    for key in score_keys:
        delta = ev.data.metrics["delta/" + key[len("score/"):]]
        assert delta == pytest.approx(100 * (ev.data.metrics[key] - base.data.metrics[key]))
        _, task, language = key.split("/")
        n = int(((predictions["task"] == task) & (predictions["language"] == language)).sum())
        counts = [round(run.data.metrics[key] * n) for run in (ev, base)]
        assert delta == 100.0 * (counts[0] - counts[1]) / n  # from item counts: exact ties and -1 pp steps
    source = f"{ev.data.tags['source_task']}/{ev.data.tags['source_language']}"
    assert ev.data.metrics["transfer/mt_ml"] == pytest.approx(ev.data.metrics[f"delta/{source}"])
    artifacts = {a.path for a in client.list_artifacts(ev_id)}
    assert {"config.yaml", "predictions.parquet"} <= artifacts
    assert {"task", "language", "item_id", "gold", "predicted", "loglik"} <= set(predictions.columns)

    an_id = analysis_entry.main([])
    summary = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=an_id, artifact_path="tables/regime_summary.csv"))
    mt_ml = summary.set_index("regime").loc["MT-ML"]
    assert mt_ml["n"] == 1
    assert mt_ml["mean_delta"] == pytest.approx(ev.data.metrics[f"delta/{source}"])
    assert client.get_run(an_id).data.metrics["regime/mt_ml/mean_delta"] == pytest.approx(mt_ml["mean_delta"])
    assert analysis_entry.main([]) == an_id  # same runs, same analysis key: reused


def test_same_seed_gives_same_predictions(tracking_uri):
    suite = get_suite("synthetic")
    task = next(iter(suite.tasks))
    grid = small_grid() + ["--sources", f"{task}.{suite.tasks[task].languages[0]}"]
    main_entry.main(grid + ["--experiment", "first"])
    main_entry.main(grid + ["--experiment", "second"])
    client = mlflow.tracking.MlflowClient(tracking_uri)
    frames = []
    for experiment in ("first", "second"):
        ev = runs(tracking_uri, experiment).query("`tags.kind` == 'evaluate'")
        assert len(ev) == 1
        path = mlflow.artifacts.download_artifacts(run_id=ev["run_id"].item(), artifact_path="predictions.parquet")
        frames.append(pd.read_parquet(path))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    scores = [client.get_run(r).data.metrics for r in runs(tracking_uri, "first").query("`tags.kind` == 'evaluate'")["run_id"]]
    assert scores and all(k.startswith(("score/", "acc", "delta/", "transfer/", "eval/")) for k in scores[0])


def test_crash_marks_failed_and_rerun_redoes_only_what_is_missing(tracking_uri, monkeypatch):
    import transfergrid.training as training

    real_train = training.train_adapter
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in the second fine-tune")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train_adapter", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main_entry.main(small_grid())
    first = runs(tracking_uri)
    failed = first[first["status"] == "FAILED"]
    assert set(failed["tags.kind"]) == {"finetune", "grid"}
    assert failed["tags.failure_reason"].str.contains("simulated crash").all()
    finished_before = set(first.loc[first["status"] == "FINISHED", "run_id"])

    monkeypatch.setattr(training, "train_adapter", real_train)
    main_entry.main(small_grid())
    second = runs(tracking_uri)
    finished = second[second["status"] == "FINISHED"]
    assert finished_before <= set(finished["run_id"])  # nothing recorded was lost or redone
    assert finished["tags.kind"].value_counts()["finetune"] == 4
    assert finished["tags.run_key"].is_unique


def test_bad_input_fails_before_any_run(tracking_uri, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_entry.main(["--tasks", "no_such_task"])
    assert exit_info.value.code == 2
    assert "unknown task 'no_such_task'" in capsys.readouterr().err
    mlflow.set_tracking_uri(tracking_uri)
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_full_synthetic_study_recovers_the_planted_structure(tracking_uri):
    """The embedded default study end to end: the trained cell is learned, and transfer follows the plant."""
    main_entry.main([])
    finished = runs(tracking_uri).query("status == 'FINISHED'")
    n_cells = len(get_suite("synthetic").tasks) * 4
    assert finished["tags.kind"].value_counts().to_dict() == {
        "grid": 1, "baseline": 1, "finetune": n_cells, "evaluate": n_cells, "analysis": 1
    }
    metrics = mlflow.tracking.MlflowClient(tracking_uri).get_run(
        finished.loc[finished["tags.kind"] == "analysis", "run_id"].item()
    ).data.metrics
    assert metrics["regime/mt_ml/mean_delta"] >= 30.0
    assert metrics["regime/mt_cl/mean_delta"] > metrics["regime/ct_cl/mean_delta"]
    assert metrics["typology/planted/spearman_rho"] < 0  # MT-CL Δ falls with planted language distance
    assert metrics["planted/pair_transfer_rho"] > 0.5  # measured vs expected Δ per (source, target) pair
