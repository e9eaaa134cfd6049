"""benchmarks/gpu_check.py on a machine without a GPU: it refuses cleanly, and its CPU-computable parts run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run_script(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the check would run")
def test_refuses_without_cuda_having_built_and_recorded_nothing():
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text()
    done = run_script()
    assert done.returncode == 2
    assert "no CUDA GPU here" in done.stderr and "Nothing was built or measured" in done.stderr
    assert done.stdout == "" and results.read_text() == before


def test_builds_the_qwen25_05b_architecture():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import _common
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    _, tokenizer = _common.tiny_model()
    model = gpu_check.build_model(gpu_check.qwen_config(tokenizer), "meta", torch.bfloat16)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 494_032_768  # Qwen2.5-0.5B's count (tied embeddings)
    assert model.config.num_hidden_layers == 24 and model.config.num_key_value_heads == 2


@pytest.mark.slow
def test_smoke_run_on_cpu_reports_every_part():
    """The whole check on CPU with a 2-layer model of the architecture: every format, chat off and on,
    both scorers, agreement with the float32 reference, and both fine-tuning collators."""
    done = run_script("--smoke")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for fmt in ("letters (Global-MMLU)", "option texts (ARC)", "priming (TruthfulQA MC1)"):
        assert out.count(f"| {fmt} |") == 2  # chat off and on
    assert "| dynamic |" in out and "| padding-free |" in out and "skipped" not in out
    assert "max abs dloss padding-free vs dynamic" in out and "whole check" in out
