"""The `analysis` job: read FINISHED runs back, build the report (`transfergrid.report`), log it.

Separate from `jobs` because it needs no model: it reads the tracking store (through `tracking.reader`)
and writes one `analysis` run (through `tracking.writer`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from transfergrid import runkeys
from transfergrid.config import AnalysisConfig, to_dict
from transfergrid.grid import suggest
from transfergrid.redact import redact
from transfergrid.tracking import names, reader, writer

logger = logging.getLogger(__name__)


def analysis_inputs(uri: str, experiment_id: str, cfg: AnalysisConfig):
    """The tidy table of FINISHED runs, their ids, the analysis run key (a hash of the runs it reads), and the CoT gains."""
    import analysis

    selection = _analysis_selection(cfg)
    results = reader.load_results(uri, [experiment_id], cfg.filter, selection=selection)
    if results.empty:
        raise ValueError(
            f"no FINISHED evaluate runs with a FINISHED baseline in experiment {experiment_id} ({_selection_text(cfg)})"
        )
    tidy = analysis.make_tidy(results)
    cot, cot_runs = reader.load_cot_gains(uri, [experiment_id], selection=selection)
    runs = sorted(set(tidy["evaluate_run_id"]) | set(tidy["baseline_run_id"]))
    payload = {"runs": runs + [f"cot:{r}" for r in cot_runs], "filter": cfg.filter, "selection": {k: sorted(map(str, v)) for k, v in selection.items()},
               "significance": cfg.significance, "report": 2, "schema": names.SCHEMA_VERSION}
    return tidy, runs, runkeys.run_key("analysis", payload), cot


def _analysis_selection(cfg: AnalysisConfig) -> dict[str, list]:
    """Tag -> allowed values of the evaluate runs; empty lists select everything."""
    return {names.MODEL: cfg.models, names.BENCHMARK_SUITE: cfg.suites, names.SEED: cfg.seeds,
            names.RECIPE: cfg.recipes, names.LORA_R: cfg.lora_ranks}


def _selection_text(cfg: AnalysisConfig) -> str:
    """How the runs were selected, for the report header and messages."""
    parts = [f"{tag} in {sorted(map(str, values))}" for tag, values in _analysis_selection(cfg).items() if values]
    parts += [f"filter {cfg.filter!r}"] if cfg.filter.strip() else []
    return "; ".join(parts) or "all FINISHED runs"


def run_analysis(
    cfg: AnalysisConfig, *, experiment_id: str | None = None, parent_run_id: str | None = None, launcher_run_id: str | None = None
) -> str:
    """Read FINISHED baseline/evaluate runs back and log the full report as the analysis run's artifacts.

    Artifacts: `report.html`, `tidy.parquet`, `tables/*.csv`, `figures/*.png` (`transfergrid.report`);
    metrics: `headline_metrics`; tags: the top donor and recipient languages.
    """
    from transfergrid import report

    reader.check_filter(cfg.filter, "--filter")
    uri = writer.checked_tracking_uri(cfg.tracking_uri)
    if experiment_id is None and launcher_run_id:
        experiment_id = reader.get_run(uri, launcher_run_id).info.experiment_id
    elif experiment_id is None and (experiment_id := writer.find_experiment(uri, cfg.experiment)) is None:
        raise ValueError(f"no experiment {cfg.experiment!r} on {redact(uri)}{suggest(cfg.experiment, reader.experiment_names(uri))}; "
                         f"its experiments: {', '.join(reader.experiment_names(uri)) or '(none yet)'}")
    tidy, runs, key, cot = analysis_inputs(uri, experiment_id, cfg)
    if done := reader.find_finished(uri, experiment_id, key):
        logger.info("analysis of these %d runs already FINISHED as run %s: skipped", len(runs), done)
        if launcher_run_id:
            writer.mark_reused(uri, launcher_run_id, done)
        return done
    n_evaluate = tidy["evaluate_run_id"].nunique()
    significance = cfg.significance if cfg.significance is not None else n_evaluate <= report.SMALL_STORE_RUNS
    logger.info("analysis uses %d runs (%d evaluate), %d per-seed rows, selection: %s; significance %s",
                len(runs), n_evaluate, len(tidy), _selection_text(cfg), "on" if significance else "off")
    with writer.open_run(
        uri, experiment_id, kind="analysis", tags={names.RUN_KEY: key}, run_name="analysis",
        parent_run_id=parent_run_id, adopt_run_id=launcher_run_id,
    ) as run, tempfile.TemporaryDirectory() as tmp:
        run.log_config(to_dict(cfg))
        predictions = reader.load_predictions(uri, runs, Path(tmp) / "predictions") if significance else None
        options = report.options_for(tidy, significance=significance, filter_text=_selection_text(cfg),
                                     cot=cot if not cot.empty else None)
        summary = report.build_report(tidy, Path(tmp) / "report", options=options, predictions=predictions)
        run.log_dir(summary.out_dir, None)
        run.set_tags(summary.findings)
        run.log_metrics(headline_metrics(summary))
        logger.info("analysis used %(n_runs)d runs, %(n_cells)d cells, %(n_models)d models, %(n_seeds)d seeds",
                    summary.counts)
        return run.run_id


def headline_metrics(summary) -> dict[str, float]:
    """Headline metrics of a `report.ReportSummary`: counts plus the findings of each analysis.

    Names: `n_runs, n_cells, n_models, n_seeds, n_rows`; `regime/<mt_ml|mt_cl|ct_ml|ct_cl|all_transfer>/
    <n|mean_delta|median_delta|win_rate|harm_rate|win_rate_tie_aware|harm_rate_tie_aware|ties>`; `roles/top_donor_score`, `roles/top_recipient_score`,
    `roles/curated_vs_translated_rho`; `pareto/tradeoff_share`; `variance/<nested|crossed>/share_<model|source|
    target|residual>`; `consistency/<model|family|size>/<regime>/median`; `typology/<distance>/spearman_rho`;
    `baseline_gain/slope`; `latent/pc1_explained`; `significance/all_transfer/sig_<win|harm>_rate_<mcnemar|ci>`;
    `planted/recovered_share`, `planted/pair_transfer_rho` (synthetic suite). Absent when the analysis was skipped.
    """
    metrics = {name: float(value) for name, value in summary.counts.items()}
    metrics.update({name: float(value) for name, value in summary.headline.items()})
    return metrics
