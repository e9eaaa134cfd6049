"""Per-cell significance of Δ from per-item predictions: paired bootstrap CI and McNemar test.

Beyond the paper. Both compare the base model and a fine-tuned model on the same
items of a target cell. Inputs are per-item prediction tables with `task, language, item_id, gold,
predicted` (task/language = the target cell); the fine-tuned table also holds `source_task,
source_language` and may hold `model, seed, recipe, lora_r, suite`, which both tables share where
present. An item counts as correct when `predicted == gold`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis._common import delta_stats, require_columns
from transfergrid.grid import TRANSFER_REGIMES

ITEM = ["task", "language", "item_id", "gold", "predicted"]
_JOIN = ["model", "seed", "suite", "task", "language", "item_id"]
_GROUP = ["model", "seed", "recipe", "lora_r", "suite", "source_task", "source_language", "task", "language"]


def _paired_counts(base: pd.DataFrame, finetuned: pd.DataFrame) -> pd.DataFrame:
    """Per (fine-tuned run, target cell): n items, b = right before and wrong after, c = wrong before, right after."""
    require_columns(base, ITEM, "base predictions")
    require_columns(finetuned, [*ITEM, "source_task", "source_language"], "fine-tuned predictions")
    join = [c for c in _JOIN if c in base.columns and c in finetuned.columns]
    left = base[join].assign(base_ok=(base["predicted"] == base["gold"]).to_numpy())
    if left.duplicated(join).any():
        raise ValueError(f"base predictions have duplicate {join} rows")
    right = finetuned.assign(ft_ok=(finetuned["predicted"] == finetuned["gold"]).to_numpy())
    paired = right.merge(left, on=join, how="inner", validate="many_to_one")
    group = [c for c in _GROUP if c in paired.columns]
    counts = paired.assign(b=paired["base_ok"] & ~paired["ft_ok"], c=~paired["base_ok"] & paired["ft_ok"]).groupby(
        group, sort=True).agg(n=("ft_ok", "size"), base_acc=("base_ok", "mean"), ft_acc=("ft_ok", "mean"),
                              b=("b", "sum"), c=("c", "sum")).reset_index()
    counts["delta"] = 100.0 * (counts["c"] - counts["b"]) / counts["n"]
    target_same_task = counts["source_task"] == counts["task"]
    same_language = counts["source_language"] == counts["language"]
    counts["regime"] = np.where(target_same_task, np.where(same_language, "MT-ML", "MT-CL"),
                                np.where(same_language, "CT-ML", "CT-CL"))
    return counts


def paired_bootstrap_ci(base: pd.DataFrame, finetuned: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0,
                        alpha: float = 0.05) -> pd.DataFrame:
    """Percentile CI of Δ (pp) per (fine-tuned run, target cell) by resampling items with replacement.

    The per-item difference is -1, 0 or +1, so a resample's Δ depends only on how many items of each
    kind it draws: the counts are drawn from the equivalent multinomial, which is exactly the paired
    bootstrap at a fraction of the cost. Groups are visited in sorted order with one
    `numpy.random.Generator(seed)`.

    Args:
        base, finetuned: per-item predictions (module docstring).
        n_boot: bootstrap resamples.
        seed: random seed.
        alpha: 1 - confidence level.

    Returns:
        One row per group: the group keys, `n, base_acc, ft_acc, b, c, delta, ci_low, ci_high, regime`.

    Raises:
        ValueError: a missing column or duplicate base predictions.
    """
    counts = _paired_counts(base, finetuned)
    rng = np.random.default_rng(seed)
    low, high = np.empty(len(counts)), np.empty(len(counts))
    for i, (n, b, c) in enumerate(zip(counts["n"], counts["b"], counts["c"])):
        draws = rng.multinomial(n, [b / n, c / n, max(0.0, 1.0 - (b + c) / n)], size=n_boot)
        boot = 100.0 * (draws[:, 1] - draws[:, 0]) / n
        low[i], high[i] = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return counts.assign(ci_low=low, ci_high=high)


def mcnemar_test(base: pd.DataFrame, finetuned: pd.DataFrame) -> pd.DataFrame:
    """McNemar's test of base vs fine-tuned correctness per (fine-tuned run, target cell).

    Exact: two-sided binomial test of min(b, c) out of b + c discordant items at p = 1/2. With
    continuity correction: (|b - c| - 1)^2 / (b + c) against chi-square(1). No discordant item: p = 1.

    Returns:
        One row per group: the group keys, `n, base_acc, ft_acc, b, c, delta, regime, p_exact, statistic_cc, p_cc`.
    """
    counts = _paired_counts(base, finetuned)
    b, c = counts["b"].to_numpy(dtype=float), counts["c"].to_numpy(dtype=float)
    discordant = b + c
    p_exact = np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(b, c), discordant, 0.5))
    with np.errstate(invalid="ignore", divide="ignore"):
        statistic = np.where(discordant > 0, np.maximum(np.abs(b - c) - 1.0, 0.0) ** 2 / discordant, 0.0)
    return counts.assign(p_exact=np.where(discordant > 0, p_exact, 1.0), statistic_cc=statistic,
                         p_cc=stats.chi2.sf(statistic, 1))


def significance_rates(bootstrap: pd.DataFrame, mcnemar: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Win and harm rates per regime by the paper's thresholds and by significance.

    Thresholds (SPEC 1.9): win Δ > 0, harm Δ <= -1 pp. Significance: by the bootstrap CI (win: CI
    above 0; harm: CI below 0) and by McNemar's exact test (p < `alpha` with Δ > 0 or Δ < 0).

    Args:
        bootstrap: `paired_bootstrap_ci` output.
        mcnemar: `mcnemar_test` output on the same predictions.
        alpha: significance level of McNemar's test.

    Returns:
        Rows MT-ML, MT-CL, CT-ML, CT-CL and "All transfer" with `n, mean_delta, win_rate, harm_rate,
        sig_win_rate_ci, sig_harm_rate_ci, sig_win_rate_mcnemar, sig_harm_rate_mcnemar` (in %).
    """
    require_columns(bootstrap, ["delta", "ci_low", "ci_high", "regime"], "bootstrap table")
    require_columns(mcnemar, ["delta", "p_exact", "regime"], "McNemar table")
    keys = [c for c in [*_GROUP, "regime"] if c in bootstrap.columns and c in mcnemar.columns]
    table = bootstrap.merge(mcnemar[[*keys, "p_exact"]], on=keys, how="inner", validate="one_to_one")
    rows = []
    for name, part in [(r, table[table["regime"] == r]) for r in ("MT-ML", *TRANSFER_REGIMES)] + [
            ("All transfer", table[table["regime"].isin(TRANSFER_REGIMES)])]:
        base = delta_stats(part["delta"])
        share = (lambda mask: 100.0 * float(mask.mean()) if len(part) else np.nan)
        significant = part["p_exact"] < alpha
        rows.append({"regime": name, "n": base["n"], "mean_delta": base["mean_delta"], "win_rate": base["win_rate"],
                     "harm_rate": base["harm_rate"], "sig_win_rate_ci": share(part["ci_low"] > 0),
                     "sig_harm_rate_ci": share(part["ci_high"] < 0),
                     "sig_win_rate_mcnemar": share(significant & (part["delta"] > 0)),
                     "sig_harm_rate_mcnemar": share(significant & (part["delta"] < 0))})
    return pd.DataFrame(rows)
