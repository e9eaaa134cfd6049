"""transfergrid's evaluator vs lm-evaluation-harness 0.4.13 on the same model object, items and prompts.

For each model (the built-in tiny Llama; a randomly initialised ~20M-parameter Llama with the same
tokenizer) and format (answer letters: `syn_lookup` + `syn_match`; option texts: `syn_define`; all
synthetic languages, test split; plus paper-shaped option texts: ARC-like items, and the paper's
TruthfulQA MC1 prompt with its 6-pair priming around synthetic items), both scorers receive the same
(context, continuation) pairs built by `formats.build_scoring_request`: lm-eval through
`HFLM(pretrained=<model object>).loglikelihood`, which is what its `multiple_choice` tasks call,
transfergrid through `score_requests` (tokenization included, no cache). Reports identical acc /
acc_norm predictions, the largest log-likelihood difference and the items/s ratio, measured side by
side in one process. Needs `pip install -e '.[bench]'`.

"bound without sharing" is lm-eval's time over the time of the bare forward passes of each item's
context alone: the highest ratio any exact scorer can reach when items share no prefix. On answer
letters lm-eval 0.4.13 also runs one forward pass per item (its logits cache groups the one-token
continuations of a context), so on a compute-bound model this bound, not the scorer, caps the ratio.

Real weights (`--real`): the built-in SmolLM2-135M-Instruct and Gemma 3 270M in float32 and bfloat16
(CPU), on the paper's formats (Global-MMLU answer letters, ARC option texts, TruthfulQA MC1 with its
6-pair priming; chat template on and off where the model has one) around English items written from a
small table of country facts (so the weights know the answers and predictions are not coin flips). A
bfloat16 row compares both scorers, each in bfloat16, with lm-eval's float32 log-likelihoods of the
same items (the float32 reference): how often each one's per-item predictions (acc and acc_norm)
agree with the reference, and its largest |dLL| from it.

Goal of a row (met / NOT met): the ratio is >= 3x, or >= 90% of the bound where the bound itself is
under 3.33x (no exact scorer can do better without sharing a prefix); a float32 row also needs
identical predictions, a bfloat16 row agreement with the float32 reference at least as often as
lm-eval in bfloat16.

    OMP_NUM_THREADS=2 python benchmarks/eval_vs_lmeval.py [--batch-size 32] [--limit N] [--no-append]
    OMP_NUM_THREADS=2 python benchmarks/eval_vs_lmeval.py --real [--real-items 32] [--models smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import logging
import time

import _common  # noqa: F401  (puts src/ on the path)
import numpy as np

LETTER_TASKS = ("syn_lookup", "syn_match")
TEXT_TASKS = ("syn_define",)


def build_requests(tokenizer, tasks, limit, chat_template):
    """Scoring requests of every language of `tasks` (first `limit` items per cell)."""
    from transfergrid.data import get_suite
    from transfergrid.formats import build_scoring_request
    from transfergrid.grid import Cell

    suite = get_suite("synthetic")
    return [
        build_scoring_request(item, suite.tasks[task].eval_format, tokenizer, chat_template)
        for task in tasks
        for language in suite.tasks[task].languages
        for item in suite.items(Cell(task, language), "test")[:limit]
    ]


def synthetic_words() -> list[str]:
    """The words of the synthetic corpus (the tokenizer knows them), for paper-shaped items."""
    from transfergrid.synthetic import corpus

    return sorted({w for line in corpus()[:2000] for w in line.split() if w.isalpha()})


def arc_shaped_requests(tokenizer, n_items, chat_template, seed=0):
    """Paper-like option-text items (ARC-shaped): a ~40-word question, four 3-8-word options of synthetic words.

    The synthetic suite's option texts are single tokens (so both scorers take one forward per item);
    these multi-token choices exercise the shared-context path against lm-eval's one sequence per choice.
    """
    import random

    from transfergrid.data import Item, PromptFormat
    from transfergrid.formats import build_scoring_request

    words = synthetic_words()
    rng = random.Random(seed)
    fmt = PromptFormat(template="Question: {question}\nAnswer:", target="text")
    items = [
        Item(id=str(i), question=" ".join(rng.choices(words, k=rng.randint(25, 50))),
             choices=tuple(" ".join(rng.choices(words, k=rng.randint(3, 8))) for _ in range(4)), gold=0)
        for i in range(n_items)
    ]
    return [build_scoring_request(item, fmt, tokenizer, chat_template) for item in items]


def truthfulqa_shaped_requests(tokenizer, n_items, chat_template, seed=1):
    """The paper's TruthfulQA MC1 prompt (its 6-pair Q:/A: priming, from `suites/paper/truthfulqa.yaml`)
    around synthetic-word questions (8-20 words) and 4-8 answer sentences (4-12 words) per item.

    Every prompt of the task starts with the same priming (in any language; ~470 tokens with the tiny
    tokenizer), which the scorer computes once per batch; lm-eval runs it once per choice.
    """
    import random

    from transfergrid.data import Item, get_suite
    from transfergrid.formats import build_scoring_request

    fmt = get_suite("paper").tasks["truthfulqa"].eval_format
    words = synthetic_words()
    rng = random.Random(seed)

    def sentence(low, high):
        return " ".join(rng.choices(words, k=rng.randint(low, high)))

    items = [
        Item(id=str(i), question=sentence(8, 20) + "?", choices=tuple(sentence(4, 12) + "." for _ in range(rng.randint(4, 8))), gold=0)
        for i in range(n_items)
    ]
    return [build_scoring_request(item, fmt, tokenizer, chat_template) for item in items]


def run_lmeval(model, tokenizer, requests, batch_size):
    """Per request, lm-eval's log-likelihood of each continuation, and the seconds it took."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    instances = [
        Instance("loglikelihood", doc={}, arguments=(r.context, c), idx=i)
        for r in requests for i, c in enumerate(r.continuations)
    ]
    started = time.perf_counter()
    flat = [ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True)]
    seconds = time.perf_counter() - started
    out, cursor = [], 0
    for r in requests:
        out.append(flat[cursor : cursor + len(r.continuations)])
        cursor += len(r.continuations)
    return out, seconds


