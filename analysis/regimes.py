"""Regime summary and global uplift (SPEC 1.9, Table A)."""

from __future__ import annotations

import pandas as pd

from analysis._common import TIE_TOLERANCE, delta_stats, tie_aware_stats
from transfergrid.grid import REGIMES, TRANSFER_REGIMES

ALL_TRANSFER = "All transfer"


def regime_summary(frame: pd.DataFrame, *, delta: str = "delta", tie_tolerance: float = TIE_TOLERANCE) -> pd.DataFrame:
    """n, mean Δ, median Δ, win rate (% Δ > 0) and harm rate (% Δ <= -1 pp) per regime (SPEC 1.9),
    then the tie-aware rates and tie counts of `tie_aware_stats` (beyond the paper).

    Rows: MT-ML (the trained cell, reported apart), MT-CL, CT-ML, CT-CL, and "All transfer" (every
    row except MT-ML: the global uplift). Run it on seed-aggregated rows to match the paper.

    Args:
        frame: tidy rows with `regime` and a Δ column in percentage points.
        delta: name of the Δ column.
        tie_tolerance: |Δ| below it counts as 0 (and |Δ + 1| below it as -1) in the tie-aware rates.
    """
    groups = [(name, frame.loc[frame["regime"] == name, delta]) for name in REGIMES]
    groups.append((ALL_TRANSFER, frame.loc[frame["regime"].isin(TRANSFER_REGIMES), delta]))
    return pd.DataFrame([{"regime": name, **delta_stats(values), **tie_aware_stats(values, tie_tolerance)}
                         for name, values in groups])
