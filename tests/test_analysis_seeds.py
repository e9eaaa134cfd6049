"""Seed studies (SPEC 2, 3): baseline regression, CoT comparison, PCA/FA, source statistics."""

import numpy as np
import pandas as pd
import pytest

from analysis import seeds_studies as ss
from analysis.simulate import grid_frame

MODELS = {f"m{i}": ("f", float(i + 1)) for i in range(5)}
TASKS, LANGS = ("t1", "t2", "t3", "t4"), ("a", "b", "c", "d", "e")


def test_regression_recovers_a_planted_baseline_slope():
    rng = np.random.default_rng(0)
    base = lambda k: 0.3 + 0.05 * k["model_size_b"] + 0.02 * k["target_language"].map(dict(zip(LANGS, range(5))))  # noqa: E731
    frame = grid_frame(lambda k: 8.0 - 0.15 * 100 * base(k) + rng.normal(0, 0.2, len(k)), models=MODELS,
                       tasks=TASKS, languages=LANGS, base_score=base)
    per_model = ss.baseline_gain_regression(frame, by="model")
    assert len(per_model) == 5 and per_model["slope"].to_numpy() == pytest.approx(-0.15, abs=0.03)
    assert per_model["intercept"].to_numpy() == pytest.approx(8.0, abs=1.5) and (per_model["n"] == 380).all()
    per_target = ss.baseline_gain_regression(frame, by="target")
    assert len(per_target) == 20 and per_target["slope"].median() == pytest.approx(-0.15, abs=0.02)
    pooled = ss.baseline_gain_regression(frame, by=None)
    assert pooled["slope"].iloc[0] == pytest.approx(-0.15, abs=0.01) and pooled["r2"].iloc[0] > 0.9
    with pytest.raises(ValueError, match="unknown by"):
        ss.baseline_gain_regression(frame, by="seed")


def test_ft_vs_cot_gain_per_model_and_absent_cot():
    rng = np.random.default_rng(1)
    target_gain = {lang: g for lang, g in zip(LANGS, [3.0, 1.0, -1.0, 0.5, 2.0])}
    frame = grid_frame(lambda k: k["target_language"].map(target_gain) + rng.normal(0, 0.1, len(k)), models=MODELS,
                       tasks=TASKS, languages=LANGS)
    cot = pd.DataFrame([{"model": m, "target_task": t, "target_language": lang, "cot_delta": 0.5 * target_gain[lang]}
                        for m in MODELS for t in TASKS for lang in LANGS])
    table = ss.ft_vs_cot_gain(frame, cot)
    assert len(table) == 5 and (table["n_targets"] == 20).all() and (table["pearson_r"] > 0.95).all()
    assert table["cot_gain"].to_numpy() == pytest.approx(0.5 * np.mean(list(target_gain.values())))
    cot_scaled = cot.assign(cot_delta=cot["cot_delta"] * cot["model"].str[1:].astype(float))  # m4 gains most from CoT
    models = ss.ft_cot_model_correlation(frame.assign(delta=frame["delta"] * frame["model_size_b"]), cot_scaled).iloc[0]
    assert models["n_models"] == 5 and models["spearman_rho"] == pytest.approx(1.0)
    assert "need at least 3" in ss.ft_cot_model_correlation(frame, None)["note"].iloc[0]
    empty = ss.ft_vs_cot_gain(frame, None)
    assert empty["n_targets"].isna().all() and empty["note"].iloc[0] == "no chain-of-thought runs"


def latent_frame(seed=0):
    """Δ(source, target) = 4 a_s b_t + noise: one latent trait (a: donor strength, b: recipient loading)."""
    rng = np.random.default_rng(seed)
    cells = [f"{t}.{lang}" for t in TASKS for lang in LANGS]
    a, b = dict(zip(cells, rng.normal(0, 1, 20))), dict(zip(cells, rng.normal(0, 1, 20)))

    def delta(k):
        s, t = k["source_task"] + "." + k["source_language"], k["target_task"] + "." + k["target_language"]
        return 4 * s.map(a).to_numpy() * t.map(b).to_numpy() + rng.normal(0, 0.3, len(k))

    return grid_frame(delta, models=MODELS, tasks=TASKS, languages=LANGS), pd.Series(a), pd.Series(b)


