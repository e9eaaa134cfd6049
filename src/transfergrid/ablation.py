"""The LoRA-rank ablation (SPEC 1.17) and LoRA vs full fine-tuning (SPEC 1.18), driven by Optuna.

The search space (models × source cells × seeds × recipe × rank × alpha rule × learning rate) is
enqueued as trials of one multi-objective Optuna study (parameters recorded by Optuna, so
optuna-dashboard shows them); the trials run through the job queue (`queue.run_worker`), in this
process or in N local worker processes. A trial is an ordinary finetune + evaluate pair of runs,
nested under the study's `ablation` run and tagged with the study name and trial number. Objectives:
on-task gain (mean of the MT-ML Δ and the mean MT-CL Δ, pp, maximised) and off-task harm rate (% of
CT-ML/CT-CL targets with Δ <= HARM_THRESHOLD_PP, minimised). The `ablation` run logs the trials and
the Pareto front (CSV and PNG), the SPEC 1.17 summaries (`analysis.ablation`), and the study name
and storage URL (password masked), so the study can be resumed or opened in optuna-dashboard.
Rerunning the same command resumes: completed trials are not enqueued again, finished run keys are reused.
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from transfergrid import gridjobs, jobs, queue, runkeys
from transfergrid.config import AblationConfig, BaselineConfig, EvaluateConfig, FinetuneConfig, WorkerConfig, to_dict
from transfergrid.grid import Cell, off_task_harm_rate, on_task_gain
from transfergrid.redact import redact
from transfergrid.tracking import names, reader, writer

logger = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")  # on-task gain up, off-task harm rate down
OBJECTIVES = ("on_task_gain", "off_task_harm_rate")
FINETUNE_RUN_ID, EVALUATE_RUN_ID = "finetune_run_id", "evaluate_run_id"  # trial user attributes


@dataclass(frozen=True)
class Point:
    """One trial of the search space (`lora_r` and `alpha_rule` are None for full fine-tuning)."""

    model: str
    source: str
    seed: int
    recipe: str
    lora_r: int | None
    alpha_rule: str | None
    learning_rate: float


def ablation_models(cfg: AblationConfig) -> list[str]:
    """`--models`, else `--model`, else the suite's default models."""
    from transfergrid.data import get_suite

    return list(cfg.models) or jobs.study_models(cfg, get_suite(cfg.suite))


def search_space(cfg: AblationConfig, default_source: str) -> list[Point]:
    """Every point of the ablation, full fine-tuning once per (model, source, seed, learning rate)."""
    points = []
    for model, source, seed, recipe, rank, rule, lr in itertools.product(
        ablation_models(cfg), cfg.sources or [default_source], cfg.seeds or [cfg.seed], cfg.recipes,
        cfg.ranks, cfg.alpha_rules, cfg.learning_rates or [cfg.learning_rate],
    ):
        point = Point(model, source, seed, recipe, None if recipe == "full" else rank, None if recipe == "full" else rule, lr)
        if point not in points:
            points.append(point)
    return points


def _config_of(cls, cfg: AblationConfig, **overrides):
    """A `cls` config with the ablation's values of its fields, then `overrides`."""
    return cls(**{**{k: v for k, v in to_dict(cfg).items() if k in cls.__dataclass_fields__}, **overrides})


def _finetune_config(cfg: AblationConfig, point: Point) -> dict:
    """The finetune config of a point: the ablation's recipe fields with the point's values."""
    values = {k: v for k, v in to_dict(cfg).items() if k in FinetuneConfig.__dataclass_fields__}
    values.update(model=point.model, source=point.source, seed=point.seed, recipe=point.recipe,
                  learning_rate=point.learning_rate)
    if point.recipe == "lora":  # alpha = 2r (the paper); rslora: the same alpha, scaled by 1/sqrt(r) instead of 1/r
        values.update(lora_r=point.lora_r, lora_alpha=2.0 * point.lora_r, use_rslora=point.alpha_rule == "rslora")
    return values


def _params(point: Point) -> dict:
    """The Optuna parameters of a trial (what optuna-dashboard plots)."""
    params = {"recipe": point.recipe, "learning_rate": point.learning_rate}
    if point.recipe == "lora":
        params.update(lora_r=point.lora_r, alpha_rule=point.alpha_rule)
    return params


