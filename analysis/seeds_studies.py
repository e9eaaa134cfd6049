"""The two seed studies on the transfer grid (SPEC 2, 3).

Seed 1 ("Disentangling Linguistic Relatedness from Task Alignment", SPEC 2): regression of Δ on the
base model's score, and fine-tuning gains compared with chain-of-thought gains.
Seed 2 ("Latent Traits and Cross-Task Transfer", SPEC 3): PCA and factor analysis of the source x
target Δ matrix, source-dataset statistics, and their regression on transfer.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from analysis._common import SOURCE, TARGET, cell_label, empty_with_note, require_columns
from transfergrid.grid import TRANSFER_REGIMES

_BY = {"model": ["model"], "target": TARGET, None: []}


def baseline_gain_regression(frame: pd.DataFrame, *, by: str | None = "model", delta: str = "delta",
                             regimes: Sequence[str] = TRANSFER_REGIMES) -> pd.DataFrame:
    """OLS of Δ (pp) on the base score (pp) per model, per target cell or pooled (SPEC 2).

    A negative slope means weak baselines gain more (the seed paper's finding).

    Args:
        frame: seed-aggregated tidy rows with `base_score` (a fraction).
        by: `model`, `target` (target task and language) or None (all rows pooled).
        delta: the Δ column (pp).
        regimes: the regimes whose rows enter (default: transfer rows).

    Returns:
        Columns `<by keys>, n, slope, slope_se, intercept, r2, p_value` (NaN where the base score is constant).

    Raises:
        ValueError: an unknown `by` or a missing column.
    """
    if by not in _BY:
        raise ValueError(f"unknown by {by!r}; valid: 'model', 'target', None")
    keys = _BY[by]
    require_columns(frame, [*keys, "regime", "base_score", delta], "tidy table")
    rows = frame[frame["regime"].isin(regimes)]
    out = []
    for key, part in (rows.groupby(keys, sort=True) if keys else [((), rows)]):
        x, y = 100.0 * part["base_score"].to_numpy(dtype=float), part[delta].to_numpy(dtype=float)
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        if len(x) < 3 or np.ptp(x) == 0:
            out.append({**row, "n": len(x), "slope": np.nan, "slope_se": np.nan, "intercept": np.nan, "r2": np.nan,
                        "p_value": np.nan})
            continue
        fit = stats.linregress(x, y)
        out.append({**row, "n": len(x), "slope": fit.slope, "slope_se": fit.stderr, "intercept": fit.intercept,
                    "r2": fit.rvalue**2, "p_value": fit.pvalue})
    return pd.DataFrame(out, columns=[*keys, "n", "slope", "slope_se", "intercept", "r2", "p_value"])


def _ft_cot_pairs(frame, cot, delta, cot_delta, regimes) -> pd.DataFrame:
    require_columns(frame, ["model", *TARGET, "regime", delta], "tidy table")
    require_columns(cot, ["model", *TARGET, cot_delta], "CoT table")
    ft = frame[frame["regime"].isin(regimes)].groupby(["model", *TARGET])[delta].mean().rename("ft_gain")
    cot_gain = cot.groupby(["model", *TARGET])[cot_delta].mean().rename("cot_gain")
    return pd.concat([ft, cot_gain], axis=1, join="inner").reset_index()


def ft_vs_cot_gain(frame: pd.DataFrame, cot: pd.DataFrame | None, *, delta: str = "delta", cot_delta: str = "cot_delta",
                   regimes: Sequence[str] = TRANSFER_REGIMES) -> pd.DataFrame:
    """Fine-tuning gain vs chain-of-thought gain per model, over the targets both have (SPEC 2).

    FT gain of a model on a target = mean Δ over its sources (rows of `regimes`); the per-model row
    gives the mean of both gains over shared targets and their Pearson r and Spearman ρ across targets.

    Args:
        frame: seed-aggregated tidy rows.
        cot: per (model, target_task, target_language) the CoT gain in pp over the plain prompt, in
            column `cot_delta`; None or empty when no CoT runs exist.

    Returns:
        Columns `model, n_targets, ft_gain, cot_gain, pearson_r, spearman_rho, note`.
    """
    columns = ["model", "n_targets", "ft_gain", "cot_gain", "pearson_r", "spearman_rho"]
    require_columns(frame, ["model", *TARGET, "regime", delta], "tidy table")
    if cot is None or cot.empty:
        return empty_with_note(columns, "no chain-of-thought runs")
    pairs = _ft_cot_pairs(frame, cot, delta, cot_delta, regimes)
    out = []
    for model, part in pairs.groupby("model", sort=True):
        ok = len(part) >= 3 and part["ft_gain"].nunique() > 1 and part["cot_gain"].nunique() > 1
        out.append({"model": model, "n_targets": len(part), "ft_gain": part["ft_gain"].mean(),
                    "cot_gain": part["cot_gain"].mean(),
                    "pearson_r": stats.pearsonr(part["ft_gain"], part["cot_gain"])[0] if ok else np.nan,
                    "spearman_rho": stats.spearmanr(part["ft_gain"], part["cot_gain"])[0] if ok else np.nan, "note": ""})
    if not out:
        return empty_with_note(columns, "no (model, target) shared by the fine-tuning and CoT tables")
    return pd.DataFrame(out, columns=[*columns, "note"])


def ft_cot_model_correlation(frame: pd.DataFrame, cot: pd.DataFrame | None, *, delta: str = "delta",
                             cot_delta: str = "cot_delta", regimes: Sequence[str] = TRANSFER_REGIMES) -> pd.DataFrame:
    """Across models: do the models that gain most from fine-tuning gain most from CoT too? (SPEC 2)

    Returns:
        One row: `n_models, pearson_r, spearman_rho, note` between the per-model mean gains of `ft_vs_cot_gain`.
    """
    per_model = ft_vs_cot_gain(frame, cot, delta=delta, cot_delta=cot_delta, regimes=regimes).dropna(
        subset=["ft_gain", "cot_gain"])
    columns = ["n_models", "pearson_r", "spearman_rho"]
    if len(per_model) < 3:
        return empty_with_note(columns, f"{len(per_model)} models with both gains: need at least 3")
    x, y = per_model["ft_gain"], per_model["cot_gain"]
    return pd.DataFrame([{"n_models": len(per_model), "pearson_r": float(stats.pearsonr(x, y)[0]),
                          "spearman_rho": float(stats.spearmanr(x, y)[0]), "note": ""}], columns=[*columns, "note"])


def source_target_matrix(frame: pd.DataFrame, *, delta: str = "delta", exclude_trained: bool = True) -> pd.DataFrame:
    """Mean Δ over models per source cell (rows) and target cell (columns), labels `task.language` (SPEC 3).

    Args:
        exclude_trained: set the trained cell (MT-ML) to NaN: its Δ is fitting, not transfer.
    """
    require_columns(frame, [*SOURCE, *TARGET, "regime", delta], "tidy table")
    rows = frame[frame["regime"] != "MT-ML"] if exclude_trained else frame
    return rows.assign(source=cell_label(rows["source_task"], rows["source_language"]),
                       target=cell_label(rows["target_task"], rows["target_language"])).pivot_table(
        index="source", columns="target", values=delta, aggfunc="mean", sort=True)


def _pca(frame, delta, exclude_trained):
    matrix = source_target_matrix(frame, delta=delta, exclude_trained=exclude_trained)
    values = matrix.to_numpy(dtype=float)
    values = np.where(np.isnan(values), np.nanmean(values, axis=0), values)  # NaN -> the target's mean
    centred = values - values.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.where(vt.sum(axis=1) < 0, -1.0, 1.0)  # orient: positive loadings sum
    return matrix, u * s * signs, vt * signs[:, None], s**2 / max(len(values) - 1, 1)


def pca_explained_variance(frame: pd.DataFrame, *, delta: str = "delta", n_components: int | None = None,
                           exclude_trained: bool = True) -> pd.DataFrame:
    """PCA of the source x target Δ matrix (sources = observations, targets = variables): variance per component (SPEC 3).

    Targets are centred; missing cells (the trained cells when excluded) take their target's mean.

    Returns:
        Columns `component (PC1..), variance, explained_ratio, cumulative_ratio`.
    """
    _, _, _, variance = _pca(frame, delta, exclude_trained)
    k = len(variance) if n_components is None else min(n_components, len(variance))
    ratio = variance / variance.sum()
    return pd.DataFrame({"component": [f"PC{i + 1}" for i in range(k)], "variance": variance[:k],
                         "explained_ratio": ratio[:k], "cumulative_ratio": np.cumsum(ratio)[:k]})


def pca_loadings(frame: pd.DataFrame, *, delta: str = "delta", n_components: int = 3,
                 exclude_trained: bool = True) -> pd.DataFrame:
    """Loadings (unit-norm eigenvector entries) of each target cell on the first components (SPEC 3).

    Each component is oriented so that its loadings sum to a positive number.

    Returns:
        Columns `target, PC1..PCk`.
    """
    matrix, _, vt, _ = _pca(frame, delta, exclude_trained)
    k = min(n_components, vt.shape[0])
    return pd.DataFrame(vt[:k].T, index=matrix.columns, columns=[f"PC{i + 1}" for i in range(k)]).rename_axis(
        "target").reset_index()


def pca_scores(frame: pd.DataFrame, *, delta: str = "delta", n_components: int = 3,
               exclude_trained: bool = True) -> pd.DataFrame:
    """Scores of each source cell on the first components: its latent donor traits (SPEC 3).

    Returns:
        Columns `source, PC1..PCk`.
    """
    matrix, scores, _, _ = _pca(frame, delta, exclude_trained)
    k = min(n_components, scores.shape[1])
    return pd.DataFrame(scores[:, :k], index=matrix.index, columns=[f"PC{i + 1}" for i in range(k)]).rename_axis(
        "source").reset_index()


def _factor_fit(frame, n_factors, delta, rotation, exclude_trained, seed):
    from sklearn.decomposition import FactorAnalysis  # scikit-learn: only these two functions need it

    matrix = source_target_matrix(frame, delta=delta, exclude_trained=exclude_trained)
    values = matrix.to_numpy(dtype=float)
    values = np.where(np.isnan(values), np.nanmean(values, axis=0), values)  # NaN -> the target's mean
    fit = FactorAnalysis(n_components=n_factors, rotation=rotation, random_state=seed).fit(values)
    loadings = fit.components_.T  # targets x factors
    loadings = loadings * np.where(loadings.sum(axis=0) < 0, -1.0, 1.0)
    return matrix, values, loadings, fit.noise_variance_


def factor_loadings(frame: pd.DataFrame, *, n_factors: int = 2, delta: str = "delta", rotation: str | None = "varimax",
                    exclude_trained: bool = True, seed: int = 0) -> pd.DataFrame:
    """Maximum-likelihood factor analysis (scikit-learn) of the source x target Δ matrix: loadings (SPEC 3).

    Sources are observations, targets variables (centred, not scaled); missing cells take their
    target's mean. Each factor is oriented so that its loadings sum to a positive number.

    Args:
        n_factors: number of factors.
        rotation: `varimax`, `quartimax` or None.
        seed: random state of the randomised parts of the fit.

    Returns:
        Columns `target, factor_1..factor_k, communality, uniqueness`.
    """
    matrix, _, loadings, noise = _factor_fit(frame, n_factors, delta, rotation, exclude_trained, seed)
    out = pd.DataFrame(loadings, index=matrix.columns, columns=[f"factor_{i + 1}" for i in range(n_factors)])
    out["communality"] = (loadings**2).sum(axis=1)
    out["uniqueness"] = noise
    return out.rename_axis("target").reset_index()


def factor_explained_variance(frame: pd.DataFrame, *, n_factors: int = 2, delta: str = "delta",
                              rotation: str | None = "varimax", exclude_trained: bool = True, seed: int = 0) -> pd.DataFrame:
    """Share of the Δ matrix's total variance each factor explains (sum of squared loadings / total) (SPEC 3).

    Returns:
        Columns `factor, variance, explained_ratio`.
    """
    _, values, loadings, _ = _factor_fit(frame, n_factors, delta, rotation, exclude_trained, seed)
    variance = (loadings**2).sum(axis=0)
    return pd.DataFrame({"factor": [f"factor_{i + 1}" for i in range(n_factors)], "variance": variance,
                         "explained_ratio": variance / values.var(axis=0).sum()})


def _entropy(labels: pd.Series) -> float:
    counts = np.array(list(Counter(labels).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def source_dataset_statistics(items: pd.DataFrame) -> pd.DataFrame:
    """Per source cell: label entropy (bits) and imbalance, mean prompt and answer length in words (SPEC 3).

    Args:
        items: one row per training item with `task, language, prompt, answer, label` (label = gold
            letter or index).

    Returns:
        Columns `source_task, source_language, n_items, label_entropy, label_imbalance (majority share),
        prompt_length, answer_length`.
    """
    require_columns(items, ["task", "language", "prompt", "answer", "label"], "items table")
    out = []
    for (task, language), part in items.groupby(["task", "language"], sort=True):
        counts = part["label"].value_counts()
        out.append({"source_task": task, "source_language": language, "n_items": len(part),
                    "label_entropy": _entropy(part["label"]), "label_imbalance": counts.iloc[0] / len(part),
                    "prompt_length": part["prompt"].astype(str).str.split().str.len().mean(),
                    "answer_length": part["answer"].astype(str).str.split().str.len().mean()})
    return pd.DataFrame(out)


def lexical_overlap(source_items: pd.DataFrame, target_items: pd.DataFrame) -> pd.DataFrame:
    """Jaccard overlap of the lower-cased word vocabularies of every (source cell, target cell) (SPEC 3).

    Args:
        source_items, target_items: `task, language, prompt` (+ `answer` if present) per item.

    Returns:
        Columns `source_task, source_language, target_task, target_language, lexical_overlap`.
    """
    def vocabularies(items):
        require_columns(items, ["task", "language", "prompt"], "items table")
        text = items["prompt"].astype(str) + (" " + items["answer"].astype(str) if "answer" in items else "")
        return {key: set(" ".join(part).lower().split()) for key, part in text.groupby([items["task"], items["language"]])}

    sources, targets = vocabularies(source_items), vocabularies(target_items)
    rows = [{"source_task": s[0], "source_language": s[1], "target_task": t[0], "target_language": t[1],
             "lexical_overlap": len(sv & tv) / len(sv | tv) if sv | tv else math.nan}
            for s, sv in sorted(sources.items()) for t, tv in sorted(targets.items())]
    return pd.DataFrame(rows)


def source_statistics_regression(frame: pd.DataFrame, statistics: pd.DataFrame, *, predictors: Sequence[str] | None = None,
                                 delta: str = "delta", standardize: bool = True,
                                 regimes: Sequence[str] = TRANSFER_REGIMES) -> pd.DataFrame:
    """OLS of transfer on source-dataset statistics, SEs clustered by source cell (SPEC 3).

    The response is the mean Δ over models of each (source, target) pair in `regimes`. `statistics`
    is keyed on `source_task, source_language`, and also on `target_task, target_language` when it
    holds pair-level predictors such as `lexical_overlap`.

    Args:
        frame: seed-aggregated tidy rows.
        statistics: predictors per source (or per source and target).
        predictors: the predictor columns (default: every numeric non-key column but `n_items`).
        standardize: z-score the predictors, so a coefficient is pp of Δ per SD.

    Returns:
        One row per term (`const` first): `term, coef, std_err, t, p_value, n, r2, adj_r2`.

    Raises:
        ValueError: a missing column, or a constant predictor.
    """
    require_columns(frame, [*SOURCE, *TARGET, "regime", delta], "tidy table")
    require_columns(statistics, SOURCE, "statistics table")
    keys = SOURCE + (TARGET if set(TARGET) <= set(statistics.columns) else [])
    if predictors is None:
        predictors = [c for c in statistics.select_dtypes("number").columns if c not in [*keys, "n_items"]]
    require_columns(statistics, predictors, "statistics table")
    pairs = frame[frame["regime"].isin(regimes)].groupby(SOURCE + TARGET)[delta].mean().rename("y").reset_index()
    data = pairs.merge(statistics[[*keys, *predictors]], on=keys).dropna()
    x = data[list(predictors)].astype(float)
    constant = [c for c in predictors if x[c].nunique() < 2]
    if constant:
        raise ValueError(f"constant predictors {constant}: nothing to regress on")
    if standardize:
        x = (x - x.mean()) / x.std(ddof=0)
    groups = pd.factorize(cell_label(data["source_task"], data["source_language"]))[0]
    fit = sm.OLS(data["y"].to_numpy(), sm.add_constant(x, has_constant="add")).fit(
        cov_type="cluster", cov_kwds={"groups": groups})
    return pd.DataFrame({"term": fit.params.index, "coef": fit.params.to_numpy(), "std_err": fit.bse.to_numpy(),
                         "t": fit.tvalues.to_numpy(), "p_value": fit.pvalues.to_numpy(), "n": int(fit.nobs),
                         "r2": fit.rsquared, "adj_r2": fit.rsquared_adj})