def run_transfergrid(model, tokenizer, requests, batch_size):
    from transfergrid.evaluation import score_requests

    started = time.perf_counter()
    out = score_requests(model, tokenizer, requests, batch_size=batch_size, progress=False)
    return out, time.perf_counter() - started


def context_forwards(model, tokenizer, requests, batch_size) -> float:
    """Seconds of the bare model forward passes over each distinct context alone (length-sorted
    batches, last position projected), nothing else: what any scorer must at least compute when
    contexts share no prefix (both scorers run a repeated context once). lm-eval's time over this is
    the highest ratio such a scorer could reach."""
    import torch

    from transfergrid.evaluation import encode_requests

    distinct = {tuple(context) for context, _ in encode_requests(tokenizer, requests)}
    contexts = sorted(map(list, distinct), key=len, reverse=True)
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(contexts), batch_size):
            batch = contexts[start : start + batch_size]
            width = max(map(len, batch))
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            ids = torch.tensor([c + [pad] * (width - len(c)) for c in batch])
            model(input_ids=ids, logits_to_keep=1, use_cache=False)
    return time.perf_counter() - started


def compare(requests, ours, theirs) -> tuple[bool, float]:
    """(identical acc and acc_norm predictions on every item, max |Δ log-likelihood|)."""
    from transfergrid.evaluation import predict

    same, worst = True, 0.0
    for r, a, b in zip(requests, ours, theirs):
        chars = [len(t) for t in r.choice_texts]
        same &= predict(a, chars) == predict(b, chars)
        worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
    return same, worst


def timed_pair(model, tokenizer, requests, batch_size, repeats, min_seconds=2.0):
    """Both scorers (and the context-only forwards) alternately, `repeats` times and more until
    transfergrid has run `min_seconds` in all (short rows are noisy; at most 30 rounds); the best
    time of each, and the scorers' last outputs."""
    best_ours = best_theirs = best_floor = float("inf")
    total, rounds = 0.0, 0
    while rounds < repeats or (total < min_seconds and rounds < 30):
        rounds += 1
        ours, seconds = run_transfergrid(model, tokenizer, requests, batch_size)
        best_ours, total = min(best_ours, seconds), total + seconds
        theirs, seconds = run_lmeval(model, tokenizer, requests, batch_size)
        best_theirs = min(best_theirs, seconds)
        best_floor = min(best_floor, context_forwards(model, tokenizer, requests, batch_size))
    return ours, best_ours, theirs, best_theirs, best_floor


