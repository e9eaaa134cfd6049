"""The one module that reads from MLflow: run lookup by key, adapters, and the tidy results table."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from transfergrid.grid import Cell
from transfergrid.tracking import names

logger = logging.getLogger(__name__)


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def find_finished(tracking_uri: str, experiment_id: str, run_key: str) -> str | None:
    """Id of the newest FINISHED run with `run_key` in the experiment, or None."""
    runs = _client(tracking_uri).search_runs(
        [experiment_id],
        filter_string=f"tags.{names.RUN_KEY} = '{run_key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def get_run(tracking_uri: str, run_id: str):
    """The MLflow `Run` (info, tags, params, latest metrics).

    Raises:
        ValueError: no such run.
    """
    from mlflow.exceptions import MlflowException

    try:
        return _client(tracking_uri).get_run(run_id)
    except MlflowException as error:
        raise ValueError(f"run {run_id!r} not found on {tracking_uri}: {error.message}") from None


def newest_finished(tracking_uri: str, experiment_id: str, kind: str, tags: dict[str, str]) -> str | None:
    """Newest FINISHED run of `kind` whose tags equal `tags`, or None."""
    clauses = [f"tags.{names.KIND} = '{kind}'", "attributes.status = 'FINISHED'"]
    clauses += [f"tags.{key} = '{value}'" for key, value in tags.items()]
    runs = _client(tracking_uri).search_runs(
        [experiment_id], " and ".join(clauses), order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0].info.run_id if runs else None


def download_artifacts(tracking_uri: str, run_id: str, artifact_path: str, dst: Path) -> Path:
    """Download a run's artifact (file or directory) into `dst`; returns the local path."""
    import mlflow.artifacts

    dst.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=tracking_uri
        )
    )


def _search_frame(tracking_uri: str, experiment_ids: list[str], filter_string: str) -> pd.DataFrame:
    """Runs matching `filter_string` as a DataFrame (`run_id`, `tags.*`, `metrics.*`), newest first.

    Uses the client with an explicit URI and pages through all results, leaving MLflow's global
    tracking URI alone (unlike `mlflow.search_runs`).
    """
    client, rows, token = _client(tracking_uri), [], None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, max_results=5000, order_by=["attributes.start_time DESC"], page_token=token
        )
        for run in page:
            row = {"run_id": run.info.run_id, "status": run.info.status, "start_time": run.info.start_time}
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            rows.append(row)
        token = page.token
        if not token:
            return pd.DataFrame(rows)


def _finished_runs(tracking_uri: str, experiment_ids: list[str], kind: str, extra_filter: str) -> pd.DataFrame:
    clauses = [f"tags.{names.KIND} = '{kind}'", "attributes.status = 'FINISHED'"]
    if extra_filter.strip():
        clauses.append(extra_filter.strip())
    frame = _search_frame(tracking_uri, experiment_ids, " and ".join(clauses))
    if frame.empty:
        return frame
    # Never double-count a key: keep the newest FINISHED run per run_key.
    return frame.drop_duplicates(subset=[f"tags.{names.RUN_KEY}"], keep="first")


def _cell_values(row: pd.Series, metric: str) -> dict[Cell, float]:
    out = {}
    for column, value in row.items():
        if not column.startswith("metrics.") or pd.isna(value):
            continue
        parsed = names.parse_cell_metric(column[len("metrics.") :])
        if parsed and parsed[0] == metric:
            out[parsed[1]] = float(value)
    return out


def load_results(tracking_uri: str, experiment_ids: list[str], extra_filter: str = "") -> pd.DataFrame:
    """FINISHED evaluate runs joined with their baselines: one row per (run, target cell).

    Columns: model, model_family, model_size_b, seed, recipe, lora_r, suite, source_task,
    source_language, target_task, target_language, base_score, ft_score, base_acc, ft_acc,
    evaluate_run_id, baseline_run_id. Scores are fractions; Δ is computed by the analysis.
    """
    evaluations = _finished_runs(tracking_uri, experiment_ids, "evaluate", extra_filter)
    if evaluations.empty:
        return pd.DataFrame()
    baselines = _finished_runs(tracking_uri, experiment_ids, "baseline", "")
    baselines = baselines.set_index("run_id") if not baselines.empty else baselines
    rows = []
    for _, run in evaluations.iterrows():
        baseline_id = run.get(f"tags.{names.BASELINE_RUN_ID}")
        if baselines.empty or baseline_id not in baselines.index:
            logger.warning("evaluate run %s: baseline run %s is not FINISHED here; skipped", run["run_id"], baseline_id)
            continue
        base = baselines.loc[baseline_id]
        ft_score, base_score = _cell_values(run, "score"), _cell_values(base, "score")
        ft_acc, base_acc = _cell_values(run, "acc"), _cell_values(base, "acc")
        for cell, score in sorted(ft_score.items()):
            rows.append(
                {
                    "model": run[f"tags.{names.MODEL}"],
                    "model_family": run.get(f"tags.{names.MODEL_FAMILY}"),
                    "model_size_b": float(run.get(f"tags.{names.MODEL_SIZE_B}") or "nan"),
                    "seed": int(run[f"tags.{names.SEED}"]),
                    "recipe": run.get(f"tags.{names.RECIPE}"),
                    "lora_r": run.get(f"tags.{names.LORA_R}"),
                    "suite": run.get(f"tags.{names.BENCHMARK_SUITE}"),
                    "source_task": run[f"tags.{names.SOURCE_TASK}"],
                    "source_language": run[f"tags.{names.SOURCE_LANGUAGE}"],
                    "target_task": cell.task,
                    "target_language": cell.language,
                    "base_score": base_score.get(cell, float("nan")),
                    "ft_score": score,
                    "base_acc": base_acc.get(cell, float("nan")),
                    "ft_acc": ft_acc.get(cell, float("nan")),
                    "evaluate_run_id": run["run_id"],
                    "baseline_run_id": baseline_id,
                }
            )
    return pd.DataFrame(rows)