def _suggest(trial, params: dict) -> None:
    """Record the enqueued (fixed) parameters on the trial with fixed, study-wide distributions."""
    from transfergrid.config import ALPHA_RULES, RECIPES

    trial.suggest_categorical("recipe", list(RECIPES))
    trial.suggest_float("learning_rate", 1e-8, 10.0, log=True)
    if "lora_r" in params:
        trial.suggest_int("lora_r", 1, 65536, log=True)
        trial.suggest_categorical("alpha_rule", list(ALPHA_RULES))


def study_name(cfg: AblationConfig, points: list[Point]) -> str:
    """`cfg.study_name`, else `ablation-<experiment>-<hash of the search space>` (one study per space, resumable)."""
    return cfg.study_name or f"ablation-{cfg.experiment}-{runkeys.run_key('ablation-space', {'points': [asdict(p) for p in points]})[:8]}"


def plan_trials(cfg: AblationConfig, cache: dict, launcher_run_id: str | None = None) -> tuple[list[Point], list[queue.Job], dict]:
    """Validate every point and compute its run keys (before any work); returns (points, jobs, studies per model).

    With an `mlflow run` launcher, every trial's runs go to the launcher's experiment.
    """
    studies: dict[str, jobs.Study] = {}
    planned = []
    models = ablation_models(cfg)
    for model in models:
        studies[model] = cache.setdefault(
            ("ablation", model), jobs.open_study(_config_of(FinetuneConfig, cfg, model=model), launcher_run_id)
        )
    default_source = str(studies[models[0]].cells[0])
    points = search_space(cfg, default_source)
    for point in points:
        ft_cfg = FinetuneConfig(**_finetune_config(cfg, point))
        study = studies[point.model]
        source = jobs.source_cell(study, ft_cfg)  # unknown task or language: a ValueError naming the valid ones
        ft_key = jobs.finetune_key(study, ft_cfg, source)
        ev_key = jobs.evaluate_key(study, cfg, ft_key)
        label = f"{point.model} {point.source} seed={point.seed} " + (
            "full" if point.recipe == "full" else f"r={point.lora_r} {point.alpha_rule}") + f" lr={point.learning_rate:g}"
        config = {**_finetune_config(cfg, point), **{k: v for k, v in to_dict(cfg).items() if k in EvaluateConfig.__dataclass_fields__
                                                    and k not in ("finetune_run_id", "finetune_run_ids", "finetune_filter")},
                  "model": point.model, "seed": point.seed, "tracking_uri": study.tracking_uri}
        payload = {"kind": "ablation", "config": config, "label": label, "point": asdict(point), "params": _params(point),
                   "experiment_id": study.experiment_id}
        planned.append(queue.Job(ft_key, payload, [ft_key, ev_key], study.experiment_id, _params(point)))
    return points, planned, studies


def run_trial(job: dict, context: queue.JobContext) -> list[float]:
    """One ablation trial: fine-tune and evaluate (runs nested under the ablation run); returns the two objectives."""
    import optuna

    trial = optuna.trial.Trial(context.study, context.trial_id)
    _suggest(trial, job["params"])
    data = job["config"]
    ft_cfg = gridjobs.job_config(FinetuneConfig, data, context)
    study = gridjobs.study_for(ft_cfg, context, job.get("experiment_id"))
    tags = {names.OPTUNA_STUDY: context.study.study_name, names.OPTUNA_TRIAL: context.trial_number}
    parent = job.get("parent_run_id")
    ft_id = jobs.run_finetune(ft_cfg, study=study, parent_run_id=parent, extra_tags=tags)
    ev_cfg = gridjobs.job_config(EvaluateConfig, {**data, "finetune_run_id": ft_id}, context)
    ev_id = jobs.run_evaluate(ev_cfg, study=study, parent_run_id=parent, extra_tags=tags)
    trial.set_user_attr(FINETUNE_RUN_ID, ft_id)
    trial.set_user_attr(EVALUATE_RUN_ID, ev_id)
    source = Cell.parse(ft_cfg.source)
    deltas = names.cell_values(reader.get_run(study.tracking_uri, ev_id).data.metrics, names.DELTA)
    return [on_task_gain(source, deltas), off_task_harm_rate(source, deltas)]


