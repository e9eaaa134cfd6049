"""Raw results (the input of `make_tidy`) in the schema of the authors' released results CSV (SPEC 1.7).

Used to generate paper-shaped input files for `import_results` tests and benchmarks:
`released_table(results)` gives the seed-aggregated `results/transfer_results.csv` in its exact
26-column header (`RELEASED_HEADER`, bare model names, `model_size` as a float, `regime`),
`released_table(results, per_seed=True)` the per-seed long table with a `seed` column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_RENAME = {"model": "model_name", "model_size_b": "model_size", "source_task": "fine_tuned_dataset",
           "source_language": "fine_tuned_language", "target_task": "eval_dataset", "target_language": "eval_language"}
_IDS = list(_RENAME.values())
RELEASED_HEADER = (
    "model_name,model_size,fine_tuned_dataset,fine_tuned_language,eval_dataset,eval_language,regime,score_mean,"
    "score_std,score_base_mean,score_base_std,score_norm_mean,score_norm_std,score_norm_base_mean,score_norm_base_std,"
    "delta_score_mean,delta_score_std,delta_score_norm_mean,delta_score_norm_std,n_seeds,score_se,score_base_se,"
    "score_norm_se,score_norm_base_se,delta_score_se,delta_score_norm_se"
).split(",")


def released_table(results: pd.DataFrame, *, per_seed: bool = False) -> pd.DataFrame:
    """Released-schema table of raw results (`model, seed, source/target cells, base/ft score and acc`).

    Args:
        results: e.g. `analysis.simulate.simulate_paper().results`; `*_acc` columns optional.
        per_seed: one row per seed (`seed, score, score_norm, base_score, base_score_norm,
            delta_score, delta_score_norm`) instead of seed means/std/SE (`*_mean, *_std, *_se, n_seeds`).
    """
    frame = results.rename(columns=_RENAME)
    has_acc = {"ft_acc", "base_acc"} <= set(frame.columns)
    per = frame[_IDS + ["seed"]].copy()
    per["score_norm"] = frame["ft_score"]
    per["base_score_norm"] = frame["base_score"]
    per["score"] = frame["ft_acc"] if has_acc else frame["ft_score"]
    per["base_score"] = frame["base_acc"] if has_acc else frame["base_score"]
    per["delta_score"] = 100.0 * (per["score"] - per["base_score"])
    per["delta_score_norm"] = 100.0 * (per["score_norm"] - per["base_score_norm"])
    if per_seed:
        return per.reset_index(drop=True)
    per = per.rename(columns={"base_score": "score_base", "base_score_norm": "score_norm_base"})
    values = ["score", "score_norm", "score_base", "score_norm_base", "delta_score", "delta_score_norm"]
    grouped = per.groupby(_IDS, sort=True)[values]
    mean, std, n = grouped.mean(), grouped.std(), grouped.size()
    out = pd.concat([mean.add_suffix("_mean"), std.add_suffix("_std"),
                     std.div(np.sqrt(n), axis=0).add_suffix("_se")], axis=1)
    out["n_seeds"] = n
    out = out.reset_index()
    out["model_name"] = out["model_name"].astype(str).str.split("/").str[-1]
    out["model_size"] = out["model_size"].astype(float)
    same_task = out["fine_tuned_dataset"] == out["eval_dataset"]
    same_language = out["fine_tuned_language"] == out["eval_language"]
    out["regime"] = np.where(same_task, np.where(same_language, "MT-ML", "MT-CL"), np.where(same_language, "CT-ML", "CT-CL"))
    return out[RELEASED_HEADER]
