"""The one module that writes to MLflow: opens and closes runs, logs tags, metrics and artifacts.

Runs are created with `MlflowClient` (no fluent global state), so a job can open nested runs and a
crash marks exactly the run it happened in as FAILED with the reason in a tag.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Iterator, Mapping

import yaml

from transfergrid import stopping, stores
from transfergrid.grid import Cell
from transfergrid.redact import redact
from transfergrid.tracking import names

logger = logging.getLogger(__name__)

_METRIC_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """The tracking URI: explicit > $MLFLOW_TRACKING_URI > `sqlite:///<cwd>/mlflow.db` (MLflow's own default).

    A relative `sqlite:///rel.db` becomes absolute (with a warning), `postgresql://` gets the installed driver.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return stores.normalize_tracking_uri(uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}")


def checked_tracking_uri(tracking_uri: str | None) -> str:
    """`resolve_tracking_uri`, then checked in seconds before any work (`stores.check_tracking_store`).

    Raises:
        stores.StoreUnavailable: a ValueError naming the URI (password masked) and the fix.
    """
    uri = resolve_tracking_uri(tracking_uri)
    stores.check_tracking_store(uri)
    return uri


def find_experiment(tracking_uri: str, name: str, *, deleted_ok: bool = False) -> str | None:
    """Id of the experiment `name`, or None; creates nothing (not even a missing SQLite file)."""
    path = stores.sqlite_path(tracking_uri)
    if path is not None and not path.exists():
        return None
    experiment = _client(tracking_uri).get_experiment_by_name(name)
    if experiment is None or (experiment.lifecycle_stage == "deleted" and not deleted_ok):
        return None
    return experiment.experiment_id


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """Experiment id for `name`, creating it with a pinned artifact location on a local store.

    With a `sqlite:///path/mlflow.db` store, artifacts go to `path/../mlartifacts` (absolute), not
    to `./mlruns` relative to whatever directory the experiment happened to be created from. The store is
    checked first (`stores.check_tracking_store`, once per process): a dead one fails in seconds. The
    experiment is tagged for the MLflow UI (`prepare_experiment`).
    """
    from transfergrid.claims import retry_first_use

    stores.check_tracking_store(tracking_uri)
    client = retry_first_use(lambda: _client(tracking_uri), f"tracking store {redact(tracking_uri)}", tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(f"experiment {name!r} is deleted; restore it in the MLflow UI or choose another name")
        prepare_experiment(tracking_uri, experiment.experiment_id, experiment.tags)
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        location = (Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    try:
        experiment_id = client.create_experiment(name, artifact_location=location)
    except Exception:  # another worker created it between our lookup and our create
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        experiment_id = experiment.experiment_id
    prepare_experiment(tracking_uri, experiment_id)
    return experiment_id


def prepare_experiment(tracking_uri: str, experiment_id: str, tags: Mapping[str, str] | None = None) -> None:
    """Tag an experiment for the MLflow UI: model training (its runs view, not the GenAI overview), and the
    study's saved view (`tracking.ui`). Tags already right are left alone (`tags`: the experiment's, if known)."""
    from transfergrid.tracking import ui

    client = _client(tracking_uri)
    if tags is None:
        tags = client.get_experiment(experiment_id).tags
    wanted = {names.EXPERIMENT_KIND_TAG: names.EXPERIMENT_KIND, names.SHARED_VIEW_TAG + names.STUDY_VIEW: ui.study_view_json()}
    for key, value in wanted.items():
        if tags.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


def launcher_run_id() -> str | None:
    """The run `mlflow run` created for this process (MLFLOW_RUN_ID), consumed once so nested runs don't adopt it."""
    return os.environ.pop("MLFLOW_RUN_ID", None)


def _clean(value) -> str:
    """A tag or param value: passwords in URLs masked (credentials are never logged), at most 5000 chars."""
    return redact(value)[:5000]


class RunWriter:
    """Logging handle of one open run."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    def set_tags(self, tags: Mapping[str, object]) -> None:
        """Set string tags (None values are skipped)."""
        from mlflow.entities import RunTag

        batch = [RunTag(k, _clean(v)) for k, v in tags.items() if v is not None]
        if batch:
            self.client.log_batch(self.run_id, tags=batch)

    def log_params(self, params: Mapping[str, object]) -> None:
        """Log parameters; values already logged on this run (e.g. by `mlflow run -P`) are left alone."""
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        batch = [Param(k, _clean(v)) for k, v in params.items() if k not in existing]
        for i in range(0, len(batch), 100):
            self.client.log_batch(self.run_id, params=batch[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log finite metrics at `step` (NaN and infinities are skipped with a debug message)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            if value is None or not math.isfinite(float(value)):
                logger.debug("skipping non-finite metric %s=%r", key, value)
                continue
            batch.append(Metric(key, float(value), now, int(step)))
        for i in range(0, len(batch), _METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i : i + _METRIC_BATCH])

    def log_cell_metrics(self, metrics: Mapping[Cell, Mapping[str, float]]) -> None:
        """Per-target metrics `score/<task>/<language>`, `acc/...`, `acc_norm/...`, `delta/...`."""
        flat = {
            names.cell_metric(name, cell): value
            for cell, values in metrics.items()
            for name, value in values.items()
            if name in names.CELL_METRICS + (names.DELTA,)
        }
        self.log_metrics(flat)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write `text` to an artifact file."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(redact(text))
            self.log_file(path, str(Path(artifact_file).parent) if Path(artifact_file).parent != Path(".") else None)

    def log_config(self, config: Mapping) -> None:
        """The resolved configuration as `config.yaml`."""
        self.log_text(yaml.safe_dump(dict(config), sort_keys=True), names.CONFIG_ARTIFACT)

    def log_dataframe(self, frame, artifact_file: str) -> None:
        """A DataFrame as parquet (`.parquet`) or CSV (`.csv`)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            if path.suffix == ".parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            parent = str(Path(artifact_file).parent)
            self.log_file(path, None if parent == "." else parent)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload one local file."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dir(self, path: Path, artifact_path: str) -> None:
        """Upload a directory's contents under `artifact_path`."""
        self.client.log_artifacts(self.run_id, str(path), artifact_path)


def _link_tag(client, parent_run_id: str) -> str:
    """How a run links to the run that started it. The job runs of a study (`grid` run) are rows of their own,
    tagged `study_run_id`: the MLflow UI shows a study's evaluate runs side by side without expanding a parent.
    Anything else (an ablation's trials) nests under its parent (`mlflow.parentRunId`)."""
    parent_kind = client.get_run(parent_run_id).data.tags.get(names.KIND)
    return names.STUDY_RUN_ID if parent_kind == "grid" else names.PARENT_RUN_ID


@contextlib.contextmanager
def open_run(
    tracking_uri: str,
    experiment_id: str,
    *,
    kind: str,
    tags: Mapping[str, object],
    run_name: str,
    parent_run_id: str | None = None,
    adopt_run_id: str | None = None,
) -> Iterator[RunWriter]:
    """Open a run of `kind`; FINISHED on success, FAILED (reason in the `failure_reason` tag) on error.

    Args:
        adopt_run_id: an existing run to log into instead of creating one (the run `mlflow run` made).
    """
    from mlflow.entities import RunStatus

    if kind not in names.KINDS:
        raise ValueError(f"unknown run kind {kind!r}; valid kinds: {', '.join(names.KINDS)}")
    client = _client(tracking_uri)
    all_tags = {names.KIND: kind, names.SCHEMA: names.SCHEMA_VERSION, names.HOST: socket.gethostname(),
                names.PID: os.getpid(), **tags}
    if parent_run_id:
        all_tags[_link_tag(client, parent_run_id)] = parent_run_id
    held = stopping.hold_signals()  # a stop signal while the run starts waits until the run can be ended KILLED
    try:
        if adopt_run_id:
            run_id = adopt_run_id
            client.set_tag(run_id, "mlflow.runName", _clean(run_name))
            client.update_run(run_id, status="RUNNING")
        else:  # born with its tags: even a run whose process dies at once has the run key, host and pid
            run_id = client.create_run(experiment_id, run_name=_clean(run_name),
                                       tags={k: _clean(v) for k, v in all_tags.items() if v is not None}).info.run_id
    except BaseException:
        stopping.release_signals(held)
        raise
    writer = RunWriter(client, run_id)
    try:
        stopping.release_signals(held)
        if adopt_run_id:
            writer.set_tags(all_tags)
        logger.debug("%s run %s (%s) started", kind, run_id, run_name)
        yield writer
    except BaseException as error:
        end_failed(client, run_id, error)
        raise
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FINISHED))
    logger.debug("%s run %s finished", kind, run_id)


def end_failed(client, run_id: str, error: BaseException) -> None:
    """End a run after `error`: KILLED on a stop signal or Ctrl-C, else FAILED; the reason in `failure_reason`.

    The status is set first: when the artifact store is what failed (read-only, full, unreachable), the run
    still ends. Then, as far as the stores allow, the reason tag and the traceback (`error.txt`).
    """
    status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
    writer = RunWriter(client, run_id)
    try:
        client.set_terminated(run_id, status=status)
        writer.set_tags({names.FAILURE_REASON: stopping.reason(error)})
    except Exception:  # the store itself may be what failed; never mask the original error
        logger.exception("could not mark run %s as %s", run_id, status)
        return
    try:
        writer.log_text("".join(traceback.format_exception(error)), "error.txt")
    except Exception as artifact_error:  # the artifact store failed: the run is ended all the same
        logger.warning("run %s ended %s; its traceback could not be stored as error.txt: %s", run_id, status,
                       redact(f"{type(artifact_error).__name__}: {artifact_error}"))


def log_run(
    tracking_uri: str,
    experiment_id: str,
    *,
    kind: str,
    tags: Mapping[str, object],
    metrics: Mapping[str, float],
    run_name: str,
    artifacts: Mapping[str, object] | None = None,
) -> str:
    """Create a FINISHED run with its tags and metrics in few calls; returns the run id.

    For bulk imports of results computed elsewhere: one `create_run` (with every tag), one
    `log_batch` per 1000 metrics and one `set_terminated`, instead of a call per tag or metric.
    Non-finite and None metric values are skipped. `artifacts`: artifact file name (CSV, at the top
    of the run's artifacts) -> DataFrame. On error the run ends FAILED with the reason.
    """
    from mlflow.entities import Metric

    if kind not in names.KINDS:
        raise ValueError(f"unknown run kind {kind!r}; valid kinds: {', '.join(names.KINDS)}")
    client = _client(tracking_uri)
    now = int(time.time() * 1000)
    all_tags = {names.KIND: kind, names.SCHEMA: names.SCHEMA_VERSION, **tags}
    info = client.create_run(
        experiment_id, start_time=now, run_name=run_name,
        tags={k: _clean(v) for k, v in all_tags.items() if v is not None},
    ).info
    run_id = info.run_id
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
    try:
        for i in range(0, len(batch), _METRIC_BATCH):
            client.log_batch(run_id, metrics=batch[i : i + _METRIC_BATCH])
        if artifacts:  # straight to the run's artifact location (client.log_artifact would look the run up again)
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            repository = get_artifact_repository(info.artifact_uri, tracking_uri=tracking_uri)
            with tempfile.TemporaryDirectory() as tmp:
                for artifact_file, frame in artifacts.items():
                    path = Path(tmp) / artifact_file
                    frame.to_csv(path, index=False)
                    repository.log_artifact(str(path))
    except BaseException as error:
        try:
            client.set_terminated(run_id, status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            client.set_tag(run_id, names.FAILURE_REASON, _clean(stopping.reason(error)))
        except Exception:  # the store itself may be what failed; never mask the original error
            logger.exception("could not mark run %s as failed", run_id)
        raise
    client.set_terminated(run_id, status="FINISHED", end_time=now)
    return run_id


def mark_reused(tracking_uri: str, run_id: str, reused_run_id: str) -> None:
    """Note on a launcher run that its work was already done by `reused_run_id` (nothing recomputed)."""
    writer = RunWriter(_client(tracking_uri), run_id)
    writer.set_tags(
        {
            names.REUSED_RUN_ID: reused_run_id,
            names.NOTE: f"Already FINISHED as run {reused_run_id} with the same run_key; nothing was recomputed.",
        }
    )


def note_run(tracking_uri: str, run_id: str, text: str) -> None:
    """Set a run's description (the MLflow UI's note), e.g. on an `mlflow run` launcher run that holds no work."""
    RunWriter(_client(tracking_uri), run_id).set_tags({names.NOTE: text})


def fail_run(tracking_uri: str, run_id: str, reason: str) -> None:
    """End a run left RUNNING by a process that died (e.g. a SIGKILLed worker): FAILED, reason in `failure_reason`."""
    client = _client(tracking_uri)
    RunWriter(client, run_id).set_tags({names.FAILURE_REASON: reason})
    client.set_terminated(run_id, status="FAILED")
    logger.warning("run %s marked FAILED: %s", run_id, reason)
