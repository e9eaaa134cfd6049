"""Chain-of-thought evaluation (SPEC 2, "Disentangling Linguistic Relatedness from Task Alignment").

The seed paper compares fine-tuning gains with inference-time chain-of-thought gains; its prompt and
answer extraction are unknown, so both are configurable here and the extraction rule is fixed and
documented (`extract_letter`). Every item is shown with lettered options (the task's training layout:
`train_format` with `target=letter`, or a generic `{question}\\n{options}` layout for tasks trained on
option texts), followed by `cot_prompt`; the model generates greedily up to `max_new_tokens`, and the
extracted letter is compared with the gold letter. The result has the same shape as the
log-likelihood evaluator's (`EvalResult`), so it is logged like any other evaluation, plus the
extraction rate: how many generations yielded a letter (`cot/extraction_rate`, `cot/extracted_items`,
and per target cell `cot/extracted/<task>/<language>`).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Sequence

import pandas as pd
import torch

from transfergrid.data import LETTERS, Item, PromptFormat, Suite
from transfergrid.evaluation import EvalResult, _input_device, _peak_memory_mb
from transfergrid.formats import render_prompt
from transfergrid.grid import Cell

logger = logging.getLogger(__name__)

# Run metrics: the share of generations from which `extract_letter` found a letter (overall and per
# target cell, `cot/extracted/<task>/<language>`), and their number. Items without one count as wrong.
EXTRACTION_RATE = "cot/extraction_rate"
EXTRACTED_ITEMS = "cot/extracted_items"
EXTRACTED = "cot/extracted"

_GENERIC_LAYOUT = PromptFormat(template="{question}\n{options}", option_template="{letter}) {text}")


def cot_format(suite: Suite, task: str) -> PromptFormat:
    """The lettered layout an item of `task` is shown in (the task's training format when it uses letters)."""
    fmt = suite.tasks[task].train_format
    return fmt if fmt is not None and fmt.target == "letter" and "{options}" in fmt.template else _GENERIC_LAYOUT


def cot_prompt_text(item: Item, fmt: PromptFormat, cot_prompt: str) -> str:
    """The item's lettered prompt followed by the chain-of-thought instruction."""
    prompt = render_prompt(item, fmt)
    for tail in ("\nAnswer:", "Answer:"):  # the answer cue would cut the reasoning short
        if prompt.endswith(tail):
            prompt = prompt[: -len(tail)]
            break
    return f"{prompt}\n{cot_prompt}".rstrip()


def extract_letter(text: str, n_choices: int) -> int | None:
    """The answer letter of a generated reasoning, as an option index (None: no answer found).

    Rule, in order: (1) the last `answer is X` / `Answer: X` / `answer: (X)` (any case, optional
    brackets, bold markers or a trailing period); (2) otherwise the last standalone capital letter among
    the valid ones (A..n) that is followed by `)`, `.`, `:` or the end of the text; (3) otherwise None,
    which counts as wrong.
    """
    valid = LETTERS[:n_choices]
    letters = "".join(valid)
    cue = re.findall(rf"answer(?:\s+is)?\s*[:：]?\s*[*_(\[]*\s*([{letters}])\b", text, flags=re.IGNORECASE)
    cue = [c.upper() for c in cue if c.upper() in valid]
    if cue:
        return valid.index(cue[-1])
    bare = re.findall(rf"(?<![A-Za-z])([{letters}])(?=[).:]|\s*$)", text)
    return valid.index(bare[-1]) if bare else None


def generate_cells(
    model,
    tokenizer,
    suite: Suite,
    cells: Sequence[Cell],
    *,
    cot_prompt: str,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    chat_template: bool = False,
    limit: int | None = None,
    progress: bool | str = True,
) -> EvalResult:
    """Chain-of-thought accuracy of `model` on the test items of `cells` (greedy decoding)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    cells = list(dict.fromkeys(cells))
    rows: list[tuple[Cell, Item, str]] = []
    for cell in cells:
        fmt = cot_format(suite, cell.task)
        for item in list(suite.items(cell, "test"))[:limit]:
            prompt = cot_prompt_text(item, fmt, cot_prompt)
            if chat_template:
                prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
            rows.append((cell, item, prompt))
    device = _input_device(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][2]))
    outputs: dict[int, str] = {}
    n_tokens = 0
    bar = tqdm(total=len(rows), desc=progress if isinstance(progress, str) else "chain-of-thought", unit="item",
               disable=progress is False)
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            prompts = [rows[i][2] for i in batch]
            # the tokenizer's own special tokens (Gemma's BOS) unless the prompt already starts with BOS, as lm-eval
            special = not (tokenizer.bos_token and prompts[0].startswith(tokenizer.bos_token))
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=special).to(device)
            with torch.inference_mode():
                out = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            n_tokens += int(enc["attention_mask"].sum()) + int((new != tokenizer.pad_token_id).sum())
            for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
                outputs[i] = text
            bar.update(len(batch))
    finally:
        tokenizer.padding_side = side
        bar.close()
    records = []
    for i, (cell, item, prompt) in enumerate(rows):
        predicted = extract_letter(outputs[i], len(item.choices))
        records.append({
            "task": cell.task, "language": cell.language, "item_id": item.id, "gold": item.gold,
            "predicted": -1 if predicted is None else predicted, "generation": outputs[i],
            "context": prompt, "choices": list(item.choices),  # what the model was shown
        })
    predictions = pd.DataFrame(records)
    metrics, extracted = {}, {}
    for cell in cells:
        part = predictions[(predictions["task"] == cell.task) & (predictions["language"] == cell.language)]
        acc = float((part["predicted"] == part["gold"]).mean()) if len(part) else float("nan")
        metrics[cell] = {"acc": acc, "score": acc, "n": len(part)}
        extracted[f"{EXTRACTED}/{cell.task}/{cell.language}"] = float((part["predicted"] >= 0).mean()) if len(part) else float("nan")
    n_extracted = int((predictions["predicted"] >= 0).sum()) if len(predictions) else 0
    logger.info("chain of thought: a letter was extracted from %d of %d generations (%.0f%%)", n_extracted, len(rows),
                100 * n_extracted / len(rows) if rows else float("nan"))
    seconds = time.perf_counter() - started
    return EvalResult(
        predictions=predictions, metrics=metrics, seconds=seconds,
        items_per_second=len(rows) / seconds if seconds > 0 else float("nan"),
        tokens_per_second=n_tokens / seconds if seconds > 0 else float("nan"),
        peak_memory_mb=_peak_memory_mb(device), n_tokens=n_tokens,
        extra_metrics={EXTRACTION_RATE: n_extracted / len(rows) if rows else float("nan"), EXTRACTED_ITEMS: n_extracted,
                       **extracted},
    )

