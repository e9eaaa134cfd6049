"""On-task vs off-task transfer per source: the Pareto table and summaries (SPEC 1.11)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis._common import OFF_TASK, delta_stats, require_columns, size_bucket
from transfergrid.grid import HARM_THRESHOLD_PP

_SOURCE_KEY = ["model", "source_task", "source_language"]


def pareto_on_off(frame: pd.DataFrame, *, delta: str = "delta", min_on: int = 3, min_off: int = 5) -> pd.DataFrame:
    """Per (model, source task, source language): mean MT-CL Δ (x) vs mean off-task Δ (y) (SPEC 1.11).

    Off-task = CT-ML ∪ CT-CL (target task != source task). Sources with fewer than `min_on` MT-CL
    rows or fewer than `min_off` off-task rows are dropped.

    Args:
        frame: seed-aggregated tidy rows.
        delta: the Δ column (pp).
        min_on: least MT-CL rows a source needs (SPEC: 3).
        min_off: least off-task rows a source needs (SPEC: 5).

    Returns:
        Columns `model, source_task, source_language, model_family, model_size_b, size_bucket, on_task,
        off_task, off_task_harm_rate, n_on, n_off`.

    Raises:
        ValueError: a missing column.
    """
    require_columns(frame, [*_SOURCE_KEY, "model_family", "model_size_b", "regime", delta], "tidy table")
    on = frame[frame["regime"] == "MT-CL"].groupby(_SOURCE_KEY)[delta].agg(on_task="mean", n_on="size")
    off_rows = frame[frame["regime"].isin(OFF_TASK)]
    off = off_rows.groupby(_SOURCE_KEY)[delta].agg(off_task="mean", n_off="size")
    harm = (off_rows[delta] <= HARM_THRESHOLD_PP).groupby([off_rows[c] for c in _SOURCE_KEY]).mean() * 100.0
    meta = frame.groupby(_SOURCE_KEY)[["model_family", "model_size_b"]].first()
    out = meta.join(on, how="inner").join(off, how="inner").join(harm.rename("off_task_harm_rate"))
    out = out[(out["n_on"] >= min_on) & (out["n_off"] >= min_off)].reset_index()
    out["size_bucket"] = [size_bucket(s) for s in out["model_size_b"]]
    columns = [*_SOURCE_KEY, "model_family", "model_size_b", "size_bucket", "on_task", "off_task",
               "off_task_harm_rate", "n_on", "n_off"]
    return out[columns].astype({"n_on": int, "n_off": int})


def pareto_family_summary(frame: pd.DataFrame, *, delta: str = "delta", min_on: int = 3, min_off: int = 5) -> pd.DataFrame:
    """Mean on-task (x) and off-task (y) Δ per (model, source task) over source languages (SPEC 1.11).

    The (model, task) means of the paper's three-panel family figure.

    Returns:
        Columns `model_family, model, model_size_b, source_task, on_task, off_task, n_languages`.
    """
    table = pareto_on_off(frame, delta=delta, min_on=min_on, min_off=min_off)
    grouped = table.groupby(["model_family", "model", "model_size_b", "source_task"], sort=True)
    return grouped.agg(on_task=("on_task", "mean"), off_task=("off_task", "mean"),
                       n_languages=("source_language", "size")).reset_index()


def on_off_task_summary(frame: pd.DataFrame, *, delta: str = "delta") -> pd.DataFrame:
    """Per source task: n, mean, median, win rate and harm rate on-task (MT-CL) and off-task (SPEC 1.11).

    Returns:
        Columns `source_task, scope (on_task|off_task), n, mean_delta, median_delta, win_rate, harm_rate`.

    Raises:
        ValueError: a missing column.
    """
    require_columns(frame, ["source_task", "regime", delta], "tidy table")
    rows = []
    for task, group in frame.groupby("source_task", sort=True):
        for scope, regimes in (("on_task", ("MT-CL",)), ("off_task", OFF_TASK)):
            rows.append({"source_task": task, "scope": scope, **delta_stats(group.loc[group["regime"].isin(regimes), delta])})
    return pd.DataFrame(rows)


def pareto_appendix_table(frame: pd.DataFrame, *, delta: str = "delta", decimals: int = 2) -> pd.DataFrame:
    """Appendix table: model x task x language with the MT-CL gain and mean off-task Δ, rounded (SPEC 1.11).

    Returns:
        Columns `model, source_task, source_language, mt_cl_gain, off_task_mean`.
    """
    table = pareto_on_off(frame, delta=delta)
    out = table[_SOURCE_KEY].copy()
    out["mt_cl_gain"] = np.round(table["on_task"], decimals)
    out["off_task_mean"] = np.round(table["off_task"], decimals)
    return out
