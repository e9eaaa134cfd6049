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


REGISTRY_FILE = Path(__file__).parent / "model_registry.yaml"


def registry(extra: str | Path | None = None) -> dict[str, ModelSpec]:
    """The model registry (SPEC 1.4) plus the entries of an optional extra YAML file (same schema)."""
    import yaml

    entries: dict[str, ModelSpec] = {}
    for path in [REGISTRY_FILE, *([Path(extra)] if extra else [])]:
        if not path.is_file():
            raise ValueError(f"model registry file not found: {path}")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in data.get("models") or []:
            unknown = set(entry) - {"id", "family", "size_b", "revision"}
            if "id" not in entry or unknown:
                raise ValueError(f"{path}: each model needs `id` and may have family, size_b, revision; got {entry}")
            model_id = str(entry["id"])
            size = entry.get("size_b", infer_size_b(model_id))
            entries[model_id] = ModelSpec(
                id=model_id, family=str(entry.get("family") or _infer_family(model_id)),
                size_b=float(size) if size is not None else float("nan"), revision=str(entry.get("revision") or "main"),
            )
    return entries


def _infer_family(model_id: str) -> str:
    return model_id.split("/")[-1].split("-")[0] if "/" in model_id else Path(model_id).name


def resolve_model(model_id: str, *, registry_file: str | Path | None = None, family: str | None = None,
                  size_b: float | None = None) -> ModelSpec:
    """Registry entry for `model_id`: a built-in name, a registered model, or any Hugging Face id / local path.

    `family` and `size_b`, when given, override the registry or the inference from the name (the first
    `<number>B` token, SPEC 1.4).

    Raises:
        ValueError: an unknown `builtin:` name, or an invalid registry file.
    """
    from dataclasses import replace

    if model_id.startswith(BUILTIN_PREFIX):
        from transfergrid.grid import check_choice

        models = builtin_models()
        check_choice("model", model_id, list(models))
        spec = models[model_id]
    else:
        spec = registry(registry_file).get(model_id)
        if spec is None:
            size = infer_size_b(model_id)
            spec = ModelSpec(id=model_id, family=_infer_family(model_id), size_b=size if size is not None else float("nan"))
    if family:
        spec = replace(spec, family=family)
    if size_b is not None:
        spec = replace(spec, size_b=float(size_b))
    return spec


def study_model(cfg, model_id: str | None = None) -> ModelSpec:
    """`resolve_model` with a study config's registry file and family/size overrides (`model_id`: else `cfg.model`)."""
    return resolve_model(model_id or cfg.model, registry_file=cfg.model_registry or None, family=cfg.model_family or None,
                         size_b=cfg.model_size_b)


def is_hub_model(spec: ModelSpec) -> bool:
    """Whether the model comes from the Hugging Face Hub (not built in, not a local directory)."""
    return not spec.id.startswith(BUILTIN_PREFIX) and not Path(spec.id).expanduser().exists()


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
    path, kwargs = spec.id, {}
    if spec.id.startswith(BUILTIN_PREFIX):
        from transfergrid import tiny_model

        path = str(tiny_model.ensure_built(cache_dir()))
    elif is_hub_model(spec):
        from transfergrid.hub import hub_cache_dir

        kwargs = {"revision": spec.revision, "cache_dir": str(hub_cache_dir())}
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad = EOS where the tokenizer has none (SPEC 1.5)
    if device.startswith("cuda"):
        # accelerate places the weights straight onto the one GPU (no full CPU copy first)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": device}, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs).to(device)
    model.eval()
    return model, tokenizer