REAL_MODELS = ("smollm2-135m-instruct", "gemma-3-270m")
REAL_FORMATS = ("letters", "texts", "priming")
# country, capital, continent, language: the facts the real-weight items are written from
FACTS = [
    ("France", "Paris", "Europe", "French"), ("Germany", "Berlin", "Europe", "German"),
    ("Italy", "Rome", "Europe", "Italian"), ("Spain", "Madrid", "Europe", "Spanish"),
    ("Portugal", "Lisbon", "Europe", "Portuguese"), ("Poland", "Warsaw", "Europe", "Polish"),
    ("Greece", "Athens", "Europe", "Greek"), ("Sweden", "Stockholm", "Europe", "Swedish"),
    ("Norway", "Oslo", "Europe", "Norwegian"), ("Russia", "Moscow", "Europe", "Russian"),
    ("Japan", "Tokyo", "Asia", "Japanese"), ("China", "Beijing", "Asia", "Chinese"),
    ("India", "New Delhi", "Asia", "Hindi"), ("Thailand", "Bangkok", "Asia", "Thai"),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese"), ("South Korea", "Seoul", "Asia", "Korean"),
    ("Indonesia", "Jakarta", "Asia", "Indonesian"), ("Turkey", "Ankara", "Asia", "Turkish"),
    ("Iran", "Tehran", "Asia", "Persian"), ("Egypt", "Cairo", "Africa", "Arabic"),
    ("Kenya", "Nairobi", "Africa", "Swahili"), ("Nigeria", "Abuja", "Africa", "English"),
    ("Ethiopia", "Addis Ababa", "Africa", "Amharic"), ("Morocco", "Rabat", "Africa", "Arabic"),
    ("Brazil", "Brasilia", "South America", "Portuguese"), ("Argentina", "Buenos Aires", "South America", "Spanish"),
    ("Peru", "Lima", "South America", "Spanish"), ("Chile", "Santiago", "South America", "Spanish"),
    ("Canada", "Ottawa", "North America", "English"), ("Mexico", "Mexico City", "North America", "Spanish"),
    ("Cuba", "Havana", "North America", "Spanish"), ("Australia", "Canberra", "Oceania", "English"),
]


def real_items(kind: str, n_items: int, seed: int = 2):
    """`n_items` English items of the country facts, shaped for one paper format.

    letters (Global-MMLU): a one-line question, four short options, the answer letter scored;
    texts (ARC): a two-sentence question (~30 tokens), four 2-6-word options scored as texts;
    priming (TruthfulQA MC1): a question, 4-7 one-sentence answers, the true one first (gold 0).
    """
    import random

    from transfergrid.data import Item

    rng = random.Random(seed)
    items = []
    for i in range(n_items):
        country, capital, continent, language = FACTS[i % len(FACTS)]
        others = [f for f in FACTS if f[0] != country]
        if kind == "letters":
            question, field = rng.choice([(f"What is the capital of {country}?", 1),
                                          (f"Which language do most people in {country} speak?", 3),
                                          (f"On which continent is {country}?", 2)])
            truth = (country, capital, continent, language)[field]
            wrong = list(dict.fromkeys(f[field] for f in rng.sample(others, len(others)) if f[field] != truth))[:3]
            choices = [truth] + wrong
        elif kind == "texts":
            question = (f"A student reads that {country} is a country in {continent} where most people speak "
                        f"{language}. Which city is the seat of its government?")
            wrong = [f[1] for f in rng.sample(others, 3)]
            choices = [rng.choice(["the city of {}", "{}, the capital", "its capital, {}", "{}"]).format(c)
                       for c in [capital] + wrong]
        else:
            question = f"What is the capital of {country}?"
            wrong = [f[1] for f in rng.sample(others, rng.randint(3, 6))]
            choices = [f"The capital of {country} is {c}." for c in [capital] + wrong]
        if kind == "priming":
            gold = 0
        else:
            order = rng.sample(range(len(choices)), len(choices))
            choices, gold = [choices[j] for j in order], order.index(0)
        items.append(Item(id=str(i), question=question, choices=tuple(choices), gold=gold))
    return items


def real_requests(tokenizer, kind: str, n_items: int, chat_template: bool):
    """The scoring requests of `real_items` under the paper's format of that kind."""
    from transfergrid.data import get_suite
    from transfergrid.formats import build_scoring_request

    task = {"letters": "global_mmlu", "texts": "arc_challenge", "priming": "truthfulqa"}[kind]
    fmt = get_suite("paper").tasks[task].eval_format
    return [build_scoring_request(item, fmt, tokenizer, chat_template) for item in real_items(kind, n_items)]


def agreement(requests, got, reference) -> float:
    """Share of items whose acc and acc_norm predictions equal the reference's."""
    from transfergrid.evaluation import predict

    same = [predict(a, [len(t) for t in r.choice_texts]) == predict(b, [len(t) for t in r.choice_texts])
            for r, a, b in zip(requests, got, reference)]
    return float(np.mean(same))


def max_dll(got, reference) -> float:
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(got, reference))


