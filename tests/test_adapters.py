"""Many adapters, one base model: swapping PEFT adapters scores exactly as merge-and-reload does."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from helpers_models import build_tiny_llama, build_tiny_tokenizer  # noqa: E402
from test_evaluation import LETTERS, OPTIONS, FakeSuite  # noqa: E402
from transfergrid.adapters import AdapterHost  # noqa: E402
from transfergrid.evaluation import evaluate_cells  # noqa: E402

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def adapter_dirs(tokenizer, tmp_path_factory):
    """Saved LoRA adapters with random (non-zero) A and B; ranks differ (new adapter) or repeat (weights copied)."""
    dirs = []
    for k, rank in enumerate((2, 4, 4, 8)):
        torch.manual_seed(100 + k)
        config = peft.LoraConfig(r=rank, lora_alpha=16, target_modules=PROJECTIONS, init_lora_weights=False, task_type="CAUSAL_LM")
        wrapped = peft.get_peft_model(build_tiny_llama(len(tokenizer), seed=0), config)
        path = tmp_path_factory.mktemp(f"adapter{k}")
        wrapped.save_pretrained(path)
        dirs.append(path)
    return dirs


def logliks(model, tokenizer, batch_size=5):
    suite = FakeSuite(n_items=6)
    result = evaluate_cells(model, tokenizer, suite, [LETTERS, OPTIONS], batch_size=batch_size, progress=False)
    return np.concatenate(result.predictions["loglik"].tolist()), result.predictions["predicted"].tolist()


def merged_reference(tokenizer, adapter_dir):
    """The paper's way: a fresh base, the adapter merged in (`merge_and_unload`), a plain model."""
    fresh = build_tiny_llama(len(tokenizer), seed=0)
    return peft.PeftModel.from_pretrained(fresh, str(adapter_dir)).merge_and_unload()


@pytest.mark.parametrize("merge", [True, False], ids=["merged-in-place", "unmerged"])
def test_swapping_adapters_equals_merged_models(tokenizer, adapter_dirs, merge):
    base = build_tiny_llama(len(tokenizer), seed=0)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    plain, plain_pred = logliks(base, tokenizer)
    with AdapterHost(base, merge=merge) as host:
        for adapter_dir in adapter_dirs:
            swapped, swapped_pred = logliks(host.activate(adapter_dir), tokenizer)
            merged, merged_pred = logliks(merged_reference(tokenizer, adapter_dir), tokenizer)
            np.testing.assert_allclose(swapped, merged, atol=1e-4, rtol=0)
            assert swapped_pred == merged_pred
            assert np.abs(swapped - plain).max() > 1e-2  # the adapter does change the scores
            assert list(host.model.peft_config) == [host.active]  # the previous adapter was deleted
            with host.base_scores():
                disabled, _ = logliks(host.model, tokenizer)
            np.testing.assert_allclose(disabled, plain, atol=1e-5, rtol=0)
            again, _ = logliks(host.model, tokenizer)  # the adapter is back after the base scores
            np.testing.assert_allclose(again, swapped, atol=1e-6, rtol=0)
    assert host.swap_seconds > 0
    restored = host.close()
    assert restored is base and not any("lora" in name for name, _ in restored.named_parameters())
    assert all(torch.equal(value, original[key]) for key, value in restored.state_dict().items())  # bit for bit
    again, again_pred = logliks(restored, tokenizer)
    np.testing.assert_allclose(again, plain, atol=1e-6, rtol=0)
    assert again_pred == plain_pred


@pytest.mark.slow
def test_evaluate_many_adapters_loads_the_base_once(tracking_uri, monkeypatch):
    from entrypoints import evaluate as evaluate_entry
    from entrypoints import finetune as finetune_entry
    from test_study import small_grid
    from transfergrid import jobs
    from transfergrid.tracking import names

    grid = small_grid()
    sources = [f"{task}.{lang}" for task in grid[1].split(",")[:1] for lang in grid[3].split(",")]
    ft_ids = [finetune_entry.main(grid + ["--source", source]) for source in sources]
    loads = []
    real_load = jobs.load_model
    monkeypatch.setattr(jobs, "load_model", lambda spec, device=None: loads.append(spec.id) or real_load(spec, device))
    ev_ids = evaluate_entry.main(small_grid(train=False) + ["--finetune_run_ids", ",".join(ft_ids)])
    assert len(ev_ids) == 2 and len(loads) == 1
    client = mlflow.tracking.MlflowClient(tracking_uri)
    for ft_id, ev_id in zip(ft_ids, ev_ids):
        run = client.get_run(ev_id)
        assert run.info.status == "FINISHED" and run.data.tags[names.FINETUNE_RUN_ID] == ft_id
        for metric in ("eval/items_per_second", "eval/tokens_per_second", "eval/peak_memory_mb"):
            assert run.data.metrics[metric] > 0
        assert any(k.startswith("delta/") for k in run.data.metrics)
    # the same evaluations again, selected by a filter: every run key is FINISHED, nothing is redone
    task = grid[1].split(",")[0]
    again = evaluate_entry.main(small_grid(train=False) + ["--finetune_filter", f"tags.source_task = '{task}'"])
    assert sorted(again) == sorted(ev_ids) and len(loads) == 1
