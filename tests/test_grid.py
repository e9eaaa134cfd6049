"""Grid vocabulary, regimes, grid selection, model registry and run keys."""

import math

import pytest

from transfergrid.grid import Cell, delta_pp, regime, select_cells
from transfergrid.models import resolve_model
from transfergrid.runkeys import run_key

TASKS = {"arc": ["de", "en"], "mmlu": ["de", "en", "fr"]}


def test_cell_parse_and_str():
    assert Cell.parse("arc_challenge.de") == Cell("arc_challenge", "de")
    assert str(Cell("global_mmlu", "zh")) == "global_mmlu.zh"
    with pytest.raises(ValueError, match="expected 'task.language'"):
        Cell.parse("arc")


def test_regimes():
    src = Cell("arc", "de")
    assert regime(src, Cell("arc", "de")) == "MT-ML"
    assert regime(src, Cell("arc", "en")) == "MT-CL"
    assert regime(src, Cell("mmlu", "de")) == "CT-ML"
    assert regime(src, Cell("mmlu", "en")) == "CT-CL"


def test_delta_from_item_counts_has_exact_ties_and_harm_steps():
    """Δ of our own runs from item counts: equal counts are exactly 0, one item lost in 100 exactly -1 pp,
    where 100 * (k/n - j/n) leaves float residue (e.g. -1.0000000000000009 for 41/100 vs 42/100)."""
    for n in (100, 300, 400):
        steps = [(k, k + n // 100) for k in range(n - n // 100 + 1)]
        assert all(delta_pp(k / n, j / n, n) == -1.0 for k, j in steps)
        assert any(100.0 * (k / n - j / n) != -1.0 for k, j in steps)  # what the float formula gives
        assert all(delta_pp(k / n, k / n, n) == 0.0 for k in range(n + 1))
    assert delta_pp(0.3, 0.3 + 1e-5, 100) == pytest.approx(-1e-3)  # not counts over n: the float formula
    assert delta_pp(0.5, 0.25, None) == 25.0


def test_select_cells_filters_and_errors():
    assert [str(c) for c in select_cells(TASKS, ["mmlu"], ["fr", "en"])] == ["mmlu.en", "mmlu.fr"]
    assert len(select_cells(TASKS)) == 5
    with pytest.raises(ValueError, match=r"unknown task 'mmmlu' \(did you mean 'mmlu'\?\); valid tasks: arc, mmlu"):
        select_cells(TASKS, ["mmmlu"])
    with pytest.raises(ValueError, match=r"unknown language 'xx'; valid languages: de, en, fr"):
        select_cells(TASKS, None, ["xx"])
    with pytest.raises(ValueError, match="empty grid selection"):
        select_cells(TASKS, ["arc"], ["fr"])


def test_registry_builtin_and_hub_ids():
    tiny = resolve_model("builtin:tiny-llama")
    assert tiny.family == "tiny-llama" and tiny.size_bucket == "S" and tiny.train_overrides["learning_rate"] > 5e-5
    qwen = resolve_model("Qwen/Qwen2.5-1.5B-Instruct")
    assert qwen.size_b == 1.5 and qwen.size_bucket == "S" and qwen.family == "Qwen2.5"
    assert resolve_model("meta-llama/Llama-3.1-8B-Instruct").size_bucket == "L"
    assert resolve_model("google/gemma-3-4b-it").size_bucket == "M"
    assert math.isnan(resolve_model("/models/mine").size_b)
    with pytest.raises(ValueError, match="unknown model 'builtin:nope'"):
        resolve_model("builtin:nope")


def test_run_key_is_a_stable_content_hash():
    a = run_key("finetune", {"model": "m", "seed": 42, "lora_r": 32})
    assert a == run_key("finetune", {"lora_r": 32, "seed": 42, "model": "m"})  # key order does not matter
    assert a != run_key("finetune", {"model": "m", "seed": 17, "lora_r": 32})
    assert a != run_key("evaluate", {"model": "m", "seed": 42, "lora_r": 32})
    assert a == "4a94f4e813a643d7fa83"  # pinned: keys must not change between processes or releases
