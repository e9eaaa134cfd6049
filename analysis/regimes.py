"""Regime summary and global uplift (SPEC 1.9, Table A)."""

from __future__ import annotations

import pandas as pd

from analysis._common import delta_stats
from transfergrid.grid import REGIMES, TRANSFER_REGIMES

ALL_TRANSFER = "All transfer"


def regime_summary(frame: pd.DataFrame, *, delta: str = "delta") -> pd.DataFrame:
    """n, mean Δ, median Δ, win rate (% Δ > 0) and harm rate (% Δ <= -1 pp) per regime (SPEC 1.9).

    Rows: MT-ML (the trained cell, reported apart), MT-CL, CT-ML, CT-CL, and "All transfer" (every
    row except MT-ML: the global uplift). Run it on seed-aggregated rows to match the paper.

    Args:
        frame: tidy rows with `regime` and a Δ column in percentage points.
        delta: name of the Δ column.
    """
    rows = [{"regime": name, **delta_stats(frame.loc[frame["regime"] == name, delta])} for name in REGIMES]
    transfer = frame.loc[frame["regime"].isin(TRANSFER_REGIMES), delta]
    rows.append({"regime": ALL_TRANSFER, **delta_stats(transfer)})
    return pd.DataFrame(rows)
