"""Zero-shot multiple-choice scoring with lm-evaluation-harness 0.4.x `multiple_choice` semantics (SPEC 1.6).

The one place that knows how `acc`, `acc_norm` and `score` are computed (ARCHITECTURE.md section 2):

- the log-likelihood of a continuation is the sum of its tokens' log-probabilities given the context,
  tokenized as lm-eval's `HFLM._encode_pair` does (trailing whitespace of the context moves into the
  continuation; the continuation's tokens are those of `context + continuation` after the context's
  own tokens; no special tokens; an empty context becomes the BOS token, or EOS where there is none),
  truncated from the left to the model's maximum length;
- `acc`: the choice of highest log-likelihood is gold; `acc_norm`: the same after dividing each
  log-likelihood by the character length of its choice string (without the target delimiter);
  ties go to the first choice, as `numpy.argmax`.

Speed: the scored sequences are sorted by length and batched without padding to a fixed maximum; the
model projects only the positions that are read onto the vocabulary (`logits_to_keep`). When the
continuations of an item differ only in their last token (answer letters), the item takes ONE forward
pass and every choice is read at the last position, as lm-eval's one-token-continuation cache does.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from transfergrid.data import Item, Split, Suite
from transfergrid.formats import ScoringRequest, build_scoring_request
from transfergrid.grid import Cell, check_choice

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048  # lm-eval's HFLM fallback when neither config nor tokenizer says
_UNSET_TOKENIZER_MAX = 1000000000000000019884624838656  # transformers' "no limit" model_max_length
PREDICTION_COLUMNS = (
    "task", "language", "item_id", "gold", "predicted", "predicted_norm", "loglik", "choice_chars",
)


@dataclass
class EvalResult:
    """What one evaluation of a model on a list of cells produced.

    Attributes:
        predictions: one row per item with the columns `PREDICTION_COLUMNS`; `loglik` holds one float
            per choice and `choice_chars` the character length of each choice string.
        metrics: per cell, `acc`, `acc_norm` (only for tasks that report it), `score` (acc_norm where
            defined, else acc) and `n` (number of items, an int).
        seconds: wall-clock time of the whole evaluation.
        items_per_second: items scored per second of wall-clock time.
    """

    predictions: pd.DataFrame
    metrics: dict[Cell, dict[str, float]]
    seconds: float
    items_per_second: float


@dataclass
class _Row:
    """One sequence fed to the model and what is read from it.

    The scored positions are the last `len(prefix_targets) + 1` of `inputs`: the first ones predict
    `prefix_targets` (shared by every choice of the row), the last one predicts each choice's last token.
    """

    request: int
    inputs: list[int]
    prefix_targets: list[int]
    last_targets: list[tuple[int, int]]  # (choice index, token id)


def score_requests(
    model,
    tokenizer,
    requests: Sequence[ScoringRequest],
    *,
    batch_size: int = 32,
    progress: bool | str = True,
    fast_path: bool = True,
) -> list[list[float]]:
    """Log-likelihood of every continuation of every request, lm-eval style.

    Runs under `torch.inference_mode()` with the model in eval mode (its training mode is restored
    afterwards); log-probabilities are computed in float32 whatever the model's dtype. Works for plain
    and PEFT-wrapped causal LMs.

    Args:
        model: a Hugging Face causal LM (or a PEFT model wrapping one).
        tokenizer: its tokenizer; its padding side is irrelevant (the batches are built here).
        requests: what to score (see `formats.build_scoring_request`).
        batch_size: sequences per forward pass. A letter item is one sequence, an option-text item
            one sequence per choice.
        progress: show a tqdm bar over requests; a string is used as the bar's description.
        fast_path: read single-token (letter) choices from one forward pass per item; False forces one
            sequence per (context, continuation), for checks and benchmarks.

    Returns:
        Per request, the log-likelihood of each continuation, in order.

    Raises:
        ValueError: `batch_size` is not positive.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    results = [[0.0] * len(request.continuations) for request in requests]
    rows = _plan_rows(tokenizer, requests, _max_length(model, tokenizer), fast_path)
    rows.sort(key=lambda row: len(row.inputs), reverse=True)  # longest first: an OOM shows at once
    remaining = np.bincount([row.request for row in rows], minlength=len(requests))
    logger.info(
        "scoring %d requests as %d sequences (%d tokens) in batches of %d",
        len(requests), len(rows), sum(len(row.inputs) for row in rows), batch_size,
    )
    bar = tqdm(
        total=len(requests),
        desc=progress if isinstance(progress, str) else "scoring",
        unit="item",
        disable=not progress,
    )
    bar.update(int(np.sum(remaining == 0)))  # requests with nothing to score (empty continuations)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                for row, values in zip(batch, _score_batch(model, tokenizer, batch)):
                    for (choice, _), value in zip(row.last_targets, values):
                        results[row.request][choice] = value
                    remaining[row.request] -= 1
                    bar.update(int(remaining[row.request] == 0))
    finally:
        model.train(was_training)
        bar.close()
    return results


