"""Consistency Index: do raters (models, families, sizes) rank a source's recipients alike? (SPEC 1.15)"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis._common import require_columns

RATERS = {"model": "model", "family": "model_family", "size": "model_size_b"}
# Recipients of a source per regime (SPEC 1.15): target languages, target tasks, target task::language.
_RECIPIENT = {"MT-CL": ("target_language",), "CT-ML": ("target_task",), "CT-CL": ("target_task", "target_language")}


def kendall_tau_b_matrix(matrix: np.ndarray, *, min_shared: int = 3) -> np.ndarray:
    """Kendall τ-b between every pair of columns of a (recipients x raters) matrix, over shared rows.

    τ-b = Σ sign(x_i - x_j) sign(y_i - y_j) / sqrt(untied pairs of x * untied pairs of y), summed over
    the recipient pairs both raters scored; NaN where fewer than `min_shared` recipients are shared or
    a rater is constant there (as `scipy.stats.kendalltau`).
    """
    x = np.asarray(matrix, dtype=float)
    present = np.isfinite(x)
    i, j = np.triu_indices(x.shape[0], k=1)
    sign = np.sign(np.nan_to_num(x[i]) - np.nan_to_num(x[j]))  # (pairs x raters)
    valid = (present[i] & present[j]).astype(float)
    sign *= valid
    numerator = sign.T @ sign
    untied = (sign**2).T @ valid  # [a, b]: pairs untied in rater a among those rater b also scored
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = numerator / np.sqrt(untied * untied.T)
    shared = present.T.astype(float) @ present.astype(float)
    tau[(shared < min_shared) | ~np.isfinite(tau)] = np.nan
    return tau


def consistency_by_source(
    frame: pd.DataFrame, *, raters: str = "model", delta: str = "delta", min_recipients: int = 3, min_raters: int = 2,
) -> pd.DataFrame:
    """Consistency Index of every source in MT-CL, CT-ML and CT-CL (SPEC 1.15).

    For each regime and source (task, language): a recipient x rater matrix of Δ (the mean where a
    rater has several rows, e.g. a family's sizes or a size's families); CI = mean Kendall τ-b over
    rater pairs sharing >= 3 recipients. Sources with < `min_recipients` recipients or < `min_raters`
    raters are left out; undefined τ (a constant rater) are left out of the mean.

    Args:
        frame: seed-aggregated tidy rows.
        raters: `model` (each model), `family` (Δ averaged over sizes within a family) or `size` (Δ
            averaged over families at each exact size).
        delta: the Δ column (pp).
        min_recipients: least recipients of a source (SPEC: 3).
        min_raters: least raters of a source (SPEC: 2).

    Returns:
        Columns `regime, source_task, source_language, ci, n_recipients, n_raters, n_pairs`.

    Raises:
        ValueError: an unknown `raters` or a missing column.
    """
    if raters not in RATERS:
        raise ValueError(f"unknown raters {raters!r}; valid: {', '.join(RATERS)}")
    rater = RATERS[raters]
    require_columns(frame, ["regime", "source_task", "source_language", "target_task", "target_language", rater, delta],
                    "tidy table")
    rows = []
    for regime, recipient in _RECIPIENT.items():
        part = frame[frame["regime"] == regime]
        recipient_id = part[recipient[0]].astype(str)
        for column in recipient[1:]:
            recipient_id = recipient_id + "::" + part[column].astype(str)
        table = part.assign(_recipient=recipient_id.to_numpy()).pivot_table(
            index=["source_task", "source_language", "_recipient"], columns=rater, values=delta, aggfunc="mean")
        for (task, language), block in table.groupby(level=[0, 1], sort=True):
            values = block.dropna(axis=1, how="all").dropna(axis=0, how="all").to_numpy()
            if values.shape[0] < min_recipients or values.shape[1] < min_raters:
                continue
            tau = kendall_tau_b_matrix(values)[np.triu_indices(values.shape[1], k=1)]
            tau = tau[np.isfinite(tau)]
            rows.append({"regime": regime, "source_task": task, "source_language": language,
                         "ci": float(tau.mean()) if tau.size else np.nan, "n_recipients": values.shape[0],
                         "n_raters": values.shape[1], "n_pairs": int(tau.size)})
    return pd.DataFrame(rows, columns=["regime", "source_task", "source_language", "ci", "n_recipients", "n_raters",
                                       "n_pairs"])


def consistency_summary(
    frame: pd.DataFrame, *, raters: str = "model", delta: str = "delta", min_recipients: int = 3, min_raters: int = 2,
) -> pd.DataFrame:
    """Median, Q1 and Q3 of the per-source Consistency Index and the number of sources per regime (SPEC 1.15).

    Args: as `consistency_by_source`.

    Returns:
        Columns `raters, regime, median, q1, q3, n_sources` (regimes MT-CL, CT-ML, CT-CL).
    """
    per_source = consistency_by_source(frame, raters=raters, delta=delta, min_recipients=min_recipients,
                                       min_raters=min_raters)
    rows = []
    for regime in _RECIPIENT:
        ci = per_source.loc[per_source["regime"] == regime, "ci"].dropna()
        q1, median, q3 = (np.quantile(ci, [0.25, 0.5, 0.75]) if len(ci) else (np.nan,) * 3)
        rows.append({"raters": raters, "regime": regime, "median": float(median), "q1": float(q1), "q3": float(q3),
                     "n_sources": int(len(ci))})
    return pd.DataFrame(rows)