def trials_table(optuna_study, planned: list[queue.Job]) -> pd.DataFrame:
    """One row per planned trial that COMPLETEd: the point, both objectives, run ids, and `pareto` (Optuna's front)."""
    from optuna.trial import TrialState

    keys = {job.key for job in planned}
    complete = [t for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get(queue.JOB_KEY) in keys]
    latest = {t.user_attrs[queue.JOB_KEY]: t for t in sorted(complete, key=lambda t: t.number)}
    front = {t.number for t in optuna_study.best_trials}
    rows = [{"trial": t.number, **t.user_attrs[queue.JOB]["point"], OBJECTIVES[0]: t.values[0], OBJECTIVES[1]: t.values[1],
             "pareto": t.number in front, FINETUNE_RUN_ID: t.user_attrs.get(FINETUNE_RUN_ID),
             EVALUATE_RUN_ID: t.user_attrs.get(EVALUATE_RUN_ID)} for t in latest.values()]
    columns = ["trial", *Point.__dataclass_fields__, *OBJECTIVES, "pareto", FINETUNE_RUN_ID, EVALUATE_RUN_ID]
    return pd.DataFrame(rows, columns=columns).astype({"lora_r": "Int64"}).sort_values("trial", ignore_index=True)


def pareto_figure(table: pd.DataFrame, path: Path) -> Path:
    """On-task gain (x) vs off-task harm rate (y) of every trial, the Pareto front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(table[OBJECTIVES[0]], table[OBJECTIVES[1]], c="lightgray", edgecolors="gray", label="trial")
    front = table[table["pareto"]].sort_values(OBJECTIVES[0])
    ax.plot(front[OBJECTIVES[0]], front[OBJECTIVES[1]], "o-", color="tab:red", label="Pareto front")
    several = table[["model", "source", "seed"]].drop_duplicates().shape[0] > 1
    for row in table.itertuples():
        label = ("full" if row.recipe == "full" else f"r={row.lora_r}") + (f" {row.source}" if several else "")
        ax.annotate(label, (getattr(row, OBJECTIVES[0]), getattr(row, OBJECTIVES[1])),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("on-task gain (pp, mean of MT-ML and MT-CL Δ) →")
    ax.set_ylabel("off-task harm rate (%, Δ ≤ −1 pp) ↓")
    ax.set_title("LoRA ablation: on-task gain vs off-task harm")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rank_summaries(uri: str, experiment_ids: list[str], table: pd.DataFrame, main_rank: int) -> dict[str, pd.DataFrame]:
    """SPEC 1.17/1.18 summaries (analysis.ablation) of the trials' evaluate runs, per (alpha rule, learning rate)."""
    import analysis
    from analysis import ablation

    results = reader.load_results(uri, experiment_ids, ablation_trials=True)
    if results.empty or table.empty:
        return {}
    results = results[results["evaluate_run_id"].isin(set(table[EVALUATE_RUN_ID]))]
    variant = table.set_index(EVALUATE_RUN_ID)[["alpha_rule", "learning_rate"]]
    out: dict[str, list] = {"rank_summary": [], "rank_by_regime": [], "rank_correlation": [], "lora_vs_full": []}
    lrs = sorted(set(table["learning_rate"]))
    for rule, lr in itertools.product(sorted(set(table["alpha_rule"].dropna())) or [None], lrs):
        ids = variant[((variant["alpha_rule"] == rule) | variant["alpha_rule"].isna()) & (variant["learning_rate"] == lr)].index
        rows = results[results["evaluate_run_id"].isin(set(ids))]
        if rows.empty:
            continue
        tidy = analysis.make_tidy(rows)
        tables = {"rank_summary": ablation.rank_ablation_summary(tidy, main_rank=main_rank),
                  "rank_by_regime": ablation.rank_ablation_by_regime(tidy, main_rank=main_rank),
                  "rank_correlation": ablation.rank_ablation_correlation(tidy, main_rank=main_rank),
                  "lora_vs_full": ablation.lora_vs_full(tidy, lora_rank=main_rank)}
        for name, frame in tables.items():
            out[name].append(frame.assign(alpha_rule=rule, learning_rate=lr))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in out.items() if frames}


