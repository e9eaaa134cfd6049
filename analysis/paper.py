"""The paper's grid and groupings as data (SPEC 1.1-1.4), for analyses that take them as parameters.

Nothing here is applied implicitly: every analysis takes its families, construction labels and task
order as arguments, so the `synthetic` suite (or any other) passes its own.
"""

from __future__ import annotations

TASKS = ("arc_challenge", "global_mmlu", "hellaswag", "truthfulqa")
LANGUAGES = ("ar", "bn", "de", "en", "es", "fr", "hi", "id", "it", "pt", "zh")
SEEDS = (17, 42, 101)

# SPEC 1.12 axis order of the task->task heatmap: ARC, TruthfulQA, HellaSwag, Global-MMLU.
TASK_ORDER = ("arc_challenge", "truthfulqa", "hellaswag", "global_mmlu")

# SPEC 1.2: Global-MMLU(-Lite) is human-translated ("curated"); the others are machine-translated.
CURATED_TASK = "global_mmlu"
CONSTRUCTION = {"global_mmlu": "human", "arc_challenge": "machine", "hellaswag": "machine", "truthfulqa": "machine"}

# SPEC 1.3: family grouping of the donor/recipient family tables.
LANGUAGE_FAMILIES = {
    "fr": "Romance", "es": "Romance", "pt": "Romance", "it": "Romance",
    "de": "Germanic", "en": "Germanic",
    "hi": "Indic", "bn": "Indic",
    "zh": "Chinese", "ar": "Arabic", "id": "Indonesian",
}

# SPEC 1.3: ISO 639-3 codes used for the typological distances.
ISO3 = {
    "ar": "ara", "bn": "ben", "de": "deu", "en": "eng", "es": "spa", "fr": "fra",
    "hi": "hin", "id": "ind", "it": "ita", "pt": "por", "zh": "cmn",
}

# SPEC 1.4: (HF id, family label of the per-family CI, size in B used by the analysis).
MODELS = (
    ("meta-llama/Llama-3.2-1B-Instruct", "Llama-3", 1.0),
    ("meta-llama/Llama-3.2-3B-Instruct", "Llama-3", 3.0),
    ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3", 8.0),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5", 0.5),
    ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5", 1.5),
    ("Qwen/Qwen2.5-3B-Instruct", "Qwen2.5", 3.0),
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5", 7.0),
    ("google/gemma-3-1b-it", "gemma-3", 1.0),
    ("google/gemma-3-4b-it", "gemma-3", 4.0),
)

# SPEC 1.9 / Table A: rows per regime of the full 9 x 44 x 44 grid.
REGIME_COUNTS = {"MT-ML": 396, "MT-CL": 3960, "CT-ML": 1188, "CT-CL": 11880}
