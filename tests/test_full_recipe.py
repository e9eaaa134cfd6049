"""Full fine-tuning (recipe `full`, SPEC 1.18): every weight trained, no PEFT; evaluation loads those weights."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from entrypoints import evaluate as evaluate_entry
from entrypoints import finetune as finetune_entry
from transfergrid.config import FinetuneConfig, load_config
from transfergrid.tracking import names

pytestmark = pytest.mark.slow
GRID = ["--tasks", "syn_lookup", "--languages", "xs1,xn1"]


def test_unknown_recipe_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown recipe 'ful'.*did you mean 'full'.*valid recipes: lora, full"):
        load_config(FinetuneConfig, ["--recipe", "ful"])


def test_full_finetune_logs_the_model_and_evaluate_loads_it(tracking_uri):
    ft_id = finetune_entry.main([*GRID, "--source", "syn_lookup.xs1", "--recipe", "full", "--num_epochs", "2"])
    client = MlflowClient(tracking_uri)
    ft = client.get_run(ft_id)
    assert ft.info.status == "FINISHED" and ft.data.tags[names.RECIPE] == "full"
    assert names.LORA_R not in ft.data.tags  # no adapter, no rank
    artifacts = {a.path for a in client.list_artifacts(ft_id, names.FULL_MODEL_DIR)}
    assert {"model/config.json", "model/model.safetensors"} <= artifacts
    assert not client.list_artifacts(ft_id, names.ADAPTER_DIR)

    ev_id = evaluate_entry.main([*GRID, "--finetune_run_id", ft_id])
    ev = client.get_run(ev_id)
    assert ev.data.tags[names.RECIPE] == "full" and ev.data.tags[names.FINETUNE_RUN_ID] == ft_id
    # the fine-tuned weights were used: the trained cell moved (a base model would give delta 0 exactly)
    assert ev.data.metrics["delta/syn_lookup/xs1"] > 0
    # the same recipe with another LoRA rank is the same full fine-tune (rank does not enter its key)
    assert finetune_entry.main([*GRID, "--source", "syn_lookup.xs1", "--recipe", "full", "--num_epochs", "2", "--lora_r", "8"]) == ft_id
