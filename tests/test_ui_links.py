"""The MLflow UI set-up without a browser: experiment tags, the study's saved view, the links commands print."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

from transfergrid.tracking import names, ui, writer


def test_experiments_are_tagged_model_training_with_the_study_view(tracking_uri):
    from mlflow.tracking import MlflowClient

    experiment_id = writer.ensure_experiment(tracking_uri, "transfergrid")
    tags = MlflowClient(tracking_uri).get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # the value MLflow 3's UI reads
    view = json.loads(tags[f"mlflow.sharedViewState.{names.STUDY_VIEW}"])
    assert view["searchFilter"] == "tags.kind = 'evaluate'" and view["runsHiddenMode"] == "SHOW_ALL"
    assert view["selectedColumns"] == ["tags.`source_cell`"] + [f"metrics.`{m}`" for m in names.REGIME_METRIC.values()]
    # an experiment someone else made (`mlflow run --experiment-name X`) is tagged when a study uses it
    other = MlflowClient(tracking_uri).create_experiment("made-by-mlflow-run")
    writer.prepare_experiment(tracking_uri, other)
    assert MlflowClient(tracking_uri).get_experiment(other).tags["mlflow.experimentKind"] == "custom_model_development"


def test_links_open_the_runs_view_of_the_study():
    link = ui.runs_url(ui.ui_base_url("sqlite:///x/mlflow.db"), "7")
    assert link.startswith("http://127.0.0.1:5000/#/experiments/7/runs?")
    query = parse_qs(urlparse(link).fragment.split("?", 1)[1])
    assert query == {"workflowType": ["machine_learning"], "viewStateShareKey": [names.STUDY_VIEW]}
    assert ui.ui_base_url("http://tracking:5000/") == "http://tracking:5000"
    assert ui.run_url("http://h", "7", "abc", "report.html") == \
        "http://h/#/experiments/7/runs/abc/artifacts/report.html?workflowType=machine_learning"


def test_make_ui_prints_the_link_of_the_study(tracking_uri):
    assert "no experiment 'transfergrid'" in ui.open_message(tracking_uri)
    experiment_id = writer.ensure_experiment(tracking_uri, "transfergrid")
    assert ui.open_message(tracking_uri) == f"The evaluate runs side by side: {ui.runs_url(ui.DEFAULT_UI, experiment_id)}"
