"""Roles, Pareto, matrices and MT-CL breakdowns (SPEC 1.10-1.13): planted effects are recovered."""

import numpy as np
import pytest

from analysis import breakdowns, matrices, pareto, roles
from analysis.simulate import grid_frame

MODELS = {"m1": ("fa", 1.0), "m2": ("fa", 3.0), "m3": ("fb", 7.0), "m4": ("fb", 1.5)}


def only_mt_cl(keys, pp=2.0):
    return np.where(keys["regime"] == "MT-CL", pp, 0.0)


def test_mt_cl_effect_appears_only_in_mt_cl_statistics():
    frame = grid_frame(only_mt_cl, models=MODELS)
    lang = roles.language_roles(frame)
    assert np.allclose(lang["donor"], 2.0) and np.allclose(lang["recipient"], 2.0)
    assert np.allclose(lang[["donor_se", "recipient_se"]], 0.0) and (lang["n_models"] == 4).all()
    assert np.allclose(roles.task_roles(frame)[["donor", "recipient"]], 0.0)
    lm = matrices.language_transfer_matrix(frame)
    off_diagonal = ~np.eye(len(lm), dtype=bool)
    assert np.allclose(lm.to_numpy()[off_diagonal], 2.0) and np.isnan(np.diag(lm.to_numpy())).all()
    tm = matrices.task_transfer_matrix(frame)
    assert np.allclose(tm.to_numpy()[~np.eye(len(tm), dtype=bool)], 0.0)
    table = pareto.pareto_on_off(frame)
    assert np.allclose(table["on_task"], 2.0) and np.allclose(table["off_task"], 0.0)
    assert (table["off_task_harm_rate"] == 0).all() and len(table) == 4 * 16
    summary = pareto.on_off_task_summary(frame).set_index(["source_task", "scope"])
    assert np.allclose(summary.xs("on_task", level="scope")["mean_delta"], 2.0)
    assert np.allclose(summary.xs("off_task", level="scope")["mean_delta"], 0.0)
    breakdown = breakdowns.mt_cl_breakdown(frame)
    assert np.allclose(breakdown["mean_delta"], 2.0) and (breakdown["win_rate"] == 100).all()


def test_planted_donor_and_recipient_languages_rank_first():
    rng = np.random.default_rng(0)

    def delta(keys):
        mt_cl = keys["regime"] == "MT-CL"
        planted = 3.0 * (keys["source_language"] == "c") + 2.0 * (keys["target_language"] == "a")
        return np.where(mt_cl, planted, 5.0) + rng.normal(0, 0.3, len(keys))

    frame = grid_frame(delta, models=MODELS)
    lang = roles.language_roles(frame)
    assert lang.sort_values("donor", ascending=False)["language"].iloc[0] == "c"
    assert lang.sort_values("recipient", ascending=False)["language"].iloc[0] == "a"
    # SE = sd of the per-model means / sqrt(n_models), computed directly
    rows = frame[(frame["regime"] == "MT-CL") & (frame["source_language"] == "b")]
    per_model = rows.groupby("model")["delta"].mean()
    row = lang.set_index("language").loc["b"]
    assert row["donor"] == pytest.approx(per_model.mean())
    assert row["donor_se"] == pytest.approx(per_model.std(ddof=1) / 2.0)


def test_planted_task_roles_in_ct_ml():
    frame = grid_frame(lambda k: np.where(k["regime"] == "CT-ML", 4.0 * (k["source_task"] == "t2")
                                          + 1.0 * (k["target_task"] == "t4"), -3.0), models=MODELS)
    tasks = roles.task_roles(frame).set_index("task")
    assert tasks["donor"].idxmax() == "t2" and tasks.loc["t2", "donor"] == pytest.approx(4.0 + 1.0 / 3)
    assert tasks["recipient"].idxmax() == "t4" and tasks.loc["t4", "recipient"] == pytest.approx(1.0 + 4.0 / 3)


def test_family_roles_average_member_languages_with_any_mapping():
    strength = {"a": 1.0, "b": 3.0, "c": -2.0, "d": 0.0}
    frame = grid_frame(lambda k: np.where(k["regime"] == "MT-CL", k["source_language"].map(strength), 0.0), models=MODELS)
    families = {"a": "North", "b": "North", "c": "South", "d": "Isolate"}
    table = roles.family_roles(frame, families=families).set_index("family")
    lang = roles.language_roles(frame).set_index("language")
    assert table.loc["North", "donor"] == pytest.approx(lang.loc[["a", "b"], "donor"].mean())
    assert table.loc["North", "languages"] == "a,b" and table.loc["North", "n_languages"] == 2
    with pytest.raises(ValueError, match="does not map languages \\['d'\\]"):
        roles.family_roles(frame, families={"a": "x", "b": "x", "c": "y"})


