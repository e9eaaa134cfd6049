"""The analysis report: every analysis that applies to a tidy table, as files and one HTML page.

`build_report(tidy, out_dir, options=...)` runs the `analysis` package's statistics (the paper's analyses,
its appendix ablations, the two seed studies and per-cell significance) on a validated tidy table and writes::

    out_dir/
      report.html          self-contained: contents list, per section the study it follows, findings, tables, figures
      tidy.parquet         the per-seed tidy table it read
      tables/<name>.csv    one CSV per table (names in `TABLES`; skipped analyses write none)
      figures/<name>.png   one PNG per figure (names in `FIGURES`)

An analysis that does not apply to the data (no ablation runs, one model for MixedLM, no
distances...) is skipped and its section states why. Suite-specific knowledge (language families,
construction types, curated task, task order, distances, planted truth) comes from `ReportOptions`;
`suite_options(name)` picks it per benchmark suite. No MLflow here: `analysis_run.run_analysis` logs the files.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

import analysis
from analysis import ablation, breakdowns, consistency, figures, matrices, pareto, roles, seeds_studies, typology, variance
from analysis import significance as sig
from transfergrid.grid import TRANSFER_REGIMES

logger = logging.getLogger(__name__)

# Section id -> heading (what the analysis is); the ids are stable anchors of report.html (tests and links rely on them).
SECTIONS = {
    "regimes": "Transfer by regime: mean Δ, win and harm rates",
    "language_roles": "Which languages give and which receive: donor and recipient scores",
    "family_roles": "Donor and recipient scores by language family",
    "task_roles": "Which tasks give and which receive: task donor and recipient scores",
    "curated_vs_translated": "Curated vs machine-translated targets: do the language roles agree?",
    "pareto": "On-task gain vs off-task harm of each source",
    "matrices": "Transfer matrices: task to task and language to language",
    "mt_cl_breakdown": "Where same-task cross-lingual transfer harms: MT-CL breakdowns",
    "variance": "How much model, source and target explain: mixed-effects variance decomposition",
    "consistency": "Do models, families and sizes agree on transfer? The Consistency Index",
    "typology": "Transfer and the typological distance between languages",
    "ablation": "LoRA rank ablation and LoRA vs full fine-tuning",
    "baseline_gain": "Stronger base model, smaller gain? Baseline score vs Δ",
    "ft_vs_cot": "Fine-tuning gains vs chain-of-thought prompting gains",
    "latent_traits": "Latent traits of transfer: principal components and factor analysis",
    "source_statistics": "Source-dataset statistics vs transfer",
    "significance": "Which per-cell changes are significant: paired bootstrap and McNemar tests",
    "planted": "Is the planted structure recovered? (synthetic suite)",
}
# The studies the analyses follow, cited under each heading (names, never internal documents).
PAPER = ('"Donors and Recipients: On Asymmetric Transfer Across Tasks and Languages with Parameter-Efficient '
         'Fine-Tuning" (Dymkiewicz et al., arXiv 2511.13368)')
SEED_RELATEDNESS = ('"Disentangling Linguistic Relatedness from Task Alignment in Cross-Lingual Transfer" '
                    '(Haj Ahmed, Zhang and Grissom, arXiv 2606.19346)')
SEED_LATENT = ('"Latent Traits and Cross-Task Transfer: Deconstructing Dataset Interactions in LLM Fine-tuning" '
               '(Krishna et al., arXiv 2509.13624)')
CITATIONS = {
    **{sid: f"Follows {PAPER}." for sid in ("regimes", "language_roles", "family_roles", "task_roles",
                                            "curated_vs_translated", "pareto", "matrices", "mt_cl_breakdown",
                                            "variance", "consistency", "typology")},
    "ablation": f"Follows the appendix of {PAPER}.",
    "baseline_gain": f"Follows {SEED_RELATEDNESS}.",
    "ft_vs_cot": f"Follows {SEED_RELATEDNESS}.",
    "latent_traits": f"Follows {SEED_LATENT}.",
    "source_statistics": f"Follows {SEED_LATENT}.",
    "significance": f"Adds per-item tests to the threshold win and harm rates of {PAPER}.",
    "planted": "Checks this project's synthetic suite: measured transfer against the structure planted in it.",
}
FIGURE_CAPTIONS = {
    "regime_bars": "Mean Δ per transfer regime, with win and harm rates and the number of cells.",
    "language_roles": "Language donor score (mean Δ as source) against recipient score (mean Δ as target).",
    "task_roles": "Task donor score against task recipient score.",
    "pareto": "Each source's on-task gain against its off-task mean Δ.",
    "pareto_families": "On-task gain against off-task Δ, per language family.",
    "task_matrix": "Mean Δ from source task (rows) to target task (columns).",
    "language_matrix": "Mean Δ from source language (rows) to target language (columns), same task.",
}
TABLES = (
    "regime_summary", "global_uplift", "language_roles", "family_roles", "task_roles", "curated_vs_translated",
    "pareto_on_off", "pareto_family_summary", "on_off_task_summary", "task_matrix", "language_matrix",
    "mt_cl_breakdown", "mt_cl_by_construction", "variance_nested", "variance_crossed", "consistency_model",
    "consistency_family", "consistency_size", "typology", "typology_second", "rank_ablation", "lora_vs_full", "baseline_gain",
    "ft_vs_cot", "pca_explained", "pca_loadings", "factor_loadings", "source_statistics", "source_statistics_regression",
    "significance", "planted_recovery",
)
FIGURES = ("regime_bars", "language_roles", "task_roles", "pareto", "pareto_families", "task_matrix", "language_matrix")
SMALL_STORE_RUNS = 200  # significance defaults to on up to this many evaluate runs (downloads stay cheap)
_HTML_ROWS = 60  # longer tables are cut in the page (the CSV holds every row)
# lm-eval semantics of the paper's tasks: acc_norm where defined (ARC, HellaSwag), else acc.
PAPER_NORM_TASKS = ("arc_challenge", "hellaswag")


@dataclass(frozen=True)
class ReportOptions:
    """Suite-specific knowledge and switches of `build_report`.

    Attributes:
        families: language -> family (SPEC 1.3); None skips the family table.
        construction: target task -> construction label (`human`/`machine`; synthetic: `synthetic`).
        curated_task: the human-translated task of the variance subsets (paper: `global_mmlu`).
        task_order: axis order of the task matrix (paper: `analysis.paper.TASK_ORDER`).
        distances: language distances, long (`distance, lang_a, lang_b, value[, source]`) or a square matrix.
        second_distances: another source's distances, correlated into a second table (paper: URIEL+).
        norm_tasks: tasks scored by acc_norm, whose per-item prediction is `predicted_norm`.
        planted: the synthetic suite's `ground_truth()`; adds the "planted structure" section.
        significance: compute per-cell significance when predictions are given.
        min_models_mixedlm: least models for the MixedLM decompositions (a group needs >= 2 levels).
        main_recipe: the recipe of the main grid (the others enter only the ablation section).
        main_rank: the main grid's LoRA rank; None takes the most frequent one.
        cot: per (model, target_task, target_language) chain-of-thought gain `cot_delta` (pp), if any.
        filter_text: how the runs were selected, shown in the header.
        tie_tolerance: |Δ| (pp) below it is a tie with 0 in the regime section's tie-aware rates.
        n_boot, seed: paired-bootstrap resamples and random seed.
    """

    families: Mapping[str, str] | None = None
    construction: Mapping[str, str] | None = None
    curated_task: str | None = None
    task_order: Sequence[str] | None = None
    distances: pd.DataFrame | None = None
    second_distances: pd.DataFrame | None = None
    norm_tasks: Sequence[str] = ()
    planted: Mapping | None = None
    significance: bool = True
    min_models_mixedlm: int = 2
    main_recipe: str = "lora"
    main_rank: str | None = None
    cot: pd.DataFrame | None = None
    source_items: pd.DataFrame | None = None  # task, language, split, prompt, answer, label (see suite_items)
    filter_text: str = ""
    tie_tolerance: float = 1e-9
    n_boot: int = 2000
    seed: int = 0


@dataclass
class ReportSummary:
    """What `build_report` wrote and found.

    Attributes:
        out_dir: the report directory.
        tables, figures: name -> path of every file written.
        skipped: section id -> why it was skipped.
        headline: metric name -> value (logged on the analysis run).
        findings: short text findings (top donor/recipient language), logged as tags.
        counts: n_runs, n_cells (seed-aggregated model x source x target results), n_models, n_seeds, n_rows.
    """

    out_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    headline: dict[str, float] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def html(self) -> Path:
        """The report page."""
        return self.out_dir / "report.html"


def suite_options(suite: str | None, **overrides) -> ReportOptions:
    """The report options of a benchmark suite: `paper`, `synthetic`, or generic for any other name.

    Args:
        suite: the `benchmark_suite` found in the tidy table.
        overrides: fields of `ReportOptions` to set on top (e.g. `significance`, `filter_text`).
    """
    if suite == "paper":
        from analysis import paper

        base = ReportOptions(families=paper.LANGUAGE_FAMILIES, construction=paper.CONSTRUCTION,
                             curated_task=paper.CURATED_TASK, task_order=paper.TASK_ORDER,
                             distances=typology.load_paper_distances(), second_distances=typology.load_urielplus_distances(),
                             norm_tasks=PAPER_NORM_TASKS)
    elif suite == "synthetic":
        from transfergrid import synthetic

        suite_obj, truth = synthetic.load_suite(), synthetic.ground_truth()
        base = ReportOptions(families=synthetic.LANGUAGE_FAMILIES,
                             construction={t: "synthetic" for t in suite_obj.tasks}, task_order=list(suite_obj.tasks),
                             distances=typology.distances_to_long(truth["language_distance"], name="planted"),
                             norm_tasks=[t for t, spec in suite_obj.tasks.items() if spec.has_acc_norm], planted=truth,
                             source_items=suite_items(suite_obj))
    else:
        base = ReportOptions()
    return replace(base, **overrides)


def suite_items(suite) -> pd.DataFrame:
    """Every train and test item of a suite as rendered for training: the source-dataset statistics input (SPEC 3).

    Returns:
        One row per item: `task, language, split, prompt, answer` (the gold option text), `label` (gold index).
    """
    from transfergrid.formats import render_prompt
    from transfergrid.grid import Cell

    rows = [
        {"task": task, "language": language, "split": split, "prompt": render_prompt(item, spec.train_format),
         "answer": item.choices[item.gold], "label": item.gold}
        for task, spec in suite.tasks.items()
        for language in spec.languages
        for split in ("train", "test")
        for item in suite.items(Cell(task, language), split)
    ]
    return pd.DataFrame(rows)


def options_for(tidy: pd.DataFrame, **overrides) -> ReportOptions:
    """`suite_options` of the one suite in `tidy` (generic options when it holds several)."""
    suites = sorted(set(tidy["suite"].dropna().astype(str)))
    return suite_options(suites[0] if len(suites) == 1 else None, **overrides)


@dataclass
class _Section:
    id: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    skipped: str = ""


class _Builder:
    """Collects files, paragraphs and headline metrics while the analyses run."""

    def __init__(self, out_dir: Path):
        self.summary = ReportSummary(out_dir=out_dir)
        self.sections: dict[str, _Section] = {}
        self.frames: dict[str, pd.DataFrame] = {}

    def section(self, sid: str) -> _Section:
        return self.sections.setdefault(sid, _Section(sid))

    def table(self, sid: str, name: str, frame: pd.DataFrame, *, index: bool = False) -> pd.DataFrame:
        path = self.summary.out_dir / "tables" / f"{name}.csv"
        frame.to_csv(path, index=index)
        self.summary.tables[name], self.frames[name] = path, (frame.reset_index() if index else frame)
        self.section(sid).tables.append(name)
        return frame

    def figure(self, sid: str, name: str, plot: Callable, *args, **kwargs) -> None:
        path = plot(*args, self.summary.out_dir / "figures" / f"{name}.png", **kwargs)
        self.summary.figures[name] = Path(path)
        self.section(sid).figures.append(name)

    def say(self, sid: str, text: str) -> None:
        self.section(sid).paragraphs.append(text)

    def skip(self, sid: str, reason: str) -> None:
        logger.debug("report section %s skipped: %s", sid, reason)
        self.section(sid).skipped = reason
        self.summary.skipped[sid] = reason


def _num(value, digits: int = 2, sign: bool = True) -> str:
    """A number for a paragraph: fixed digits, explicit sign, `n/a` for NaN."""
    if value is None or not np.isfinite(float(value)):
        return "n/a"
    return f"{float(value):{'+' if sign else ''}.{digits}f}"


def _slug(text: str) -> str:
    return str(text).lower().replace("-", "_").replace(" ", "_")


def _stats_sentence(label: str, row: Mapping) -> str:
    """`<label> mean Δ = +x pp over n cells (win rate y%, harm rate z%)`: the form tests parse."""
    return (f"{label} mean Δ = {_num(row['mean_delta'])} pp over {int(row['n'])} cells "
            f"(win rate {_num(row['win_rate'], 1, False)}%, harm rate {_num(row['harm_rate'], 1, False)}%)")


def _regimes(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Regime table, global uplift overall and per model, bar figure (SPEC 1.9)."""
    tolerance = opts.tie_tolerance
    summary = b.table("regimes", "regime_summary", analysis.regime_summary(rows, tie_tolerance=tolerance))
    per_model = [{"model": "all", **summary.iloc[-1].drop("regime").to_dict()}]
    for model, part in rows.groupby("model", sort=True):
        per_model.append({"model": model, **analysis.regime_summary(part, tie_tolerance=tolerance).iloc[-1].drop("regime").to_dict()})
    b.table("regimes", "global_uplift", pd.DataFrame(per_model))
    b.figure("regimes", "regime_bars", figures.plot_regime_bars, summary)
    for _, row in summary.iterrows():
        b.say("regimes", _stats_sentence(row["regime"], row) + ".")
        for column in ("n", "mean_delta", "median_delta", "win_rate", "harm_rate", "win_rate_tie_aware",
                       "harm_rate_tie_aware", "ties"):
            b.summary.headline[f"regime/{_slug(row['regime'])}/{column}"] = float(row[column])
    b.say("regimes", f"Tie-aware rates (beyond the paper; |Δ| < {tolerance:g} pp counts as 0 and |Δ + 1| < "
          f"{tolerance:g} as -1 pp, so float residue neither wins nor escapes harm): " + "; ".join(
              f"{r['regime']} win rate {_num(r['win_rate_tie_aware'], 1, False)}%, harm rate "
              f"{_num(r['harm_rate_tie_aware'], 1, False)}% ({int(r['ties'])} ties at 0, "
              f"{int(r['harm_boundary_ties'])} at -1 pp)" for _, r in summary.iterrows()) + ".")


