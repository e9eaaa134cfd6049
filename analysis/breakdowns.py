"""MT-CL harm breakdowns: by target language, target task, size bucket, family, construction (SPEC 1.13)."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from analysis._common import delta_stats, require_columns, size_bucket

_STATS = ["n", "mean_delta", "median_delta", "win_rate", "harm_rate"]


def mt_cl_breakdown(frame: pd.DataFrame, *, delta: str = "delta") -> pd.DataFrame:
    """n, mean, median, win and harm rate of MT-CL rows: overall and per group (SPEC 1.13).

    Groupings: `overall`, `target_language`, `target_task`, `size_bucket` (S <= 1.5B, M < 7B,
    L >= 7B) and `model_family`.

    Args:
        frame: seed-aggregated tidy rows.
        delta: the Δ column (pp).

    Returns:
        Columns `grouping, group, n, mean_delta, median_delta, win_rate, harm_rate`.

    Raises:
        ValueError: a missing column.
    """
    require_columns(frame, ["regime", "target_language", "target_task", "model_size_b", "model_family", delta], "tidy table")
    rows = frame[frame["regime"] == "MT-CL"].copy()
    rows["size_bucket"] = [size_bucket(s) for s in rows["model_size_b"]]
    out = [{"grouping": "overall", "group": "all", **delta_stats(rows[delta])}]
    for grouping in ("target_language", "target_task", "size_bucket", "model_family"):
        for group, part in rows.groupby(grouping, sort=True):
            out.append({"grouping": grouping, "group": str(group), **delta_stats(part[delta])})
    return pd.DataFrame(out, columns=["grouping", "group", *_STATS])


def mt_cl_by_construction(frame: pd.DataFrame, *, construction: Mapping[str, str], delta: str = "delta") -> pd.DataFrame:
    """MT-CL statistics for all rows and per construction type of the target task (SPEC 1.13).

    Args:
        frame: seed-aggregated tidy rows.
        construction: target task -> construction label (e.g. `analysis.paper.CONSTRUCTION`).
        delta: the Δ column (pp).

    Returns:
        Columns `construction, n, mean_delta, median_delta, win_rate, harm_rate`; first row `all`.

    Raises:
        ValueError: a missing column, or a target task that `construction` does not map.
    """
    require_columns(frame, ["regime", "target_task", delta], "tidy table")
    rows = frame[frame["regime"] == "MT-CL"]
    unmapped = sorted(set(rows["target_task"]) - set(construction))
    if unmapped:
        raise ValueError(f"construction does not map tasks {unmapped}; it maps {sorted(construction)}")
    kinds = rows["target_task"].map(construction)
    out = [{"construction": "all", **delta_stats(rows[delta])}]
    out += [{"construction": kind, **delta_stats(rows.loc[kinds == kind, delta])} for kind in sorted(set(construction.values()))]
    return pd.DataFrame(out, columns=["construction", *_STATS])
