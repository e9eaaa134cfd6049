"""Main-grid selection, LoRA rank ablation (SPEC 1.17) and LoRA vs full fine-tuning (SPEC 1.18).

When no such runs exist the functions return a one-row table with `n` = 0 and a `note` saying why;
otherwise `note` is empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis._common import OFF_TASK, empty_with_note, rank_label, require_columns
from transfergrid.grid import HARM_THRESHOLD_PP

CELL = ["model", "suite", "source_task", "source_language", "target_task", "target_language"]
_QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)


def main_grid(frame: pd.DataFrame, *, recipe: str = "lora", lora_r: str | int | None = None) -> pd.DataFrame:
    """The rows of the main grid: one recipe and one rank, so ablation runs do not enter the paper's tables.

    Args:
        frame: tidy rows (per seed or seed-aggregated).
        recipe: the main recipe (`lora`).
        lora_r: the main rank; None takes the rank with the most rows of `recipe`.

    Raises:
        ValueError: a missing column, or no row of that recipe and rank.
    """
    require_columns(frame, ["recipe", "lora_r"], "tidy table")
    ranks = frame["lora_r"].map(rank_label)
    of_recipe = frame["recipe"] == recipe
    if lora_r is None and of_recipe.any():
        lora_r = ranks[of_recipe].value_counts().idxmax()
    keep = of_recipe & (ranks == rank_label(lora_r))
    if not keep.any():
        raise ValueError(f"no rows with recipe={recipe!r}, lora_r={lora_r!r}; present: "
                         f"{sorted(set(zip(frame['recipe'], ranks)))}")
    return frame[keep]


def _ablation_rows(frame: pd.DataFrame, recipe: str, main_rank: str) -> tuple[pd.DataFrame, str]:
    """`recipe` rows of the cells run at some rank other than `main_rank` (the ablation subset), or a note."""
    rows = frame[frame["recipe"] == recipe].assign(rank=lambda f: f["lora_r"].map(rank_label))
    others = sorted(set(rows["rank"]) - {main_rank})
    if not others:
        return rows.iloc[:0], f"no rank-ablation runs: only rank(s) {sorted(set(rows['rank']))} of recipe {recipe!r}"
    cells = rows.loc[rows["rank"] != main_rank, CELL].drop_duplicates()
    return rows.merge(cells, on=CELL), ""


def _rank_order(ranks) -> list[str]:
    return sorted(set(ranks), key=lambda r: (float(r) if r.replace(".", "", 1).isdigit() else np.inf, r))


def rank_ablation_summary(frame: pd.DataFrame, *, delta: str = "delta", main_rank: str | int = "32",
                          recipe: str = "lora") -> pd.DataFrame:
    """Per LoRA rank: n, mean Δ (norm and raw), quantiles of Δ and harm rate, on the ablation subset (SPEC 1.17).

    The ablation subset = the (model, source, target) cells that have rows at a rank other than
    `main_rank`; every rank is summarised on those cells only.

    Args:
        frame: tidy rows (seed-aggregated for the paper's numbers) with `recipe` and `lora_r`.
        delta: the Δ column (pp); `delta_acc` gives the raw-acc mean.
        main_rank: the main grid's rank (SPEC: 32).
        recipe: the LoRA recipe name.

    Returns:
        Columns `lora_r, n, mean_delta, mean_delta_acc, median_delta, p10, p25, p75, p90, harm_rate, note`.

    Raises:
        ValueError: a missing column.
    """
    require_columns(frame, [*CELL, "recipe", "lora_r", delta, "delta_acc"], "tidy table")
    columns = ["lora_r", "n", "mean_delta", "mean_delta_acc", "median_delta", "p10", "p25", "p75", "p90", "harm_rate"]
    rows, note = _ablation_rows(frame, recipe, rank_label(main_rank))
    if note:
        return empty_with_note(columns, note)
    out = []
    for rank in _rank_order(rows["rank"]):
        values = rows.loc[rows["rank"] == rank, delta].to_numpy(dtype=float)
        p10, p25, p50, p75, p90 = np.quantile(values, _QUANTILES)
        out.append({"lora_r": rank, "n": values.size, "mean_delta": values.mean(),
                    "mean_delta_acc": rows.loc[rows["rank"] == rank, "delta_acc"].mean(), "median_delta": p50,
                    "p10": p10, "p25": p25, "p75": p75, "p90": p90,
                    "harm_rate": 100.0 * float((values <= HARM_THRESHOLD_PP).mean()), "note": ""})
    return pd.DataFrame(out, columns=[*columns, "note"])


def rank_ablation_by_regime(frame: pd.DataFrame, *, delta: str = "delta", main_rank: str | int = "32",
                            recipe: str = "lora") -> pd.DataFrame:
    """Per rank and collapsed regime (mt_ml, mt_cl, off_task): n, mean Δ and harm rate (SPEC 1.17).

    Returns:
        Columns `lora_r, regime, n, mean_delta, harm_rate, note`.
    """
    require_columns(frame, [*CELL, "recipe", "lora_r", "regime", delta], "tidy table")
    columns = ["lora_r", "regime", "n", "mean_delta", "harm_rate"]
    rows, note = _ablation_rows(frame, recipe, rank_label(main_rank))
    if note:
        return empty_with_note(columns, note)
    collapsed = rows["regime"].map({"MT-ML": "mt_ml", "MT-CL": "mt_cl", **{r: "off_task" for r in OFF_TASK}})
    out = []
    for rank in _rank_order(rows["rank"]):
        for name in ("mt_ml", "mt_cl", "off_task"):
            values = rows.loc[(rows["rank"] == rank) & (collapsed == name), delta].to_numpy(dtype=float)
            out.append({"lora_r": rank, "regime": name, "n": values.size,
                        "mean_delta": values.mean() if values.size else np.nan,
                        "harm_rate": 100.0 * float((values <= HARM_THRESHOLD_PP).mean()) if values.size else np.nan,
                        "note": ""})
    return pd.DataFrame(out, columns=[*columns, "note"])


def _cell_means(rows: pd.DataFrame, delta: str) -> pd.DataFrame:
    return rows.groupby(CELL, sort=True)[[delta, "delta_acc"]].mean()


def rank_ablation_correlation(frame: pd.DataFrame, *, delta: str = "delta", main_rank: str | int = "32",
                              recipe: str = "lora") -> pd.DataFrame:
    """Pearson r of per-cell Δ between the main rank and each other rank, on shared cells (SPEC 1.17).

    Per-seed rows are averaged per cell first.

    Returns:
        Columns `rank_a, rank_b, n, pearson_r, note` (n = shared cells).
    """
    require_columns(frame, [*CELL, "recipe", "lora_r", delta, "delta_acc"], "tidy table")
    main = rank_label(main_rank)
    rows, note = _ablation_rows(frame, recipe, main)
    if note:
        return empty_with_note(["rank_a", "rank_b", "n", "pearson_r"], note)
    base = _cell_means(rows[rows["rank"] == main], delta)[delta]
    out = []
    for rank in _rank_order(set(rows["rank"]) - {main}):
        other = _cell_means(rows[rows["rank"] == rank], delta)[delta]
        pair = pd.concat([base, other], axis=1, join="inner").dropna()
        r = stats.pearsonr(pair.iloc[:, 0], pair.iloc[:, 1])[0] if len(pair) >= 3 else np.nan
        out.append({"rank_a": main, "rank_b": rank, "n": len(pair), "pearson_r": float(r), "note": ""})
    return pd.DataFrame(out, columns=["rank_a", "rank_b", "n", "pearson_r", "note"])


def lora_vs_full(frame: pd.DataFrame, *, delta: str = "delta", lora_rank: str | int = "32", lora_recipe: str = "lora",
                 full_recipe: str = "full") -> pd.DataFrame:
    """LoRA (rank `lora_rank`) vs full fine-tuning on shared (model, source, target) cells (SPEC 1.18).

    Per-seed rows are averaged per cell first (full FT may be single-seed).

    Returns:
        One row: `n, pearson_r, pearson_r_acc (raw acc Δ), sign_agreement (% same sign of Δ),
        mean_diff, median_diff (Δ_LoRA - Δ_full, pp), note`.

    Raises:
        ValueError: a missing column.
    """
    require_columns(frame, [*CELL, "recipe", "lora_r", delta, "delta_acc"], "tidy table")
    columns = ["n", "pearson_r", "pearson_r_acc", "sign_agreement", "mean_diff", "median_diff"]
    lora = frame[(frame["recipe"] == lora_recipe) & (frame["lora_r"].map(rank_label) == rank_label(lora_rank))]
    full = frame[frame["recipe"] == full_recipe]
    if full.empty:
        return empty_with_note(columns, f"no full fine-tuning runs (recipe {full_recipe!r})")
    pair = _cell_means(lora, delta).add_suffix("_lora").join(_cell_means(full, delta).add_suffix("_full"), how="inner")
    if len(pair) < 3:
        return empty_with_note(columns, f"only {len(pair)} cells shared by LoRA r={lora_rank} and full fine-tuning")
    a, b = pair[f"{delta}_lora"], pair[f"{delta}_full"]
    acc = pair[["delta_acc_lora", "delta_acc_full"]].dropna()
    diff = a - b
    return pd.DataFrame([{
        "n": len(pair), "pearson_r": float(stats.pearsonr(a, b)[0]),
        "pearson_r_acc": float(stats.pearsonr(acc.iloc[:, 0], acc.iloc[:, 1])[0]) if len(acc) >= 3 else np.nan,
        "sign_agreement": 100.0 * float((np.sign(a) == np.sign(b)).mean()),
        "mean_diff": float(diff.mean()), "median_diff": float(diff.median()), "note": "",
    }], columns=[*columns, "note"])
