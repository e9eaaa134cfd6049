"""The one module that reads from MLflow: run lookup by key, adapters, and the tidy results table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from transfergrid.redact import redact
from transfergrid.tracking import names

logger = logging.getLogger(__name__)


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


FILTER_HELP = ("valid comparators: =, !=, LIKE, ILIKE, IS NULL, IS NOT NULL (and <, <=, >, >= on metrics and "
               "attributes), clauses joined with AND, e.g. \"tags.model = 'builtin:tiny-llama' AND tags.seed = '42'\"")


def check_filter(text: str, what: str) -> None:
    """Check an MLflow search filter before any work.

    Raises:
        ValueError: the filter does not parse; the message names `what` (e.g. `--filter`) and the valid comparators.
    """
    if not text.strip():
        return
    from mlflow.utils.search_utils import SearchUtils

    try:
        clauses = SearchUtils.parse_search_filter(text)
    except Exception as error:  # MlflowException for a bad key or value, sqlparse errors
        message = getattr(error, "message", None) or str(error)
        raise ValueError(f"invalid {what} {text!r}: {message.strip().splitlines()[0]}; {FILTER_HELP}") from None
    for clause in clauses:  # the comparators are only checked by the store, at search time
        kind, key, comparator = clause["type"], clause["key"], clause["comparator"]
        try:
            SearchUtils.is_metric(kind, comparator) or SearchUtils.is_param(kind, comparator) or SearchUtils.is_tag(
                kind, comparator) or SearchUtils.is_attribute(kind, key, comparator) or SearchUtils.is_dataset(kind, comparator)
        except Exception:  # MlflowException: comparator not valid for this kind of key
            raise ValueError(f"invalid {what} {text!r}: comparator {comparator!r} cannot compare {kind}s.{key}; "
                             f"{FILTER_HELP}") from None


def find_finished(tracking_uri: str, experiment_id: str, run_key: str) -> str | None:
    """Id of the newest FINISHED run with `run_key` in the experiment, or None."""
    runs = _client(tracking_uri).search_runs(
        [experiment_id],
        filter_string=f"tags.{names.RUN_KEY} = '{run_key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def running_run_ids(tracking_uri: str, experiment_id: str, run_key: str) -> list[str]:
    """Ids of the RUNNING runs with `run_key` (e.g. left behind by a worker that was killed)."""
    runs = _client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.{names.RUN_KEY} = '{run_key}' and attributes.status = 'RUNNING'"
    )
    return [run.info.run_id for run in runs]


def run_counts(tracking_uri: str, experiment_id: str, kinds: tuple[str, ...]) -> pd.DataFrame:
    """Runs per (kind, status) in the experiment: columns `kind, status, runs`."""
    rows = []
    for kind in kinds:
        frame = _search_frame(tracking_uri, [experiment_id], f"tags.{names.KIND} = '{kind}'")
        for status, count in (frame["status"].value_counts().items() if not frame.empty else []):
            rows.append({"kind": kind, "status": status, "runs": int(count)})
    return pd.DataFrame(rows, columns=["kind", "status", "runs"])


def experiment_id(tracking_uri: str, name: str) -> str | None:
    """Id of the experiment `name`, or None when it does not exist."""
    experiment = _client(tracking_uri).get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else None


def experiment_names(tracking_uri: str) -> list[str]:
    """Names of the active experiments (none when a SQLite store file does not exist: nothing is created)."""
    from transfergrid import stores

    path = stores.sqlite_path(tracking_uri)
    if path is not None and not path.exists():
        return []
    return sorted(e.name for e in _client(tracking_uri).search_experiments())


def finished_run_keys(tracking_uri: str, experiment_id: str, kinds: tuple[str, ...]) -> dict[str, str]:
    """`run_key` -> id of the newest FINISHED run with that key, over runs of `kinds`, in one paged search per kind.

    The bulk form of `find_finished`, for jobs that check many keys at once (e.g. `import_results`).
    """
    out: dict[str, str] = {}
    for kind in kinds:
        frame = _search_frame(tracking_uri, [experiment_id], f"tags.{names.KIND} = '{kind}' and attributes.status = 'FINISHED'")
        if frame.empty or f"tags.{names.RUN_KEY}" not in frame.columns:
            continue
        for key, run_id in zip(frame[f"tags.{names.RUN_KEY}"], frame["run_id"]):
            if isinstance(key, str) and key not in out:  # newest first
                out[key] = run_id
    return out


def get_run(tracking_uri: str, run_id: str):
    """The MLflow `Run` (info, tags, params, latest metrics).

    Raises:
        ValueError: no such run.
    """
    from mlflow.exceptions import MlflowException

    try:
        return _client(tracking_uri).get_run(run_id)
    except MlflowException as error:
        raise ValueError(f"run {run_id!r} not found on {redact(tracking_uri)}: {redact(error.message)}") from None


def newest_finished(tracking_uri: str, experiment_id: str, kind: str, tags: dict[str, str]) -> str | None:
    """Newest FINISHED run of `kind` whose tags equal `tags`, or None."""
    clauses = [f"tags.{names.KIND} = '{kind}'", "attributes.status = 'FINISHED'"]
    clauses += [f"tags.{key} = '{value}'" for key, value in tags.items()]
    runs = _client(tracking_uri).search_runs(
        [experiment_id], " and ".join(clauses), order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0].info.run_id if runs else None


def finished_run_ids(tracking_uri: str, experiment_id: str, kind: str, tags: dict[str, str], extra_filter: str = "") -> list[str]:
    """Ids of every FINISHED run of `kind` whose tags equal `tags` and that matches `extra_filter`, newest first.

    One run per run key (the newest), so a run that was redone is not selected twice.
    """
    clauses = [f"tags.{key} = '{value}'" for key, value in tags.items()]
    extra = " and ".join(clauses + ([extra_filter.strip()] if extra_filter.strip() else []))
    frame = _finished_runs(tracking_uri, [experiment_id], kind, extra)
    return [] if frame.empty else frame["run_id"].tolist()


def has_artifacts(tracking_uri: str, run_id: str, artifact_path: str) -> bool:
    """Whether the run's artifact directory `artifact_path` holds any file (its files may have been deleted)."""
    return bool(_client(tracking_uri).list_artifacts(run_id, artifact_path))


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


