"""Figures of the paper's analyses as PNG files (matplotlib, no pyplot state: the Agg canvas).

Every function takes the table an analysis function returned and an output path, and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis._common import require_columns

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_SIZES = {"S": 30, "M": 70, "L": 130, "?": 50}


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_donor_recipient(roles: pd.DataFrame, path: str | Path, *, key: str = "language",
                         title: str = "Language roles (MT-CL): donor vs recipient") -> Path:
    """Donor (x) vs recipient (y) scatter with the diagonal and SE bars (SPEC 1.10).

    Above the diagonal: a better recipient than donor; below: a better donor.

    Args:
        roles: `language_roles` / `task_roles` output.
        path: the PNG to write.
        key: the label column (`language` or `task`).
    """
    require_columns(roles, [key, "donor", "recipient"], "roles table")
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    ax.errorbar(roles["donor"], roles["recipient"], xerr=roles.get("donor_se"), yerr=roles.get("recipient_se"),
                fmt="o", color="tab:blue", ecolor="lightgray", capsize=2)
    for _, row in roles.iterrows():
        ax.annotate(str(row[key]), (row["donor"], row["recipient"]), textcoords="offset points", xytext=(4, 4))
    values = np.concatenate([roles["donor"].to_numpy(float), roles["recipient"].to_numpy(float)])
    lo, hi = np.nanmin(values), np.nanmax(values)
    pad = 0.1 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], linestyle="--", color="gray", label="donor = recipient")
    ax.set(xlabel="donor score: mean Δ as source (pp)", ylabel="recipient score: mean Δ as target (pp)", title=title)
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_transfer_matrix(matrix: pd.DataFrame, path: str | Path, *, title: str = "Transfer matrix (mean Δ, pp)") -> Path:
    """Heatmap of a source x target matrix (`task_transfer_matrix`, `language_transfer_matrix`) (SPEC 1.12).

    Diverging colours centred on 0; masked (NaN) cells stay blank; values written in the cells.
    """
    values = matrix.to_numpy(dtype=float)
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    fig = Figure(figsize=(1.0 + 0.55 * values.shape[1], 0.8 + 0.5 * values.shape[0]))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(i) for i in matrix.index])
    for i, j in zip(*np.nonzero(np.isfinite(values))):
        ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=7)
    ax.set(xlabel=f"target ({matrix.columns.name or 'target'})", ylabel=f"source ({matrix.index.name or 'source'})",
           title=title)
    fig.colorbar(image, ax=ax, label="mean Δ (pp)")
    return _save(fig, path)


def plot_pareto(pareto: pd.DataFrame, path: str | Path, *, title: str = "On-task vs off-task transfer per source") -> Path:
    """On-task (MT-CL) vs off-task mean Δ per source: colour = source task, marker = family, size = size bucket (SPEC 1.11).

    Args:
        pareto: `pareto_on_off` output.
    """
    require_columns(pareto, ["on_task", "off_task", "source_task", "model_family", "size_bucket"], "Pareto table")
    fig = Figure(figsize=(7.5, 6))
    ax = fig.add_subplot()
    tasks, families = sorted(pareto["source_task"].unique()), sorted(pareto["model_family"].unique())
    colours = {t: f"C{i}" for i, t in enumerate(tasks)}
    for f_index, family in enumerate(families):
        part = pareto[pareto["model_family"] == family]
        ax.scatter(part["on_task"], part["off_task"], c=[colours[t] for t in part["source_task"]],
                   s=[_SIZES.get(b, 50) for b in part["size_bucket"]], marker=_MARKERS[f_index % len(_MARKERS)],
                   alpha=0.6, edgecolors="none")
    for t in tasks:
        ax.scatter([], [], c=colours[t], label=f"task: {t}")
    for f_index, family in enumerate(families):
        ax.scatter([], [], c="gray", marker=_MARKERS[f_index % len(_MARKERS)], label=f"family: {family}")
    for bucket in sorted(set(pareto["size_bucket"])):
        ax.scatter([], [], c="white", edgecolors="gray", s=_SIZES.get(bucket, 50), label=f"size: {bucket}")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set(xlabel="on-task gain: mean MT-CL Δ (pp)", ylabel="off-task mean Δ (pp)", title=title)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_pareto_families(pareto: pd.DataFrame, path: str | Path, *, title: str = "On-task vs off-task by family") -> Path:
    """One panel per family: faint per-language points and (model, task) means sized by parameters (SPEC 1.11 Figure 1)."""
    require_columns(pareto, ["on_task", "off_task", "source_task", "model_family", "model", "model_size_b"], "Pareto table")
    families = sorted(pareto["model_family"].unique())
    tasks = sorted(pareto["source_task"].unique())
    colours = {t: f"C{i}" for i, t in enumerate(tasks)}
    fig = Figure(figsize=(4.5 * len(families), 4.5))
    axes = fig.subplots(1, len(families), squeeze=False, sharex=True, sharey=True)[0]
    for ax, family in zip(axes, families):
        part = pareto[pareto["model_family"] == family]
        ax.scatter(part["on_task"], part["off_task"], c=[colours[t] for t in part["source_task"]], s=8, alpha=0.2)
        means = part.groupby(["model", "model_size_b", "source_task"])[["on_task", "off_task"]].mean().reset_index()
        ax.scatter(means["on_task"], means["off_task"], c=[colours[t] for t in means["source_task"]],
                   s=20 + 15 * means["model_size_b"].fillna(1.0), edgecolors="black")
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.axvline(0, color="gray", linewidth=0.8)
        ax.set(title=str(family), xlabel="mean MT-CL Δ (pp)")
    axes[0].set_ylabel("off-task mean Δ (pp)")
    for t in tasks:
        axes[-1].scatter([], [], c=colours[t], label=t)
    axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_regime_bars(summary: pd.DataFrame, path: str | Path, *, title: str = "Mean Δ per regime") -> Path:
    """Bars of mean Δ per regime annotated with win and harm rates (SPEC 1.9).

    Args:
        summary: `regime_summary` output.
    """
    require_columns(summary, ["regime", "mean_delta", "win_rate", "harm_rate", "n"], "regime summary")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    x = np.arange(len(summary))
    bars = ax.bar(x, summary["mean_delta"], color=["tab:gray" if r == "MT-ML" else "tab:blue" for r in summary["regime"]])
    for bar, (_, row) in zip(bars, summary.iterrows()):
        ax.annotate(f"win {row['win_rate']:.1f}%\nharm {row['harm_rate']:.1f}%\nn={int(row['n'])}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom" if bar.get_height() >= 0 else "top", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, summary["regime"].astype(str))
    ax.set(ylabel="mean Δ (pp)", xlabel="regime", title=title)
    ax.margins(y=0.25)
    return _save(fig, path)
