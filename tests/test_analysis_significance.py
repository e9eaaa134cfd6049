"""Per-cell significance from per-item predictions: paired bootstrap CI, McNemar, rates."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import significance as sig


def predictions(p_base, p_ft, *, n=400, seed=0, sources=(("t1", "a"),), targets=(("t1", "b"),)):
    """Base and fine-tuned per-item predictions with planted accuracies (gold 0; wrong answer = 1)."""
    rng = np.random.default_rng(seed)
    base, ft = [], []
    for task, lang in targets:
        base_ok = rng.random(n) < p_base
        base += [{"model": "m", "seed": 17, "task": task, "language": lang, "item_id": f"i{i}", "gold": 0,
                  "predicted": 0 if ok else 1} for i, ok in enumerate(base_ok)]
        for st, sl in sources:
            # paired: the fine-tuned model keeps 90% of the base model's right answers
            gain = np.clip((p_ft - 0.9 * p_base) / (1 - p_base), 0, 1)
            ft_ok = np.where(base_ok, rng.random(n) < 0.9, rng.random(n) < gain)
            ft += [{"model": "m", "seed": 17, "source_task": st, "source_language": sl, "task": task, "language": lang,
                    "item_id": f"i{i}", "gold": 0, "predicted": 0 if ok else 1} for i, ok in enumerate(ft_ok)]
    return pd.DataFrame(base), pd.DataFrame(ft)


def test_bootstrap_ci_covers_a_planted_difference_and_mcnemar_detects_it():
    base, ft = predictions(0.4, 0.7)
    ci = sig.paired_bootstrap_ci(base, ft, n_boot=2000, seed=0).iloc[0]
    direct = 100 * ((ft["predicted"] == 0).mean() - (base["predicted"] == 0).mean())
    assert ci["delta"] == pytest.approx(direct) and ci["regime"] == "MT-CL" and ci["n"] == 400
    assert ci["ci_low"] < direct < ci["ci_high"] and ci["ci_low"] > 0
    test = sig.mcnemar_test(base, ft).iloc[0]
    assert test["p_exact"] < 1e-6 and test["p_cc"] < 1e-6
    assert sig.paired_bootstrap_ci(base, ft, n_boot=2000, seed=0).equals(sig.paired_bootstrap_ci(base, ft, n_boot=2000, seed=0))


def test_no_difference_gives_a_large_p_and_a_ci_around_zero():
    base, _ = predictions(0.5, 0.5)
    ft = base.assign(source_task="t1", source_language="a")
    rng = np.random.default_rng(5)
    flip = rng.choice(len(ft), 40, replace=False)  # 20 items become right, 20 become wrong
    ft.loc[flip[:20], "predicted"] = 1 - ft.loc[flip[:20], "predicted"]
    ft.loc[flip[20:], "predicted"] = 1 - ft.loc[flip[20:], "predicted"]
    test = sig.mcnemar_test(base, ft).iloc[0]
    ci = sig.paired_bootstrap_ci(base, ft, seed=1).iloc[0]
    assert test["p_exact"] > 0.3 and ci["ci_low"] < ci["delta"] < ci["ci_high"] and ci["ci_low"] < 0 < ci["ci_high"] + 1e-9
    same = sig.mcnemar_test(base, base.assign(source_task="t1", source_language="a")).iloc[0]
    assert same["p_exact"] == 1.0 and same["b"] == same["c"] == 0


def test_mcnemar_matches_reference_implementations():
    from statsmodels.stats.contingency_tables import mcnemar

    base, ft = predictions(0.45, 0.55, n=120, seed=3)
    row = sig.mcnemar_test(base, ft).iloc[0]
    b, c = int(row["b"]), int(row["c"])
    assert row["p_exact"] == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue)
    reference = mcnemar([[0, b], [c, 0]], exact=False, correction=True)
    assert row["statistic_cc"] == pytest.approx(reference.statistic) and row["p_cc"] == pytest.approx(reference.pvalue)


def test_multinomial_bootstrap_matches_resampling_items():
    base, ft = predictions(0.4, 0.6, n=300, seed=4)
    ci = sig.paired_bootstrap_ci(base, ft, n_boot=4000, seed=0).iloc[0]
    diff = (ft["predicted"] == 0).astype(int).to_numpy() - (base["predicted"] == 0).astype(int).to_numpy()
    rng = np.random.default_rng(9)
    boot = 100 * diff[rng.integers(0, len(diff), (4000, len(diff)))].mean(axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    assert ci["ci_low"] == pytest.approx(low, abs=1.0) and ci["ci_high"] == pytest.approx(high, abs=1.0)


def test_rates_by_threshold_and_by_significance():
    base, ft = predictions(0.4, 0.4, sources=(("t1", "a"), ("t2", "a")), targets=(("t1", "b"), ("t2", "b")), n=300)
    big = (ft["source_task"] == "t1") & (ft["task"] == "t1")  # MT-CL cell: make it clearly better
    ft.loc[big, "predicted"] = np.where(np.random.default_rng(0).random(big.sum()) < 0.9, 0, 1)
    boot, test = sig.paired_bootstrap_ci(base, ft, seed=0), sig.mcnemar_test(base, ft)
    rates = sig.significance_rates(boot, test).set_index("regime")
    # MT-CL: t1.a -> t1.b (planted gain) and t2.a -> t2.b; CT-CL: t1.a -> t2.b and t2.a -> t1.b
    assert rates.loc["MT-CL", "n"] == 2 and rates.loc["MT-CL", "sig_win_rate_ci"] == 50.0
    assert rates.loc["MT-CL", "sig_win_rate_mcnemar"] == 50.0 and rates.loc["All transfer", "n"] == 4
    assert rates.loc["MT-CL", "win_rate"] >= 50.0 and rates.loc["CT-CL", "sig_win_rate_ci"] == 0.0
    assert np.isnan(rates.loc["MT-ML", "win_rate"]) and rates.loc["MT-ML", "n"] == 0
    with pytest.raises(ValueError, match="lacks columns \\['item_id'\\]"):
        sig.mcnemar_test(base.drop(columns=["item_id"]), ft)