def _quote(value) -> str:
    return "'" + str(value).replace("'", "\\'") + "'"


def selection_filter(selection: Mapping[str, Sequence] | None) -> tuple[list[str], dict[str, set[str]]]:
    """Split a tag selection into MLflow filter clauses and the rest, applied in pandas.

    MLflow's search joins clauses with AND only and its `IN` does not work on tags, so a tag with one
    allowed value becomes `tags.<tag> = '<value>'` and a tag with several is filtered after the search.

    Args:
        selection: tag name -> allowed values (empty or missing: any value).

    Returns:
        (clauses, {tag: allowed values as strings}) for the tags left to pandas.
    """
    clauses, rest = [], {}
    for tag, values in (selection or {}).items():
        allowed = sorted({str(v) for v in values or ()})
        if len(allowed) == 1:
            clauses.append(f"tags.{tag} = {_quote(allowed[0])}")
        elif allowed:
            rest[tag] = set(allowed)
    return clauses, rest


def _select(frame: pd.DataFrame, rest: Mapping[str, set[str]]) -> pd.DataFrame:
    for tag, allowed in rest.items():
        column = f"tags.{tag}"
        keep = frame[column].astype(str).isin(allowed) if column in frame.columns else pd.Series(False, index=frame.index)
        frame = frame[keep]
    return frame


def _seed(value: str):
    """A seed tag as an int; imported seed-aggregated runs keep their label (`mean`) as a string."""
    text = str(value)
    return int(text) if text.lstrip("-").isdigit() else text


