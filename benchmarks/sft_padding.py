"""Fine-tune step throughput: dynamic padding (the trainer's collator) vs padding every batch to max_length.

The same LoRA model (the built-in tiny Llama, the paper's LoRA recipe, dropout 0), the same batches of
examples built by `formats.build_sft_example`, the same AdamW steps; only the collator differs: TRL's
`DataCollatorForLanguageModeling` as training uses it (pad to the longest example of the batch) and
the same collator with `pad_to_multiple_of=max_length` (every batch padded to the format's max_length,
as the paper's script did), and the trainer's default, padding-free batches (the examples of a batch
flattened into one row with per-example position ids; transformers keeps each example to itself).
Reports real (non-pad) tokens per second of forward+backward+step time and the largest per-batch loss
difference from dynamic padding, for the synthetic train format and ARC-shaped paper-like formats
(max_length 256 and 512); `--real MODEL` adds a row for a built-in real model
(smollm2-135m-instruct, gemma-3-270m: real weights, its own tokenizer) on the ARC-shaped format at
max_length 512, with `--real-steps` steps (a 135M model takes seconds per step on a CPU core).

    OMP_NUM_THREADS=2 python benchmarks/sft_padding.py [--steps 20] [--batch-size 8] [--no-append]
    OMP_NUM_THREADS=2 python benchmarks/sft_padding.py --real smollm2-135m-instruct [--real-steps 4] [--no-tiny]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import random
import time

import _common  # noqa: F401  (puts src/ on the path)


def synthetic_examples(tokenizer, n):
    """Training examples of the synthetic suite (every task's first language, its train format)."""
    from transfergrid.data import get_suite
    from transfergrid.formats import build_sft_example
    from transfergrid.grid import Cell

    suite = get_suite("synthetic")
    out = []
    for task, spec in suite.tasks.items():
        items = suite.items(Cell(task, spec.languages[0]), "train")
        out += [build_sft_example(item, spec.train_format, tokenizer) for item in items[: n // len(suite.tasks) + 1]]
    random.Random(0).shuffle(out)
    return out[:n], f"synthetic (max_length {suite.tasks[task].train_format.max_length})"


def arc_shaped_examples(tokenizer, n, max_length):
    """ARC-shaped letter examples (question of 10-60 synthetic words, four 1-6-word options).

    With the tiny model's tokenizer these are about 20-150 tokens long (mean ~70), about the length of ARC
    prompts under Llama/Qwen tokenizers.
    """
    from transfergrid.data import Item, PromptFormat
    from transfergrid.formats import build_sft_example
    from transfergrid.synthetic import corpus

    words = sorted({w for line in corpus()[:2000] for w in line.split() if w.isalpha()})
    rng = random.Random(1)
    fmt = PromptFormat(
        template="Question: {question}\n{options}\nAnswer:", target="letter", loss="answer", truncation="left",
        max_length=max_length,
    )
    items = [
        Item(id=str(i), question=" ".join(rng.choices(words, k=rng.randint(10, 60))) + "?",
             choices=tuple(" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(4)), gold=rng.randrange(4))
        for i in range(n)
    ]
    return [build_sft_example(item, fmt, tokenizer) for item in items], f"ARC-shaped (max_length {max_length})"


def lora_model(real: str | None = None):
    """The tiny Llama (or built-in real model `real`) with a fresh LoRA adapter (paper recipe, dropout 0)."""
    import peft

    from transfergrid.config import LoraConfig
    from transfergrid.models import load_model, resolve_model
    from transfergrid.training import to_peft_config

    model, tokenizer = load_model(resolve_model(f"builtin:{real}"), "cpu") if real else _common.tiny_model()
    config = to_peft_config(dataclasses.replace(LoraConfig(), lora_dropout=0.0), model)
    model = peft.get_peft_model(model, config)
    model.train()
    return model, tokenizer


def run_steps(model, batches, sync=None):
    """Forward+backward+AdamW step per batch; (per-batch losses, seconds, real tokens) of all but the first.

    The first step is a warm-up (allocator, kernels): its loss is kept, its time and tokens are not.
    Real tokens: the attention mask's ones, or every token of a padding-free batch (it has no padding).
    `sync` (e.g. `torch.cuda.synchronize`) is called before each step's time is read.
    """
    import torch

    torch.manual_seed(0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses, seconds, tokens = [], 0.0, 0
    for step, batch in enumerate(batches):
        started = time.perf_counter()
        loss = model(**batch, use_cache=False).loss  # as the trainer (a cache would hide a padding-free batch's bounds)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if sync is not None:
            sync()
        if step:
            seconds += time.perf_counter() - started
            tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    return losses, seconds, tokens


def collators(pad_token_id, max_length):
    """The trainer's collators: dynamic padding, padding-free (flattened, position ids), padded to max_length."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return {
        "dynamic": DataCollatorForLanguageModeling(pad_token_id=pad_token_id),
        "padding-free": DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True),
        "padded": DataCollatorForLanguageModeling(pad_token_id=pad_token_id, pad_to_multiple_of=max_length),
    }


def measure(model, tokenizer, examples, max_length, batch_size, steps, repeats):
    chunks = [examples[i : i + batch_size] for i in range(0, batch_size * steps, batch_size)]
    best, losses, widths, tokens = {}, {}, {}, {}
    for _ in range(repeats):  # alternate, best time of each: robust to other load on the machine
        for name, collator in collators(tokenizer.pad_token_id, max_length).items():
            batches = [collator(chunk) for chunk in chunks]
            losses[name], seconds, tokens[name] = run_steps(copy.deepcopy(model), batches)
            best[name] = min(best.get(name, float("inf")), seconds)
            widths[name] = sum(b["input_ids"].shape[1] for b in batches) / len(batches)
    assert tokens["dynamic"] == tokens["padding-free"] == tokens["padded"], tokens
    diff = {name: max(abs(a - b) for a, b in zip(losses["dynamic"], losses[name])) for name in ("padded", "padding-free")}
    n_examples = len(chunks) * batch_size
    rate = {name: tokens["dynamic"] / seconds for name, seconds in best.items()}
    return {
        "mean example tokens": f"{sum(len(e['input_ids']) for e in examples[:n_examples]) / n_examples:.0f}",
        "mean padded width (dynamic)": f"{widths['dynamic']:.0f}", "tokens/s dynamic": f"{rate['dynamic']:.0f}",
        "tokens/s padded": f"{rate['padded']:.0f}", "ratio": f"{best['padded'] / best['dynamic']:.2f}x",
        "max abs dloss": f"{diff['padded']:.1e}",
        "tokens/s padding-free": f"{rate['padding-free']:.0f}",
        "padding-free / dynamic": f"{best['dynamic'] / best['padding-free']:.2f}x",
        "max abs dloss padding-free": f"{diff['padding-free']:.1e}",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--real", default="", help="also a row for this built-in real model (smollm2-135m-instruct, gemma-3-270m)")
    parser.add_argument("--real-steps", type=int, default=4, help="steps of the real model's row (the first untimed)")
    parser.add_argument("--no-tiny", action="store_true", help="only the real model's row")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    rows = []
    if not args.no_tiny:
        model, tokenizer = lora_model()
        n = args.steps * args.batch_size
        cases = [(*synthetic_examples(tokenizer, n), 128), (*arc_shaped_examples(tokenizer, n, 256), 256),
                 (*arc_shaped_examples(tokenizer, n, 512), 512)]
        for examples, name, max_length in cases:
            row = {"model": "tiny-llama (0.17M)", "format": name, "batch": args.batch_size, "steps": args.steps}
            row |= measure(model, tokenizer, examples, max_length, args.batch_size, args.steps, args.repeats)
            rows.append(row)
            print(row, flush=True)
    if args.real:
        model, tokenizer = lora_model(args.real)
        n_params = sum(p.numel() for p in model.get_base_model().parameters() if not p.requires_grad)
        examples, name = arc_shaped_examples(tokenizer, args.real_steps * args.batch_size, 512)
        row = {"model": f"{args.real} ({n_params / 1e6:.0f}M, real weights)", "format": name, "batch": args.batch_size,
               "steps": args.real_steps}
        row |= measure(model, tokenizer, examples, 512, args.batch_size, args.real_steps, 1)
        rows.append(row)
        print(row, flush=True)
    table = _common.markdown_table(rows)
    print(table)
    ok = all(float(r["ratio"][:-1]) >= 2 and float(r["max abs dloss"]) < 1e-4 for r in rows)
    faster = [r for r in rows if float(r["padding-free / dynamic"][:-1]) > 1]
    if not args.no_append:
        _common.append_results(
            "sft_padding: fine-tune step, dynamic padding vs padding to max_length vs padding-free (LoRA r=32)",
            f"python benchmarks/sft_padding.py --steps {args.steps} --batch-size {args.batch_size} --repeats {args.repeats}"
            + (f" --real {args.real} --real-steps {args.real_steps}" if args.real else "") + (" --no-tiny" if args.no_tiny else ""),
            table, f"Goal >= 2x over padding to max_length with the same losses: {'met' if ok else 'NOT met'} on every row. "
            f"Padding-free is faster than dynamic padding on {len(faster)} of {len(rows)} rows: "
            + ", ".join(f"{r['model']} {r['format']} {r['padding-free / dynamic']}" for r in rows) + ".",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
