"""Every MLflow tag, metric and artifact name of the data model (ARCHITECTURE.md section 3), spelled once."""

from __future__ import annotations

from transfergrid.grid import Cell

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
IMPORTED_FROM = "imported_from"  # on runs made by `import_results`: "<file name> sha256:<hash>"

KINDS = ("baseline", "finetune", "evaluate", "ablation", "grid", "analysis")

# Artifacts.
CONFIG_ARTIFACT = "config.yaml"
PREDICTIONS_ARTIFACT = "predictions.parquet"
ADAPTER_DIR = "adapter"

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
