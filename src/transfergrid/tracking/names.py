"""Every MLflow tag, metric and artifact name of the data model (ARCHITECTURE.md section 3), spelled once."""

from __future__ import annotations

from typing import Mapping

from transfergrid.grid import Cell, regime

SCHEMA_VERSION = "1"
DEFAULT_EXPERIMENT = "transfergrid"

# Tag keys (snake_case, no prefix, so `tags.source_language = 'de'` works in the UI search box).
KIND = "kind"
MODEL = "model"
MODEL_FAMILY = "model_family"
MODEL_SIZE_B = "model_size_b"
RECIPE = "recipe"
LORA_R = "lora_r"
SEED = "seed"
SOURCE_TASK = "source_task"
SOURCE_LANGUAGE = "source_language"
BENCHMARK_SUITE = "benchmark_suite"
RUN_KEY = "run_key"
FINETUNE_RUN_ID = "finetune_run_id"
BASELINE_RUN_ID = "baseline_run_id"
SCHEMA = "schema_version"
FAILURE_REASON = "failure_reason"
REUSED_RUN_ID = "reused_run_id"
PARENT_RUN_ID = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
EVAL_PROTOCOL = "eval_protocol"  # on baseline/evaluate runs: loglikelihood | cot
OPTUNA_STUDY = "optuna_study"  # on runs of queued jobs and ablation trials: the Optuna study name
OPTUNA_TRIAL = "optuna_trial_number"  # ... and the trial number
OPTUNA_STORAGE = "optuna_storage"  # on grid/ablation runs: the storage URL, password masked
STUDY_RUN_ID = "study_run_id"  # on the job runs of a study (baseline, finetune, evaluate, analysis): its `grid` run
SOURCE_CELL = "source_cell"  # on finetune/evaluate runs: `task.language`, one column in the MLflow runs table
HOST = "host"  # the machine whose process wrote the run (with PID: a rerun tells an abandoned run from a live one)
PID = "pid"
IMPORTED_FROM = "imported_from"  # on runs made by `import_results`: "<file name> sha256:<hash>"

# The MLflow UI: experiments shown as model training (runs view, not the GenAI overview), and a saved view of the
# study (the UI's "share view" state, read from the experiment tag `mlflow.sharedViewState.<key>`).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
SHARED_VIEW_TAG = "mlflow.sharedViewState."
STUDY_VIEW = "transfergrid-study"

KINDS = ("baseline", "finetune", "evaluate", "ablation", "grid", "analysis")

# Artifacts.
CONFIG_ARTIFACT = "config.yaml"
PREDICTIONS_ARTIFACT = "predictions.parquet"
CELL_STATISTICS_ARTIFACT = "cell_statistics.csv"  # on imported runs: per-target std/SE/n_seeds of the input
ADAPTER_DIR = "adapter"
FULL_MODEL_DIR = "model"  # a full fine-tune's weights (recipe `full`), loadable with from_pretrained

# Per-target metric families on baseline/evaluate runs.
CELL_METRICS = ("score", "acc", "acc_norm")
DELTA = "delta"
REGIME_METRIC = {"MT-ML": "transfer/mt_ml", "MT-CL": "transfer/mt_cl", "CT-ML": "transfer/ct_ml", "CT-CL": "transfer/ct_cl"}


def cell_metric(name: str, cell: Cell) -> str:
    """`score/<task>/<language>` and friends."""
    return f"{name}/{cell.task}/{cell.language}"


def parse_cell_metric(key: str) -> tuple[str, Cell] | None:
    """Inverse of `cell_metric`: (`score`, Cell) for `score/arc/de`, None for other metric names."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] not in CELL_METRICS + (DELTA,):
        return None
    return parts[0], Cell(parts[1], parts[2])


def cell_values(metrics: Mapping[str, float], family: str, prefix: str = "") -> dict[Cell, float]:
    """Cell -> value of one metric family (`score`, `acc`, `delta`, ...) from a run's metrics.

    Args:
        metrics: metric name -> value; names may carry `prefix` (e.g. `metrics.` in a search frame).
        family: the metric family to keep.
        prefix: stripped from each name before parsing; names without it are ignored.
    """
    out = {}
    for key, value in metrics.items():
        if not key.startswith(prefix) or value is None or value != value:  # value != value: NaN
            continue
        parsed = parse_cell_metric(key[len(prefix):])
        if parsed and parsed[0] == family:
            out[parsed[1]] = float(value)
    return out


def transfer_metrics(source: Cell, deltas: Mapping[Cell, float]) -> dict[str, float]:
    """Mean Δ per regime over the evaluated targets: `transfer/mt_ml`, `transfer/mt_cl`, ..."""
    groups: dict[str, list[float]] = {}
    for cell, delta in deltas.items():
        groups.setdefault(regime(source, cell), []).append(delta)
    return {REGIME_METRIC[r]: sum(v) / len(v) for r, v in groups.items()}
