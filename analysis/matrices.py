"""Task->task and language->language transfer matrices (SPEC 1.12)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from analysis._common import require_columns


def _matrix(frame: pd.DataFrame, regime: str, source: str, target: str, delta: str, order: Sequence[str] | None) -> pd.DataFrame:
    require_columns(frame, ["regime", source, target, delta], "tidy table")
    rows = frame[frame["regime"] == regime]
    matrix = rows.pivot_table(index=source, columns=target, values=delta, aggfunc="mean", sort=True)
    labels = list(order) if order is not None else sorted(set(matrix.index) | set(matrix.columns))
    missing = sorted(set(matrix.index) - set(labels))
    if missing:
        raise ValueError(f"order lacks {missing}; it lists {labels}")
    matrix = matrix.reindex(index=labels, columns=labels).astype(float)
    values = matrix.to_numpy(copy=True)
    np.fill_diagonal(values, np.nan)  # the on-diagonal cells belong to another regime: masked
    matrix.loc[:, :] = values
    matrix.index.name, matrix.columns.name = source, target
    return matrix


def task_transfer_matrix(frame: pd.DataFrame, *, delta: str = "delta", order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean CT-ML Δ over models and languages per (source task, target task); diagonal NaN (SPEC 1.12).

    Args:
        frame: seed-aggregated tidy rows.
        delta: the Δ column (pp).
        order: axis order (the paper: `analysis.paper.TASK_ORDER`); default sorted task names.

    Returns:
        A square table: index `source_task`, columns `target_task`.

    Raises:
        ValueError: a missing column, or a task that `order` lacks.
    """
    return _matrix(frame, "CT-ML", "source_task", "target_task", delta, order)


def language_transfer_matrix(frame: pd.DataFrame, *, delta: str = "delta", order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean MT-CL Δ over models and tasks per (source language, target language); diagonal NaN (SPEC 1.12).

    Returns:
        A square table: index `source_language`, columns `target_language`.

    Raises:
        ValueError: a missing column, or a language that `order` lacks.
    """
    return _matrix(frame, "MT-CL", "source_language", "target_language", delta, order)