def evaluate_cells(
    model,
    tokenizer,
    suite: Suite,
    cells: Sequence[Cell],
    *,
    split: Split = "test",
    batch_size: int = 32,
    chat_template: bool = False,
    limit: int | None = None,
    progress: bool | str = True,
) -> EvalResult:
    """Score a model on the items of `cells` and compute lm-eval's metrics per cell (SPEC 1.6).

    All cells are scored together so that batches mix cells of similar length.

    Args:
        model: a Hugging Face causal LM, plain or PEFT-wrapped.
        tokenizer: its tokenizer (must define a chat template when `chat_template`).
        suite: provides `tasks[task].eval_format` and `items(cell, split)`.
        cells: target cells (duplicates are scored once).
        split: which split of each cell to score.
        batch_size: sequences per forward pass (see `score_requests`).
        chat_template: put the prompt in a chat user turn, as lm-eval's `--apply_chat_template`.
        limit: keep only the first `limit` items of each cell (None: all).
        progress: show a progress bar (a string is its description).

    Returns:
        The per-item predictions, per-cell metrics and timing.

    Raises:
        ValueError: an unknown task, or `limit` not positive.
    """
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be > 0 items per cell, got {limit}")
    started = time.perf_counter()
    cells = list(dict.fromkeys(cells))
    keys: list[tuple[Cell, Item]] = []
    requests: list[ScoringRequest] = []
    for cell in cells:
        check_choice("task", cell.task, list(suite.tasks))
        fmt = suite.tasks[cell.task].eval_format
        items = list(suite.items(cell, split))[:limit]
        if not items:
            logger.warning("cell %s has no %s items", cell, split)
        for item in items:
            keys.append((cell, item))
            requests.append(build_scoring_request(item, fmt, tokenizer, chat_template))
    if progress is True:
        progress = f"scoring {len(cells)} cells"
    logliks = score_requests(model, tokenizer, requests, batch_size=batch_size, progress=progress)
    predictions = _predictions_frame(keys, requests, logliks)
    metrics = {cell: _cell_metrics(predictions, cell, suite.tasks[cell.task].has_acc_norm) for cell in cells}
    seconds = time.perf_counter() - started
    rate = len(requests) / seconds if seconds > 0 else float("nan")
    logger.info("evaluated %d items in %d cells in %.1f s (%.0f items/s)", len(requests), len(cells), seconds, rate)
    return EvalResult(predictions=predictions, metrics=metrics, seconds=seconds, items_per_second=rate)


