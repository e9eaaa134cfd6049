"""A paper-shaped results table with planted effects, for tests and benchmarks (SPEC 1.1, 1.4, 1.7).

`simulate_paper()` draws 9 models x 44 source cells x 44 target cells x 3 seeds (52,272 per-seed rows,
17,424 after seed aggregation) with the SPEC 1.1 names and a known structure:

    Δ(m, s, t, seed) = regime mean + model + source cell + target cell
                       + [MT-CL] (donor(source language) + recipient(target language)
                                  + distance_slope * family_distance(source language, target language))
                       + base_slope * (base score in pp - 50) + cell noise + seed noise

Everything random comes from one `numpy.random.Generator(rng_seed)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import paper
from analysis.tidy import make_tidy

_CLUSTERS = {"fr": "Romance", "es": "Romance", "pt": "Romance", "it": "Romance", "de": "Germanic", "en": "Germanic",
             "hi": "Indo-Aryan", "bn": "Indo-Aryan", "ar": "Semitic", "id": "Austronesian", "zh": "Sino-Tibetan"}
_SUPER = {"Romance": "Indo-European", "Germanic": "Indo-European", "Indo-Aryan": "Indo-European",
          "Semitic": "Afro-Asiatic", "Austronesian": "Austronesian", "Sino-Tibetan": "Sino-Tibetan"}


def family_distance(a: str, b: str) -> float:
    """The code's fallback family distance (SPEC 1.3): 0 same, 0.2 same cluster, 0.5 same family, else 1."""
    if a == b:
        return 0.0
    if _CLUSTERS[a] == _CLUSTERS[b]:
        return 0.2
    return 0.5 if _SUPER[_CLUSTERS[a]] == _SUPER[_CLUSTERS[b]] else 1.0


@dataclass(frozen=True)
class PlantedEffects:
    """The structure `simulate_paper` plants, in pp (SDs are of normal draws, per level)."""

    regime_means: dict = field(default_factory=lambda: {"MT-ML": 2.0, "MT-CL": 1.25, "CT-ML": 0.8, "CT-CL": 0.78})
    model_sd: float = 0.4
    source_sd: float = 0.6
    target_sd: float = 1.0
    donor: dict = field(default_factory=lambda: {"en": 1.5, "id": -1.0})  # MT-CL only, keyed on source language
    recipient: dict = field(default_factory=lambda: {"es": 1.5, "bn": -1.2})  # MT-CL only, keyed on target language
    distance_slope: float = -1.0  # MT-CL only: pp per unit of `family_distance`
    base_slope: float = -0.02  # pp of Δ per pp of base score: weak baselines gain more (SPEC 2)
    cell_sd: float = 1.0  # per (model, source, target), shared by the seeds
    seed_sd: float = 0.5  # per seed


@dataclass
class Simulation:
    """A simulated study: raw `results` (the input of `make_tidy`) and the planted `truth`."""

    results: pd.DataFrame
    truth: dict

    def tidy(self) -> pd.DataFrame:
        """The validated per-seed tidy table (`analysis.make_tidy(results)`)."""
        return make_tidy(self.results)