def goal(ratio: float, bound: float) -> str:
    """The speed goal of a row: 3x, or 90% of the bound where the bound is under 3.33x."""
    return "3x" if 0.9 * bound >= 3 else f"{0.9 * bound:.2f}x (90% of bound)"


def speed_met(ratio: float, bound: float) -> bool:
    return ratio >= min(3.0, 0.9 * bound)


def real_rows(args) -> list[dict]:
    """One row per (real model, dtype, format, chat): speeds, bound and correctness (see the docstring)."""
    import torch

    from transfergrid.models import load_model, resolve_model

    counts = {"letters": args.real_items, "texts": args.real_items, "priming": max(args.real_items // 4, 2)}
    names = {"letters": "letters (Global-MMLU)", "texts": "option texts (ARC)", "priming": "priming (TruthfulQA MC1)"}
    rows = []
    for name in args.models:
        model, tokenizer = load_model(resolve_model(f"builtin:{name}"), "cpu")
        n_params = sum(p.numel() for p in model.parameters())
        chats = (False, True) if tokenizer.chat_template else (False,)
        reference = {}
        if "float32" not in args.dtypes:  # the float32 reference, untimed, before the weights are rounded
            for kind in args.formats:
                for chat in chats:
                    requests = real_requests(tokenizer, kind, counts[kind], chat)
                    reference[kind, chat], _ = run_lmeval(model, tokenizer, requests, args.batch_size)
        for dtype in args.dtypes:
            model = model.to(getattr(torch, dtype))
            for kind in args.formats:
                for chat in chats:
                    requests = real_requests(tokenizer, kind, counts[kind], chat)
                    run_transfergrid(model, tokenizer, requests[:2], args.batch_size)  # warm-up both
                    run_lmeval(model, tokenizer, requests[:2], args.batch_size)
                    ours, ours_s, theirs, theirs_s, floor_s = timed_pair(
                        model, tokenizer, requests, args.batch_size, args.repeats, min_seconds=0.0)
                    ratio, bound = theirs_s / ours_s, theirs_s / floor_s
                    row = {"model": f"{name} ({n_params / 1e6:.0f}M)", "dtype": dtype, "format": names[kind],
                           "chat": chat, "items": len(requests)}
                    if dtype == "float32":
                        reference[kind, chat] = theirs
                        row |= {"predictions vs lm-eval": "identical" if agreement(requests, ours, theirs) == 1
                                else f"{agreement(requests, ours, theirs):.0%} equal",
                                "max abs dLL vs lm-eval": f"{max_dll(ours, theirs):.1e}",
                                "agree with fp32 (tg / lm-eval)": "-", "max abs dLL vs fp32 (tg / lm-eval)": "-"}
                        correct = agreement(requests, ours, theirs) == 1
                    else:
                        ref = reference[kind, chat]
                        ours_agree, theirs_agree = agreement(requests, ours, ref), agreement(requests, theirs, ref)
                        row |= {"predictions vs lm-eval": f"{agreement(requests, ours, theirs):.0%} equal",
                                "max abs dLL vs lm-eval": f"{max_dll(ours, theirs):.1e}",
                                "agree with fp32 (tg / lm-eval)": f"{ours_agree:.0%} / {theirs_agree:.0%}",
                                "max abs dLL vs fp32 (tg / lm-eval)": f"{max_dll(ours, ref):.2f} / {max_dll(theirs, ref):.2f}"}
                        correct = ours_agree >= theirs_agree
                    row |= {"transfergrid items/s": f"{len(requests) / ours_s:.3g}",
                            "lm-eval items/s": f"{len(requests) / theirs_s:.3g}", "ratio": f"{ratio:.2f}x",
                            "bound without sharing": f"{bound:.2f}x", "goal": goal(ratio, bound),
                            "met": "met" if correct and speed_met(ratio, bound) else "NOT met"}
                    rows.append(row)
                    print(row, flush=True)
        del model
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=50, help="items per synthetic cell (100 = all)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating runs per row (more until transfergrid ran 2 s); the best time counts")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--real", action="store_true", help="the real-weight rows instead of the synthetic ones")
    parser.add_argument("--real-items", type=int, default=32,
                        help="items per real-weight row (letters, option texts; a quarter of it for the priming)")
    parser.add_argument("--dtypes", type=lambda text: text.split(","), default=["float32", "bfloat16"],
                        help="real-weight rows' dtypes (float32,bfloat16); bfloat16 alone computes its float32 reference untimed")
    parser.add_argument("--formats", type=lambda text: text.split(","), default=list(REAL_FORMATS),
                        help=f"real-weight rows' formats (default: {','.join(REAL_FORMATS)})")
    parser.add_argument("--models", type=lambda text: text.split(","), default=list(REAL_MODELS),
                        help=f"real models, comma-separated (default: {','.join(REAL_MODELS)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    if args.real:
        for name in args.models:
            if name not in REAL_MODELS:
                parser.error(f"unknown real model {name!r}; valid: {', '.join(REAL_MODELS)}")
        for kind in args.formats:
            if kind not in REAL_FORMATS:
                parser.error(f"unknown format {kind!r}; valid: {', '.join(REAL_FORMATS)}")
        for dtype in args.dtypes:
            if dtype not in ("float32", "bfloat16", "float16"):
                parser.error(f"unknown dtype {dtype!r}; valid: float32, bfloat16, float16")
        rows = real_rows(args)
        table = _common.markdown_table(rows)
        print(table)
        missed = [r for r in rows if r["met"] != "met"]
        if not args.no_append:
            _common.append_results(
                "eval_vs_lmeval, real weights: transfergrid vs lm-eval 0.4.13 in float32 and bfloat16 (CPU)",
                f"python benchmarks/eval_vs_lmeval.py --real --real-items {args.real_items} --batch-size "
                f"{args.batch_size} --repeats {args.repeats} --models {','.join(args.models)} --dtypes {','.join(args.dtypes)} --formats {','.join(args.formats)}",
                table, f"Goal (3x, or 90% of the bound where it is under 3.33x; float32: identical predictions; "
                f"bfloat16: agreement with float32 at least lm-eval's): {'met on every row' if not missed else 'NOT met on'}"
                + "".join(f"\n- {r['model']} {r['dtype']}, {r['format']}, chat {r['chat']}: {r['ratio']} of a "
                          f"{r['bound without sharing']} bound, predictions {r['predictions vs lm-eval']}, "
                          f"agreement {r['agree with fp32 (tg / lm-eval)']}" for r in missed),
            )
        return 0 if not missed else 1
    tiny, tokenizer = _common.tiny_model()
    models = {"tiny-llama": tiny, "llama-20M (random)": _common.llama_20m(tokenizer)}
    formats = {
        "letter (syn_lookup+syn_match)": lambda chat: build_requests(tokenizer, LETTER_TASKS, args.limit, chat),
        "option text, 1-token (syn_define)": lambda chat: build_requests(tokenizer, TEXT_TASKS, args.limit, chat),
        "option text, ARC-shaped": lambda chat: arc_shaped_requests(tokenizer, 2 * args.limit, chat),
        "option text, TruthfulQA MC1-shaped (6-pair priming)": lambda chat: truthfulqa_shaped_requests(
            tokenizer, max(args.limit // 2, 1), chat),
    }
    rows = []
    for model_name, model in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        for fmt, make in formats.items():
            for chat in (False, True):
                requests = make(chat)
                run_transfergrid(model, tokenizer, requests[:8], args.batch_size)  # warm-up both
                run_lmeval(model, tokenizer, requests[:8], args.batch_size)
                ours, ours_s, theirs, theirs_s, floor_s = timed_pair(model, tokenizer, requests, args.batch_size, args.repeats)
                same, worst = compare(requests, ours, theirs)
                rows.append({
                    "model": f"{model_name} ({n_params / 1e6:.2f}M)", "format": fmt, "chat": chat,
                    "items": len(requests), "identical predictions": same, "max abs dLL": f"{worst:.1e}",
                    "transfergrid items/s": f"{len(requests) / ours_s:.3g}",
                    "lm-eval items/s": f"{len(requests) / theirs_s:.3g}", "ratio": f"{theirs_s / ours_s:.2f}x",
                    "bound without sharing": f"{theirs_s / floor_s:.2f}x", "goal": goal(theirs_s / ours_s, theirs_s / floor_s),
                    "met": "met" if same and speed_met(theirs_s / ours_s, theirs_s / floor_s) else "NOT met",
                })
                print(rows[-1], flush=True)
    table = _common.markdown_table(rows)
    print(table)
    ok = all(r["met"] == "met" for r in rows)
    if not args.no_append:
        _common.append_results(
            "eval_vs_lmeval: transfergrid vs lm-eval 0.4.13 (model preloaded, same items and prompts)",
            f"python benchmarks/eval_vs_lmeval.py --batch-size {args.batch_size} --limit {args.limit} --repeats {args.repeats}",
            table, f"Goal (3x, or 90% of the bound where it is under 3.33x, identical predictions): {'met' if ok else 'NOT met'}."
            + "".join(f"\n- {r['model']}, {r['format']}, chat {r['chat']}: {r['ratio']} of a {r['bound without sharing']} bound"
                      for r in rows if r["met"] != "met"),
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
