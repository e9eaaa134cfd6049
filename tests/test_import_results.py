"""`import_results`: external results tables and lm-eval output as baseline/evaluate runs (issue 4 item 6)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.released import released_table
from analysis.simulate import simulate_paper
from transfergrid import analysis_run
from transfergrid.config import AnalysisConfig, ImportConfig, load_config
from transfergrid.importer import SEED_AGGREGATED, import_results
from transfergrid.tracking import names, reader

MODELS = ["meta-llama/Llama-3.2-1B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"]
TASKS = ["arc_challenge", "global_mmlu"]
LANGS = ["de", "en", "fr"]


@pytest.fixture(scope="module")
def small_results():
    """2 models x 2 tasks x 3 languages (6 sources x 6 targets) x 3 seeds, from the paper simulator."""
    r = simulate_paper(rng_seed=3).results
    keep = r["model"].isin(MODELS)
    for side in ("source", "target"):
        keep &= r[f"{side}_task"].isin(TASKS) & r[f"{side}_language"].isin(LANGS)
    return r[keep].reset_index(drop=True)


def _write(tmp_path, frame, name="transfer_results.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _runs(uri, kind):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(names.DEFAULT_EXPERIMENT)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.kind = '{kind}'", max_results=1000)


def _direct_regimes(csv) -> pd.DataFrame:
    frame = pd.read_csv(csv)
    keys = ["model_name", "fine_tuned_dataset", "fine_tuned_language", "eval_dataset", "eval_language"]
    if "seed" in frame.columns:
        frame = frame.groupby(keys, as_index=False)["delta_score_norm"].mean().rename(columns={"delta_score_norm": "d"})
    else:
        frame = frame.rename(columns={"delta_score_norm_mean": "d"})
    task = frame["fine_tuned_dataset"] == frame["eval_dataset"]
    lang = frame["fine_tuned_language"] == frame["eval_language"]
    frame["regime"] = np.where(task, np.where(lang, "MT-ML", "MT-CL"), np.where(lang, "CT-ML", "CT-CL"))
    groups = [(r, frame.loc[frame["regime"] == r, "d"]) for r in ("MT-ML", "MT-CL", "CT-ML", "CT-CL")]
    groups.append(("All transfer", frame.loc[frame["regime"] != "MT-ML", "d"]))
    return pd.DataFrame([{"regime": r, "n": d.size, "mean_delta": d.mean(), "median_delta": d.median(),
                          "win_rate": 100 * (d > 0).mean(), "harm_rate": 100 * (d <= -1.0).mean()} for r, d in groups])


@pytest.mark.slow
def test_aggregated_csv_imports_with_our_tags_and_metrics_and_only_once(tracking_uri, tmp_path, small_results):
    csv = _write(tmp_path, released_table(small_results))
    summary = import_results(ImportConfig(path=str(csv)))
    assert (summary.created, summary.skipped) == (2 + 2 * 6, 0)
    baselines, evaluations = _runs(tracking_uri, "baseline"), _runs(tracking_uri, "evaluate")
    assert len(baselines) == 2 and len(evaluations) == 12
    base = {run.data.tags[names.MODEL]: run for run in baselines}
    run = next(r for r in evaluations if r.data.tags[names.SOURCE_TASK] == "arc_challenge"
               and r.data.tags[names.SOURCE_LANGUAGE] == "de" and r.data.tags[names.MODEL] == MODELS[0])
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED"
    assert tags[names.SEED] == SEED_AGGREGATED and tags[names.BENCHMARK_SUITE] == "paper"
    assert tags[names.MODEL_FAMILY] == "Llama-3" and float(tags[names.MODEL_SIZE_B]) == 1.0
    assert (tags[names.RECIPE], tags[names.LORA_R], tags[names.SCHEMA]) == ("lora", "32", names.SCHEMA_VERSION)
    assert tags[names.BASELINE_RUN_ID] == base[MODELS[0]].info.run_id
    assert tags[names.SOURCE_CELL] == "arc_challenge.de"  # the source-cell column of the UI's study view
    assert tags[names.IMPORTED_FROM].startswith("transfer_results.csv sha256:")
    bare = MODELS[0].split("/")[-1]  # the released file names models without their organisation
    row = pd.read_csv(csv).query(
        "model_name == @bare and fine_tuned_dataset == 'arc_challenge' and fine_tuned_language == 'de' "
        "and eval_dataset == 'global_mmlu' and eval_language == 'fr'").iloc[0]
    assert metrics["score/global_mmlu/fr"] == pytest.approx(row["score_norm_mean"], abs=1e-15)
    assert metrics["acc/global_mmlu/fr"] == pytest.approx(row["score_mean"], abs=1e-15)
    assert metrics["delta/global_mmlu/fr"] == pytest.approx(row["delta_score_norm_mean"], abs=1e-12)
    assert "acc_norm/global_mmlu/fr" not in metrics and "acc_norm/arc_challenge/fr" in metrics
    assert set(k for k in metrics if k.startswith("transfer/")) == set(names.REGIME_METRIC.values())
    assert base[MODELS[0]].data.metrics["score/global_mmlu/fr"] == pytest.approx(row["score_norm_base_mean"], abs=1e-15)
    again = import_results(ImportConfig(path=str(csv)))
    assert (again.created, again.skipped) == (0, 14)
    assert len(_runs(tracking_uri, "evaluate")) == 12


@pytest.mark.slow
@pytest.mark.parametrize("per_seed", [False, True])
def test_analysis_on_imported_store_matches_pandas(tracking_uri, tmp_path, small_results, per_seed):
    csv = _write(tmp_path, released_table(small_results, per_seed=per_seed))
    summary = import_results(ImportConfig(path=str(csv)))
    assert summary.created == (3 if per_seed else 1) * (2 + 2 * 6)
    run_id = analysis_run.run_analysis(AnalysisConfig())
    path = reader.download_artifacts(tracking_uri, run_id, "tables/regime_summary.csv", tmp_path / "out")
    got = pd.read_csv(path).set_index("regime")
    want = _direct_regimes(csv).set_index("regime")
    columns = ["n", "mean_delta", "median_delta", "win_rate", "harm_rate"]
    assert got.loc[["MT-ML", "MT-CL", "CT-ML", "CT-CL"], "n"].tolist() == [12, 24, 12, 24]
    np.testing.assert_allclose(got.loc[want.index, columns].to_numpy(float), want[columns].to_numpy(float), rtol=0, atol=1e-9)


def _lmeval_json(model: str, values: dict) -> dict:
    results = {}
    for task, (acc, acc_norm) in values.items():
        results[task] = {"alias": task, "acc,none": acc, "acc_stderr,none": 0.02}
        if acc_norm is not None:
            results[task] |= {"acc_norm,none": acc_norm, "acc_norm_stderr,none": 0.02}
    return {"results": results, "versions": {t: 1.0 for t in values}, "n-shot": {t: 0 for t in values},
            "config": {"model": "hf", "model_args": f"pretrained={model},dtype=bfloat16", "batch_size": "auto",
                       "random_seed": 0, "numpy_seed": 1234, "torch_seed": 1234}, "model_name": model,
            "lm_eval_version": "0.4.9.2", "date": 1760000000.0}


def _lmeval_tree(root, model="Qwen/Qwen2.5-0.5B-Instruct", tasks=None):
    tasks = tasks or {"arc_de": (0.30, 0.35), "global_mmlu_de": (0.40, None), "truthfulqa_de_mc1": (0.25, None),
                      "hellaswag_en": (0.33, 0.41)}
    for seed in (17, 42):
        for source, bump in (("base", 0.0), ("arc_challenge_de", 0.02), ("hellaswag_en", -0.01)):
            values = {t: (a + bump, None if n is None else n + bump) for t, (a, n) in tasks.items()}
            folder = root / "Qwen2.5-0.5B-Instruct" / source / f"seed{seed}" / "Qwen__Qwen2.5-0.5B-Instruct"
            folder.mkdir(parents=True)
            (folder / "results_2025-10-01T12-00-00.000000.json").write_text(json.dumps(_lmeval_json(model, values)))
    return root


@pytest.mark.slow
def test_lmeval_directory_imports(tracking_uri, tmp_path):
    root = _lmeval_tree(tmp_path / "lmeval")
    summary = import_results(ImportConfig(path=str(root)))
    assert summary.created == 2 + 2 * 2
    evaluations = _runs(tracking_uri, "evaluate")
    run = next(r for r in evaluations if r.data.tags[names.SEED] == "42" and r.data.tags[names.SOURCE_TASK] == "arc_challenge")
    m = run.data.metrics
    assert run.data.tags[names.SOURCE_LANGUAGE] == "de" and run.data.tags[names.MODEL_FAMILY] == "Qwen2.5"
    assert m["score/arc_challenge/de"] == pytest.approx(0.37) and m["acc/arc_challenge/de"] == pytest.approx(0.32)
    assert m["acc_norm/arc_challenge/de"] == pytest.approx(0.37)
    assert m["score/global_mmlu/de"] == pytest.approx(0.42) and "acc_norm/global_mmlu/de" not in m
    assert m["score/truthfulqa/de"] == pytest.approx(0.27) and m["delta/hellaswag/en"] == pytest.approx(2.0)
    assert import_results(ImportConfig(path=str(root))).created == 0


def test_lmeval_unknown_task_fails_before_any_run(tracking_uri, tmp_path):
    root = _lmeval_tree(tmp_path / "lmeval", tasks={"arc_de": (0.3, 0.35), "truthfulqa_de_mc2": (0.2, None)})
    with pytest.raises(ValueError, match="truthfulqa_de_mc2"):
        import_results(ImportConfig(path=str(root)))
    assert not (tmp_path / "mlflow.db").exists()  # validation runs before the store is even opened


@pytest.fixture
def tiny_csv(small_results):
    r = small_results[small_results["model"] == MODELS[0]]
    r = r[r["source_task"].eq("arc_challenge") & r["source_language"].isin(["de", "en"])]
    return released_table(r)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda f: f.drop(columns=["eval_language"]), "missing columns \\['eval_language'\\]"),
        (lambda f: f.assign(extra=1), "unknown columns \\['extra'\\]"),
        (lambda f: f.assign(eval_dataset=f["eval_dataset"].where(f.index != 4, "mmlu_pro")), "'mmlu_pro'.*line 6"),
        (lambda f: pd.concat([f, f.iloc[[2]]]), "duplicate rows.*line 4.*line 14"),
        (lambda f: f.assign(score_norm_mean=f["score_norm_mean"].where(f.index != 7, np.nan)), "non-finite score.*line 9"),
        (lambda f: f.assign(score_norm_base_mean=f["score_norm_base_mean"].where(f.index != 0, 0.9)), "base scores differ"),
    ],
    ids=["missing-column", "unknown-column", "unknown-task", "duplicate", "nan", "inconsistent-base"],
)
def test_bad_input_fails_naming_the_value_before_any_run(tracking_uri, tmp_path, tiny_csv, corrupt, message):
    csv = _write(tmp_path, corrupt(tiny_csv))
    with pytest.raises(ValueError, match=message):
        import_results(ImportConfig(path=str(csv)))
    assert not (tmp_path / "mlflow.db").exists()  # validation runs before the store is even opened


def test_import_config_rejects_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        load_config(ImportConfig, ["--path", "x.csv", "--format", "json"])
    with pytest.raises(ValueError, match="no input"):
        import_results(ImportConfig(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"))


def test_entry_point_reports_bad_input_in_one_line(tracking_uri, tmp_path, capsys, tiny_csv):
    from entrypoints import import_results as entry

    csv = _write(tmp_path, tiny_csv.assign(eval_language=tiny_csv["eval_language"].where(tiny_csv.index != 1, "")))
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["--path", str(csv)])
    assert exit_info.value.code == 2
    assert "empty model name or empty/invalid language" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        entry.main(["--path", str(tmp_path / "missing.csv")])
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_per_seed_csv_with_base_rows_imports(tracking_uri, tmp_path, small_results):
    """SPEC 4's per-seed long table: base-model rows carry fine_tuned_dataset = n/a, no base_* columns."""
    per = released_table(small_results, per_seed=True)
    base = per.drop_duplicates(["model_name", "seed", "eval_dataset", "eval_language"]).assign(
        fine_tuned_dataset="n/a", fine_tuned_language="n/a", score=lambda f: f["base_score"],
        score_norm=lambda f: f["base_score_norm"])
    table = pd.concat([per, base])[["model_name", "model_size", "seed", "fine_tuned_dataset", "fine_tuned_language",
                                    "eval_dataset", "eval_language", "score", "score_norm"]]
    csv = _write(tmp_path, table, "per_seed.csv")
    assert import_results(ImportConfig(path=str(csv))).created == 3 * (2 + 2 * 6)
    run = next(r for r in _runs(tracking_uri, "evaluate") if r.data.tags[names.SEED] == "42"
               and r.data.tags[names.MODEL] == MODELS[1] and r.data.tags[names.SOURCE_TASK] == "global_mmlu"
               and r.data.tags[names.SOURCE_LANGUAGE] == "en")
    row = per.query("seed == 42 and model_name == @MODELS[1] and fine_tuned_dataset == 'global_mmlu' "
                    "and fine_tuned_language == 'en' and eval_dataset == 'arc_challenge' and eval_language == 'de'").iloc[0]
    assert run.data.metrics["delta/arc_challenge/de"] == pytest.approx(row["delta_score_norm"], abs=1e-9)
    assert run.data.metrics["acc/arc_challenge/de"] == pytest.approx(row["score"], abs=1e-15)
