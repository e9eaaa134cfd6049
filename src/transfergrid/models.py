"""Model registry and loading: built-in tiny models and Hugging Face ids through one code path."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class ModelSpec:
    """What the study needs to know about a model.

    Attributes:
        id: `builtin:<name>`, a Hugging Face id or a local path.
        family: model family label used by the analysis (e.g. `Qwen2.5`).
        size_b: parameter count in billions.
        revision: Hugging Face revision (commit or branch) or the built-in model's version.
        train_overrides: recipe fields this model needs changed from the paper's defaults, with why.
    """

    id: str
    family: str
    size_b: float
    revision: str = "main"
    train_overrides: dict = field(default_factory=dict)

    @property
    def size_bucket(self) -> str:
        """S (<= 1.5B), M (< 7B) or L (>= 7B), as SPEC 1.4; '?' for an unknown size."""
        from transfergrid.grid import size_bucket

        return size_bucket(self.size_b)


def builtin_models() -> dict[str, ModelSpec]:
    """The models that are built locally, without network."""
    from transfergrid import tiny_model

    return {
        f"{BUILTIN_PREFIX}tiny-llama": ModelSpec(
            id=f"{BUILTIN_PREFIX}tiny-llama",
            family="tiny-llama",
            size_b=round(tiny_model.parameter_count() / 1e9, 6),
            revision=tiny_model.VERSION,
            # The randomly initialised tiny model needs a far larger step than the paper's 5e-5.
            train_overrides={"learning_rate": tiny_model.RECOMMENDED_LEARNING_RATE},
        )
    }


def infer_size_b(model_id: str) -> float | None:
    """Parameter count parsed from the name: the first `<number>B` token (SPEC 1.4)."""
    match = re.search(r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", model_id.split("/")[-1])
    return float(match.group(1)) if match else None


def resolve_model(model_id: str) -> ModelSpec:
    """Registry entry for `model_id`: a built-in name, or any Hugging Face id / local path.

    Raises:
        ValueError: an unknown `builtin:` name.
    """
    if model_id.startswith(BUILTIN_PREFIX):
        from transfergrid.grid import check_choice

        models = builtin_models()
        check_choice("model", model_id, list(models))
        return models[model_id]
    size = infer_size_b(model_id)
    family = model_id.split("/")[-1].split("-")[0] if "/" in model_id else Path(model_id).name
    return ModelSpec(id=model_id, family=family, size_b=size if size is not None else float("nan"))


def cache_dir() -> Path:
    """Where built-in models are built: $TRANSFERGRID_CACHE or ~/.cache/transfergrid."""
    return Path(os.environ.get("TRANSFERGRID_CACHE", Path.home() / ".cache" / "transfergrid"))


def load_model(spec: ModelSpec, device: str | None = None):
    """Load (model, tokenizer) for `spec`, float32 on CPU and bf16 on GPU, in eval mode.

    Built-in models are built into `cache_dir()` on first use and reused afterwards.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if spec.id.startswith(BUILTIN_PREFIX):
        from transfergrid import tiny_model

        path, revision = str(tiny_model.ensure_built(cache_dir())), None
    else:
        path, revision = spec.id, spec.revision
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad = EOS where the tokenizer has none (SPEC 1.5)
    model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=dtype).to(device)
    model.eval()
    return model, tokenizer
