"""Test set-up: offline always, a tracking store per test, the tiny model built once per session."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("MLFLOW_RUN_ID", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Built-in models are built (and real models converted) once per test session into a temporary
    cache; TRANSFERGRID_TEST_CACHE names a lasting one instead (skips the real models' conversion)."""
    path = os.environ.get("TRANSFERGRID_TEST_CACHE") or tmp_path_factory.mktemp("transfergrid-cache")
    os.environ["TRANSFERGRID_CACHE"] = str(path)
    return path


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    """A fresh SQLite tracking store in the test's directory (which is also the working directory)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)  # tests use the fluent API too; never let one test's store leak into the next
    yield uri
    mlflow.set_tracking_uri(None)


def _real_model(name: str):
    """(model, tokenizer) of builtin real model `name`, or the test is skipped saying what is not installed."""
    from transfergrid import gguf_models
    from transfergrid.models import load_model, resolve_model

    reason = gguf_models.unavailable_reason(name)
    if reason:
        pytest.skip(f"real model not installed: {reason}")
    return load_model(resolve_model(f"builtin:{name}"), "cpu")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct, converted and loaded once per session (float32, CPU, eval mode)."""
    return _real_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma3():
    """Gemma 3 270M (base), converted and loaded once per session (float32, CPU, eval mode)."""
    return _real_model("gemma-3-270m")
