"""Variance decomposition (SPEC 1.14 and the crossed alternative): a planted split is recovered."""

import numpy as np
import pandas as pd
import pytest

from analysis import variance
from analysis.simulate import grid_frame

TASKS, LANGS = ("t1", "t2", "t3", "t4"), ("a", "b", "c", "d")
PLANTED = {"model": 1.0, "source": 2.0, "target": 4.0, "residual": 1.0}  # shares 12.5 / 25 / 50 / 12.5 %


def exact(rng, n, var):
    """n draws with sample variance exactly `var` (so the test checks the fit, not sampling luck).

    Their mean is drawn as a mean of n draws is, N(0, var / n): centring them exactly would hide the
    between-model variance the nested fit expects from within-model effects.
    """
    x = rng.standard_normal(n)
    return (x - x.mean()) / x.std(ddof=1) * np.sqrt(var) + rng.normal(0, np.sqrt(var / n))


def planted_frame(*, nested: bool, n_models: int = 8, seed: int = 0):
    """Δ = model + source + target + residual; source/target effects shared by models (crossed) or per model (nested)."""
    rng = np.random.default_rng(seed)
    models = {f"m{i}": ("f", 1.0) for i in range(n_models)}
    cells = [f"{t}.{lang}" for t in TASKS for lang in LANGS]
    model_effect = dict(zip(models, exact(rng, n_models, PLANTED["model"])))
    draws = {}
    for part in ("source", "target"):
        if nested:
            draws[part] = {(m, c): v for m in models for c, v in zip(cells, exact(rng, len(cells), PLANTED[part]))}
        else:
            shared = dict(zip(cells, exact(rng, len(cells), PLANTED[part])))
            draws[part] = {(m, c): shared[c] for m in models for c in cells}

    def delta(keys):
        source = keys["source_task"] + "." + keys["source_language"]
        target = keys["target_task"] + "." + keys["target_language"]
        return (keys["model"].map(model_effect).to_numpy()
                + np.array([draws["source"][k] for k in zip(keys["model"], source)])
                + np.array([draws["target"][k] for k in zip(keys["model"], target)])
                + exact(rng, len(keys), PLANTED["residual"]))

    return grid_frame(delta, models=models, tasks=TASKS, languages=LANGS)


def shares(table, subset="Overall"):
    row = table.set_index("subset").loc[subset]
    return np.array([row[f"share_{c}"] for c in PLANTED])


def test_crossed_split_is_recovered_by_both_decompositions():
    frame = planted_frame(nested=False)
    expected = 100 * np.array(list(PLANTED.values())) / sum(PLANTED.values())
    crossed = variance.crossed_variance_decomposition(frame, subsets=["Overall", "CT-CL"])
    assert shares(crossed) == pytest.approx(expected, abs=2.0)
    assert shares(crossed, "CT-CL") == pytest.approx(expected, abs=2.5)
    assert crossed["converged"].all() and list(crossed["subset"]) == ["Overall", "CT-CL"]
    assert crossed.set_index("subset").loc["Overall", "n"] == 8 * (256 - 16)
    assert shares(crossed).sum() == pytest.approx(100.0)
    nested = variance.variance_decomposition(frame, subsets=["Overall"])
    # SPEC 1.14's nesting reads part of the between-model variance as within-model source/target
    # effects: it expects (σ_source² + σ_target²) / 16 cells of it, so σ_model² ≈ 1 - 6/16.
    model = PLANTED["model"] - (PLANTED["source"] + PLANTED["target"]) / 16
    implied = np.array([model, *list(PLANTED.values())[1:]])
    assert shares(nested) == pytest.approx(100 * implied / implied.sum(), abs=2.0)


def test_within_model_effects_are_source_and_target_only_in_the_papers_nesting():
    frame = planted_frame(nested=True, n_models=6, seed=1)
    nested = variance.variance_decomposition(frame, subsets=["Overall"]).iloc[0]
    for part in ("source", "target", "residual"):
        assert nested[f"var_{part}"] == pytest.approx(PLANTED[part], rel=0.15)
    assert 0 < nested["var_model"] < 2  # from 6 models the between-model variance is loose
    # The crossed model sees no shared source/target effect: the model x cell effects become residual.
    crossed = shares(variance.crossed_variance_decomposition(frame, subsets=["Overall"]))
    assert crossed[1] < 6 and crossed[2] < 12 and crossed[3] > 55


def test_subsets_small_ones_skipped_and_duplicates_refused():
    frame = planted_frame(nested=False, n_models=2)
    table = variance.variance_decomposition(frame, curated_task="t1", min_rows=200).set_index("subset")
    assert list(table.index) == ["Overall", "MT-CL", "CT-ML", "CT-CL", "t1-involved", "translated-only"]
    assert table.loc["CT-ML", "note"] == "skipped: n < 200" and np.isnan(table.loc["CT-ML", "share_model"])
    involved = frame[frame["regime"] != "MT-ML"]
    involved = involved[(involved["source_task"] == "t1") | (involved["target_task"] == "t1")]
    assert table.loc["t1-involved", "n"] == len(involved)
    assert table.loc["t1-involved", "n"] + table.loc["translated-only", "n"] == table.loc["Overall", "n"]
    with pytest.raises(ValueError, match="duplicate \\(model, source, target\\) rows"):
        variance.variance_decomposition(pd.concat([frame, frame.iloc[:5]]))
    with pytest.raises(ValueError, match="unknown subsets \\['all'\\]"):
        variance.variance_decomposition(frame, subsets=["all"])
    with pytest.raises(ValueError, match="lacks columns \\['model'\\]"):
        variance.crossed_variance_decomposition(frame.drop(columns=["model"]))