def _language_roles(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Language donor/recipient scores with the scatter, and family means (SPEC 1.10)."""
    table = roles.language_roles(rows).dropna(subset=["donor", "recipient"], how="all")
    if table.empty:
        return b.skip("language_roles", "no MT-CL rows (one language only?)")
    b.table("language_roles", "language_roles", table)
    b.figure("language_roles", "language_roles", figures.plot_donor_recipient, table)
    donor, recipient = table.loc[table["donor"].idxmax()], table.loc[table["recipient"].idxmax()]
    weakest = table.loc[table["donor"].idxmin()]
    b.say("language_roles", f"Top donor language: {donor['language']} (donor score {_num(donor['donor'])} pp); "
          f"top recipient language: {recipient['language']} (recipient score {_num(recipient['recipient'])} pp); "
          f"weakest donor: {weakest['language']} ({_num(weakest['donor'])} pp), over {len(table)} languages.")
    b.summary.findings.update(top_donor_language=str(donor["language"]), top_recipient_language=str(recipient["language"]))
    b.summary.headline.update({"roles/top_donor_score": float(donor["donor"]),
                               "roles/top_recipient_score": float(recipient["recipient"])})
    if not opts.families:
        return b.skip("family_roles", "no language families known for this suite")
    families = b.table("family_roles", "family_roles", roles.family_roles(rows, families=opts.families))
    best = families.loc[families["donor"].idxmax()]
    b.say("family_roles", f"Best donor family: {best['family']} (mean donor score {_num(best['donor'])} pp over "
          f"{int(best['n_languages'])} languages) of {len(families)} families.")


def _task_roles(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Task donor/recipient scores from CT-ML rows (SPEC 1.10)."""
    table = roles.task_roles(rows).dropna(subset=["donor", "recipient"], how="all")
    if table.empty:
        return b.skip("task_roles", "no CT-ML rows (one task only?)")
    b.table("task_roles", "task_roles", table)
    b.figure("task_roles", "task_roles", figures.plot_donor_recipient, table, key="task",
             title="Task roles (CT-ML): donor vs recipient")
    donor, recipient = table.loc[table["donor"].idxmax()], table.loc[table["recipient"].idxmax()]
    b.say("task_roles", f"Top donor task: {donor['task']} (donor score {_num(donor['donor'])} pp); top recipient "
          f"task: {recipient['task']} (recipient score {_num(recipient['recipient'])} pp), over {len(table)} tasks.")


def _curated(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Spearman ρ of curated-only vs translated-only language scores (SPEC 1.10)."""
    labels = {opts.construction.get(t) for t in set(rows["target_task"])} if opts.construction else set()
    if not {"human", "machine"} <= labels:
        return b.skip("curated_vs_translated", "the targets are not split into human- and machine-translated tasks")
    table = b.table("curated_vs_translated", "curated_vs_translated",
                    roles.curated_vs_translated_rho(rows, construction=opts.construction))
    donor = table.set_index("score").loc["donor"]
    b.say("curated_vs_translated", f"Donor scores on curated vs translated targets: Spearman ρ = "
          f"{_num(donor['spearman_rho'], 3)} (p = {_num(donor['p_value'], 3, False)}, {int(donor['n_languages'])} languages).")
    b.summary.headline["roles/curated_vs_translated_rho"] = float(donor["spearman_rho"])


def _pareto(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """On-task vs off-task per source, family summary and per-task summary (SPEC 1.11)."""
    table = pareto.pareto_on_off(rows)
    if table.empty:
        return b.skip("pareto", "no source has >= 3 MT-CL and >= 5 off-task rows")
    b.table("pareto", "pareto_on_off", table)
    b.table("pareto", "pareto_family_summary", pareto.pareto_family_summary(rows))
    b.table("pareto", "on_off_task_summary", pareto.on_off_task_summary(rows))
    b.figure("pareto", "pareto", figures.plot_pareto, table)
    b.figure("pareto", "pareto_families", figures.plot_pareto_families, table)
    trade = 100.0 * float(((table["on_task"] > 0) & (table["off_task"] < 0)).mean())
    b.say("pareto", f"Over {len(table)} sources, mean on-task (MT-CL) Δ = {_num(table['on_task'].mean())} pp and mean "
          f"off-task Δ = {_num(table['off_task'].mean())} pp; {_num(trade, 1, False)}% of sources gain on-task "
          "while losing off-task.")
    b.summary.headline["pareto/tradeoff_share"] = trade


def _matrix_sentence(matrix: pd.DataFrame, what: str) -> str:
    stacked = matrix.stack().dropna()
    if stacked.empty:
        return f"No off-diagonal {what} pairs."
    (src, tgt), best = stacked.idxmax(), stacked.max()
    (wsrc, wtgt), worst = stacked.idxmin(), stacked.min()
    return (f"Strongest {what} transfer: {src} → {tgt} ({_num(best)} pp); weakest: {wsrc} → {wtgt} "
            f"({_num(worst)} pp), over {len(stacked)} pairs.")


def _matrices(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Task->task (CT-ML) and language->language (MT-CL) heatmaps (SPEC 1.12)."""
    order = opts.task_order if opts.task_order and set(rows["source_task"]) <= set(opts.task_order) else None
    if order is not None:
        order = [t for t in order if t in set(rows["source_task"]) | set(rows["target_task"])]
    tasks = matrices.task_transfer_matrix(rows, order=order)
    languages = matrices.language_transfer_matrix(rows)
    b.table("matrices", "task_matrix", tasks, index=True)
    b.table("matrices", "language_matrix", languages, index=True)
    b.figure("matrices", "task_matrix", figures.plot_transfer_matrix, tasks, title="Task → task (CT-ML, mean Δ pp)")
    b.figure("matrices", "language_matrix", figures.plot_transfer_matrix, languages,
             title="Language → language (MT-CL, mean Δ pp)")
    b.say("matrices", _matrix_sentence(tasks, "task"))
    b.say("matrices", _matrix_sentence(languages, "language"))


def _breakdowns(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """MT-CL statistics by target language, task, size, family and construction (SPEC 1.13)."""
    table = b.table("mt_cl_breakdown", "mt_cl_breakdown", breakdowns.mt_cl_breakdown(rows))
    overall = table.iloc[0]
    if not overall["n"]:
        return b.skip("mt_cl_breakdown", "no MT-CL rows")
    by_language = table[table["grouping"] == "target_language"]
    worst = by_language.loc[by_language["harm_rate"].idxmax()]
    b.say("mt_cl_breakdown", _stats_sentence("MT-CL", overall) + f"; the most harmed target language is "
          f"{worst['group']} (harm rate {_num(worst['harm_rate'], 1, False)}% over {int(worst['n'])} cells).")
    if opts.construction and set(rows["target_task"]) <= set(opts.construction):
        b.table("mt_cl_breakdown", "mt_cl_by_construction",
                breakdowns.mt_cl_by_construction(rows, construction=opts.construction))


def _variance(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """MixedLM decompositions: the paper's nested one and the fully crossed one (SPEC 1.14)."""
    n_models = rows["model"].nunique()
    if n_models < opts.min_models_mixedlm:
        return b.skip("variance", f"{n_models} model(s): MixedLM needs at least {opts.min_models_mixedlm}")
    curated = opts.curated_task if opts.curated_task in set(rows["source_task"]) else None
    for name, fit in (("variance_nested", variance.variance_decomposition),
                      ("variance_crossed", variance.crossed_variance_decomposition)):
        table = b.table("variance", name, fit(rows, curated_task=curated))
        overall = table.set_index("subset").loc["Overall"]
        if not np.isfinite(overall.get("share_model", np.nan)):
            b.say("variance", f"{name}: Overall not fitted ({overall['note']}).")
            continue
        shares = {c: float(overall[f"share_{c}"]) for c in ("model", "source", "target", "residual")}
        b.say("variance", f"{name.replace('variance_', '').capitalize()} decomposition of transfer Δ "
              f"({int(overall['n'])} rows): model {_num(shares['model'], 1, False)}%, source "
              f"{_num(shares['source'], 1, False)}%, target {_num(shares['target'], 1, False)}%, residual "
              f"{_num(shares['residual'], 1, False)}%.")
        b.summary.headline.update({f"{name.replace('_', '/')}/share_{c}": v for c, v in shares.items()})


def _consistency(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Consistency Index with model, family and size raters (SPEC 1.15)."""
    for raters in ("model", "family", "size"):
        table = b.table("consistency", f"consistency_{raters}", consistency.consistency_summary(rows, raters=raters))
        if not table["n_sources"].any():
            b.say("consistency", f"{raters.capitalize()} raters: no source has >= 2 raters and >= 3 recipients.")
            continue
        parts = [f"{r['regime']} median CI = {_num(r['median'], 3)} ({int(r['n_sources'])} sources)"
                 for _, r in table.iterrows() if r["n_sources"]]
        b.say("consistency", f"{raters.capitalize()} raters: " + "; ".join(parts) + ".")
        b.summary.headline.update({f"consistency/{raters}/{_slug(r['regime'])}/median": float(r["median"])
                                   for _, r in table.iterrows() if r["n_sources"]})


def _typology(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Spearman ρ of MT-CL pair means with each language distance (SPEC 1.16)."""
    if opts.distances is None:
        return b.skip("typology", "no language distances known for this suite")
    table = b.table("typology", "typology", typology.typology_correlation(rows, opts.distances))
    for _, row in table.iterrows():
        b.say("typology", _typology_sentence(row))
        b.summary.headline[f"typology/{_slug(row['distance'])}/spearman_rho"] = float(row["spearman_rho"])
    if opts.second_distances is not None:
        second = b.table("typology", "typology_second", typology.typology_correlation(rows, opts.second_distances))
        b.say("typology", "The same Δ against a second source of distances (table typology_second): "
              + " ".join(_typology_sentence(row) for _, row in second.iterrows()))


def _typology_sentence(row: Mapping) -> str:
    source = f" ({row['source']})" if row.get("source") else ""
    return (f"MT-CL mean Δ vs {row['distance']} distance{source}: Spearman ρ = {_num(row['spearman_rho'], 3)} "
            f"(p = {_num(row['spearman_p'], 3, False)}, {int(row['n'])} language pairs).")


def _ablation(b: _Builder, agg: pd.DataFrame, opts: ReportOptions, main_rank: str) -> None:
    """Rank ablation and LoRA vs full on every recipe and rank (SPEC 1.17, 1.18)."""
    ranks = ablation.rank_ablation_summary(agg, main_rank=main_rank, recipe=opts.main_recipe)
    full = ablation.lora_vs_full(agg, lora_rank=main_rank, lora_recipe=opts.main_recipe)
    notes = [t["note"].iloc[0] for t in (ranks, full) if t["note"].iloc[0]]
    if len(notes) == 2:
        return b.skip("ablation", "; ".join(notes))
    if not ranks["note"].iloc[0]:
        b.table("ablation", "rank_ablation", ranks)
        parts = [f"r={r['lora_r']}: mean Δ {_num(r['mean_delta'])} pp, harm rate {_num(r['harm_rate'], 1, False)}%"
                 for _, r in ranks.iterrows()]
        b.say("ablation", f"Rank ablation on {int(ranks['n'].iloc[0])} shared cells: " + "; ".join(parts) + ".")
    if not full["note"].iloc[0]:
        row = b.table("ablation", "lora_vs_full", full).iloc[0]
        b.say("ablation", f"LoRA r={main_rank} vs full fine-tuning over {int(row['n'])} cells: Pearson r = "
              f"{_num(row['pearson_r'], 3)}, sign agreement {_num(row['sign_agreement'], 1, False)}%, mean "
              f"difference {_num(row['mean_diff'])} pp.")
    for note in notes:
        b.say("ablation", f"Not available: {note}.")


def _baseline_gain(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Regression of Δ on the base score per model and pooled (SPEC 2)."""
    per_model = seeds_studies.baseline_gain_regression(rows, by="model")
    pooled = seeds_studies.baseline_gain_regression(rows, by=None).assign(model="pooled")
    table = b.table("baseline_gain", "baseline_gain", pd.concat([pooled, per_model], ignore_index=True))
    row = table.iloc[0]
    b.say("baseline_gain", f"Pooled over {int(row['n'])} transfer cells, Δ changes by {_num(row['slope'], 4)} pp per pp "
          f"of base score (SE {_num(row['slope_se'], 4, False)}, R² = {_num(row['r2'], 3, False)}); negative means "
          "weak baselines gain more.")
    b.summary.headline["baseline_gain/slope"] = float(row["slope"])
    if opts.cot is None or opts.cot.empty:
        return b.skip("ft_vs_cot", "no chain-of-thought runs")
    cot = b.table("ft_vs_cot", "ft_vs_cot", seeds_studies.ft_vs_cot_gain(rows, opts.cot))
    b.say("ft_vs_cot", f"Fine-tuning vs CoT gains over {len(cot)} models: mean FT gain {_num(cot['ft_gain'].mean())} pp, "
          f"mean CoT gain {_num(cot['cot_gain'].mean())} pp.")


def _latent(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """PCA and factor analysis of the source x target Δ matrix (SPEC 3)."""
    matrix = seeds_studies.source_target_matrix(rows)
    if min(matrix.shape) < 3:
        return b.skip("latent_traits", f"the source x target matrix is {matrix.shape[0]} x {matrix.shape[1]}: need 3 x 3")
    explained = b.table("latent_traits", "pca_explained", seeds_studies.pca_explained_variance(rows))
    b.table("latent_traits", "pca_loadings", seeds_studies.pca_loadings(rows))
    b.table("latent_traits", "factor_loadings", seeds_studies.factor_loadings(rows, seed=opts.seed))
    first = explained.iloc[0]
    b.say("latent_traits", f"PC1 explains {_num(100 * first['explained_ratio'], 1, False)}% of the variance of the "
          f"{matrix.shape[0]} x {matrix.shape[1]} source × target Δ matrix; PC1-PC{min(3, len(explained))} together "
          f"{_num(100 * explained['cumulative_ratio'].iloc[min(3, len(explained)) - 1], 1, False)}%.")
    b.summary.headline["latent/pc1_explained"] = float(first["explained_ratio"])


def _source_statistics(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    """Source-dataset statistics (label entropy, prompt/answer length, lexical overlap) vs transfer (SPEC 3)."""
    if opts.source_items is None or opts.source_items.empty:
        return b.skip("source_statistics", "the suite's items are not available to the analysis (synthetic suite only)")
    items = opts.source_items
    train, test = items[items["split"] == "train"], items[items["split"] == "test"]
    stats = b.table("source_statistics", "source_statistics", seeds_studies.source_dataset_statistics(train))
    pairs = seeds_studies.lexical_overlap(train, test).merge(stats, on=["source_task", "source_language"])
    candidates = ("label_entropy", "label_imbalance", "prompt_length", "answer_length", "lexical_overlap")
    predictors = [c for c in candidates if pairs[c].nunique() > 1]
    constant = [c for c in candidates if c not in predictors]
    fit = b.table("source_statistics", "source_statistics_regression",
                  seeds_studies.source_statistics_regression(rows, pairs, predictors=predictors))
    terms = fit[fit["term"] != "const"]
    b.say("source_statistics", "Transfer Δ regressed on standardised source statistics over "
          f"{int(fit['n'].iloc[0])} (source, target) pairs, R² = {_num(fit['r2'].iloc[0], 3, False)}: "
          + "; ".join(f"{r.term} {_num(r.coef)} pp per SD (p = {r.p_value:.3g})" for r in terms.itertuples())
          + (f". Constant in this suite, so left out: {', '.join(constant)}." if constant else "."))
    for r in terms.itertuples():
        b.summary.headline[f"source_statistics/{r.term}/coef"] = float(r.coef)


_RUN_KEYS = ["model", "seed", "recipe", "lora_r", "suite", "source_task", "source_language"]


def _scored(predictions: pd.DataFrame, norm_tasks: Sequence[str]) -> pd.DataFrame:
    """Items with the prediction the task's score uses: `predicted_norm` for acc_norm tasks, else `predicted`."""
    chosen = np.where(predictions["task"].isin(list(norm_tasks)), predictions["predicted_norm"], predictions["predicted"])
    return predictions[["task", "language", "item_id", "gold"]].assign(predicted=chosen)


def significance_inputs(tidy: pd.DataFrame, predictions: Mapping[str, pd.DataFrame],
                        norm_tasks: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (base, fine-tuned) per-item tables of `analysis.significance` from per-run predictions.

    Args:
        tidy: the tidy table with `evaluate_run_id` and `baseline_run_id`.
        predictions: run id -> that run's `predictions.parquet` (evaluate and baseline runs).
        norm_tasks: tasks scored by acc_norm.

    Returns:
        (base, fine-tuned); empty frames when no evaluate run has both its and its baseline's predictions.
    """
    if not {"evaluate_run_id", "baseline_run_id"} <= set(tidy.columns):
        return pd.DataFrame(), pd.DataFrame()
    runs = tidy[["evaluate_run_id", "baseline_run_id", *_RUN_KEYS]].drop_duplicates("evaluate_run_id")
    finetuned, base = [], {}
    for run in runs.to_dict("records"):
        if run["evaluate_run_id"] not in predictions or run["baseline_run_id"] not in predictions:
            continue
        keys = {k: run[k] for k in _RUN_KEYS}
        finetuned.append(_scored(predictions[run["evaluate_run_id"]], norm_tasks).assign(**keys))
        base[run["baseline_run_id"]] = _scored(predictions[run["baseline_run_id"]], norm_tasks).assign(
            model=run["model"], seed=run["seed"], suite=run["suite"])
    if not finetuned:
        return pd.DataFrame(), pd.DataFrame()
    base_items = pd.concat(base.values(), ignore_index=True)
    base_items = base_items.drop_duplicates(["model", "seed", "suite", "task", "language", "item_id"])
    return base_items, pd.concat(finetuned, ignore_index=True)


def _significance(b: _Builder, tidy: pd.DataFrame, opts: ReportOptions, predictions) -> None:
    """Paired bootstrap CI and McNemar test per (run, target cell); rates by threshold and significance."""
    if not opts.significance:
        return b.skip("significance", "switched off (significance = false)")
    if not predictions:
        return b.skip("significance", "no per-item predictions given")
    base, finetuned = significance_inputs(tidy, predictions, opts.norm_tasks)
    if finetuned.empty:
        return b.skip("significance", "no evaluate run has predictions for itself and its baseline")
    boot = sig.paired_bootstrap_ci(base, finetuned, n_boot=opts.n_boot, seed=opts.seed)
    mcnemar = sig.mcnemar_test(base, finetuned)
    rates = b.table("significance", "significance", sig.significance_rates(boot, mcnemar))
    keys = [c for c in boot.columns if c in mcnemar.columns and c not in ("p_exact",)]
    b.table("significance", "significance_cells", boot.merge(mcnemar[[*keys, "p_exact", "p_cc"]], on=keys))
    row = rates.set_index("regime").loc["All transfer"]
    b.say("significance", f"Over {int(row['n'])} transfer (run, target) cells: win rate {_num(row['win_rate'], 1, False)}% "
          f"by threshold, {_num(row['sig_win_rate_mcnemar'], 1, False)}% significant wins and "
          f"{_num(row['sig_harm_rate_mcnemar'], 1, False)}% significant harms (McNemar exact p < 0.05); "
          f"{_num(row['sig_win_rate_ci'], 1, False)}% have a bootstrap 95% CI above 0.")
    b.summary.headline.update({f"significance/all_transfer/{c}": float(row[c]) for c in (
        "sig_win_rate_mcnemar", "sig_harm_rate_mcnemar", "sig_win_rate_ci", "sig_harm_rate_ci")})


def _check(name: str, measured, expected, expected_sign: float) -> dict:
    pair = pd.concat([pd.Series(measured, dtype=float), pd.Series(expected, dtype=float)], axis=1, join="inner").dropna()
    ok = len(pair) >= 3 and pair.iloc[:, 0].nunique() > 1 and pair.iloc[:, 1].nunique() > 1
    rho, p = stats.spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]) if ok else (np.nan, np.nan)
    return {"check": name, "n": len(pair), "spearman_rho": float(rho), "p_value": float(p),
            "expected_sign": "+" if expected_sign > 0 else "-", "recovered": bool(ok and np.sign(rho) == np.sign(expected_sign))}


def _pair_means(frame: pd.DataFrame, value: str) -> pd.Series:
    mt_cl = frame[frame["regime"] == "MT-CL"]
    return mt_cl.groupby(["source_language", "target_language"])[value].mean()


def planted_recovery(rows: pd.DataFrame, truth: Mapping) -> pd.DataFrame:
    """Compare measured transfer with the synthetic suite's `ground_truth()` (ARCHITECTURE.md section 4).

    Checks (Spearman ρ, expected sign): measured vs expected Δ per transfer (source, target) pair (+);
    MT-CL Δ per language pair vs planted language distance (the sign the expected Δ has: −); language
    donor and recipient scores vs expected (+); task donor and recipient scores vs expected (+).

    Returns:
        Columns `check, n, spearman_rho, p_value, expected_sign, recovered`.
    """
    expected = truth["expected_transfer"].stack().rename("expected")
    expected.index.names = ["source", "target"]
    transfer = rows[rows["regime"].isin(TRANSFER_REGIMES)]
    measured = transfer.assign(source=transfer["source_task"] + "." + transfer["source_language"],
                               target=transfer["target_task"] + "." + transfer["target_language"]).groupby(
        ["source", "target"])["delta"].mean()
    cells = expected.reset_index()
    cells[["source_task", "source_language"]] = cells["source"].str.split(".", n=1, expand=True)
    cells[["target_task", "target_language"]] = cells["target"].str.split(".", n=1, expand=True)
    cells["regime"] = np.where(cells["source_task"] == cells["target_task"],
                               np.where(cells["source_language"] == cells["target_language"], "MT-ML", "MT-CL"), "other")
    distance = truth["language_distance"].stack()
    expected_rho = _check("", _pair_means(cells, "expected"), distance, 1)["spearman_rho"]
    measured_roles, measured_tasks = roles.language_roles(rows).set_index("language"), roles.task_roles(rows).set_index("task")
    return pd.DataFrame([
        _check("pair_transfer_vs_expected", measured, expected, 1),
        _check("mt_cl_delta_vs_distance", _pair_means(rows, "delta"), distance, expected_rho if np.isfinite(expected_rho) else -1),
        _check("language_donor_vs_expected", measured_roles["donor"], truth["language_roles"]["donor"], 1),
        _check("language_recipient_vs_expected", measured_roles["recipient"], truth["language_roles"]["recipient"], 1),
        _check("task_donor_vs_expected", measured_tasks["donor"], truth["task_roles"]["donor"], 1),
        _check("task_recipient_vs_expected", measured_tasks["recipient"], truth["task_roles"]["recipient"], 1),
    ])


def _planted(b: _Builder, rows: pd.DataFrame, opts: ReportOptions) -> None:
    table = b.table("planted", "planted_recovery", planted_recovery(rows, opts.planted))
    for _, row in table.iterrows():
        b.say("planted", f"{row['check']}: Spearman ρ = {_num(row['spearman_rho'], 3)} over {int(row['n'])} "
              f"(expected sign {row['expected_sign']}): {'recovered' if row['recovered'] else 'NOT recovered'}.")
    b.summary.headline["planted/recovered_share"] = float(table["recovered"].mean())
    b.summary.headline["planted/pair_transfer_rho"] = float(table["spearman_rho"].iloc[0])


def _main_rows(agg: pd.DataFrame, opts: ReportOptions) -> tuple[pd.DataFrame, str]:
    """The main grid (one recipe and rank: ablation runs stay out of the paper's tables) and its rank."""
    try:
        rows = ablation.main_grid(agg, recipe=opts.main_recipe, lora_r=opts.main_rank)
    except ValueError:  # no row of the main recipe: take the most frequent (recipe, rank)
        recipe = agg["recipe"].value_counts().idxmax()
        rows = ablation.main_grid(agg, recipe=recipe, lora_r=opts.main_rank)
    return rows, ablation.rank_label(rows["lora_r"].iloc[0])


def _counts(tidy: pd.DataFrame, agg: pd.DataFrame) -> dict[str, int]:
    ids = [c for c in ("evaluate_run_id", "baseline_run_id") if c in tidy.columns]
    runs = len(set().union(*(set(tidy[c].dropna()) for c in ids))) if ids else 0
    return {"n_runs": runs, "n_cells": len(agg), "n_models": int(tidy["model"].nunique()),
            "n_seeds": int(tidy["seed"].nunique()), "n_rows": len(tidy)}


def build_report(tidy: pd.DataFrame, out_dir: Path, *, options: ReportOptions | None = None,
                 predictions: Mapping[str, pd.DataFrame] | None = None) -> ReportSummary:
    """Run every analysis that applies to `tidy` and write tables, figures, tidy.parquet and report.html.

    The paper's analyses (SPEC 1.9-1.16) and the seed studies (SPEC 2, 3) run on the seed-aggregated
    main grid (one recipe and rank); the ablation section (SPEC 1.17, 1.18) on every recipe and rank.

    Args:
        tidy: the validated per-seed tidy table (`analysis.make_tidy`).
        out_dir: where to write (created).
        options: suite knowledge and switches (default: `options_for(tidy)`).
        predictions: run id -> per-item predictions of evaluate and baseline runs, for significance.

    Returns:
        The `ReportSummary` (paths, skipped sections with reasons, headline metrics, counts).

    Raises:
        ValueError: an invalid tidy table.
    """
    options = options or options_for(tidy)
    out_dir = Path(out_dir)
    for sub in ("tables", "figures"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    analysis.validate_tidy(tidy)
    tidy.to_parquet(out_dir / "tidy.parquet", index=False)
    agg = analysis.aggregate_seeds(tidy)
    rows, main_rank = _main_rows(agg, options)
    b = _Builder(out_dir)
    b.summary.counts = _counts(tidy, agg)
    steps = [("regimes", _regimes), ("language_roles", _language_roles), ("task_roles", _task_roles),
             ("curated_vs_translated", _curated), ("pareto", _pareto), ("matrices", _matrices),
             ("mt_cl_breakdown", _breakdowns), ("variance", _variance), ("consistency", _consistency),
             ("typology", _typology), ("baseline_gain", _baseline_gain), ("latent_traits", _latent),
             ("source_statistics", _source_statistics)]
    for sid, step in steps:
        _guarded(b, sid, lambda: step(b, rows, options))
    _guarded(b, "ablation", lambda: _ablation(b, agg, options, main_rank))
    _guarded(b, "significance", lambda: _significance(b, tidy, options, predictions))
    if options.planted is not None:
        _guarded(b, "planted", lambda: _planted(b, rows, options))
    b.summary.html.write_text(_html(b, options, main_rank), encoding="utf-8")
    logger.info("report: %d tables, %d figures, %d sections skipped -> %s", len(b.summary.tables),
                len(b.summary.figures), len(b.summary.skipped), b.summary.html)
    return b.summary


def _guarded(b: _Builder, sid: str, step: Callable[[], None]) -> None:
    """Run one analysis; a statistical failure skips its section with the reason instead of losing the report.

    Warnings of the model fits (statsmodels' singular matrices or failed convergence, scikit-learn's
    convergence) are noted once in the section they concern, not printed on the console; any other
    warning is passed on, once per message and place."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning as SklearnConvergence
    from statsmodels.tools.sm_exceptions import ModelWarning

    fit_warnings = (ModelWarning, SklearnConvergence)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            step()
        except (ValueError, np.linalg.LinAlgError) as error:
            logger.warning("report section %s failed: %s", sid, error)
            b.skip(sid, f"failed: {error}")
    fits = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, fit_warnings)))
    if fits:
        b.section(sid).paragraphs.append("Fit warnings: " + "; ".join(fits) + ".")
        logger.debug("report section %s: %s", sid, "; ".join(fits))
    others = {(w.category, str(w.message), w.filename, w.lineno): w for w in caught if not issubclass(w.category, fit_warnings)}
    for category, message, filename, lineno in others:
        warnings.warn_explicit(message, category, filename, lineno)


_CSS = """body{font:15px/1.5 Georgia,'Times New Roman',serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;margin:0 0 .3em}h3{font-size:1em;margin:1em 0 .3em;font-weight:normal;font-style:italic}
p.cite{color:#555;font-size:.9em;margin-top:0}p.meta{color:#444}.skipped{color:#a60}
nav.contents{background:#f6f6f6;border:1px solid #ddd;padding:.6em 1.2em;margin:1em 0}nav.contents h2{font-size:1.1em}
nav.contents ol{margin:.3em 0;padding-left:1.5em}nav.contents li.skipped a{color:#a60}
section{border-top:1px solid #ccc;margin-top:2em;padding-top:1em}
table{border-collapse:collapse;font:12px/1.35 system-ui,sans-serif;margin:.4em 0 1em}
th{background:#eee;border-bottom:2px solid #999;padding:3px 8px;text-align:right}td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}
tr:nth-child(even) td{background:#fafafa}th:first-child,td:first-child{text-align:left}
figure{margin:1em 0;text-align:center}img{max-width:100%}figcaption{font-size:.9em;color:#444;margin-top:.3em}"""


def _html_table(name: str, frame: pd.DataFrame) -> str:
    shown = frame.head(_HTML_ROWS)
    cut = f"<p>First {_HTML_ROWS} of {len(frame)} rows; all in tables/{name}.csv.</p>" if len(frame) > _HTML_ROWS else ""
    return (f"<h3>Table: {html.escape(name.replace('_', ' '))} (tables/{html.escape(name)}.csv)</h3>"
            + shown.to_html(index=False, border=0, na_rep="", float_format=lambda x: f"{x:.4g}") + cut)


def _html_figure(name: str, path: Path, number: int) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = FIGURE_CAPTIONS.get(name, name.replace("_", " "))
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>Figure {number}. {html.escape(caption)}</figcaption></figure>")


def _html(b: _Builder, opts: ReportOptions, main_rank: str) -> str:
    """The page: title and scope, a contents list, then per section its heading, the study it follows,
    the findings, the tables and the figures (skipped sections say why)."""
    counts = b.summary.counts
    runs = f"{counts['n_runs']} runs" if counts["n_runs"] else "no run ids (an external results table)"
    head = (f"<h1>Transfer across tasks and languages: analysis report</h1><p class='meta' id='counts'>{runs}, "
            f"{counts['n_cells']} cells (model × source × target, seed-averaged), {counts['n_models']} models, "
            f"{counts['n_seeds']} seeds, {counts['n_rows']} per-seed rows. "
            f"Filter: {html.escape(opts.filter_text or 'none (all FINISHED runs)')}. "
            f"Main grid: recipe {html.escape(opts.main_recipe)}, rank {html.escape(main_rank)}. "
            f"Δ is the fine-tuned minus the base model's score on a target cell, in percentage points.</p>")
    shown = [(sid, title) for sid, title in SECTIONS.items() if sid in b.sections]
    toc = "".join(f"<li{' class=skipped' if b.sections[sid].skipped else ''}><a href='#{sid}'>{html.escape(title)}</a>"
                  f"{' (skipped)' if b.sections[sid].skipped else ''}</li>" for sid, title in shown)
    body, figure_number = [], 0
    for number, (sid, title) in enumerate(shown, 1):
        section = b.sections[sid]
        parts = [f"<h2>{number}. {html.escape(title)}</h2>"]
        if sid in CITATIONS:
            parts.append(f"<p class='cite'>{html.escape(CITATIONS[sid])}</p>")
        parts += [f"<p>{html.escape(text)}</p>" for text in section.paragraphs]
        if section.skipped:
            parts.append(f"<p class='skipped'>Skipped: {html.escape(section.skipped)}</p>")
        parts += [_html_table(name, b.frames[name]) for name in section.tables]
        for name in section.figures:
            figure_number += 1
            parts.append(_html_figure(name, b.summary.figures[name], figure_number))
        body.append(f"<section id='{sid}'>{''.join(parts)}</section>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Transfer analysis report</title>"
            f"<style>{_CSS}</style></head><body>{head}<nav class='contents'><h2>Contents</h2><ol>{toc}</ol></nav>"
            f"{''.join(body)}</body></html>")
