"""The analysis report (issue 4 items 2-5, 7): files, sections, numbers, filters, planted structure."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

import analysis
from report_data import (
    CONSTRUCTION, DISTANCE, FAMILIES, cot_gains, planted_tidy, predictions_for, synthetic_results,
)
from transfergrid import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OPTIONS = report.ReportOptions(families=FAMILIES, construction=CONSTRUCTION, curated_task="t1", distances=DISTANCE,
                               n_boot=200)
FAST = replace(OPTIONS, min_models_mixedlm=99)  # MixedLM is what takes seconds


class _Page(HTMLParser):
    """Section ids and image sources of a report page."""

    def __init__(self):
        super().__init__()
        self.sections, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))


def parse_page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def assert_images_are_pngs(page: _Page) -> None:
    assert page.images
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    tidy = planted_tidy()
    options = replace(OPTIONS, cot=cot_gains(tidy))
    out = tmp_path_factory.mktemp("report")
    return tidy, out, report.build_report(tidy, out, options=options, predictions=predictions_for(tidy))


@pytest.mark.slow
def test_full_report_writes_every_table_figure_and_section(full_report):
    _, out, summary = full_report
    assert set(summary.skipped) == {"source_statistics"}  # needs the suite's items; this table is external
    optional = {"planted_recovery", "source_statistics", "source_statistics_regression", "typology_second"}
    assert set(report.TABLES) - optional <= set(summary.tables)
    for name in set(report.TABLES) - optional:
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0, name
    assert set(summary.figures) == set(report.FIGURES)
    assert all((out / "figures" / f"{name}.png").read_bytes().startswith(PNG_MAGIC) for name in report.FIGURES)
    assert pd.read_parquet(out / "tidy.parquet").shape[0] == summary.counts["n_rows"]
    page = parse_page((out / "report.html").read_text(encoding="utf-8"))
    assert page.sections == [s for s in report.SECTIONS if s != "planted"]
    assert_images_are_pngs(page)
    assert len(page.images) == len(report.FIGURES)


@pytest.mark.slow
def test_report_paragraphs_state_the_table_numbers(full_report):
    tidy, out, summary = full_report
    text = (out / "report.html").read_text(encoding="utf-8")
    regimes = pd.read_csv(out / "tables" / "regime_summary.csv").set_index("regime")
    pattern = r"(MT-ML|MT-CL|CT-ML|CT-CL|All transfer) mean Δ = ([+-]\d+\.\d+) pp over (\d+) cells \(win rate (\d+\.\d)%, harm rate (\d+\.\d)%\)\."
    found = {m[0]: m for m in re.findall(pattern, text)}
    assert set(found) == set(regimes.index)
    for name, (_, mean, n, win, harm) in found.items():
        row = regimes.loc[name]
        assert float(mean) == pytest.approx(row["mean_delta"], abs=0.005)
        assert int(n) == row["n"] and float(win) == pytest.approx(row["win_rate"], abs=0.05)
        assert float(harm) == pytest.approx(row["harm_rate"], abs=0.05)
    # and the table equals a direct pandas computation on the main grid
    main = analysis.aggregate_seeds(tidy[(tidy["recipe"] == "lora") & (tidy["lora_r"] == "32")])
    assert regimes.loc["MT-CL", "mean_delta"] == pytest.approx(main.loc[main["regime"] == "MT-CL", "delta"].mean(), abs=1e-9)
    roles = pd.read_csv(out / "tables" / "language_roles.csv")
    top = roles.loc[roles["donor"].idxmax()]
    assert f"Top donor language: {top['language']} (donor score {top['donor']:+.2f} pp)" in text
    assert summary.findings["top_donor_language"] == top["language"]
    assert summary.headline["regime/mt_cl/mean_delta"] == pytest.approx(regimes.loc["MT-CL", "mean_delta"])
    header = re.search(r"(\d+) runs, (\d+) cells .*?(\d+) models, (\d+) seeds", text)
    assert tuple(map(int, header.groups())) == tuple(summary.counts[k] for k in ("n_runs", "n_cells", "n_models", "n_seeds"))


@pytest.mark.slow
def test_report_recovers_planted_effects(full_report):
    _, out, summary = full_report
    typology = pd.read_csv(out / "tables" / "typology.csv")
    assert typology["spearman_rho"].iloc[0] < -0.8  # planted: MT-CL Δ falls with distance
    ablation = pd.read_csv(out / "tables" / "rank_ablation.csv")
    assert list(ablation["lora_r"].astype(str)) == ["8", "32"]
    variance = pd.read_csv(out / "tables" / "variance_nested.csv").set_index("subset")
    assert {"Overall", "MT-CL", "t1-involved", "translated-only"} <= set(variance.index)
    significance = pd.read_csv(out / "tables" / "significance.csv").set_index("regime")
    assert significance.loc["All transfer", "n"] > 0
    assert summary.headline["significance/all_transfer/sig_win_rate_ci"] >= 0


@pytest.mark.slow
def test_report_skips_what_does_not_apply_and_says_why(tmp_path):
    tidy = planted_tidy(models={"m1": ("fa", 1.0)}, seeds=(1,), ablation=False)
    summary = report.build_report(tidy, tmp_path, options=report.ReportOptions(significance=False))
    assert "1 model(s)" in summary.skipped["variance"]
    assert summary.skipped["typology"] == "no language distances known for this suite"
    assert summary.skipped["family_roles"] == "no language families known for this suite"
    assert "significance = false" in summary.skipped["significance"]
    assert "no rank-ablation runs" in summary.skipped["ablation"]
    assert summary.skipped["ft_vs_cot"] == "no chain-of-thought runs"
    for name in ("variance_nested", "typology", "rank_ablation", "significance"):
        assert not (tmp_path / "tables" / f"{name}.csv").exists()
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    page = parse_page(text)
    assert set(summary.skipped) <= set(page.sections)
    assert text.count("Skipped: ") == len(summary.skipped)
    assert_images_are_pngs(page)
    assert summary.counts == {"n_runs": 12 + 1, "n_cells": 144, "n_models": 1, "n_seeds": 1, "n_rows": 144}


def test_significance_uses_the_score_prediction_of_each_task():
    tidy = planted_tidy(models={"m1": ("fa", 1.0)}, seeds=(1,), ablation=False)
    predictions = predictions_for(tidy)
    run = tidy["evaluate_run_id"].iloc[0]
    predictions[run] = predictions[run].assign(predicted_norm=predictions[run]["gold"])  # acc_norm: all right
    base, finetuned = report.significance_inputs(tidy, predictions, norm_tasks=["t2"])
    mine = finetuned[(finetuned["source_task"] == tidy["source_task"].iloc[0])
                     & (finetuned["source_language"] == tidy["source_language"].iloc[0])]
    right = mine["predicted"] == mine["gold"]
    assert right[mine["task"] == "t2"].all() and not right[mine["task"] != "t2"].all()
    assert not base.duplicated(["model", "seed", "suite", "task", "language", "item_id"]).any()
    assert len(finetuned) == 12 * 12 * 20


def test_suite_options_know_the_paper_and_synthetic_suites():
    paper = report.suite_options("paper")
    assert paper.curated_task == "global_mmlu" and paper.construction["global_mmlu"] == "human"
    assert set(paper.distances["distance"]) >= {"syntactic", "genetic"}
    synthetic = report.suite_options("synthetic", significance=False)
    assert synthetic.planted is not None and not synthetic.significance
    assert set(synthetic.construction.values()) == {"synthetic"} and synthetic.curated_task is None
    assert report.suite_options("other") == report.ReportOptions()


def test_planted_recovery_finds_the_synthetic_structure():
    from transfergrid import synthetic

    truth = synthetic.ground_truth()
    tidy = analysis.make_tidy(synthetic_results(truth))
    rows = analysis.aggregate_seeds(tidy)
    table = report.planted_recovery(rows, truth).set_index("check")
    assert table["recovered"].all(), table
    assert table.loc["pair_transfer_vs_expected", "spearman_rho"] > 0.9
    assert table.loc["mt_cl_delta_vs_distance", "spearman_rho"] < 0
    # a table whose Δ ignores the planted structure is not "recovered"
    shuffled = rows.assign(delta=np.random.default_rng(0).permutation(rows["delta"].to_numpy()))
    assert not report.planted_recovery(shuffled, truth)["recovered"].all()


@pytest.mark.slow
def test_synthetic_suite_report_has_the_planted_section(tmp_path):
    from transfergrid import synthetic

    tidy = analysis.make_tidy(synthetic_results(synthetic.ground_truth()))
    summary = report.build_report(tidy, tmp_path, options=report.options_for(tidy, min_models_mixedlm=99))
    assert "planted" not in summary.skipped
    assert summary.headline["planted/recovered_share"] == 1.0
    assert summary.headline["typology/planted/spearman_rho"] < 0
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "planted" in parse_page(text).sections and "NOT recovered" not in text
    # source-dataset statistics (SPEC 3): lexical overlap with the target predicts transfer positively
    assert "source_statistics" not in summary.skipped
    assert summary.headline["source_statistics/lexical_overlap/coef"] > 0


def _log_store(uri: str) -> str:
    """A store with 2 models x 2 seeds x 2 recipes/ranks x 4 sources: baselines and evaluate runs with predictions."""
    from transfergrid.grid import Cell
    from transfergrid.tracking import names, writer

    experiment = writer.ensure_experiment(uri, names.DEFAULT_EXPERIMENT)
    cells = [Cell(t, lang) for t in ("t1", "t2") for lang in ("a", "b")]
    items = pd.DataFrame([(c.task, c.language, str(i), i % 4) for c in cells for i in range(8)],
                         columns=["task", "language", "item_id", "gold"])
    for m, model in enumerate(("m1", "m2")):
        for seed in (1, 2):
            common = {names.MODEL: model, names.MODEL_FAMILY: "fam", names.MODEL_SIZE_B: 1.0 + m, names.SEED: seed,
                      names.BENCHMARK_SUITE: "test"}
            with writer.open_run(uri, experiment, kind="baseline", tags={**common, names.RUN_KEY: f"b{model}{seed}"},
                                 run_name="baseline") as run:
                run.log_cell_metrics({c: {"score": 0.3, "acc": 0.3} for c in cells})
                run.log_dataframe(items.assign(predicted=0, predicted_norm=0), names.PREDICTIONS_ARTIFACT)
                baseline_id = run.run_id
            for recipe, rank in (("lora", 32), ("lora", 8)):
                for source in cells:
                    tags = {**common, names.RECIPE: recipe, names.LORA_R: rank, names.SOURCE_TASK: source.task,
                            names.SOURCE_LANGUAGE: source.language, names.BASELINE_RUN_ID: baseline_id,
                            names.RUN_KEY: f"e{model}{seed}{rank}{source}"}
                    with writer.open_run(uri, experiment, kind="evaluate", tags=tags, run_name="evaluate") as run:
                        run.log_cell_metrics({c: {"score": 0.35 + 0.01 * seed, "acc": 0.35} for c in cells})
                        run.log_dataframe(items.assign(predicted=items["gold"], predicted_norm=0), names.PREDICTIONS_ARTIFACT)
    return experiment


@pytest.mark.slow
def test_analysis_filters_select_the_right_runs_and_log_the_report(tracking_uri):
    import mlflow

    from transfergrid import analysis_run
    from transfergrid.config import AnalysisConfig
    from transfergrid.tracking import reader

    experiment = _log_store(tracking_uri)
    cases = [  # (config fields, expected models, seeds, ranks, evaluate runs)
        ({"models": ["m1"], "seeds": [1, 2], "lora_ranks": [32]}, {"m1"}, {1, 2}, {"32"}, 8),
        ({"seeds": [2], "recipes": ["lora"], "lora_ranks": [8, 32]}, {"m1", "m2"}, {2}, {"8", "32"}, 16),
        ({"models": ["m1", "m2"], "filter": "tags.seed = '1'", "lora_ranks": [8]}, {"m1", "m2"}, {1}, {"8"}, 8),
    ]
    for fields, models, seeds, ranks, n_evaluate in cases:
        run_id = analysis_run.run_analysis(AnalysisConfig(tracking_uri=tracking_uri, **fields), experiment_id=experiment)
        tidy = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tidy.parquet"))
        assert set(tidy["model"]) == models and set(tidy["seed"]) == seeds and set(tidy["lora_r"]) == ranks, fields
        metrics = reader.get_run(tracking_uri, run_id).data.metrics
        assert metrics["n_runs"] == n_evaluate + len(models) * len(seeds)
        assert metrics["n_cells"] == len(models) * len(ranks) * 4 * 4 and metrics["n_seeds"] == len(seeds)
        assert metrics["regime/mt_ml/n"] == len(models) * 4
    artifacts = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"report.html", "tidy.parquet", "tables", "figures", "config.yaml"} <= artifacts
    tables = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "tables")}
    assert {"tables/regime_summary.csv", "tables/significance.csv"} <= tables
    significance = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables/significance.csv"))
    assert significance.set_index("regime").loc["All transfer", "sig_win_rate_mcnemar"] > 50  # every item right vs 1/4
    assert analysis_run.run_analysis(AnalysisConfig(tracking_uri=tracking_uri, **cases[-1][0]), experiment_id=experiment) == run_id


def test_selection_filter_puts_single_values_in_mlflow_and_lists_in_pandas():
    from transfergrid.tracking import reader

    clauses, rest = reader.selection_filter({"model": ["m1"], "seed": [1, 2], "recipe": [], "lora_r": [32, 32]})
    assert clauses == ["tags.model = 'm1'", "tags.lora_r = '32'"]
    assert rest == {"seed": {"1", "2"}}


@pytest.mark.slow
def test_report_reads_like_an_appendix_without_internal_references(full_report):
    """Headings say what each analysis is, citations name the studies, a contents list, findings before tables
    and figures, a stylesheet; no internal document or issue number anywhere on the page."""
    _, out, summary = full_report
    text = (out / "report.html").read_text(encoding="utf-8")
    visible = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"SPEC|ARCHITECTURE|STACK|STYLE\.md|[Ii]ssue \d|item \d", visible), \
        re.search(r".{60}(SPEC|ARCHITECTURE|STACK|[Ii]ssue \d|item \d).{60}", visible)
    contents = re.search(r"<nav class='contents'><h2>Contents</h2><ol>(.*?)</ol></nav>", text).group(1)
    sections = re.findall(r"<section id='(\w+)'>(.*?)</section>", text, re.S)
    assert re.findall(r"href='#(\w+)'", contents) == [sid for sid, _ in sections]
    assert "Donors and Recipients" in text and "Disentangling Linguistic Relatedness" in text and "Latent Traits" in text
    for number, (sid, body) in enumerate(sections, 1):
        assert body.startswith(f"<h2>{number}. {report.SECTIONS[sid]}</h2>"), sid
        if sid in summary.skipped:
            continue
        finding, table = body.index("<p>"), body.find("<table")
        figure = body.find("<figure")
        assert finding < (table if table >= 0 else len(body)) and (figure < 0 or table < figure), sid
    assert "figcaption>Figure 1. " in text and "<style>" in text and "th{" in text
