"""The MLflow UI as transfergrid's runs meet it: the study's saved view and the links every command prints.

The experiment is tagged as model training (`mlflow.experimentKind`), so MLflow opens it on its runs, not on
the GenAI overview; the link also says `workflowType=machine_learning` (the UI's sidebar switch). The study's
view (`viewStateShareKey`) filters the evaluate runs, one row per source cell (`evaluate <task.language> ...`),
with the source cell and the mean Δ per transfer regime as columns, ordered by the monolingual
same-task gain, and the chart view limited to the `transfer/` bar charts, every source shown.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from transfergrid.tracking import names

DEFAULT_UI = "http://127.0.0.1:5000"  # `make ui` / `mlflow ui` on a local store
RUN_NAME = "attributes.`Run Name`"
EVALUATE_FILTER = f"tags.{names.KIND} = 'evaluate'"


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's column keys: attributes.`Source`, tags.`source_cell`, metrics.`transfer/mt_ml`


def study_view_state() -> dict:
    """The saved view of a study's runs (the MLflow UI's shared view state: search facets and table/chart state)."""
    columns = [_column("tags", names.SOURCE_CELL)] + [_column("metrics", m) for m in names.REGIME_METRIC.values()]
    return {
        "searchFilter": EVALUATE_FILTER,
        "orderByKey": _column("metrics", names.REGIME_METRIC["MT-ML"]),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME, *columns, "runDateAndNestInfo", "duration"],
        "columnWidths": {RUN_NAME: 250, _column("tags", names.SOURCE_CELL): 130},
        "runsHiddenMode": "SHOW_ALL",  # charts show every source, not the first ten runs
        "chartsSearchFilter": "transfer/",
        "hideEmptyCharts": True,
    }


def study_view_json() -> str:
    """The value of the experiment tag `mlflow.sharedViewState.<STUDY_VIEW>`."""
    return json.dumps(study_view_state(), sort_keys=True)


def ui_base_url(tracking_uri: str) -> str:
    """Where the UI of `tracking_uri` is served: the tracking server itself, else `mlflow ui`'s default address."""
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI


def runs_url(base_url: str, experiment_id: str, *, charts: bool = False) -> str:
    """The runs view of an experiment in the study's saved view (the table; with `charts`, the chart view)."""
    query = {"workflowType": "machine_learning", "viewStateShareKey": names.STUDY_VIEW}
    if charts:
        query["compareRunsMode"] = "CHART"
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def run_url(base_url: str, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """One run's page, or its Artifacts tab with `artifact` open (e.g. the analysis run's `report.html`)."""
    tail = f"/artifacts/{artifact}" if artifact else ""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}{tail}?workflowType=machine_learning"


def open_hint(tracking_uri: str) -> str:
    """How to serve a local store's UI (nothing to start for a tracking server)."""
    if tracking_uri.startswith(("http://", "https://")):
        return ""
    return f"mlflow ui --backend-store-uri {tracking_uri} --port 5000"


def open_message(tracking_uri: str, experiment: str = names.DEFAULT_EXPERIMENT) -> str:
    """`make ui`'s line: the link to the study's runs view of `experiment` (tagged for the UI on the way)."""
    from transfergrid.tracking import reader, writer

    experiment_id = reader.experiment_id(tracking_uri, experiment)
    if experiment_id is None:
        return f"no experiment {experiment!r} in {tracking_uri} yet (make demo records one)"
    writer.prepare_experiment(tracking_uri, experiment_id)  # a store recorded before the UI tags existed
    return f"The evaluate runs side by side: {runs_url(ui_base_url(tracking_uri), experiment_id)}"
