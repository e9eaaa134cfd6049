"""The paper-shaped simulated study: its shape (SPEC 1.1) and its planted effects are recovered."""

import subprocess
import sys

import numpy as np
import pytest

import analysis
from analysis import paper, roles, typology
from analysis.simulate import PlantedEffects, simulate_paper


@pytest.fixture(scope="module")
def study():
    sim = simulate_paper(rng_seed=0)
    return sim, analysis.aggregate_seeds(sim.tidy())


def test_paper_shape_and_regime_counts(study):
    sim, agg = study
    assert len(sim.results) == 9 * 44 * 44 * 3 == 52_272 and len(agg) == 17_424
    assert agg["regime"].value_counts().to_dict() == paper.REGIME_COUNTS
    assert (agg["n_seeds"] == 3).all() and set(agg["model"]) == {m[0] for m in paper.MODELS}
    assert set(agg["target_task"]) == set(paper.TASKS) and set(agg["source_language"]) == set(paper.LANGUAGES)
    summary = analysis.regime_summary(agg).set_index("regime")
    assert summary.loc["All transfer", "n"] == 17_028


def test_planted_donor_recipient_and_distance_are_recovered(study):
    sim, agg = study
    lang = roles.language_roles(agg).set_index("language")
    assert lang["donor"].idxmax() == "en" and lang["recipient"].idxmax() == "es"
    assert lang["donor"].idxmin() == "id" and lang["recipient"].idxmin() == "bn"
    rho = typology.typology_correlation(agg, sim.truth["distance"])["spearman_rho"].iloc[0]
    assert rho < -0.3


def test_simulation_is_deterministic_and_effects_configurable():
    a = simulate_paper(rng_seed=3, seeds=(17,), effects=PlantedEffects(donor={}, recipient={}))
    b = simulate_paper(rng_seed=3, seeds=(17,), effects=PlantedEffects(donor={}, recipient={}))
    assert a.results.equals(b.results) and len(a.results) == 9 * 44 * 44
    assert np.allclose(a.truth["donor"], 0.0)


def test_analysis_modules_import_neither_mlflow_nor_torch():
    modules = "ablation breakdowns consistency figures matrices pareto roles seeds_studies significance simulate typology variance"
    code = (f"import sys, importlib\nfor m in {modules.split()!r}: importlib.import_module('analysis.' + m)\n"
            "print(sorted(m for m in ('mlflow', 'torch', 'transformers', 'peft', 'trl', 'urielplus') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
