"""K adapters x all synthetic targets: one base load with PEFT adapter swapping vs merge+save+reload.

Trains K = 12 quick LoRA adapters on the built-in tiny Llama (one per synthetic source cell, the
paper's LoRA recipe, a few AdamW steps each; enough to change predictions), then evaluates every
adapter on every synthetic target cell (test split) in two ways, measured in one process:

- swap: the base model loaded once, `transfergrid.adapters.AdapterHost` (what `evaluate` uses) puts
  each adapter in (its weights copied into the active adapter's tensors when the LoRA configuration is
  the same, else `load_adapter`/`set_adapter`/`delete_adapter`), merges it in place (`merge_adapter`)
  and restores the base weights from a CPU snapshot before the next one; swap time = all of that;
- merge-save-reload (the paper's procedure, SPEC 1.6): per adapter, load the base, attach the adapter,
  `merge_and_unload`, `save_pretrained`, reload model and tokenizer from disk, evaluate.

The two run adapter by adapter, alternating, so both see the same load of a shared machine.
Reports the swap overhead as % of pure evaluation time, the end-to-end ratio, and whether both give
identical predictions.

    OMP_NUM_THREADS=2 python benchmarks/adapter_sweep.py [--adapters 12] [--steps 8] [--no-append]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts src/ on the path)


def train_adapters(tokenizer, cells, steps, workdir: Path) -> list[Path]:
    """One quickly trained LoRA adapter per source cell, saved under `workdir`."""
    import peft
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from transfergrid.config import LoraConfig
    from transfergrid.data import get_suite
    from transfergrid.formats import build_sft_example
    from transfergrid.training import to_peft_config

    suite = get_suite("synthetic")
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    dirs = []
    for k, cell in enumerate(cells):
        base, _ = _common.tiny_model()
        model = peft.get_peft_model(base, to_peft_config(LoraConfig()))
        fmt = suite.tasks[cell.task].train_format
        examples = [build_sft_example(item, fmt, tokenizer) for item in suite.items(cell, "train")[: 16 * steps]]
        torch.manual_seed(k)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        model.train()
        for start in range(0, len(examples), 16):
            model(**collator(examples[start : start + 16])).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        path = workdir / f"adapter-{k:02d}"
        model.save_pretrained(path)
        dirs.append(path)
    return dirs


def merge_save_reload(adapter, path: Path):
    """The paper's procedure for one adapter: load the base, attach, merge_and_unload, save, reload."""
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, tokenizer = _common.tiny_model()
    merged = peft.PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def sweep(adapters, suite, cells, batch_size, workdir: Path) -> tuple[dict, list, list]:
    """Both procedures adapter by adapter, alternating (so both see the same load on a shared machine).

    Returns:
        The times (s), and per adapter the predictions of the swap and of the merge-save-reload way.
    """
    from transfergrid.adapters import AdapterHost
    from transfergrid.evaluation import evaluate_cells

    times = dict.fromkeys(("swap_total", "load", "swap_eval", "merge_total", "merge_eval"), 0.0)
    started = time.perf_counter()
    model, tokenizer = _common.tiny_model()
    times["load"] = times["swap_total"] = time.perf_counter() - started
    swapped, merged = [], []
    with AdapterHost(model) as host:
        for k, adapter in enumerate(adapters):
            started = time.perf_counter()
            other, other_tokenizer = merge_save_reload(adapter, workdir / f"merged-{k:02d}")
            result = evaluate_cells(other, other_tokenizer, suite, cells, batch_size=batch_size, progress=False)
            times["merge_total"] += time.perf_counter() - started
            times["merge_eval"] += result.seconds
            merged.append(result.predictions)
            started = time.perf_counter()
            result = evaluate_cells(host.activate(adapter), tokenizer, suite, cells, batch_size=batch_size, progress=False)
            times["swap_total"] += time.perf_counter() - started
            times["swap_eval"] += result.seconds
            swapped.append(result.predictions)
        times["swap"] = host.swap_seconds
    return times, swapped, merged


def main(argv=None) -> int:
    import pandas as pd

    from transfergrid.data import get_suite, suite_cells

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=12)
    parser.add_argument("--steps", type=int, default=8, help="AdamW steps (batches of 16) per adapter")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    suite = get_suite("synthetic")
    cells = suite_cells(suite, [], [])
    _, tokenizer = _common.tiny_model()
    with tempfile.TemporaryDirectory(prefix="transfergrid-sweep-") as tmp:
        adapters = train_adapters(tokenizer, (cells * 2)[: args.adapters], args.steps, Path(tmp))
        times, swap_pred, merge_pred = sweep(adapters, suite, cells, args.batch_size, Path(tmp))
    swap_s, load_s, swaps_s, eval_s = times["swap_total"], times["load"], times["swap"], times["swap_eval"]
    merge_s, merge_eval_s = times["merge_total"], times["merge_eval"]
    same = all(a[["predicted", "predicted_norm"]].equals(b[["predicted", "predicted_norm"]]) for a, b in zip(swap_pred, merge_pred))
    worst = max(float((pd.Series([x for r in a["loglik"] for x in r]) - pd.Series([x for r in b["loglik"] for x in r])).abs().max())
                for a, b in zip(swap_pred, merge_pred))
    items = sum(len(p) for p in swap_pred)
    rows = [{
        "adapters": len(adapters), "targets": len(cells), "items scored": items,
        "swap: total s": f"{swap_s:.2f}", "base load s": f"{load_s:.2f}", "swap s": f"{swaps_s:.2f}",
        "eval s": f"{eval_s:.2f}", "swap overhead": f"{100 * swaps_s / eval_s:.1f}%",
        "merge-save-reload: total s": f"{merge_s:.2f}", "its eval s": f"{merge_eval_s:.2f}",
        "ratio (merge / swap)": f"{merge_s / swap_s:.2f}x", "identical predictions": same, "max abs dLL": f"{worst:.1e}",
    }]
    table = _common.markdown_table(rows)
    print(table)
    ok = same and swaps_s / eval_s < 0.10
    if not args.no_append:
        _common.append_results(
            "adapter_sweep: one base load + adapter swapping vs merge+save+reload per adapter (tiny Llama)",
            f"python benchmarks/adapter_sweep.py --adapters {args.adapters} --steps {args.steps}",
            table, f"Goal: swap overhead < 10% of pure evaluation time, identical predictions: {'met' if ok else 'NOT met'}.",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