@pytest.mark.parametrize("sign, rho", [(1.0, 1.0), (-1.0, -1.0)])
def test_curated_vs_translated_spearman(sign, rho):
    strength = {"a": 1.0, "b": 3.0, "c": -2.0, "d": 0.5}
    construction = {"t1": "human", "t2": "machine", "t3": "machine", "t4": "machine"}

    def delta(keys):
        factor = np.where(keys["target_task"] == "t1", 1.0, sign)
        return np.where(keys["regime"] == "MT-CL", factor * keys["source_language"].map(strength), 0.0)

    frame = grid_frame(delta, models=MODELS)
    table = roles.curated_vs_translated_rho(frame, construction=construction).set_index("score")
    assert table.loc["donor", "spearman_rho"] == pytest.approx(rho) and table.loc["donor", "n_languages"] == 4
    per_language = roles.curated_vs_translated_roles(frame, construction=construction).set_index("language")
    assert per_language.loc["b", "donor_curated"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="does not map tasks \\['t4'\\]"):
        roles.curated_vs_translated_rho(frame, construction={"t1": "human", "t2": "machine", "t3": "machine"})


def test_pareto_keeps_sources_at_the_thresholds_only():
    frame = grid_frame(lambda k: np.where(k["regime"] == "MT-CL", 1.0, -2.0), models={"m": ("f", 1.0)})
    on = (frame["regime"] == "MT-CL")
    off = frame["regime"].isin(["CT-ML", "CT-CL"])
    src = lambda lang: (frame["source_task"] == "t1") & (frame["source_language"] == lang)  # noqa: E731
    # t1.a: 3 of 3 MT-CL rows, 12 off-task: kept; t1.b: 2 MT-CL rows: dropped;
    # t1.c: 5 off-task rows (of 12): kept; t1.d: 4 off-task rows: dropped.
    drop = (src("b") & on & (frame["target_language"] == "a"))
    drop |= src("c") & off & ~frame.index.isin(frame[src("c") & off].index[:5])
    drop |= src("d") & off & ~frame.index.isin(frame[src("d") & off].index[:4])
    table = pareto.pareto_on_off(frame[~drop]).set_index(["source_task", "source_language"])
    assert ("t1", "a") in table.index and ("t1", "c") in table.index
    assert ("t1", "b") not in table.index and ("t1", "d") not in table.index
    assert table.loc[("t1", "c"), "n_off"] == 5 and table.loc[("t1", "a"), "n_on"] == 3
    assert table.loc[("t1", "a"), "off_task_harm_rate"] == 100.0 and table.loc[("t1", "a"), "size_bucket"] == "S"
    fam = pareto.pareto_family_summary(frame)
    assert len(fam) == 4 and (fam["n_languages"] == 4).all()
    appendix = pareto.pareto_appendix_table(frame)
    assert list(appendix.columns) == ["model", "source_task", "source_language", "mt_cl_gain", "off_task_mean"]


def test_matrices_equal_direct_means_in_the_given_order():
    rng = np.random.default_rng(1)
    frame = grid_frame(lambda k: rng.normal(0, 1, len(k)), models=MODELS)
    order = ["t3", "t1", "t4", "t2"]
    tm = matrices.task_transfer_matrix(frame, order=order)
    assert list(tm.index) == order and list(tm.columns) == order
    rows = frame[(frame["regime"] == "CT-ML") & (frame["source_task"] == "t3") & (frame["target_task"] == "t2")]
    assert tm.loc["t3", "t2"] == pytest.approx(rows["delta"].mean())
    with pytest.raises(ValueError, match="order lacks"):
        matrices.task_transfer_matrix(frame, order=["t1", "t2"])


def test_mt_cl_breakdown_groups_and_construction():
    frame = grid_frame(lambda k: np.where(k["regime"] == "MT-CL", np.where(k["model_size_b"] >= 7, -1.0, 1.0), 0.0),
                       models=MODELS)
    table = breakdowns.mt_cl_breakdown(frame).set_index(["grouping", "group"])
    assert table.loc[("size_bucket", "L"), "harm_rate"] == 100.0 and table.loc[("size_bucket", "S"), "win_rate"] == 100.0
    assert table.loc[("size_bucket", "M"), "n"] == 48  # 16 sources x 3 same-task other-language targets
    assert table.loc[("model_family", "fb"), "mean_delta"] == pytest.approx(0.0)
    assert table.loc[("overall", "all"), "n"] == 4 * 48
    construction = {"t1": "human", "t2": "machine", "t3": "machine", "t4": "machine"}
    by = breakdowns.mt_cl_by_construction(frame, construction=construction).set_index("construction")
    assert list(by.index) == ["all", "human", "machine"] and by.loc["human", "n"] == 48


FUNCTIONS = [
    (roles.language_roles, {}), (roles.task_roles, {}), (pareto.pareto_on_off, {}), (pareto.on_off_task_summary, {}),
    (matrices.language_transfer_matrix, {}), (breakdowns.mt_cl_breakdown, {}),
]


@pytest.mark.parametrize("function, options", FUNCTIONS, ids=[f.__name__ for f, _ in FUNCTIONS])
def test_missing_columns_are_named(function, options):
    frame = grid_frame(only_mt_cl).drop(columns=["regime"])
    with pytest.raises(ValueError, match="lacks columns \\['regime'\\]"):
        function(frame, **options)