def predict(logliks: Sequence[float], choice_chars: Sequence[int]) -> tuple[int, int]:
    """The (acc, acc_norm) predictions of one item: argmax of the log-likelihoods, raw and per character.

    Ties go to the first choice (`numpy.argmax`), as lm-eval. A zero-length choice divides as numpy does.
    """
    lls = np.asarray(logliks, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = lls / np.asarray(choice_chars, dtype=np.float64)
    return int(np.argmax(lls)), int(np.argmax(normalised))


def _predictions_frame(
    keys: Sequence[tuple[Cell, Item]], requests: Sequence[ScoringRequest], logliks: Sequence[list[float]]
) -> pd.DataFrame:
    """One row per item with gold, both predictions, the log-likelihoods and the choice lengths."""
    records = []
    for (cell, item), request, lls in zip(keys, requests, logliks):
        chars = [len(text) for text in request.choice_texts]
        predicted, predicted_norm = predict(lls, chars)
        records.append(
            (cell.task, cell.language, str(item.id), request.gold, predicted, predicted_norm, list(lls), chars)
        )
    frame = pd.DataFrame.from_records(records, columns=list(PREDICTION_COLUMNS))
    return frame.astype({"gold": "int64", "predicted": "int64", "predicted_norm": "int64"})


def _cell_metrics(predictions: pd.DataFrame, cell: Cell, has_acc_norm: bool) -> dict[str, float]:
    """acc, acc_norm (where the task defines it), score and n of one cell (ARCHITECTURE.md section 2)."""
    rows = predictions[(predictions["task"] == cell.task) & (predictions["language"] == cell.language)]
    n = len(rows)
    acc = float((rows["predicted"] == rows["gold"]).mean()) if n else float("nan")
    metrics: dict[str, float] = {"acc": acc}
    if has_acc_norm:
        metrics["acc_norm"] = float((rows["predicted_norm"] == rows["gold"]).mean()) if n else float("nan")
    metrics["score"] = metrics["acc_norm"] if has_acc_norm else acc
    metrics["n"] = n
    return metrics


def _split_trailing_space(context: str) -> tuple[str, str]:
    """lm-eval's `_encode_pair` rule: the context's trailing whitespace belongs to the continuation."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :]


def _encode_requests(tokenizer, requests: Sequence[ScoringRequest]) -> list[tuple[list[int], list[list[int]]]]:
    """Per request, the context ids and one continuation id list per choice, as lm-eval's HFLM.

    `continuation ids = ids(context + continuation)[len(ids(context)):]`, without special tokens. An
    empty context is replaced by the prefix token (BOS, or EOS where the tokenizer has none); so is a
    whitespace-only one, which lm-eval would feed to the model as an empty context.
    """
    prefix = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    contexts, wholes = [], []
    for request in requests:
        if request.context == "":  # lm-eval scores the continuation alone after the prefix token
            contexts.append("")
            wholes.extend(request.continuations)
        else:
            context, moved = _split_trailing_space(request.context)
            contexts.append(context)
            wholes.extend(context + moved + continuation for continuation in request.continuations)
    context_ids = _tokenize(tokenizer, contexts)
    whole_ids = iter(_tokenize(tokenizer, wholes))
    encoded = []
    for request, ids in zip(requests, context_ids):
        continuations = [next(whole_ids)[len(ids) :] for _ in request.continuations]
        encoded.append((ids or prefix, continuations))
    return encoded


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (one batched call)."""
    return list(tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else []


def _make_row(request: int, context: list[int], choices: list[tuple[int, list[int]]], max_length: int) -> _Row:
    """The row scoring `choices` (continuations equal but for their last token) after `context`.

    Truncation as lm-eval: the input is `(context + continuation)[-(max_length + 1):][:-1]`.
    """
    tokens = (context + choices[0][1])[-(max_length + 1) :]
    inputs = tokens[:-1]
    n_scored = min(len(choices[0][1]), len(inputs))
    if n_scored < len(choices[0][1]):
        logger.warning("request %d: continuation exceeds the model's %d tokens; scoring its tail", request, max_length)
    prefix_targets = tokens[len(tokens) - n_scored : -1]
    return _Row(request, inputs, prefix_targets, [(i, ids[-1]) for i, ids in choices])


def _plan_rows(tokenizer, requests: Sequence[ScoringRequest], max_length: int, fast_path: bool) -> list[_Row]:
    """The sequences to run: one per item on the fast path, else one per non-empty continuation."""
    rows = []
    n_fast = 0
    for index, (context, continuations) in enumerate(_encode_requests(tokenizer, requests)):
        choices = [(i, ids) for i, ids in enumerate(continuations) if ids]  # empty: log-likelihood 0.0
        if len(choices) < len(continuations):
            logger.warning("request %d: a continuation has no tokens of its own; its log-likelihood is 0", index)
        if not choices:
            continue
        shared = {tuple(ids[:-1]) for _, ids in choices}
        if fast_path and len(choices) == len(continuations) and len(shared) == 1:
            rows.append(_make_row(index, context, choices, max_length))
            n_fast += 1
        else:
            rows.extend(_make_row(index, context, [choice], max_length) for choice in choices)
    logger.debug("%d of %d requests take one forward pass", n_fast, len(requests))
    return rows


def _score_batch(model, tokenizer, rows: Sequence[_Row]) -> list[list[float]]:
    """Run one right-padded batch; per row, the log-likelihood of each of its `last_targets`.

    No attention mask, as lm-eval: with causal attention the padding after a row cannot change it.
    """
    width = max(len(row.inputs) for row in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([row.inputs + [pad] * (width - len(row.inputs)) for row in rows], dtype=torch.long)
    keep = torch.zeros(ids.shape, dtype=torch.bool)
    positions, targets = [], []
    offset = 0
    for b, row in enumerate(rows):
        n_scored = len(row.prefix_targets) + 1
        keep[b, len(row.inputs) - n_scored : len(row.inputs)] = True
        positions += list(range(offset, offset + n_scored - 1)) + [offset + n_scored - 1] * len(row.last_targets)
        targets += row.prefix_targets + [token for _, token in row.last_targets]
        offset += n_scored
    device = _input_device(model)
    logprobs = torch.log_softmax(_selected_logits(model, ids.to(device), keep.to(device), offset).float(), dim=-1)
    index = torch.tensor(positions, device=logprobs.device), torch.tensor(targets, device=logprobs.device)
    values = logprobs[index].double().cpu().numpy()
    scores, cursor = [], 0
    for row in rows:
        shared = float(values[cursor : cursor + len(row.prefix_targets)].sum())
        cursor += len(row.prefix_targets)
        scores.append([shared + float(v) for v in values[cursor : cursor + len(row.last_targets)]])
        cursor += len(row.last_targets)
    return scores


def _selected_logits(model, ids: torch.Tensor, keep: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Logits at the `keep` positions, flattened row by row to (n_keep, vocab).

    Models whose forward takes `logits_to_keep` project only those positions onto the vocabulary.
    """
    if _accepts_logits_to_keep(type(_base_model(model))):
        logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
        if logits.dim() == 2 and logits.shape[0] == n_keep:
            return logits
        raise RuntimeError(
            f"{type(_base_model(model)).__name__} returned logits of shape {tuple(logits.shape)} for a boolean "
            f"logits_to_keep mask selecting {n_keep} positions; expected ({n_keep}, vocab)"
        )
    return model(input_ids=ids, use_cache=False).logits[keep]


@functools.cache
def _accepts_logits_to_keep(model_class: type) -> bool:
    """Whether the model class's forward takes `logits_to_keep` (transformers >= 4.50 causal LMs)."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _base_model(model):
    """The transformers model under a PEFT wrapper (the model itself when not wrapped)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _input_device(model) -> torch.device:
    """Where input ids must go: the device of the input embeddings."""
    return model.get_input_embeddings().weight.device


def _max_length(model, tokenizer) -> int:
    """The model's maximum sequence length, looked up in the order lm-eval's HFLM uses."""
    config = getattr(model, "config", None)
    configs = [config] + ([config.get_text_config()] if hasattr(config, "get_text_config") else [])
    for cfg in configs:
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _UNSET_TOKENIZER_MAX:
        return limit
    return DEFAULT_MAX_LENGTH
