"""End to end on the paper's formats: a 2-benchmark x 2-language slice read through the Hub code path.

The model and the datasets sit in a pre-filled Hugging Face cache (the layout `hf download` leaves)
and `HF_HUB_OFFLINE=1` is set, as on a machine without network: baseline, fine-tune, evaluation and
analysis run from the cache alone.
"""

from __future__ import annotations

import mlflow
import pytest
from helpers_paper import arc_rows, mmlu_rows, write_hub_dataset, write_hub_model

from entrypoints import main as main_entry
from transfergrid import tiny_model
from transfergrid.models import cache_dir
from transfergrid.tracking import names

pytestmark = pytest.mark.slow

ARC_REV, MMLU_REV, MODEL_REV = "a" * 40, "b" * 40, "c" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A pre-filled HF cache: a causal LM and two paper datasets (en, de) in their Hub schemas."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = home / "hub"
    write_hub_model(hub, "tg-test/tiny-llama-instruct", MODEL_REV, tiny_model.ensure_built(cache_dir()))
    write_hub_dataset(hub, "tg-test/m_arc", ARC_REV, {
        f"{lang}/{split}": arc_rows(lang, split, n) for lang in ("en", "de") for split, n in (("train", 40), ("test", 30))})
    write_hub_dataset(hub, "tg-test/Global-MMLU-Lite", MMLU_REV, {
        f"{lang}/{split}": mmlu_rows(lang, split, n) for lang in ("en", "de") for split, n in (("dev", 40), ("test", 30))})
    suite = tmp_path / "slice.yaml"
    suite.write_text(f"""
name: paper-slice
chat_template: true
benchmarks:
  - use: paper/arc_challenge
    languages: [en, de]
    source: {{path: tg-test/m_arc, revision: {ARC_REV}, name: "{{language}}"}}
    split_manifest: null
    splits: {{train: {{split: train, n: 30}}, test: {{split: test, n: 20}}}}
  - use: paper/global_mmlu
    languages: [en, de]
    source: {{path: tg-test/Global-MMLU-Lite, revision: {MMLU_REV}, name: "{{language}}"}}
    split_manifest: null
""")
    return suite


def test_paper_slice_runs_baseline_finetune_evaluate_and_analysis_from_the_cache(tracking_uri, hub_cache):
    argv = ["--suite", str(hub_cache), "--model", "tg-test/tiny-llama-instruct", "--model_family", "tiny",
            "--sources", "arc_challenge.en,global_mmlu.de", "--num_epochs", "1", "--limit", "12", "--learning_rate", "3e-3"]
    plan = main_entry.main(argv)
    assert [job.kind for job in plan] == ["baseline", "finetune", "evaluate", "finetune", "evaluate"]
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=["transfergrid"])
    assert runs["tags.kind"].value_counts().to_dict() == {"grid": 1, "baseline": 1, "finetune": 2, "evaluate": 2, "analysis": 1}
    assert (runs["status"] == "FINISHED").all()
    assert set(runs["tags.model"].dropna()) == {"tg-test/tiny-llama-instruct"}
    assert set(runs["tags.model_family"].dropna()) == {"tiny"}
    evaluate = runs[runs["tags.kind"] == "evaluate"]
    for cell in ("arc_challenge/en", "arc_challenge/de", "global_mmlu/en", "global_mmlu/de"):
        assert evaluate[f"metrics.score/{cell}"].notna().all() and evaluate[f"metrics.delta/{cell}"].notna().all()
    # option-text scoring reports acc_norm (score = acc_norm); letter scoring does not (SPEC 1.6)
    assert evaluate["metrics.acc_norm/arc_challenge/en"].notna().all()
    assert "metrics.acc_norm/global_mmlu/en" not in runs or runs["metrics.acc_norm/global_mmlu/en"].isna().all()
    assert (evaluate[f"tags.{names.EVAL_PROTOCOL}"] == "loglikelihood").all()
    finetune = runs[runs["tags.kind"] == "finetune"]
    assert (finetune["metrics.n_train"] == 12).all()  # --limit 12 of 27 (ARC pool 30) and 36 (Global-MMLU dev 40)
    assert sorted(finetune["metrics.n_validation"]) == [3, 4]  # 10% of 30 and of 40, each under the limit
    client = mlflow.tracking.MlflowClient(tracking_uri)
    baseline = client.get_run(runs.loc[runs["tags.kind"] == "baseline", "run_id"].item())
    assert 0 <= baseline.data.metrics["score/global_mmlu/de"] <= 1
    config = mlflow.artifacts.load_text(f"runs:/{baseline.info.run_id}/{names.CONFIG_ARTIFACT}")
    assert "chat_template: true" in config  # the suite's default, resolved into the logged config
    analysis = runs[runs["tags.kind"] == "analysis"]
    assert analysis["metrics.n_cells"].item() == 2 * 4 and analysis["metrics.regime/mt_ml/n"].item() == 2


def test_prefetch_checks_a_prefilled_cache_offline_and_names_what_is_missing(hub_cache, capsys):
    from entrypoints import prefetch

    prefetch.main(["--suite", str(hub_cache), "--model", "tg-test/tiny-llama-instruct"])
    assert "cached: 1 models, 4 cells of suite paper-slice" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        prefetch.main(["--suite", str(hub_cache), "--model", "tg-test/not-downloaded"])
    assert exit_info.value.code == 2
    assert "model tg-test/not-downloaded (revision main)" in capsys.readouterr().err
