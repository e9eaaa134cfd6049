"""Mixed-effects variance decomposition of Δ with statsmodels MixedLM (SPEC 1.14, STACK.md).

Two specifications, fitted on the same subsets:

- `variance_decomposition`: the paper's, copied exactly (SPEC 1.14): `delta ~ 1`, groups = model,
  re_formula "1", variance components source = `0 + C(source_id)` and target = `0 + C(target_id)`,
  REML, L-BFGS, maxiter 1000. statsmodels realises variance components independently within each
  group, so Source and Target are source-within-model and target-within-model effects.
- `crossed_variance_decomposition`: model, source and target as fully crossed variance components of
  one all-rows group (STACK.md), which is what "Source" and "Target" usually mean.

Both need one row per (model, source cell, target cell): run them on the seed-aggregated table of
one recipe and rank.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM

from analysis._common import cell_label, require_columns
from transfergrid.grid import TRANSFER_REGIMES

logger = logging.getLogger(__name__)

FIT_THREADS = min(2, os.cpu_count() or 1)  # MixedLM fits run side by side: their time is BLAS, which frees the GIL
_COMPONENTS = ("model", "source", "target", "residual")
_COLUMNS = ["subset", "n", "n_models", "n_sources", "n_targets", *[f"var_{c}" for c in _COMPONENTS],
            *[f"share_{c}" for c in _COMPONENTS], "converged", "note"]


def _design(frame: pd.DataFrame, delta: str) -> pd.DataFrame:
    cols = ["model", "source_task", "source_language", "target_task", "target_language", "regime", delta]
    require_columns(frame, cols, "tidy table")
    data = pd.DataFrame({
        "y": frame[delta].astype(float).to_numpy(),
        "model": frame["model"].astype(str).to_numpy(),
        "source_id": cell_label(frame["source_task"], frame["source_language"]).to_numpy(),
        "target_id": cell_label(frame["target_task"], frame["target_language"]).to_numpy(),
    })
    duplicated = data.duplicated(["model", "source_id", "target_id"])
    if duplicated.any():
        raise ValueError(f"{int(duplicated.sum())} duplicate (model, source, target) rows: pass the seed-aggregated "
                         "table of one recipe and rank (analysis.aggregate_seeds)")
    return data


def _subsets(frame: pd.DataFrame, curated_task: str | None) -> list[tuple[str, pd.Series]]:
    transfer = frame["regime"].isin(TRANSFER_REGIMES)
    subsets = [("Overall", transfer)] + [(r, frame["regime"] == r) for r in TRANSFER_REGIMES]
    if curated_task is not None:
        involved = (frame["source_task"] == curated_task) | (frame["target_task"] == curated_task)
        subsets += [(f"{curated_task}-involved", transfer & involved), ("translated-only", transfer & ~involved)]
    return subsets


def _fit_nested(data: pd.DataFrame, use_sparse: bool) -> tuple[dict[str, float], bool]:
    model = MixedLM.from_formula(
        "y ~ 1", data=data, groups="model", re_formula="1",
        vc_formula={"source": "0 + C(source_id)", "target": "0 + C(target_id)"}, use_sparse=use_sparse,
    )
    result = model.fit(reml=True, method="lbfgs", maxiter=1000)
    vc = dict(zip(model.exog_vc.names, np.asarray(result.vcomp, dtype=float)))
    return {"model": float(np.asarray(result.cov_re)[0, 0]), "source": vc["source"], "target": vc["target"],
            "residual": float(result.scale)}, bool(result.converged)


def _fit_crossed(data: pd.DataFrame, use_sparse: bool) -> tuple[dict[str, float], bool]:
    data = data.assign(all_rows=1)
    model = MixedLM.from_formula(
        "y ~ 1", data=data, groups="all_rows", re_formula="0",
        vc_formula={"model": "0 + C(model)", "source": "0 + C(source_id)", "target": "0 + C(target_id)"},
        use_sparse=use_sparse,
    )
    result = model.fit(reml=True, method="lbfgs", maxiter=1000)
    vc = dict(zip(model.exog_vc.names, np.asarray(result.vcomp, dtype=float)))
    return {"model": vc["model"], "source": vc["source"], "target": vc["target"], "residual": float(result.scale)}, bool(
        result.converged)


def _decompose(frame, fit, *, delta, min_rows, curated_task, use_sparse, subsets) -> pd.DataFrame:
    data = _design(frame, delta)
    available = _subsets(frame, curated_task)
    unknown = sorted(set(subsets or ()) - {name for name, _ in available})
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; valid: {[name for name, _ in available]}")
    rows, todo = [], []
    for name, mask in available:
        if subsets is not None and name not in subsets:
            continue
        part = data[mask.to_numpy()].reset_index(drop=True)
        row = {"subset": name, "n": len(part), "n_models": part["model"].nunique(),
               "n_sources": part["source_id"].nunique(), "n_targets": part["target_id"].nunique(), "note": ""}
        rows.append(row)
        if len(part) < min_rows:
            row["note"] = f"skipped: n < {min_rows}"
        else:
            todo.append((row, part))

    def run(part: pd.DataFrame):
        try:
            return fit(part, use_sparse)
        except (np.linalg.LinAlgError, ValueError) as err:
            return err

    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=FIT_THREADS) as pool:
        warnings.simplefilter("ignore")  # "MLE may be on the boundary" is expected (STACK.md)
        largest_first = sorted(todo, key=lambda item: -len(item[1]))
        results = dict(zip((id(row) for row, _ in largest_first), pool.map(run, (part for _, part in largest_first))))
    for row, _ in todo:
        result = results[id(row)]
        if isinstance(result, Exception):
            logger.warning("variance decomposition of %s failed: %s", row["subset"], result)
            row["note"] = f"fit failed: {result}"
            continue
        variances, converged = result
        total = sum(variances.values())
        row.update({f"var_{c}": variances[c] for c in _COMPONENTS})
        row.update({f"share_{c}": 100.0 * variances[c] / total for c in _COMPONENTS})
        row["converged"] = converged
    return pd.DataFrame(rows, columns=_COLUMNS)


def variance_decomposition(
    frame: pd.DataFrame, *, delta: str = "delta", min_rows: int = 50, curated_task: str | None = "global_mmlu",
    use_sparse: bool = False, subsets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Variance shares of Model, Source, Target and Residual, the paper's MixedLM exactly (SPEC 1.14).

    Fits: `Overall` (transfer rows: MT-CL, CT-ML, CT-CL), each transfer regime, `<curated_task>-involved`
    (transfer rows whose source or target task is `curated_task`) and `translated-only` (neither).
    A subset with fewer than `min_rows` rows is reported with a note and no fit.

    Args:
        frame: seed-aggregated tidy rows of one recipe and rank (one row per model, source, target).
        delta: the Δ column (pp).
        min_rows: least rows to fit (SPEC: 50).
        curated_task: the human-translated task (the paper: `global_mmlu`); None skips both subsets.
        use_sparse: sparse variance-component design (SPEC 1.14 says sparse). The estimates agree to
            1e-9, but on the paper-scale table statsmodels 0.15 fits the dense design 3-10x faster
            (its sparse path calls spsolve at every step), hence the default.
        subsets: names of the fits to run (default: all of them, in the order above).

    Returns:
        One row per subset: `subset, n, n_models, n_sources, n_targets, var_*, share_* (%), converged,
        note`, the shares being component variance / (model + source + target + residual) x 100.

    Raises:
        ValueError: a missing column, duplicate (model, source, target) rows or an unknown subset.
    """
    return _decompose(frame, _fit_nested, delta=delta, min_rows=min_rows, curated_task=curated_task,
                      use_sparse=use_sparse, subsets=subsets)


def crossed_variance_decomposition(
    frame: pd.DataFrame, *, delta: str = "delta", min_rows: int = 50, curated_task: str | None = "global_mmlu",
    use_sparse: bool = False, subsets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Variance shares with model, source and target fully crossed (STACK.md; the alternative to SPEC 1.14).

    `delta ~ 1` with one group holding every row, no group intercept (re_formula "0") and variance
    components model = `0 + C(model)`, source = `0 + C(source_id)`, target = `0 + C(target_id)`;
    REML, L-BFGS, maxiter 1000. Same subsets, arguments and columns as `variance_decomposition`.
    """
    return _decompose(frame, _fit_crossed, delta=delta, min_rows=min_rows, curated_task=curated_task,
                      use_sparse=use_sparse, subsets=subsets)
