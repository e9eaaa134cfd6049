"""Main-grid selection, rank ablation (SPEC 1.17) and LoRA vs full fine-tuning (SPEC 1.18)."""

import numpy as np
import pandas as pd
import pytest

from analysis import ablation
from analysis.simulate import grid_frame

MODELS = {"m1": ("f", 1.0), "m2": ("g", 8.0)}


def base_delta(keys):
    rng = np.random.default_rng(0)
    return rng.normal(0.5, 2.0, len(keys))


def with_runs(extra_recipe, extra_rank, shift, *, subset_language="a"):
    """The main grid (LoRA r=32) plus runs of another recipe/rank on the sources of one language, Δ shifted."""
    main = grid_frame(base_delta, models=MODELS)
    other = main[main["source_language"] == subset_language].assign(recipe=extra_recipe, lora_r=extra_rank)
    other = other.assign(delta=other["delta"] + shift, delta_acc=other["delta_acc"] + shift)
    return main, pd.concat([main, other], ignore_index=True)


def test_without_ablation_runs_tables_carry_a_note():
    main = grid_frame(base_delta, models=MODELS)
    for function in (ablation.rank_ablation_summary, ablation.rank_ablation_by_regime, ablation.rank_ablation_correlation):
        table = function(main)
        assert len(table) == 1 and table["n"].iloc[0] == 0 and "no rank-ablation runs" in table["note"].iloc[0]
    table = ablation.lora_vs_full(main)
    assert table["n"].iloc[0] == 0 and table["note"].iloc[0] == "no full fine-tuning runs (recipe 'full')"


def test_rank_ablation_on_the_ablation_subset():
    main, frame = with_runs("lora", 64, 1.0)
    subset = main[main["source_language"] == "a"]
    summary = ablation.rank_ablation_summary(frame).set_index("lora_r")
    assert list(summary.index) == ["32", "64"] and (summary["n"] == len(subset)).all()
    assert summary.loc["64", "mean_delta"] - summary.loc["32", "mean_delta"] == pytest.approx(1.0)
    assert summary.loc["32", "p90"] == pytest.approx(np.quantile(subset["delta"], 0.9))
    assert summary.loc["32", "harm_rate"] == pytest.approx(100 * (subset["delta"] <= -1).mean())
    by_regime = ablation.rank_ablation_by_regime(frame).set_index(["lora_r", "regime"])
    assert by_regime.loc[("32", "mt_ml"), "n"] == 2 * 4  # 2 models x 4 sources (one language) x their own cell
    assert by_regime.loc[("64", "off_task"), "n"] == 2 * 4 * 12
    corr = ablation.rank_ablation_correlation(frame).iloc[0]
    assert corr["rank_a"] == "32" and corr["rank_b"] == "64" and corr["pearson_r"] == pytest.approx(1.0)
    assert corr["n"] == len(subset)
    # the main grid holds the r=32 rows only
    assert len(ablation.main_grid(frame)) == len(main) and len(ablation.main_grid(frame, lora_r=64)) == len(subset)
    with pytest.raises(ValueError, match="no rows with recipe='lora', lora_r=16"):
        ablation.main_grid(frame, lora_r=16)


def test_lora_vs_full_on_shared_cells():
    _, frame = with_runs("full", "", -0.5)
    table = ablation.lora_vs_full(frame).iloc[0]
    assert table["n"] == 2 * 4 * 16 and table["mean_diff"] == pytest.approx(0.5) and table["median_diff"] == pytest.approx(0.5)
    assert table["pearson_r"] == pytest.approx(1.0) and table["pearson_r_acc"] == pytest.approx(1.0)
    lora = frame[(frame["recipe"] == "lora") & (frame["source_language"] == "a")]["delta"]
    assert table["sign_agreement"] == pytest.approx(100 * (np.sign(lora) == np.sign(lora - 0.5)).mean())
    assert table["note"] == ""