def load_results(
    tracking_uri: str, experiment_ids: list[str], extra_filter: str = "", *, selection: Mapping[str, Sequence] | None = None,
    ablation_trials: bool = False,
) -> pd.DataFrame:
    """FINISHED evaluate runs joined with their baselines: one row per (run, target cell).

    Args:
        tracking_uri, experiment_ids: where to search.
        extra_filter: a free MLflow filter string on the evaluate runs (AND-ed with the selection).
        selection: tag name -> allowed values of the evaluate runs (`selection_filter`), e.g.
            `{"model": ["m1", "m2"], "seed": [17]}`.
        ablation_trials: include the evaluate runs nested under `ablation` runs (the ablation's own
            summaries); the main analysis leaves them out (`_outside_ablations`).

    Returns:
        Columns: model, model_family, model_size_b, seed, recipe, lora_r, suite, source_task,
        source_language, target_task, target_language, base_score, ft_score, base_acc, ft_acc, delta,
        evaluate_run_id, baseline_run_id. Scores are fractions; `delta` is the Δ (pp) the evaluate run
        logged (`delta/<task>/<language>`), NaN where it logged none (the analysis then computes it).
    """
    clauses, rest = selection_filter(selection)
    filter_string = " and ".join(c for c in (extra_filter.strip(), *clauses) if c)
    evaluations = _finished_runs(tracking_uri, experiment_ids, "evaluate", filter_string)
    if not evaluations.empty:
        if not ablation_trials:
            evaluations = _outside_ablations(tracking_uri, experiment_ids, evaluations)
        evaluations = _select(_protocol(evaluations, "loglikelihood"), rest)
    if evaluations.empty:
        return pd.DataFrame()
    baselines = _finished_runs(tracking_uri, experiment_ids, "baseline", "")
    baseline_ids = evaluations[f"tags.{names.BASELINE_RUN_ID}"] if f"tags.{names.BASELINE_RUN_ID}" in evaluations else None
    known = set(baselines["run_id"]) if not baselines.empty else set()
    has_base = baseline_ids.isin(known) if baseline_ids is not None else pd.Series(False, index=evaluations.index)
    for run_id, baseline_id in zip(evaluations.loc[~has_base, "run_id"], baseline_ids[~has_base] if baseline_ids is not None else []):
        logger.warning("evaluate run %s: baseline run %s is not FINISHED here; skipped", run_id, baseline_id)
    evaluations = evaluations[has_base]
    if evaluations.empty:
        return pd.DataFrame()
    ft = _cell_table(evaluations, {"score": "ft_score", "acc": "ft_acc", names.DELTA: "delta"})
    if ft.empty:
        return pd.DataFrame()
    base = _cell_table(baselines[baselines["run_id"].isin(set(baseline_ids))], {"score": "base_score", "acc": "base_acc"})
    tag = lambda name: evaluations[f"tags.{name}"] if f"tags.{name}" in evaluations else pd.Series(None, index=evaluations.index)  # noqa: E731
    runs = pd.DataFrame({
        "run_id": evaluations["run_id"].to_numpy(), "order": np.arange(len(evaluations)),
        "model": evaluations[f"tags.{names.MODEL}"].to_numpy(), "model_family": tag(names.MODEL_FAMILY).to_numpy(),
        "model_size_b": pd.to_numeric(tag(names.MODEL_SIZE_B), errors="coerce").to_numpy(float),
        "seed": [_seed(v) for v in evaluations[f"tags.{names.SEED}"]], "recipe": tag(names.RECIPE).to_numpy(),
        "lora_r": tag(names.LORA_R).to_numpy(), "suite": tag(names.BENCHMARK_SUITE).to_numpy(),
        "source_task": evaluations[f"tags.{names.SOURCE_TASK}"].to_numpy(),
        "source_language": evaluations[f"tags.{names.SOURCE_LANGUAGE}"].to_numpy(),
        "baseline_run_id": evaluations[f"tags.{names.BASELINE_RUN_ID}"].to_numpy(),
    })
    frame = runs.merge(ft, on="run_id").merge(
        base.rename(columns={"run_id": "baseline_run_id"}), on=["baseline_run_id", "target_task", "target_language"], how="left")
    frame = frame[frame["ft_score"].notna()].sort_values(["order", "target_task", "target_language"], kind="stable")
    for column in ("base_score", "base_acc", "ft_acc", "delta"):
        if column not in frame:
            frame[column] = np.nan
    frame = frame.rename(columns={"run_id": "evaluate_run_id"})
    return frame[_RESULT_COLUMNS].reset_index(drop=True)


_RESULT_COLUMNS = ["model", "model_family", "model_size_b", "seed", "recipe", "lora_r", "suite", "source_task",
                   "source_language", "target_task", "target_language", "base_score", "ft_score", "base_acc", "ft_acc",
                   "delta", "evaluate_run_id", "baseline_run_id"]


def _cell_table(runs: pd.DataFrame, families: Mapping[str, str]) -> pd.DataFrame:
    """Per-cell metrics of runs as a long table: `run_id, target_task, target_language` and one column per
    family (`families`: metric family -> column name), from the `metrics.<family>/<task>/<language>` columns.

    Vectorised: each metric name is parsed once, not once per run.
    """
    parts = []
    for family, column in families.items():
        cells = {c: names.parse_cell_metric(c[len("metrics."):]) for c in runs.columns if c.startswith(f"metrics.{family}/")}
        cells = {c: parsed[1] for c, parsed in cells.items() if parsed and parsed[0] == family}
        if not cells:
            continue
        values = runs.set_index("run_id")[list(cells)].rename(columns=lambda c: (cells[c].task, cells[c].language))
        values.columns = pd.MultiIndex.from_tuples(values.columns, names=["target_task", "target_language"])
        long = values.stack(["target_task", "target_language"], future_stack=True).rename(column).dropna()
        parts.append(long)
    if not parts:
        return pd.DataFrame(columns=["run_id", "target_task", "target_language", *families.values()])
    return pd.concat(parts, axis=1).reset_index()