def run_ablation(cfg: AblationConfig, *, launcher_run_id: str | None = None) -> tuple[str, pd.DataFrame]:
    """Run (or resume) the ablation study; returns (the ablation run id, the trials table).

    Raises:
        ValueError: bad input (storage URL, model, source, choice names), before any work.
        RuntimeError: trials failed (reasons in the message; the ablation run ends FAILED).
    """
    queue.check_storage_url(cfg.storage)
    gridjobs.check_launcher(cfg)
    cache: dict = {}
    points, planned, studies = plan_trials(cfg, cache, launcher_run_id)
    name = study_name(cfg, points)
    main_study = next(iter(studies.values()))
    key = runkeys.run_key("ablation", {"trials": sorted(job.key for job in planned)})
    if done := reader.find_finished(main_study.tracking_uri, main_study.experiment_id, key):
        logger.info("ablation already FINISHED as run %s (study %s): nothing to do", done, name)
        return done, trials_table(queue.open_study(queue.open_storage(cfg), name, DIRECTIONS), planned)
    storage_url = redact(queue.check_storage_url(cfg.storage))
    tags = {names.RUN_KEY: key, names.OPTUNA_STUDY: name, names.OPTUNA_STORAGE: storage_url,
            names.MODEL: ",".join(studies), names.BENCHMARK_SUITE: main_study.suite.name}
    with writer.open_run(main_study.tracking_uri, main_study.experiment_id, kind="ablation", tags=tags,
                         run_name=f"ablation {name}", adopt_run_id=launcher_run_id) as run:
        run.log_config(to_dict(cfg))
        run.log_params({"optuna_study": name, "optuna_storage": storage_url, "n_trials": len(planned)})
        for model, study in studies.items():  # baselines first: concurrent trials must not each compute one
            for seed in cfg.seeds or [cfg.seed]:
                jobs.run_baseline(_config_of(BaselineConfig, cfg, model=model, seed=seed), study=study, parent_run_id=run.run_id)
        optuna_study = queue.open_study(queue.open_storage(cfg), name, DIRECTIONS)
        optuna_study.set_metric_names(list(OBJECTIVES))
        pending = [job for job in planned if job.key not in _completed_keys(optuna_study)]
        queue.enqueue(optuna_study, pending, parent_run_id=run.run_id)
        worker_cfg = _config_of(WorkerConfig, cfg, study_name=name)
        problems = []
        if cfg.workers:
            workers = gridjobs.launch_workers(cfg, optuna_study, main_study.tracking_uri)
            problems = gridjobs.wait_for_workers(workers, optuna_study, cfg)
        else:
            queue.run_worker(worker_cfg, gridjobs.execute, cache=cache)
        table = trials_table(optuna_study, planned)
        _log_results(run, cfg, optuna_study, planned, table, main_study)
        if len(table) < len(planned):
            jobs_table = queue.job_table(queue.open_storage(cfg), name)
            failed = jobs_table[jobs_table["state"] == "FAIL"]
            raise RuntimeError(f"{len(planned) - len(table)} of {len(planned)} trials did not complete: "
                               + "; ".join([*(f"{r.what}: {r.reason}" for r in failed.itertuples()), *problems]))
        if problems:
            logger.warning("every trial completed, but: %s", "; ".join(problems))
        return run.run_id, table


def _completed_keys(optuna_study) -> set[str]:
    from optuna.trial import TrialState

    return {t.user_attrs.get(queue.JOB_KEY) for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}


def _log_results(run: writer.RunWriter, cfg: AblationConfig, optuna_study, planned, table: pd.DataFrame, study) -> None:
    """Trials, Pareto front (CSV + PNG), SPEC 1.17 summaries and headline metrics on the ablation run."""
    run.log_dataframe(table, "trials.csv")
    run.log_dataframe(table[table["pareto"]], "pareto_front.csv")
    if table.empty:
        return
    with tempfile.TemporaryDirectory() as tmp:
        run.log_file(pareto_figure(table, Path(tmp) / "pareto_front.png"))
    main_rank = 32 if 32 in cfg.ranks else max(cfg.ranks)
    for name, frame in rank_summaries(study.tracking_uri, [study.experiment_id], table, main_rank).items():
        run.log_dataframe(frame, f"tables/{name}.csv")
    metrics = {"n_trials_complete": len(table), "n_pareto": int(table["pareto"].sum())}
    for rank, group in table[table["recipe"] == "lora"].groupby("lora_r"):
        metrics[f"rank/{int(rank)}/on_task_gain"] = float(group[OBJECTIVES[0]].mean())
        metrics[f"rank/{int(rank)}/off_task_harm_rate"] = float(group[OBJECTIVES[1]].mean())
    if (table["recipe"] == "full").any():
        metrics["full/on_task_gain"] = float(table.loc[table["recipe"] == "full", OBJECTIVES[0]].mean())
    run.log_metrics({k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))})
