"""Analysis: pure functions over the tidy table, checked on planted effects."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.regimes import ALL_TRANSFER

TASKS, LANGS = ["t1", "t2", "t3"], ["a", "b", "c", "d"]


def grid_results(effects: dict[str, float], seeds=(17, 42), noise=0.0, rng_seed=0) -> pd.DataFrame:
    """Raw results with a planted Δ (pp) per regime on a 3x4 grid for two models."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for model in ("m1", "m2"):
        for seed in seeds:
            for st in TASKS:
                for sl in LANGS:
                    for tt in TASKS:
                        for tl in LANGS:
                            reg = ("MT" if st == tt else "CT") + "-" + ("ML" if sl == tl else "CL")
                            base = 0.25
                            rows.append(
                                dict(model=model, model_family="f", model_size_b=1.0, seed=seed, recipe="lora",
                                     lora_r="32", suite="s", source_task=st, source_language=sl, target_task=tt,
                                     target_language=tl, base_score=base,
                                     ft_score=base + (effects.get(reg, 0.0) + noise * rng.standard_normal()) / 100,
                                     evaluate_run_id=f"e-{model}-{seed}-{st}-{sl}", baseline_run_id=f"b-{model}-{seed}")
                            )
    return pd.DataFrame(rows)


def test_planted_mt_cl_effect_appears_only_there():
    tidy = analysis.make_tidy(grid_results({"MT-CL": 2.0}))
    table = analysis.regime_summary(analysis.aggregate_seeds(tidy)).set_index("regime")
    assert table.loc["MT-CL", "mean_delta"] == pytest.approx(2.0)
    assert table.loc["MT-CL", "win_rate"] == 100.0 and table.loc["MT-CL", "harm_rate"] == 0.0
    for other in ("MT-ML", "CT-ML", "CT-CL"):
        assert table.loc[other, "mean_delta"] == pytest.approx(0.0, abs=1e-9)
        assert table.loc[other, "win_rate"] == 0.0
    # counts: 12 sources x (1 MT-ML, 3 MT-CL, 2 CT-ML, 6 CT-CL) targets x 2 models
    assert table["n"].to_dict() == {"MT-ML": 24, "MT-CL": 72, "CT-ML": 48, "CT-CL": 144, ALL_TRANSFER: 264}
    transfer_mean = (72 * 2.0) / 264
    assert table.loc[ALL_TRANSFER, "mean_delta"] == pytest.approx(transfer_mean)


def test_regime_summary_matches_direct_pandas_on_noisy_data():
    agg = analysis.aggregate_seeds(analysis.make_tidy(grid_results({"MT-ML": 30, "CT-CL": -1.5}, noise=3.0)))
    table = analysis.regime_summary(agg).set_index("regime")
    cl = agg.loc[agg["regime"] == "CT-CL", "delta"]
    assert table.loc["CT-CL", "mean_delta"] == pytest.approx(cl.mean(), abs=1e-9)
    assert table.loc["CT-CL", "median_delta"] == pytest.approx(cl.median(), abs=1e-9)
    assert table.loc["CT-CL", "win_rate"] == pytest.approx(100 * (cl > 0).mean(), abs=1e-9)
    assert table.loc["CT-CL", "harm_rate"] == pytest.approx(100 * (cl <= -1.0).mean(), abs=1e-9)


def test_harm_threshold_is_inclusive_and_win_strict():
    frame = pd.DataFrame({"regime": ["MT-CL"] * 4, "delta": [-1.0, -0.99, 0.0, 0.01]})
    row = analysis.regime_summary(frame).set_index("regime").loc["MT-CL"]
    assert row["harm_rate"] == 25.0 and row["win_rate"] == 25.0


def test_seed_aggregation_mean_std_se():
    tidy = analysis.make_tidy(grid_results({}, seeds=(17, 42, 101), noise=1.0))
    agg = analysis.aggregate_seeds(tidy)
    assert (agg["n_seeds"] == 3).all() and len(agg) == len(tidy) / 3
    one = tidy[(tidy.model == "m1") & (tidy.source_task == "t1") & (tidy.source_language == "a")
               & (tidy.target_task == "t2") & (tidy.target_language == "b")]
    row = agg[(agg.model == "m1") & (agg.source_task == "t1") & (agg.source_language == "a")
              & (agg.target_task == "t2") & (agg.target_language == "b")].iloc[0]
    assert row["delta"] == pytest.approx(one["delta"].mean())
    assert row["delta_se"] == pytest.approx(one["delta"].std() / np.sqrt(3))


def test_validation_names_offending_runs():
    results = grid_results({})
    dup = pd.concat([results, results.iloc[[0]]])
    with pytest.raises(ValueError, match="duplicate .* keys[\\s\\S]*e-m1-17-t1-a"):
        analysis.make_tidy(dup)
    bad = results.copy()
    bad.loc[3, "ft_score"] = np.nan
    with pytest.raises(ValueError, match="non-finite scores in 1 rows"):
        analysis.make_tidy(bad)


def test_analysis_imports_neither_mlflow_nor_torch():
    code = "import sys, analysis; print(any(m in sys.modules for m in ('mlflow', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
