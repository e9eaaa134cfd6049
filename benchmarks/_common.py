"""Shared helpers of the evaluation and training benchmarks: machine description, results file, models."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


def machine() -> str:
    """`N cores, <CPU model>, <RAM> GiB RAM, torch threads, Python x.y` (GPU name when one is used)."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cores} cores, {cpu}, {mem_kb / 2**20:.0f} GiB RAM{gpu}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def markdown_table(rows: list[dict]) -> str:
    """Rows of equal keys as a Markdown table."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def append_results(title: str, command: str, table: str, notes: str = "") -> None:
    """Append a dated section (title, command, machine, table, notes) to `benchmarks/RESULTS.md`."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"\n## {title} ({stamp})\n\n`{command}`\n\nMachine: {machine()}\n\n{table}\n"
    if notes:
        text += f"\n{notes}\n"
    with RESULTS.open("a") as handle:
        handle.write(text)


def tiny_model():
    """The built-in `builtin:tiny-llama` (model, tokenizer) on CPU, float32."""
    from transfergrid.models import load_model, resolve_model

    return load_model(resolve_model("builtin:tiny-llama"), "cpu")


def llama_20m(tokenizer, seed: int = 0):
    """A randomly initialised ~20M-parameter Llama (hidden 512, 6 layers, float32, sdpa) on CPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1376, num_hidden_layers=6,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model
