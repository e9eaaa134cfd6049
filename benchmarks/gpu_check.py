"""GPU check: the evaluator and the fine-tune step on a Qwen2.5-0.5B-architecture model in bfloat16, in minutes.

On a machine with a CUDA GPU, with nothing downloaded: builds a randomly initialised model of the
Qwen2.5-0.5B architecture (its published configuration, written below: 24 layers, hidden 896, 14
query / 2 key-value heads, 151,936-token vocabulary, tied embeddings; 494M parameters) in bfloat16 on
the GPU, with the built-in tiny tokenizer (offline; its ids index the large vocabulary), and reports:

- evaluation on the paper's formats (Global-MMLU answer letters, ARC option texts, TruthfulQA MC1
  with its 6-pair priming; chat template off and on) around synthetic-word items: items/s of
  transfergrid and of lm-eval 0.4.13 (`HFLM` on the same model object and requests), both in
  bfloat16, their ratio, and each one's agreement (per-item acc and acc_norm predictions) with and
  largest |dLL| from a float32 reference (lm-eval on the same weights in float32), and the peak GPU
  memory of each scorer (`torch.cuda.max_memory_allocated`);
- fine-tuning: LoRA with the paper's recipe (r 32, alpha 64, the seven projections) on ARC-shaped
  examples (max_length 512), batch 8, AdamW steps/s and tokens/s with the trainer's padding-free
  batches and with dynamic padding, the largest per-step loss difference, and peak memory.

A random model's log-likelihoods are close to uniform, so its near-ties make the agreement figures a
stress test of the numerics, not an accuracy. Whatever is left when `--budget` seconds have passed is
skipped and said so. Without CUDA it says so and exits with status 2, having built nothing.

    python benchmarks/gpu_check.py [--items 200] [--budget 270] [--no-append]
    python benchmarks/gpu_check.py --smoke   # CPU, a 2-layer model and a few items: checks the script only
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import time

import _common  # noqa: F401  (puts src/ on the path)

NO_CUDA = ("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); this check needs one. "
           "Nothing was built or measured. Run it on a CUDA machine, or with --smoke to check the script on CPU.")

# Qwen/Qwen2.5-0.5B config.json (architecture only; the weights are drawn at random)
QWEN25_05B = dict(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=True, hidden_act="silu", use_sliding_window=False, attention_dropout=0.0,
)
SMOKE = dict(QWEN25_05B, num_hidden_layers=2, hidden_size=56, intermediate_size=112, num_attention_heads=7,
             num_key_value_heads=1, vocab_size=0)  # vocab_size 0: the tokenizer's


def qwen_config(tokenizer, smoke: bool = False):
    """The Qwen2.5-0.5B architecture (or its 2-layer smoke version) with the tokenizer's special ids."""
    from transformers import Qwen2Config

    fields = dict(SMOKE if smoke else QWEN25_05B)
    fields["vocab_size"] = max(fields["vocab_size"], len(tokenizer))
    return Qwen2Config(**fields, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa")


def build_model(config, device, dtype, seed: int = 0):
    """A randomly initialised Qwen2 causal LM, built directly on `device` in `dtype`, eval mode."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    return model.eval()


def paper_requests(tokenizer, n_items: int, chat: bool) -> dict[str, list]:
    """Scoring requests of the paper's formats around synthetic-word items (the tiny tokenizer knows them)."""
    import random

    import eval_vs_lmeval as ev

    from transfergrid.data import Item, get_suite
    from transfergrid.formats import build_scoring_request

    words = ev.synthetic_words()
    rng = random.Random(3)
    letters = [Item(id=str(i), question=" ".join(rng.choices(words, k=rng.randint(15, 40))) + "?",
                    choices=tuple(" ".join(rng.choices(words, k=rng.randint(1, 5))) for _ in range(4)), gold=0)
               for i in range(n_items)]
    fmt = get_suite("paper").tasks["global_mmlu"].eval_format
    return {
        "letters (Global-MMLU)": [build_scoring_request(item, fmt, tokenizer, chat) for item in letters],
        "option texts (ARC)": ev.arc_shaped_requests(tokenizer, n_items, chat),
        "priming (TruthfulQA MC1)": ev.truthfulqa_shaped_requests(tokenizer, max(n_items // 4, 2), chat),
    }


def lmeval_scores(model, tokenizer, requests, batch_size, device):
    """lm-eval's log-likelihoods of the requests and the seconds it took (None when lm-eval is absent)."""
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return None, float("nan")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    instances = [Instance("loglikelihood", doc={}, arguments=(r.context, c), idx=i)
                 for r in requests for i, c in enumerate(r.continuations)]
    _sync(device)
    started = time.perf_counter()
    flat = iter(ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True))
    _sync(device)
    return [[next(flat) for _ in r.continuations] for r in requests], time.perf_counter() - started


def transfergrid_scores(model, tokenizer, requests, batch_size, device):
    from transfergrid.evaluation import score_requests

    _sync(device)
    started = time.perf_counter()
    out = score_requests(model, tokenizer, requests, batch_size=batch_size, progress=False)
    _sync(device)
    return out, time.perf_counter() - started


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> str:
    import torch

    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if device == "cuda" else "-"


def eval_rows(model16, model32, tokenizer, args, device, deadline) -> list[dict]:
    """One row per (format, chat): speed of both scorers in bf16 and their agreement with the fp32 reference."""
    import eval_vs_lmeval as ev

    rows = []
    for chat in (False, True):
        for fmt, requests in paper_requests(tokenizer, args.items, chat).items():
            if time.monotonic() > deadline:
                rows.append({"format": fmt, "chat": chat, "items": len(requests), "note": "skipped: --budget spent"})
                continue
            transfergrid_scores(model16, tokenizer, requests[:4], args.batch_size, device)  # warm-up
            reference, _ = lmeval_scores(model32, tokenizer, requests, args.batch_size, device)
            if reference is None:  # no lm-eval: transfergrid's one-sequence path in float32 is the reference
                from transfergrid.evaluation import score_requests

                reference = score_requests(model32, tokenizer, requests, batch_size=args.batch_size, progress=False,
                                           exact=True)
            _reset_peak(device)
            ours, ours_s = transfergrid_scores(model16, tokenizer, requests, args.batch_size, device)
            ours_peak = _peak_mib(device)
            _reset_peak(device)
            theirs, theirs_s = lmeval_scores(model16, tokenizer, requests, args.batch_size, device)
            theirs_peak = _peak_mib(device)
            row = {"format": fmt, "chat": chat, "items": len(requests),
                   "transfergrid items/s": f"{len(requests) / ours_s:.1f}"}
            if theirs is None:
                row |= {"lm-eval items/s": "not installed", "ratio": "-",
                        "agree with fp32 (tg / lm-eval)": f"{ev.agreement(requests, ours, reference):.1%} / -",
                        "max abs dLL vs fp32 (tg / lm-eval)": f"{ev.max_dll(ours, reference):.3f} / -"}
            else:
                row |= {"lm-eval items/s": f"{len(requests) / theirs_s:.1f}", "ratio": f"{theirs_s / ours_s:.2f}x",
                        "agree with fp32 (tg / lm-eval)": f"{ev.agreement(requests, ours, reference):.1%} / "
                                                          f"{ev.agreement(requests, theirs, reference):.1%}",
                        "max abs dLL vs fp32 (tg / lm-eval)": f"{ev.max_dll(ours, reference):.3f} / "
                                                              f"{ev.max_dll(theirs, reference):.3f}"}
            row |= {"peak MiB (tg / lm-eval)": f"{ours_peak} / {theirs_peak}", "note": ""}
            rows.append(row)
            print(row, flush=True)
    return rows


def sft_rows(model16, tokenizer, args, device, deadline) -> list[dict]:
    """AdamW steps/s of a LoRA fine-tune (paper recipe), padding-free vs dynamic padding, equal losses."""
    import peft
    import sft_padding

    from transfergrid.config import LoraConfig
    from transfergrid.training import to_peft_config

    if time.monotonic() > deadline:
        return [{"collator": "-", "note": "skipped: --budget spent"}]
    examples, name = sft_padding.arc_shaped_examples(tokenizer, args.sft_steps * 8, 512)
    model = peft.get_peft_model(copy.deepcopy(model16), to_peft_config(dataclasses.replace(LoraConfig(), lora_dropout=0.0)))
    model.train()
    chunks = [examples[i : i + 8] for i in range(0, len(examples), 8)]
    rows, losses = [], {}
    for collator_name, collator in sft_padding.collators(tokenizer.pad_token_id, 512).items():
        if collator_name == "padded":
            continue
        batches = [{k: v.to(device) if hasattr(v, "to") else v for k, v in collator(chunk).items()} for chunk in chunks]
        _reset_peak(device)
        _sync(device)
        losses[collator_name], seconds, tokens = sft_padding.run_steps(copy.deepcopy(model), batches, sync=lambda: _sync(device))
        rows.append({"collator": collator_name, "format": name, "batch": 8, "steps timed": len(batches) - 1,
                     "steps/s": f"{(len(batches) - 1) / seconds:.2f}", "tokens/s": f"{tokens / seconds:.0f}",
                     "peak MiB": _peak_mib(device), "note": ""})
        print(rows[-1], flush=True)
    diff = max(abs(a - b) for a, b in zip(losses["dynamic"], losses["padding-free"]))
    for row in rows:
        row["note"] = f"max abs dloss padding-free vs dynamic {diff:.1e}"
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200, help="items per format (a quarter for TruthfulQA)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sft-steps", type=int, default=12)
    parser.add_argument("--budget", type=float, default=270.0, help="seconds; later parts are skipped past it")
    parser.add_argument("--smoke", action="store_true", help="CPU, a 2-layer model, 8 items: checks the script only")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    started = time.monotonic()
    deadline = started + args.budget
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    device = "cpu" if args.smoke else "cuda"
    if args.smoke:
        args.items, args.sft_steps, args.no_append = min(args.items, 8), min(args.sft_steps, 3), True

    _, tokenizer = _common.tiny_model()
    config = qwen_config(tokenizer, smoke=args.smoke)
    model32 = build_model(config, device, torch.float32)
    model16 = copy.deepcopy(model32).to(torch.bfloat16)
    n_params = sum(p.numel() for p in model32.parameters())
    built = time.monotonic() - started
    evals = eval_rows(model16, model32, tokenizer, args, device, deadline)
    del model32
    sft = sft_rows(model16, tokenizer, args, device, deadline)
    total = time.monotonic() - started
    title = f"Qwen2.5-0.5B architecture, random weights ({n_params / 1e6:.1f}M parameters), bfloat16, {device}"
    tables = f"Evaluation:\n\n{_common.markdown_table(evals)}\n\nFine-tuning (LoRA r=32, paper recipe):\n\n{_common.markdown_table(sft)}"
    print(f"{title}\n\n{tables}\n\nbuilt in {built:.0f} s; whole check {total:.0f} s")
    if not args.no_append:
        _common.append_results(
            f"gpu_check: {title}",
            f"python benchmarks/gpu_check.py --items {args.items} --batch-size {args.batch_size} --sft-steps {args.sft_steps}",
            tables, f"Model built in {built:.0f} s; whole check {total:.0f} s (goal: under 300 s).",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
