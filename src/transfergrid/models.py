"""Model registry and loading: built-in models, Hugging Face ids, local directories and GGUF files through one code path."""

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
    """The models that need no network: the tiny random model, built locally, and the real pretrained
    models whose GGUF files install from PyPI (`gguf_models`)."""
    from transfergrid import gguf_models, tiny_model

    models = {
        f"{BUILTIN_PREFIX}tiny-llama": ModelSpec(
            id=f"{BUILTIN_PREFIX}tiny-llama",
            family="tiny-llama",
            size_b=round(tiny_model.parameter_count() / 1e9, 6),
            revision=tiny_model.VERSION,
            # The randomly initialised tiny model needs a far larger step than the paper's 5e-5.
            train_overrides={"learning_rate": tiny_model.RECOMMENDED_LEARNING_RATE},
        )
    }
    for real in gguf_models.REAL_MODELS.values():
        model_id = f"{BUILTIN_PREFIX}{real.name}"
        models[model_id] = ModelSpec(id=model_id, family=real.family, size_b=real.size_b, revision=real.revision)
    return models


def infer_size_b(model_id: str) -> float | None:
    """Parameter count (billions) parsed from the name: its first `<number>B` or `<number>M` token
    (SPEC 1.4; `smollm2-135m` is 0.135), None when the name states no size."""
    match = re.search(r"(\d+(?:\.\d+)?)([bBmM])(?![a-zA-Z])", model_id.replace("\\", "/").split("/")[-1])
    if not match:
        return None
    value = float(match.group(1))
    return value if match.group(2) in "bB" else round(value / 1000, 6)


_UNSIZED_WARNED: set[str] = set()


def _warn_unsized(model_id: str) -> None:
    """Say once per process that a model's size is unknown (its size bucket becomes '?')."""
    if model_id not in _UNSIZED_WARNED:
        _UNSIZED_WARNED.add(model_id)
        logger.warning(
            "model %s: no size in its name (like 1.5B or 135M) or the registry; its size bucket is '?' in the "
            "analysis. Give --model_size_b (billions) or a --model_registry entry to set it", model_id,
        )


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


def _naming(model_id: str) -> str:
    """The name family and size are read from: the GGUF file of a directory that holds one, else the id."""
    from transfergrid import gguf_models

    try:
        gguf_file = gguf_models.local_gguf(model_id)
    except ValueError:  # reported by `check_loadable`
        return model_id
    return str(gguf_file) if gguf_file is not None else model_id


def _infer_family(model_id: str) -> str:
    if model_id.lower().endswith(".gguf"):  # a GGUF file: SmolLM2-135M-Instruct.Q4_1.gguf -> SmolLM2
        return Path(model_id).name.split("-")[0].split(".")[0]
    return model_id.split("/")[-1].split("-")[0] if "/" in model_id else Path(model_id).name


def resolve_model(model_id: str, *, registry_file: str | Path | None = None, family: str | None = None,
                  size_b: float | None = None) -> ModelSpec:
    """Registry entry for `model_id`: a built-in name, a registered model, or any Hugging Face id / local path
    (a model directory or a GGUF file).

    `family` and `size_b`, when given, override the registry or the inference from the name (the first
    `<number>B` or `<number>M` token, SPEC 1.4). A model whose size stays unknown is reported once.

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
            name = _naming(model_id)
            size = infer_size_b(name)
            spec = ModelSpec(id=model_id, family=_infer_family(name), size_b=size if size is not None else float("nan"))
    if family:
        spec = replace(spec, family=family)
    if size_b is not None:
        spec = replace(spec, size_b=float(size_b))
    if spec.size_b != spec.size_b:  # NaN: unknown
        _warn_unsized(spec.id)
    return spec


def study_model(cfg, model_id: str | None = None) -> ModelSpec:
    """`resolve_model` with a study config's registry file and family/size overrides (`model_id`: else `cfg.model`)."""
    return resolve_model(model_id or cfg.model, registry_file=cfg.model_registry or None, family=cfg.model_family or None,
                         size_b=cfg.model_size_b)


def is_hub_model(spec: ModelSpec) -> bool:
    """Whether the model comes from the Hugging Face Hub (not built in, not a local directory)."""
    return not spec.id.startswith(BUILTIN_PREFIX) and not Path(spec.id).expanduser().exists()


def cache_dir() -> Path:
    """Where built-in models are built and GGUF files converted: $TRANSFERGRID_CACHE or ~/.cache/transfergrid."""
    return Path(os.environ.get("TRANSFERGRID_CACHE", Path.home() / ".cache" / "transfergrid"))


def check_loadable(spec: ModelSpec) -> None:
    """Fail in milliseconds, naming what to install, when a model's packages are missing (GGUF models).

    Raises:
        gguf_models.RealModelUnavailable: a built-in real model or a GGUF file without its packages.
        ValueError: a `.gguf` path that does not exist, or a directory with several GGUF files.
    """
    from transfergrid import gguf_models

    name = spec.id.removeprefix(BUILTIN_PREFIX)
    if spec.id.startswith(BUILTIN_PREFIX) and name in gguf_models.REAL_MODELS:
        gguf_models.check_available(name)
    elif not spec.id.startswith(BUILTIN_PREFIX) and gguf_models.local_gguf(spec.id) is not None:
        gguf_models.check_reader(spec.id)


def model_dir(spec: ModelSpec) -> str:
    """What `from_pretrained` reads for `spec`: a built or converted directory in `cache_dir()`, a local
    directory, or the Hugging Face id itself. Built-in models are built, and GGUF files converted, on
    first use and reused afterwards."""
    from transfergrid import gguf_models

    if spec.id.startswith(BUILTIN_PREFIX):
        name = spec.id.removeprefix(BUILTIN_PREFIX)
        if name in gguf_models.REAL_MODELS:
            return str(gguf_models.builtin_dir(name, cache_dir()))
        from transfergrid import tiny_model

        return str(tiny_model.ensure_built(cache_dir()))
    gguf_file = gguf_models.local_gguf(spec.id)
    if gguf_file is not None:
        return str(gguf_models.local_dir(gguf_file, cache_dir()))
    return spec.id


def load_model(spec: ModelSpec, device: str | None = None):
    """Load (model, tokenizer) for `spec`, float32 on CPU and bf16 on GPU, in eval mode.

    Built-in models are built, and GGUF files converted, into `cache_dir()` on first use and reused
    afterwards (`model_dir`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path, kwargs = model_dir(spec), {}
    if is_hub_model(spec):
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
