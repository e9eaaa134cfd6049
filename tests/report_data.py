"""Planted tidy tables and per-item predictions for the report tests (issue 4 items 2-5, 7)."""

from __future__ import annotations

import numpy as np
import pandas as pd

import analysis

TASKS = ("t1", "t2", "t3")
LANGUAGES = ("a", "b", "c", "d")
MODELS = {"m1": ("fa", 1.0), "m2": ("fa", 3.0), "m3": ("fb", 1.0), "m4": ("fb", 8.0)}
FAMILIES = {"a": "F1", "b": "F1", "c": "F2", "d": "F3"}
CONSTRUCTION = {"t1": "human", "t2": "machine", "t3": "machine"}
REGIME_MEANS = {"MT-ML": 10.0, "MT-CL": 3.0, "CT-ML": 1.0, "CT-CL": -0.5}
DISTANCE = pd.DataFrame([[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]], index=list(LANGUAGES),
                        columns=list(LANGUAGES), dtype=float)


def _keys(models, recipe: str, lora_r: str, seeds) -> pd.DataFrame:
    cells = [(t, lang) for t in TASKS for lang in LANGUAGES]
    rows = [(m, fam, size, seed, *s, *t) for m, (fam, size) in models.items() for seed in seeds for s in cells for t in cells]
    keys = pd.DataFrame(rows, columns=["model", "model_family", "model_size_b", "seed", "source_task", "source_language",
                                       "target_task", "target_language"])
    return keys.assign(recipe=recipe, lora_r=lora_r, suite="test")


def planted_results(*, models=None, seeds=(1, 2), noise: float = 0.5, ablation: bool = True, rng_seed: int = 0):
    """Raw results (the input of `make_tidy`) with planted regime means and a distance effect on MT-CL.

    MT-CL Δ falls by 1 pp per unit of `DISTANCE`; with `ablation`, model m1 also has rank-8 and full
    fine-tuning rows. Run ids: one evaluate run per (model, seed, recipe, rank, source), one baseline per (model, seed).
    """
    rng = np.random.default_rng(rng_seed)
    parts = [_keys(models or MODELS, "lora", "32", seeds)]
    if ablation:
        parts += [_keys({"m1": MODELS["m1"]}, "lora", "8", seeds), _keys({"m1": MODELS["m1"]}, "full", "none", seeds[:1])]
    keys = pd.concat(parts, ignore_index=True)
    same_task, same_lang = keys["source_task"] == keys["target_task"], keys["source_language"] == keys["target_language"]
    regime = np.where(same_task, np.where(same_lang, "MT-ML", "MT-CL"), np.where(same_lang, "CT-ML", "CT-CL"))
    distance = DISTANCE.to_numpy()[keys["source_language"].map(LANGUAGES.index), keys["target_language"].map(LANGUAGES.index)]
    delta = pd.Series(regime).map(REGIME_MEANS).to_numpy() - (regime == "MT-CL") * (distance - 2.0)
    delta = delta + rng.normal(0, noise, len(keys))
    base = 0.3 + 0.1 * rng.random(len(keys))
    run = keys["model"] + "|" + keys["seed"].astype(str) + "|" + keys["recipe"] + "|" + keys["lora_r"]
    return keys.assign(
        base_score=base, ft_score=base + delta / 100.0, base_acc=base, ft_acc=base + delta / 100.0,
        evaluate_run_id="ev|" + run + "|" + keys["source_task"] + "." + keys["source_language"],
        baseline_run_id="base|" + keys["model"] + "|" + keys["seed"].astype(str),
    )


def planted_tidy(**kwargs) -> pd.DataFrame:
    """`analysis.make_tidy(planted_results(...))`."""
    return analysis.make_tidy(planted_results(**kwargs))


def predictions_for(tidy: pd.DataFrame, *, n_items: int = 20, rng_seed: int = 0) -> dict[str, pd.DataFrame]:
    """Per-item predictions of every evaluate and baseline run of `tidy` (random, 4 choices)."""
    rng = np.random.default_rng(rng_seed)
    cells = [(t, lang) for t in TASKS for lang in LANGUAGES]
    items = pd.DataFrame([(t, lang, f"{i}") for t, lang in cells for i in range(n_items)],
                         columns=["task", "language", "item_id"])
    items["gold"] = rng.integers(0, 4, len(items))
    out = {}
    for run_id in sorted(set(tidy["evaluate_run_id"]) | set(tidy["baseline_run_id"])):
        right = rng.random(len(items)) < (0.6 if run_id.startswith("ev") else 0.4)
        predicted = np.where(right, items["gold"], (items["gold"] + 1) % 4)
        out[run_id] = items.assign(predicted=predicted, predicted_norm=predicted, loglik=None, choice_chars=None)
    return out


def cot_gains(tidy: pd.DataFrame) -> pd.DataFrame:
    """A chain-of-thought gain per (model, target cell)."""
    targets = tidy[["model", "target_task", "target_language"]].drop_duplicates().reset_index(drop=True)
    return targets.assign(cot_delta=np.linspace(-2, 4, len(targets)))


def synthetic_results(truth: dict, *, models=("s1", "s2", "s3"), seeds=(1, 2), noise: float = 1.0, rng_seed: int = 0):
    """Raw results of the synthetic suite simulated from `ground_truth()["expected_transfer"]` (+ noise)."""
    rng = np.random.default_rng(rng_seed)
    expected = truth["expected_transfer"].stack()
    rows = []
    for i, model in enumerate(models):
        for seed in seeds:
            for (source, target), value in expected.items():
                st, sl = source.split(".", 1)
                tt, tl = target.split(".", 1)
                delta = value + rng.normal(0, noise)
                rows.append((model, "syn", 1.0 + i, seed, "lora", "32", "synthetic", st, sl, tt, tl, 0.25, 0.25 + delta / 100))
    return pd.DataFrame(rows, columns=[
        "model", "model_family", "model_size_b", "seed", "recipe", "lora_r", "suite", "source_task", "source_language",
        "target_task", "target_language", "base_score", "ft_score"])
