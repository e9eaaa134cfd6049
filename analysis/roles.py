"""Donor and recipient scores of languages, language families and tasks (SPEC 1.10)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from analysis._common import require_columns

_ROLE_COLUMNS = ["donor", "donor_se", "recipient", "recipient_se", "n_models"]


def _model_mean_score(rows: pd.DataFrame, key: str, delta: str) -> pd.DataFrame:
    """Per model the mean Δ by `key`, then mean, SE = sd/sqrt(n_models) and n across models."""
    per_model = rows.groupby(["model", key], sort=True)[delta].mean()
    across = per_model.groupby(level=key)
    out = pd.DataFrame({"score": across.mean(), "sd": across.std(ddof=1), "n_models": across.size()})
    out["se"] = out["sd"] / np.sqrt(out["n_models"])
    return out


def _roles(frame: pd.DataFrame, regime: str, source_key: str, target_key: str, name: str, delta: str) -> pd.DataFrame:
    require_columns(frame, ["model", "regime", source_key, target_key, delta], "tidy table")
    rows = frame[frame["regime"] == regime]
    donor = _model_mean_score(rows, source_key, delta)
    recipient = _model_mean_score(rows, target_key, delta)
    out = pd.DataFrame({
        "donor": donor["score"], "donor_se": donor["se"],
        "recipient": recipient["score"], "recipient_se": recipient["se"],
        "n_models": donor["n_models"].combine(recipient["n_models"], max, fill_value=0).astype(int),
    })
    out.index.name = name
    return out.reset_index()


def language_roles(frame: pd.DataFrame, *, delta: str = "delta", regime: str = "MT-CL") -> pd.DataFrame:
    """Donor and recipient score of every language, from MT-CL rows (SPEC 1.10).

    Per model the mean Δ over MT-CL rows whose source (donor) or target (recipient) language is L,
    then the mean of these per-model means; SE = sd across models / sqrt(n_models).

    Args:
        frame: seed-aggregated tidy rows (`model`, `regime`, `source_language`, `target_language`, Δ).
        delta: the Δ column (pp).
        regime: the regime the roles are computed in.

    Returns:
        Columns `language, donor, donor_se, recipient, recipient_se, n_models`, sorted by language.

    Raises:
        ValueError: a missing column.
    """
    return _roles(frame, regime, "source_language", "target_language", "language", delta)


def task_roles(frame: pd.DataFrame, *, delta: str = "delta", regime: str = "CT-ML") -> pd.DataFrame:
    """Donor and recipient score of every task, from CT-ML rows (SPEC 1.10).

    Args:
        frame: seed-aggregated tidy rows (`model`, `regime`, `source_task`, `target_task`, Δ).
        delta: the Δ column (pp).
        regime: the regime the roles are computed in.

    Returns:
        Columns `task, donor, donor_se, recipient, recipient_se, n_models`.

    Raises:
        ValueError: a missing column.
    """
    return _roles(frame, regime, "source_task", "target_task", "task", delta)


def family_roles(frame: pd.DataFrame, *, families: Mapping[str, str], delta: str = "delta") -> pd.DataFrame:
    """Mean of the per-language donor and recipient scores within each language family (SPEC 1.10, 1.3).

    Args:
        frame: seed-aggregated tidy rows, as for `language_roles`.
        families: language -> family (e.g. `analysis.paper.LANGUAGE_FAMILIES`, or the synthetic suite's).
        delta: the Δ column (pp).

    Returns:
        Columns `family, languages, n_languages, donor, recipient`, sorted by family.

    Raises:
        ValueError: a missing column, or a language of the table that `families` does not map.
    """
    roles = language_roles(frame, delta=delta)
    unmapped = sorted(set(roles["language"]) - set(families))
    if unmapped:
        raise ValueError(f"families does not map languages {unmapped}; it maps {sorted(families)}")
    roles["family"] = roles["language"].map(families)
    grouped = roles.groupby("family", sort=True)
    return pd.DataFrame({
        "languages": grouped["language"].agg(lambda s: ",".join(sorted(s))),
        "n_languages": grouped.size(),
        "donor": grouped["donor"].mean(),
        "recipient": grouped["recipient"].mean(),
    }).reset_index()


def _subset(frame: pd.DataFrame, construction: Mapping[str, str], label: str) -> pd.DataFrame:
    tasks = [task for task, kind in construction.items() if kind == label]
    return frame[frame["target_task"].isin(tasks)]


def curated_vs_translated_roles(
    frame: pd.DataFrame, *, construction: Mapping[str, str], curated: str = "human", translated: str = "machine",
    delta: str = "delta",
) -> pd.DataFrame:
    """MT-CL language roles recomputed on curated and on translated targets (SPEC 1.10).

    Args:
        frame: seed-aggregated tidy rows.
        construction: target task -> construction label (e.g. `analysis.paper.CONSTRUCTION`).
        curated: the label of human-translated (curated) tasks.
        translated: the label of machine-translated tasks.
        delta: the Δ column (pp).

    Returns:
        Columns `language, donor_curated, recipient_curated, donor_translated, recipient_translated`.

    Raises:
        ValueError: a missing column, or an unmapped target task.
    """
    require_columns(frame, ["target_task"], "tidy table")
    unmapped = sorted(set(frame["target_task"]) - set(construction))
    if unmapped:
        raise ValueError(f"construction does not map tasks {unmapped}; it maps {sorted(construction)}")
    parts = []
    for label, suffix in ((curated, "curated"), (translated, "translated")):
        roles = language_roles(_subset(frame, construction, label), delta=delta).set_index("language")
        parts.append(roles[["donor", "recipient"]].add_suffix(f"_{suffix}"))
    return pd.concat(parts, axis=1).rename_axis("language").reset_index()


def curated_vs_translated_rho(
    frame: pd.DataFrame, *, construction: Mapping[str, str], curated: str = "human", translated: str = "machine",
    delta: str = "delta",
) -> pd.DataFrame:
    """Spearman ρ between curated-only and translated-only language scores (SPEC 1.10).

    The paper reports the donor row; the recipient row is the same statistic on recipient scores.

    Returns:
        Rows `donor`, `recipient` with columns `score, spearman_rho, p_value, n_languages` (languages
        with both scores).

    Raises:
        ValueError: as `curated_vs_translated_roles`.
    """
    roles = curated_vs_translated_roles(frame, construction=construction, curated=curated, translated=translated,
                                        delta=delta)
    rows = []
    for score in ("donor", "recipient"):
        pair = roles[[f"{score}_curated", f"{score}_translated"]].dropna()
        rho, p = stats.spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]) if len(pair) >= 3 else (np.nan, np.nan)
        rows.append({"score": score, "spearman_rho": float(rho), "p_value": float(p), "n_languages": len(pair)})
    return pd.DataFrame(rows)