def _outside_ablations(tracking_uri: str, experiment_ids: list[str], frame: pd.DataFrame) -> pd.DataFrame:
    """Runs not nested under an `ablation` run: Optuna ablation trials (which vary alpha rules and learning
    rates the tidy table has no column for) are analysed by their ablation run, not by the main analysis."""
    ablations = _search_frame(tracking_uri, experiment_ids, f"tags.{names.KIND} = 'ablation'")
    parent = f"tags.{names.PARENT_RUN_ID}"
    if ablations.empty or parent not in frame:
        return frame
    outside = frame[~frame[parent].isin(set(ablations["run_id"]))]
    if len(outside) < len(frame):
        logger.info("analysis leaves out %d evaluate runs of ablation trials (see their ablation runs)", len(frame) - len(outside))
    return outside


def _protocol(frame: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Runs of one evaluation protocol (runs without the tag predate CoT: log-likelihood)."""
    column = f"tags.{names.EVAL_PROTOCOL}"
    tags = frame[column].fillna("loglikelihood") if column in frame else pd.Series("loglikelihood", index=frame.index)
    return frame[tags == protocol]


def load_cot_gains(
    tracking_uri: str, experiment_ids: list[str], *, selection: Mapping[str, Sequence] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Chain-of-thought gains of the base models (SPEC 2): CoT baseline score minus plain baseline score.

    Pairs every FINISHED `eval_protocol=cot` baseline with the plain baseline of the same model, seed
    and suite, then averages over seeds.

    Returns:
        (frame with columns `model, target_task, target_language, cot_delta` in pp, the run ids used).
    """
    columns = ["model", "target_task", "target_language", "cot_delta"]
    baselines = _finished_runs(tracking_uri, experiment_ids, "baseline", "")
    if baselines.empty:
        return pd.DataFrame(columns=columns), []
    _, rest = selection_filter({k: v for k, v in (selection or {}).items() if k in (names.MODEL, names.SEED, names.BENCHMARK_SUITE)})
    baselines = _select(baselines, rest)
    scope = [f"tags.{names.MODEL}", f"tags.{names.SEED}", f"tags.{names.BENCHMARK_SUITE}"]
    plain = {tuple(run[scope]): run for _, run in _protocol(baselines, "loglikelihood").iterrows()}
    rows, used = [], []
    for _, cot in _protocol(baselines, "cot").iterrows():
        base = plain.get(tuple(cot[scope]))
        if base is None:
            continue
        used += [cot["run_id"], base["run_id"]]
        base_score = names.cell_values(base, "score", "metrics.")
        for cell, score in names.cell_values(cot, "score", "metrics.").items():
            if cell in base_score:
                rows.append({"model": cot[f"tags.{names.MODEL}"], "target_task": cell.task, "target_language": cell.language,
                             "cot_delta": 100.0 * (score - base_score[cell])})
    if not rows:
        return pd.DataFrame(columns=columns), []
    frame = pd.DataFrame(rows).groupby(columns[:3], as_index=False)["cot_delta"].mean()
    return frame, sorted(set(used))


def load_cell_statistics(tracking_uri: str, run_ids: Sequence[str], dst: Path) -> pd.DataFrame:
    """The per-target seed-variation tables (`*_std`, `*_se`, `n_seeds`) of imported runs, with a `run_id` column.

    Runs without the artifact (the project's own runs, whose seeds are separate runs) are left out.

    Args:
        tracking_uri: the tracking store.
        run_ids: the baseline/evaluate runs to read.
        dst: a scratch directory for the downloads.
    """
    from mlflow.exceptions import MlflowException

    frames = []
    for run_id in dict.fromkeys(run_ids):
        try:
            path = download_artifacts(tracking_uri, run_id, names.CELL_STATISTICS_ARTIFACT, dst / run_id)
        except (MlflowException, OSError):
            continue
        frames.append(pd.read_csv(path).assign(run_id=run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_predictions(tracking_uri: str, run_ids: Sequence[str], dst: Path) -> dict[str, pd.DataFrame]:
    """The per-item `predictions.parquet` of each run (evaluate and baseline runs), keyed by run id.

    Runs without the artifact are left out with a warning (e.g. runs imported from a results table).

    Args:
        tracking_uri: the tracking store.
        run_ids: the runs whose predictions to download.
        dst: a scratch directory for the downloads (one sub-directory per run).
    """
    from mlflow.exceptions import MlflowException

    out = {}
    for run_id in dict.fromkeys(run_ids):
        try:
            path = download_artifacts(tracking_uri, run_id, names.PREDICTIONS_ARTIFACT, dst / run_id)
        except (MlflowException, OSError) as error:
            logger.warning("run %s has no %s: %s", run_id, names.PREDICTIONS_ARTIFACT, error)
            continue
        out[run_id] = pd.read_parquet(path)
    return out
