"""Consistency Index (SPEC 1.15) and typological correlation (SPEC 1.16): planted effects are recovered."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import consistency, roles, typology
from analysis.simulate import grid_frame

TASKS, LANGS = ("t1", "t2", "t3", "t4"), ("a", "b", "c", "d", "e")


def recipient_score(keys):
    """A ranking of recipients shared by every source: by target language, task and their pair."""
    return keys["target_language"].map(dict(zip(LANGS, range(5)))) + 10 * keys["target_task"].map(dict(zip(TASKS, range(4))))


def test_identical_rankings_give_ci_1_and_reversed_give_minus_1():
    models = {"m1": ("f", 1.0), "m2": ("g", 3.0)}
    same = grid_frame(lambda k: recipient_score(k) * (1 + k["model"].eq("m2")), models=models, tasks=TASKS, languages=LANGS)
    summary = consistency.consistency_summary(same).set_index("regime")
    assert np.allclose(summary[["median", "q1", "q3"]], 1.0)
    assert summary["n_sources"].to_dict() == {"MT-CL": 20, "CT-ML": 20, "CT-CL": 20}
    flipped = grid_frame(lambda k: recipient_score(k) * np.where(k["model"] == "m2", -1, 1), models=models, tasks=TASKS,
                         languages=LANGS)
    per_source = consistency.consistency_by_source(flipped)
    assert np.allclose(per_source["ci"], -1.0) and (per_source["n_pairs"] == 1).all()
    counts = per_source.groupby("regime")["n_recipients"].first().to_dict()
    assert counts == {"MT-CL": 4, "CT-ML": 3, "CT-CL": 12}


def test_family_and_size_raters_average_before_ranking():
    # Within each family the two sizes disagree by +-noise that cancels in the family mean; across
    # families the mean rankings agree. Sizes: each size has one model per family, opposite noise too.
    models = {"f1-small": ("F1", 1.0), "f1-big": ("F1", 8.0), "f2-small": ("F2", 1.0), "f2-big": ("F2", 8.0)}
    rng = np.random.default_rng(0)
    noise = pd.Series(rng.normal(0, 50, 4 * 5), index=[f"{t}.{lang}" for t in TASKS for lang in LANGS])

    def delta(keys):
        target_noise = (keys["target_task"] + "." + keys["target_language"]).map(noise).to_numpy()
        sign = np.where(keys["model"].isin(["f1-small", "f2-big"]), 1.0, -1.0)
        return recipient_score(keys).to_numpy() + sign * target_noise

    frame = grid_frame(delta, models=models, tasks=TASKS, languages=LANGS)
    assert np.allclose(consistency.consistency_summary(frame, raters="family")["median"], 1.0)
    assert np.allclose(consistency.consistency_summary(frame, raters="size")["median"], 1.0)
    assert (consistency.consistency_summary(frame, raters="model")["median"] < 0.9).all()
    by_family = consistency.consistency_by_source(frame, raters="family")
    assert (by_family["n_raters"] == 2).all()


def test_consistency_thresholds_on_recipients_and_raters():
    small = grid_frame(recipient_score, models={"m1": ("f", 1.0), "m2": ("f", 2.0)}, tasks=("t1", "t2", "t3"),
                       languages=("a", "b", "c"))
    summary = consistency.consistency_summary(small).set_index("regime")
    assert summary.loc["CT-ML", "n_sources"] == 0 and np.isnan(summary.loc["CT-ML", "median"])  # 2 target tasks < 3
    one = grid_frame(recipient_score, models={"m1": ("f", 1.0)}, tasks=TASKS, languages=LANGS)
    assert consistency.consistency_by_source(one).empty  # one rater < 2
    with pytest.raises(ValueError, match="unknown raters 'team'"):
        consistency.consistency_by_source(one, raters="team")


def test_tau_b_matrix_matches_scipy_with_ties_and_missing_values():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (9, 4)).astype(float)
    x[rng.random(x.shape) < 0.2] = np.nan
    tau = consistency.kendall_tau_b_matrix(x)
    for a in range(4):
        for b in range(4):
            shared = np.isfinite(x[:, a]) & np.isfinite(x[:, b])
            expected = stats.kendalltau(x[shared, a], x[shared, b]).statistic if shared.sum() >= 3 else np.nan
            assert tau[a, b] == pytest.approx(expected, nan_ok=True)


DISTANCE = pd.DataFrame(
    [[0, 0.2, 0.5, 0.9, 1.0], [0.2, 0, 0.4, 0.8, 0.9], [0.5, 0.4, 0, 0.6, 0.7], [0.9, 0.8, 0.6, 0, 0.3], [1.0, 0.9, 0.7, 0.3, 0]],
    index=list(LANGS), columns=list(LANGS),
)


def test_planted_distance_effect_gives_negative_rho():
    rng = np.random.default_rng(0)

    def delta(keys):
        d = np.array([DISTANCE.loc[s, t] for s, t in zip(keys["source_language"], keys["target_language"])])
        return np.where(keys["regime"] == "MT-CL", 3.0 - 2.5 * d, 0.0) + rng.normal(0, 0.3, len(keys))

    frame = grid_frame(delta, tasks=TASKS, languages=LANGS)
    long = typology.distances_to_long(DISTANCE, name="planted")
    unrelated = long.assign(distance="shuffled", value=rng.permutation(long["value"].to_numpy()))
    table = typology.typology_correlation(frame, pd.concat([long, unrelated])).set_index("distance")
    assert table.loc["planted", "n"] == 20 and table.loc["planted", "spearman_rho"] < -0.8
    assert table.loc["planted", "pearson_r"] < -0.8 and table.loc["planted", "spearman_p"] < 1e-3
    assert abs(table.loc["shuffled", "spearman_rho"]) < table.loc["planted", "spearman_rho"] * -1
    # a square matrix works as well; a pair given in one order only is used for both; NaN is dropped
    square = typology.typology_correlation(frame, DISTANCE)
    assert square["spearman_rho"].iloc[0] == pytest.approx(table.loc["planted", "spearman_rho"])
    one_order = long[long["lang_a"] < long["lang_b"]].copy()
    one_order.loc[one_order.index[0], "value"] = np.nan
    assert typology.typology_correlation(frame, one_order)["n"].iloc[0] == 18
    with pytest.raises(ValueError, match="lacks columns"):
        typology.typology_correlation(frame, long.drop(columns=["value"]))


def test_urielplus_distances_file():
    table = typology.load_urielplus_distances()
    assert set(table["source"]) == {"URIEL+ 1.3.2"}
    assert set(table["distance"]) == {"syntactic", "phonological", "inventory", "genetic", "geographic"}
    assert (table.groupby("distance").size() == 110).all()
    assert table["value"].isna().groupby(table["distance"]).sum().to_dict()["phonological"] == 38  # it, pt: no data
    square = table[table["distance"] == "syntactic"].pivot(index="lang_a", columns="lang_b", values="value")
    assert np.allclose(square.fillna(0), square.T.fillna(0))


def test_lang2vec_distances_are_the_paper_suites_default():
    """The paper's typology: lang2vec 1.1.2 cosine distances (syntax/phonology/inventory_knn), 110 ordered pairs
    each, used by default by the paper suite; URIEL+ gives genetic/geographic there and a second table."""
    from analysis import paper
    from transfergrid import report

    table = typology.load_lang2vec_distances()
    languages = set(paper.LANGUAGES)
    for name, feature_set in [("syntactic", "syntax_knn"), ("phonological", "phonology_knn"), ("inventory", "inventory_knn")]:
        part = table[table["distance"] == name]
        assert len(part) == 110 and set(part["source"]) == {f"lang2vec 1.1.2 {feature_set}"}
        assert set(zip(part["lang_a"], part["lang_b"])) == {(a, b) for a in languages for b in languages if a != b}
        square = part.pivot(index="lang_a", columns="lang_b", values="value")
        assert part["value"].between(0, 1).all() and np.allclose(square, square.T, equal_nan=True)
    options = report.suite_options("paper")
    pd.testing.assert_frame_equal(options.distances[options.distances["source"].str.startswith("lang2vec")].reset_index(drop=True), table)
    assert set(options.distances.groupby("distance")["source"].first().str.split().str[0]) == {"lang2vec", "URIEL+"}
    assert options.distances.groupby("distance")["source"].first()[["genetic", "geographic"]].str.startswith("URIEL+").all()
    assert set(options.second_distances["source"]) == {"URIEL+ 1.3.2"}


def test_synthetic_suite_ground_truth_is_recovered():
    from transfergrid import synthetic

    truth = synthetic.ground_truth()
    expected = truth["expected_transfer"].stack().rename("delta").rename_axis(["source", "target"]).reset_index()
    cells = lambda col: expected[col].str.rsplit(".", n=1, expand=True)  # noqa: E731
    expected[["source_task", "source_language"]] = cells("source")
    expected[["target_task", "target_language"]] = cells("target")
    frame = grid_frame(lambda k: k.merge(expected, how="left", on=["source_task", "source_language", "target_task",
                                                                   "target_language"])["delta"].to_numpy(),
                       models={"ideal": ("tiny", 0.0001)}, tasks=tuple(synthetic.load_suite().tasks), languages=synthetic.LANGUAGES)
    lang = roles.language_roles(frame).set_index("language")
    assert np.allclose(lang["donor"], truth["language_roles"]["donor"].loc[lang.index])
    assert np.allclose(lang["recipient"], truth["language_roles"]["recipient"].loc[lang.index])
    rho = typology.typology_correlation(frame, truth["language_distance"])["spearman_rho"].iloc[0]
    assert rho < -0.5
    fam = roles.family_roles(frame, families=synthetic.LANGUAGE_FAMILIES)
    assert set(fam["family"]) == set(synthetic.LANGUAGE_FAMILIES.values())
