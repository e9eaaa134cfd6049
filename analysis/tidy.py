"""The tidy results table: one row per (model, seed, source cell, target cell) (SPEC 1.7, 1.8)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transfergrid.grid import Cell, regime

KEY = ["model", "seed", "recipe", "lora_r", "suite", "source_task", "source_language", "target_task", "target_language"]
TIDY_COLUMNS = KEY + ["model_family", "model_size_b", "base_score", "ft_score", "delta", "delta_acc", "regime"]


def make_tidy(results: pd.DataFrame) -> pd.DataFrame:
    """Add Δ (pp) and the regime to raw (base, fine-tuned) scores, then validate.

    Args:
        results: one row per (run, target cell) with the KEY columns, `model_family`, `model_size_b`,
            `base_score`, `ft_score` (fractions) and optionally `base_acc`, `ft_acc` and `delta`: the Δ
            each run logged (or each imported row gave), used unchanged where present.

    Returns:
        The tidy table with `delta` (the given Δ, else 100 * (ft_score - base_score)) and `delta_acc`
        = 100 * (ft_acc - base_acc). Recomputing Δ from rounded or seed-mean scores would move values
        at the exact 0 and -1 pp boundaries by float residue, and with them the win and harm rates.
    """
    frame = results.copy()
    computed = 100.0 * (frame["ft_score"] - frame["base_score"])
    frame["delta"] = frame["delta"].where(frame["delta"].notna(), computed) if "delta" in frame else computed
    if {"ft_acc", "base_acc"} <= set(frame.columns):
        frame["delta_acc"] = 100.0 * (frame["ft_acc"] - frame["base_acc"])
    else:
        frame["delta_acc"] = np.nan
    frame["regime"] = [
        regime(Cell(st, sl), Cell(tt, tl))
        for st, sl, tt, tl in zip(
            frame["source_task"], frame["source_language"], frame["target_task"], frame["target_language"]
        )
    ]
    return validate_tidy(frame)


def validate_tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the tidy table: required columns, no duplicate keys, finite scores and Δ.

    Raises:
        ValueError: naming the missing columns or the offending rows (with their run ids when present).
    """
    missing = [c for c in TIDY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"tidy table lacks columns {missing}; it has {list(frame.columns)}")
    where = [c for c in ("evaluate_run_id", "baseline_run_id") if c in frame.columns]
    duplicated = frame[frame.duplicated(subset=KEY, keep=False)]
    if not duplicated.empty:
        raise ValueError(f"duplicate (model, seed, source, target) keys:\n{duplicated[KEY + where].head(10)}")
    bad = frame[~np.isfinite(frame[["base_score", "ft_score", "delta"]].astype(float)).all(axis=1)]
    if not bad.empty:
        raise ValueError(f"non-finite scores in {len(bad)} rows, e.g.:\n{bad[KEY + where].head(10)}")
    return frame


def aggregate_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and SE = std/sqrt(n) of scores and Δ over seeds per (model, source, target) (SPEC 1.7).

    Returns:
        One row per cell pair with `delta` (the seed mean, used by every statistic), `delta_std`,
        `delta_se`, `base_score`, `ft_score` (means) and `n_seeds`.
    """
    key = [c for c in KEY if c != "seed"]
    grouped = frame.groupby(key, dropna=False, sort=True)
    out = grouped.agg(
        model_family=("model_family", "first"),
        model_size_b=("model_size_b", "first"),
        regime=("regime", "first"),
        base_score=("base_score", "mean"),
        ft_score=("ft_score", "mean"),
        delta=("delta", "mean"),
        delta_std=("delta", "std"),
        delta_acc=("delta_acc", "mean"),
        n_seeds=("delta", "size"),
    ).reset_index()
    out["delta_se"] = out["delta_std"] / np.sqrt(out["n_seeds"])
    return out