def test_pca_finds_a_planted_latent_factor():
    frame, a, b = latent_frame()
    explained = ss.pca_explained_variance(frame)
    assert explained["explained_ratio"].iloc[0] > 0.8 and explained["cumulative_ratio"].iloc[-1] == pytest.approx(1.0)
    loadings = ss.pca_loadings(frame, n_components=2).set_index("target")
    assert abs(np.corrcoef(loadings["PC1"], b.loc[loadings.index])[0, 1]) > 0.95
    assert np.sum(loadings["PC1"] ** 2) == pytest.approx(1.0)
    scores = ss.pca_scores(frame, n_components=2).set_index("source")
    assert abs(np.corrcoef(scores["PC1"], a.loc[scores.index])[0, 1]) > 0.95
    matrix = ss.source_target_matrix(frame)
    assert matrix.shape == (20, 20) and np.isnan(np.diag(matrix.to_numpy())).all()


def test_factor_analysis_finds_the_planted_factor():
    frame, _, b = latent_frame()
    loadings = ss.factor_loadings(frame, n_factors=1, rotation=None, seed=0).set_index("target")
    assert abs(np.corrcoef(loadings["factor_1"], b.loc[loadings.index])[0, 1]) > 0.95
    assert (loadings["communality"] >= 0).all() and (loadings["uniqueness"] > 0).all()
    explained = ss.factor_explained_variance(frame, n_factors=2, seed=0)
    assert explained["explained_ratio"].iloc[0] > 0.7 and explained["explained_ratio"].sum() <= 1.0


def test_source_statistics_regression_recovers_planted_slopes():
    rng = np.random.default_rng(2)
    sources = pd.DataFrame([(t, lang) for t in TASKS for lang in LANGS], columns=["source_task", "source_language"])
    sources["label_entropy"] = rng.uniform(1.5, 2.0, len(sources))
    sources["prompt_length"] = rng.uniform(20, 80, len(sources))
    entropy = sources.set_index(["source_task", "source_language"])["label_entropy"]
    z = (entropy - entropy.mean()) / entropy.std(ddof=0)

    def delta(k):
        return 1.0 + 2.0 * pd.MultiIndex.from_frame(k[["source_task", "source_language"]]).map(z).to_numpy() \
            + rng.normal(0, 0.2, len(k))

    frame = grid_frame(delta, models=MODELS, tasks=TASKS, languages=LANGS)
    table = ss.source_statistics_regression(frame, sources).set_index("term")
    assert table.loc["label_entropy", "coef"] == pytest.approx(2.0, abs=0.1)
    assert abs(table.loc["prompt_length", "coef"]) < 0.2 and table.loc["label_entropy", "p_value"] < 1e-6
    assert table.loc["const", "coef"] == pytest.approx(1.0, abs=0.1) and table["n"].iloc[0] == 20 * 19
    # pair-level predictor (keyed on source and target) joins on both
    overlap = frame[["source_task", "source_language", "target_task", "target_language"]].drop_duplicates()
    overlap = overlap.assign(lexical_overlap=rng.uniform(0, 1, len(overlap)))
    pair = ss.source_statistics_regression(frame, overlap).set_index("term")
    assert abs(pair.loc["lexical_overlap", "coef"]) < 0.5
    with pytest.raises(ValueError, match="constant predictors \\['flat'\\]"):
        ss.source_statistics_regression(frame, sources.assign(flat=1.0))


def test_source_dataset_statistics_and_lexical_overlap():
    items = pd.DataFrame({
        "task": ["t1"] * 4 + ["t2"] * 2, "language": ["a"] * 4 + ["b"] * 2,
        "prompt": ["one two", "one three", "two two", "one", "x y", "x z"],
        "answer": ["A", "B", "C", "D", "A", "A"], "label": ["A", "B", "C", "D", "A", "A"],
    })
    stats = ss.source_dataset_statistics(items).set_index("source_task")
    assert stats.loc["t1", "label_entropy"] == pytest.approx(2.0) and stats.loc["t2", "label_entropy"] == pytest.approx(0.0)
    assert stats.loc["t1", "prompt_length"] == pytest.approx(7 / 4) and stats.loc["t2", "label_imbalance"] == 1.0
    overlap = ss.lexical_overlap(items, items).set_index(["source_task", "target_task"])["lexical_overlap"]
    assert overlap.loc[("t1", "t1")] == 1.0 and overlap.loc[("t1", "t2")] == pytest.approx(1 / 10)  # "a" shared of 10 words