def simulate_paper(*, effects: PlantedEffects | None = None, seeds=paper.SEEDS, rng_seed: int = 0) -> Simulation:
    """Simulate the paper's grid (9 models x 44 x 44 cells x seeds) with planted effects.

    Args:
        effects: what to plant (defaults: `PlantedEffects()`).
        seeds: experiment seeds (SPEC 1.1: 17, 42, 101).
        rng_seed: seed of the random generator.

    Returns:
        A `Simulation`; `truth` holds `model`, `source`, `target` (effects per level), `donor`,
        `recipient` (per language) and `distance` (the planted language distance matrix).
    """
    eff = effects or PlantedEffects()
    rng = np.random.default_rng(rng_seed)
    models = [m[0] for m in paper.MODELS]
    cells = [(t, lang) for t in paper.TASKS for lang in paper.LANGUAGES]
    langs = list(paper.LANGUAGES)
    nm, nc, ns = len(models), len(cells), len(seeds)
    model_eff = rng.normal(0, eff.model_sd, nm)
    source_eff = rng.normal(0, eff.source_sd, nc)
    target_eff = rng.normal(0, eff.target_sd, nc)
    donor = np.array([eff.donor.get(lang, 0.0) for lang in langs])
    recipient = np.array([eff.recipient.get(lang, 0.0) for lang in langs])
    distance = np.array([[family_distance(a, b) for b in langs] for a in langs])
    size = np.array([m[2] for m in paper.MODELS])
    # Base score per (model, target, seed): grows with size, varies by target, a little by seed.
    base = 0.3 + 0.05 * np.log2(size)[:, None, None] + rng.normal(0, 0.05, (1, nc, 1)) + rng.normal(0, 0.01, (nm, nc, ns))
    base = np.clip(base, 0.05, 0.85)

    m, s, t, k = (a.ravel() for a in np.meshgrid(np.arange(nm), np.arange(nc), np.arange(nc), np.arange(ns), indexing="ij"))
    st, sl = np.array([c[0] for c in cells])[s], np.array([c[1] for c in cells])[s]
    tt, tl = np.array([c[0] for c in cells])[t], np.array([c[1] for c in cells])[t]
    same_task, same_lang = st == tt, sl == tl
    regime = np.where(same_task, np.where(same_lang, "MT-ML", "MT-CL"), np.where(same_lang, "CT-ML", "CT-CL"))
    mt_cl = regime == "MT-CL"
    li = {lang: i for i, lang in enumerate(langs)}
    sli, tli = np.array([li[x] for x in sl]), np.array([li[x] for x in tl])
    base_mkt = base[m, t, k]
    cell_noise = rng.normal(0, eff.cell_sd, (nm, nc, nc))[m, s, t]
    delta = (
        np.array([eff.regime_means[r] for r in ("MT-ML", "MT-CL", "CT-ML", "CT-CL")])[
            np.select([regime == "MT-ML", mt_cl, regime == "CT-ML"], [0, 1, 2], 3)]
        + model_eff[m] + source_eff[s] + target_eff[t]
        + mt_cl * (donor[sli] + recipient[tli] + eff.distance_slope * distance[sli, tli])
        + eff.base_slope * (100 * base_mkt - 50)
        + cell_noise + rng.normal(0, eff.seed_sd, m.size)
    )
    results = pd.DataFrame({
        "model": np.array(models)[m], "seed": np.array(seeds)[k], "recipe": "lora", "lora_r": "32",
        "suite": "paper", "source_task": st, "source_language": sl, "target_task": tt, "target_language": tl,
        "model_family": np.array([x[1] for x in paper.MODELS])[m], "model_size_b": size[m],
        "base_score": base_mkt, "ft_score": base_mkt + delta / 100.0,
        "base_acc": base_mkt - 0.02, "ft_acc": base_mkt - 0.02 + (delta + rng.normal(0, 0.3, m.size)) / 100.0,
    })
    truth = {
        "model": pd.Series(model_eff, index=models),
        "source": pd.Series(source_eff, index=[f"{a}.{b}" for a, b in cells]),
        "target": pd.Series(target_eff, index=[f"{a}.{b}" for a, b in cells]),
        "donor": pd.Series(donor, index=langs),
        "recipient": pd.Series(recipient, index=langs),
        "distance": pd.DataFrame(distance, index=langs, columns=langs),
    }
    return Simulation(results=results, truth=truth)


def grid_frame(
    delta,
    *,
    models: dict[str, tuple[str, float]] | None = None,
    tasks=("t1", "t2", "t3", "t4"),
    languages=("a", "b", "c", "d"),
    base_score=0.5,
    recipe: str = "lora",
    lora_r: str = "32",
) -> pd.DataFrame:
    """A seed-aggregated-style tidy table over a full grid with Δ given by a function (for planted tests).

    Args:
        delta: function of the key table (columns `model, model_family, model_size_b, source_task,
            source_language, target_task, target_language, regime`) returning Δ in pp per row.
        models: name -> (family, size in B); default two models of one family.
        tasks, languages: the grid.
        base_score: a number, or a function of the key table like `delta` (fractions).

    Returns:
        Every column of `analysis.TIDY_COLUMNS` plus `delta_std`, `delta_se`, `n_seeds` (seed = 0).
    """
    models = models or {"m1": ("f", 1.0), "m2": ("f", 3.0)}
    cells = [(t, lang) for t in tasks for lang in languages]
    keys = pd.DataFrame(
        [(m, fam, size, *s, *t) for m, (fam, size) in models.items() for s in cells for t in cells],
        columns=["model", "model_family", "model_size_b", "source_task", "source_language", "target_task",
                 "target_language"],
    )
    same_task = keys["source_task"] == keys["target_task"]
    same_lang = keys["source_language"] == keys["target_language"]
    keys["regime"] = np.where(same_task, np.where(same_lang, "MT-ML", "MT-CL"), np.where(same_lang, "CT-ML", "CT-CL"))
    values = np.asarray(delta(keys), dtype=float) * np.ones(len(keys))
    base = np.asarray(base_score(keys) if callable(base_score) else base_score, dtype=float) * np.ones(len(keys))
    return keys.assign(
        seed=0, recipe=recipe, lora_r=lora_r, suite="test", base_score=base, ft_score=base + values / 100.0,
        delta=values, delta_acc=values, delta_std=0.0, delta_se=0.0, n_seeds=1,
    )
