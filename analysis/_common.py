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
