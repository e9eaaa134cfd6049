"""The Optuna-driven LoRA-rank ablation on the tiny model and the synthetic suite (SPEC 1.17)."""

from __future__ import annotations

import io

import matplotlib.image
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from entrypoints import ablation as ablation_entry
from transfergrid import ablation
from transfergrid.config import AblationConfig, load_config

ARGS = ["--ranks", "2,8,32", "--sources", "syn_lookup.xs1", "--study_name", "abl"]  # 3 epochs: rank 2 cannot learn it


def test_unknown_choices_exit_2_naming_the_valid_ones(capsys, tracking_uri):
    with pytest.raises(SystemExit) as exit_info:
        ablation_entry.main(["--alpha_rules", "2r,rsl"])
    assert exit_info.value.code == 2 and "unknown alpha_rule 'rsl'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ablation_entry.main(["--sources", "syn_lookup.zz9"])
    assert "unknown language of task syn_lookup 'zz9'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ablation_entry.main(["--storage", "redis://x"])
    assert "invalid Optuna storage URL" in capsys.readouterr().err


def test_search_space_runs_full_finetuning_once():
    cfg = load_config(AblationConfig, ["--ranks", "8,32", "--recipes", "lora,full", "--alpha_rules", "2r,rslora"])
    points = ablation.search_space(cfg, "syn_lookup.xs1")
    assert len(points) == 2 * 2 + 1
    assert [p.recipe for p in points].count("full") == 1


@pytest.mark.slow
def test_rank_ablation_pareto_front_and_resume(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    first = ablation_entry.main(["--ranks", "2,8", *ARGS[2:]])  # an earlier, smaller run of the study
    assert len(optuna.load_study(study_name="abl", storage=f"sqlite:///{tmp_path / 'optuna.db'}").get_trials()) == 2
    run_id = ablation_entry.main(ARGS)  # resumes the study: only rank 32 is new
    assert run_id != first
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["kind"] == "ablation"
    storage, name = run.data.tags["optuna_storage"], run.data.tags["optuna_study"]
    assert storage == f"sqlite:///{tmp_path / 'optuna.db'}" and run.data.params["optuna_study"] == name

    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    assert len(trials) == 3 and {t.state.name for t in trials} == {"COMPLETE"}
    gain = {t.params["lora_r"]: t.values[0] for t in trials}
    assert gain[2] < gain[8], gain  # the tiny model cannot learn at rank 2
    assert study.metric_names == list(ablation.OBJECTIVES)

    experiment = run.info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}'")
    kinds = sorted(r.data.tags["kind"] for r in children)
    assert kinds == ["evaluate", "finetune"]  # the new trial's runs; the others were reused, not redone
    assert len(client.search_runs([experiment], "tags.kind = 'finetune'")) == 3
    for child in children:
        if child.data.tags["kind"] != "baseline":
            assert child.data.tags["optuna_study"] == name and child.data.tags["optuna_trial_number"] == "2"

    def table(path):
        return pd.read_csv(io.StringIO(open(client.download_artifacts(run_id, path, str(tmp_path))).read()))

    pareto = table("pareto_front.csv")
    assert len(pareto) >= 1 and set(pareto["lora_r"]) <= {2, 8, 32} and pareto["pareto"].all()
    assert len(table("trials.csv")) == 3
    summary = table("tables/rank_summary.csv")
    assert list(summary["lora_r"]) == [2, 8, 32] and {"mean_delta", "p10", "p90", "harm_rate"} <= set(summary.columns)
    assert set(table("tables/rank_by_regime.csv")["regime"]) == {"mt_ml", "mt_cl", "off_task"}
    assert list(table("tables/rank_correlation.csv")["rank_b"]) == [2, 8]
    image = matplotlib.image.imread(client.download_artifacts(run_id, "pareto_front.png", str(tmp_path)))
    assert image.shape[0] > 100
    assert run.data.metrics["rank/2/on_task_gain"] < run.data.metrics["rank/8/on_task_gain"]

    # Rerunning resumes: no trial is redone, no run is created.
    n_runs = len(client.search_runs([experiment]))
    assert ablation_entry.main(ARGS) == run_id
    assert len(study.get_trials()) == 3 and len(client.search_runs([experiment])) == n_runs


@pytest.mark.slow
def test_lora_vs_full_on_two_local_workers(tracking_uri, tmp_path):
    import os

    run_id = ablation_entry.main(["--ranks", "8", "--recipes", "lora,full", "--sources", "syn_lookup.xs1",
                                  "--num_epochs", "1", "--workers", "2", "--heartbeat_interval", "1", "--grace_period", "5"])
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    study = optuna.load_study(study_name=run.data.tags["optuna_study"], storage=run.data.tags["optuna_storage"])
    trials = study.get_trials()
    assert sorted(t.params["recipe"] for t in trials) == ["full", "lora"] and all(t.state.name == "COMPLETE" for t in trials)
    assert os.getpid() not in {t.user_attrs["worker_pid"] for t in trials}  # the worker processes ran them
    finetunes = client.search_runs([run.info.experiment_id], "tags.kind = 'finetune'")
    assert sorted(r.data.tags["recipe"] for r in finetunes) == ["full", "lora"]
    path = client.download_artifacts(run_id, "tables/lora_vs_full.csv", str(tmp_path))
    versus = pd.read_csv(path)
    assert versus["n"].item() == 12 and -1 <= versus["pearson_r"].item() <= 1  # 12 shared target cells


@pytest.mark.e2e
@pytest.mark.slow
def test_mlflow_run_ablation_keeps_the_trials_in_the_launcher_experiment(tracking_uri, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root, bin_dir = Path(__file__).resolve().parents[1], Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "src"), env.get("PYTHONPATH", "")])
    args = [str(bin_dir / "mlflow"), "run", str(root), "-e", "ablation", "--env-manager", "local",
            "-P", "sources=syn_lookup.xs1", "-P", "ranks=8", "-P", "num_epochs=1", "-P", f"storage=sqlite:///{tmp_path}/o.db"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    client = MlflowClient(tracking_uri)
    default = client.get_experiment_by_name("Default").experiment_id
    kinds = sorted(r.data.tags.get("kind") for r in client.search_runs([default]))
    assert kinds == ["ablation", "baseline", "evaluate", "finetune"]
    assert client.get_experiment_by_name("transfergrid") is None


@pytest.mark.slow
def test_main_analysis_leaves_ablation_trials_to_their_ablation_run(tracking_uri):
    """Trials varying the alpha rule at one rank would collide in the tidy table; the analysis skips them."""
    from entrypoints import analysis as analysis_entry
    from entrypoints import evaluate as evaluate_entry
    from entrypoints import finetune as finetune_entry

    grid = ["--tasks", "syn_lookup", "--languages", "xs1,xn1", "--num_epochs", "1"]
    ablation_entry.main([*grid, "--ranks", "8", "--alpha_rules", "2r,rslora", "--sources", "syn_lookup.xs1"])
    evaluate_entry.main(grid[:4] + ["--finetune_run_id", finetune_entry.main([*grid, "--source", "syn_lookup.xs1", "--lora_r", "16"])])
    client = MlflowClient(tracking_uri)
    analysis = client.get_run(analysis_entry.main([]))
    assert analysis.info.status == "FINISHED" and analysis.data.metrics["n_runs"] == 2  # the plain evaluate + its baseline
