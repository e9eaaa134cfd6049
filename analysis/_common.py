"""Shared helpers of the analysis functions: column checks, the rate statistics, size buckets."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from transfergrid.grid import HARM_THRESHOLD_PP, size_bucket  # noqa: F401 (re-exported)

SOURCE = ["source_task", "source_language"]
TARGET = ["target_task", "target_language"]
OFF_TASK = ("CT-ML", "CT-CL")


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str = "table") -> None:
    """Raise a ValueError naming the columns of `columns` that `frame` lacks.

    Raises:
        ValueError: when a column is missing, or `frame` is not a DataFrame.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {list(frame.columns)}")


def delta_stats(delta: pd.Series | np.ndarray) -> dict[str, float]:
    """n, mean, median, win rate (% Δ > 0) and harm rate (% Δ <= -1 pp), as SPEC 1.9."""
    values = np.asarray(delta, dtype=float)
    n = int(values.size)
    if not n:
        return {"n": 0, "mean_delta": np.nan, "median_delta": np.nan, "win_rate": np.nan, "harm_rate": np.nan}
    return {
        "n": n,
        "mean_delta": float(values.mean()),
        "median_delta": float(np.median(values)),
        "win_rate": 100.0 * float((values > 0).mean()),
        "harm_rate": 100.0 * float((values <= HARM_THRESHOLD_PP).mean()),
    }


TIE_TOLERANCE = 1e-9  # |Δ| (pp) below this is a tie with 0 in the tie-aware rates


def tie_aware_stats(delta: pd.Series | np.ndarray, tolerance: float = TIE_TOLERANCE) -> dict[str, float]:
    """Win and harm rates that treat float residue at the boundaries as the exact value (beyond the paper).

    A Δ within `tolerance` of 0 counts as 0 (no win), one within `tolerance` of -1 pp as -1 (harm), so a
    reader sees how much of the paper's rates is float residue (e.g. 1.8e-15 where the scores were equal).

    Returns:
        `ties` (n with |Δ| < tolerance), `harm_boundary_ties` (n with |Δ + 1| < tolerance),
        `win_rate_tie_aware` (% Δ >= tolerance), `harm_rate_tie_aware` (% Δ <= -1 + tolerance).
    """
    values = np.asarray(delta, dtype=float)
    if not values.size:
        return {"ties": 0, "harm_boundary_ties": 0, "win_rate_tie_aware": np.nan, "harm_rate_tie_aware": np.nan}
    return {
        "ties": int((np.abs(values) < tolerance).sum()),
        "harm_boundary_ties": int((np.abs(values - HARM_THRESHOLD_PP) < tolerance).sum()),
        "win_rate_tie_aware": 100.0 * float((values >= tolerance).mean()),
        "harm_rate_tie_aware": 100.0 * float((values <= HARM_THRESHOLD_PP + tolerance).mean()),
    }


def rank_label(value) -> str:
    """A LoRA rank as a label ('32'), whether it was stored as 32, 32.0 or '32'."""
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") else text


def cell_label(task: pd.Series, language: pd.Series) -> pd.Series:
    """`task.language` labels (ARCHITECTURE.md section 2)."""
    return task.astype(str) + "." + language.astype(str)


def empty_with_note(columns: Sequence[str], note: str) -> pd.DataFrame:
    """A one-row table with NaN statistics, n = 0 and a `note` saying why there is nothing to report."""
    row = {c: np.nan for c in columns}
    if "n" in row:
        row["n"] = 0
    row["note"] = note
    return pd.DataFrame([row], columns=[*columns, "note"])
