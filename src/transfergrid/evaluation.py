"""Zero-shot multiple-choice scoring with lm-evaluation-harness 0.4.x `multiple_choice` semantics (SPEC 1.6).

The one place that knows how `acc`, `acc_norm` and `score` are computed (ARCHITECTURE.md section 2):

- the log-likelihood of a continuation is the sum of its tokens' log-probabilities given the context,
  tokenized as lm-eval's `HFLM._encode_pair` does (trailing whitespace of the context moves into the
  continuation; the continuation's tokens are those of `context + continuation` after the context's
  own tokens; the tokenizer's own special tokens as lm-eval 0.4.13 adds them (Gemma's BOS), none after a
  chat template that writes BOS; an empty context becomes the BOS token, or EOS where there is none),
  truncated from the left to the model's maximum length;
- `acc`: the choice of highest log-likelihood is gold; `acc_norm`: the same after dividing each
  log-likelihood by the character length of its choice string (without the target delimiter);
  ties go to the first choice, as `numpy.argmax`.

Speed: the scored sequences are sorted by length and batched without padding to a fixed maximum; the
model projects only the positions that are read onto the vocabulary (`logits_to_keep`). When the
continuations of an item differ only in their last token (answer letters), the item takes ONE forward
pass and every choice is read at the last position, as lm-eval's one-token-continuation cache does.
When the continuations are texts, the item is ONE packed sequence: the context once, then each
choice's tokens as a block that attends to the context and to itself only (a block-diagonal 4D
attention mask) with the position ids it would have after the context alone; in float32 this gives
the same log-likelihoods as one sequence per choice up to rounding (~1e-6). Items whose choices would
be truncated and flash-attention kernels (no custom mask) fall back to one sequence per choice.
Across items, rows that share a long prefix (TruthfulQA's 6-pair priming, a chat system prompt, an
instruction: at least `SHARED_PREFIX_MIN` tokens) are batched together and that prefix runs once per
batch: its keys and values are computed for one row and repeated over the batch (a KV cache), and
only the rest of each row runs (sdpa or eager attention, as packing; rounding ~1e-5 in float32).
The tokenization of a cell is cached per (tokenizer, suite, cell, split, format, chat template,
limit), so a second model (e.g. another adapter) on the same cells skips it.

Reduced precision (bfloat16, float16): packing and prefix sharing run as in float32. Their kernels
round differently from one sequence per choice (a masked instead of a causal attention, a prefix
computed apart), so the log-likelihoods differ from lm-eval's by bf16 rounding, as lm-eval's own
bf16 numbers differ from float32; measured against a float32 reference on the same items, the fast
path agrees with it as often as lm-eval in bf16 does (`benchmarks/eval_vs_lmeval.py`). `exact=True`
(`exact_scoring` in the configuration) keeps lm-eval's computation instead: one sequence per
(context, option text), no shared prefix (answer letters still take one forward pass per item, as
lm-eval's one-token cache does).

Throughput (`EvalResult`): items/s and tokens/s (tokens fed to the model) over the whole evaluation;
peak memory is `torch.cuda.max_memory_allocated` on CUDA (reset before scoring) and, on CPU, the
process's peak resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), which includes the
model and everything the process held before, not the evaluation's increment alone.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from transfergrid import console
from transfergrid.data import Item, Split, Suite
from transfergrid.formats import ScoringRequest, build_scoring_request
from transfergrid.grid import Cell, check_choice

logger = logging.getLogger(__name__)

SHARED_PREFIX_MIN = 16  # leading tokens a batch's rows must share for them to be computed once
SHARED_GROUP_MIN = 4  # rows sharing a longer prefix than their neighbours that are batched on their own
_ENCODE_CACHE_SIZE = 512  # cached cells (tokenizer x suite x cell x options); a cell is a few MB at most
DEFAULT_MAX_LENGTH = 2048  # lm-eval's HFLM fallback when neither config nor tokenizer says
_UNSET_TOKENIZER_MAX = 1000000000000000019884624838656  # transformers' "no limit" model_max_length
PREDICTION_COLUMNS = (
    "task", "language", "item_id", "gold", "predicted", "predicted_norm", "loglik", "choice_chars", "context", "choices",
)


@dataclass
class EvalResult:
    """What one evaluation of a model on a list of cells produced.

    Attributes:
        predictions: one row per item with the columns `PREDICTION_COLUMNS`; `loglik` holds one float
            per choice and `choice_chars` the character length of each choice string; `context` and
            `choices` are the exact strings scored (the rendered, chat-templated where on, context and
            each continuation with its target delimiter), so what was scored can be audited.
        metrics: per cell, `acc`, `acc_norm` (only for tasks that report it), `score` (acc_norm where
            defined, else acc) and `n` (number of items, an int).
        seconds: wall-clock time of the whole evaluation.
        items_per_second: items scored per second of wall-clock time.
        tokens_per_second: tokens fed to the model (padding excluded, a shared prefix once per batch) per
            second of wall-clock time.
        peak_memory_mb: CUDA: peak allocated memory during scoring; CPU: peak RSS of the process (MiB).
        n_tokens: tokens fed to the model (padding excluded, a shared prefix once per batch).
        swap_seconds: time spent swapping adapters before this evaluation (set by the caller).
        extra_metrics: further run metrics of the protocol (chain of thought: how many items yielded a letter).
    """

    predictions: pd.DataFrame
    metrics: dict[Cell, dict[str, float]]
    seconds: float
    items_per_second: float
    tokens_per_second: float = float("nan")
    peak_memory_mb: float = float("nan")
    n_tokens: int = 0
    swap_seconds: float = 0.0
    extra_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class _Row:
    """One sequence fed to the model and what is read from it.

    Attributes:
        requests: indices of the requests the row scores (several when their sequences are identical).
        inputs: the token ids fed to the model.
        reads: (position in `inputs`, target token id, (request, choice)): a choice's log-likelihood is
            the sum of its targets' log-probabilities at their positions.
        blocks: None for a plain causal row; for a packed row the lengths of the context and of each
            choice block that follows it (each block sees the context and itself).
        choices: the (request, choice) pairs the row scores.
    """

    requests: list[int]
    inputs: list[int]
    reads: list[tuple[int, int, tuple[int, int]]]
    blocks: list[int] | None = None
    choices: list[tuple[int, int]] = field(default_factory=list)


def score_requests(
    model,
    tokenizer,
    requests: Sequence[ScoringRequest],
    *,
    batch_size: int = 32,
    progress: bool | str = True,
    fast_path: bool = True,
    encoded: Sequence[tuple[list[int], list[list[int]]]] | None = None,
    stats: dict | None = None,
    exact: bool = False,
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
            one packed sequence (or one per choice where a choice would be truncated).
        progress: show a tqdm bar over requests; a string is used as the bar's description.
        fast_path: one sequence per item (letter items read at one position, option texts packed) and
            shared prefixes computed once per batch; False forces one sequence per (context,
            continuation), each run whole, for checks and benchmarks.
        encoded: the requests' token ids as `encode_requests` returns them (computed when None).
        stats: if given, receives `n_tokens` (tokens fed, padding excluded, a shared prefix counted
            once per batch) and `n_sequences`.
        exact: lm-eval's computation in any precision: option texts one sequence per choice and no
            shared prefix (letters still one forward pass per item, as lm-eval's one-token cache).

    Returns:
        Per request, the log-likelihood of each continuation, in order.

    Raises:
        ValueError: `batch_size` is not positive.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if encoded is None:
        encoded = encode_requests(tokenizer, requests)
    results = [[0.0] * len(request.continuations) for request in requests]
    share = fast_path and not exact and _can_pack(model)
    window = _sliding_window(model)
    rows = _plan_rows(encoded, _max_length(model, tokenizer), fast_path, pack=share, pack_limit=window)
    rows = _merge_identical(rows) if fast_path else rows
    batches = _batches(rows, batch_size, share)
    remaining = np.bincount([r for row in rows for r in row.requests], minlength=len(requests))
    shared = [_shared_prefix(batch, window) if share else 0 for batch in batches]
    n_tokens = sum(len(row.inputs) for row in rows) - sum((len(b) - 1) * n for b, n in zip(batches, shared))
    if stats is not None:
        stats.update(n_tokens=n_tokens, n_sequences=len(rows))
    logger.debug(
        "scoring %d requests as %d sequences in %d batches (%d tokens fed; %d batches run a shared prefix once)",
        len(requests), len(rows), len(batches), n_tokens, sum(1 for n in shared if n),
    )
    bar = console.progress(
        total=len(requests), desc=progress if isinstance(progress, str) else "scoring", unit="item", disable=not progress
    )
    bar.update(int(np.sum(remaining == 0)))  # requests with nothing to score (empty continuations)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch, prefix in zip(batches, shared):
                for row, values in zip(batch, _score_batch(model, tokenizer, batch, prefix)):
                    for (request, choice), value in values.items():
                        results[request][choice] = value
                    for request in row.requests:
                        remaining[request] -= 1
                        bar.update(int(remaining[request] == 0))
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
    exact: bool = False,
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
        exact: score as lm-eval computes (see `score_requests`), e.g. for its bf16 kernels' rounding.

    Returns:
        The per-item predictions, per-cell metrics, timing and throughput.

    Raises:
        ValueError: an unknown task, or `limit` not positive.
    """
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be > 0 items per cell, got {limit}")
    started = time.perf_counter()
    cells = list(dict.fromkeys(cells))
    keys: list[tuple[Cell, Item]] = []
    requests: list[ScoringRequest] = []
    encoded: list[tuple[list[int], list[list[int]]]] = []
    for cell in cells:
        check_choice("task", cell.task, list(suite.tasks))
        items, cell_requests, cell_encoded = _encoded_cell(tokenizer, suite, cell, split, chat_template, limit)
        keys += [(cell, item) for item in items]
        requests += cell_requests
        encoded += cell_encoded
    if progress is True:
        progress = f"scoring {len(cells)} cells"
    stats: dict = {}
    device = _input_device(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    logliks = score_requests(
        model, tokenizer, requests, batch_size=batch_size, progress=progress, encoded=encoded, stats=stats, exact=exact
    )
    predictions = _predictions_frame(keys, requests, logliks)
    metrics = {cell: _cell_metrics(predictions, cell, suite.tasks[cell.task].has_acc_norm) for cell in cells}
    seconds = time.perf_counter() - started
    rate = len(requests) / seconds if seconds > 0 else float("nan")
    n_tokens = int(stats.get("n_tokens", 0))
    logger.debug("evaluated %d items in %d cells in %.1f s (%.0f items/s)", len(requests), len(cells), seconds, rate)
    return EvalResult(
        predictions=predictions, metrics=metrics, seconds=seconds, items_per_second=rate,
        tokens_per_second=n_tokens / seconds if seconds > 0 else float("nan"),
        peak_memory_mb=_peak_memory_mb(device), n_tokens=n_tokens,
    )


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated memory since the last reset; CPU: the process's peak RSS (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


_ENCODE_CACHE: collections.OrderedDict = collections.OrderedDict()


def _encoded_cell(tokenizer, suite: Suite, cell: Cell, split: Split, chat_template: bool, limit: int | None):
    """The items, scoring requests and token ids of one cell, cached per (tokenizer, suite, cell, options).

    The cache holds the tokenizer and suite objects so that their ids stay valid; it keeps the most
    recently used `_ENCODE_CACHE_SIZE` entries.
    """
    fmt = suite.tasks[cell.task].eval_format
    key = (id(tokenizer), id(suite), cell, split, fmt, chat_template, limit)
    if key in _ENCODE_CACHE:
        _ENCODE_CACHE.move_to_end(key)
        return _ENCODE_CACHE[key][2:]
    items = list(suite.items(cell, split))[:limit]
    if not items:
        logger.warning("cell %s has no %s items", cell, split)
    requests = [build_scoring_request(item, fmt, tokenizer, chat_template) for item in items]
    _ENCODE_CACHE[key] = (tokenizer, suite, items, requests, encode_requests(tokenizer, requests))
    if len(_ENCODE_CACHE) > _ENCODE_CACHE_SIZE:
        _ENCODE_CACHE.popitem(last=False)
    return _ENCODE_CACHE[key][2:]


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
    """One row per item with gold, both predictions, the log-likelihoods, the choice lengths and the scored text."""
    records = []
    for (cell, item), request, lls in zip(keys, requests, logliks):
        chars = [len(text) for text in request.choice_texts]
        predicted, predicted_norm = predict(lls, chars)
        records.append((cell.task, cell.language, str(item.id), request.gold, predicted, predicted_norm, list(lls), chars,
                        request.context, list(request.continuations)))
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


def encode_requests(tokenizer, requests: Sequence[ScoringRequest]) -> list[tuple[list[int], list[list[int]]]]:
    """Per request, the context ids and one continuation id list per choice, as lm-eval 0.4.13's HFLM.

    `continuation ids = ids(context + continuation)[len(ids(context)):]`, each text tokenized with the
    tokenizer's own special tokens (Gemma's adds BOS; Llama-2/SmolLM2/Qwen's add none) unless it already
    starts with the BOS text (a chat template that writes it). An empty context is replaced by the
    prefix token (BOS, or EOS where the tokenizer has none); so is a whitespace-only one, which lm-eval
    would feed to the model as an empty context.
    """
    prefix = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    prefix_text = tokenizer.decode(prefix) if prefix[0] is not None else ""
    contexts, wholes, whole_special = [], [], []
    for request in requests:
        if request.context == "":  # lm-eval scores the continuation alone, without special tokens, after the prefix token
            contexts.append("")
            wholes.extend(request.continuations)
            whole_special.extend([False] * len(request.continuations))
        else:
            context, moved = _split_trailing_space(request.context)
            contexts.append(context)
            wholes.extend(context + moved + continuation for continuation in request.continuations)
            whole_special.extend([True] * len(request.continuations))
    context_special = [request.context != "" for request in requests]
    context_ids = _tokenize(tokenizer, contexts, context_special, prefix_text)
    whole_ids = iter(_tokenize(tokenizer, wholes, whole_special, prefix_text))
    encoded = []
    for request, ids in zip(requests, context_ids):
        continuations = [next(whole_ids)[len(ids) :] for _ in request.continuations]
        encoded.append((ids or prefix, continuations))
    return encoded


_encode_requests = encode_requests  # the name the tests and older callers use


def _tokenize(tokenizer, texts: list[str], special: Sequence[bool], prefix_text: str) -> list[list[int]]:
    """Token ids of each text as lm-eval's `tok_encode`: with the tokenizer's own special tokens where
    `special` says so, except for a text that starts with the prefix token's text (no second BOS).
    At most two batched calls."""
    flags = [flag and not (prefix_text and text.startswith(prefix_text)) for text, flag in zip(texts, special)]
    out: list[list[int]] = [[] for _ in texts]
    for flag in (True, False):
        indices = [i for i, f in enumerate(flags) if f is flag]
        if indices:
            for i, row in zip(indices, tokenizer([texts[i] for i in indices], add_special_tokens=flag)["input_ids"]):
                out[i] = list(row)
    return out


def _make_row(request: int, context: list[int], choices: list[tuple[int, list[int]]], max_length: int) -> _Row:
    """The plain row scoring `choices` (continuations equal but for their last token) after `context`.

    Truncation as lm-eval: the input is `(context + continuation)[-(max_length + 1):][:-1]`.
    """
    tokens = (context + choices[0][1])[-(max_length + 1) :]
    inputs = tokens[:-1]
    n_scored = min(len(choices[0][1]), len(inputs))
    if n_scored < len(choices[0][1]):
        logger.warning("request %d: continuation exceeds the model's %d tokens; scoring its tail", request, max_length)
    first = len(inputs) - n_scored
    shared = list(zip(range(first, len(inputs) - 1), tokens[first + 1 :]))
    reads = [(pos, tok, (request, i)) for i, _ in choices for pos, tok in shared]
    reads += [(len(inputs) - 1, ids[-1], (request, i)) for i, ids in choices]
    return _Row([request], inputs, reads, None, [(request, i) for i, _ in choices])


def _make_packed_row(request: int, context: list[int], choices: list[tuple[int, list[int]]]) -> _Row:
    """One sequence: the context, then each choice's tokens but its last as a block of its own.

    The context's last position predicts every choice's first token; position `j` of a choice's block
    predicts the choice's token `j + 1`.
    """
    inputs, reads, blocks = list(context), [], [len(context)]
    for i, ids in choices:
        reads.append((len(context) - 1, ids[0], (request, i)))
        start = len(inputs)
        reads += [(start + j, ids[j + 1], (request, i)) for j in range(len(ids) - 1)]
        inputs += ids[:-1]
        blocks.append(len(ids) - 1)
    return _Row([request], inputs, reads, blocks, [(request, i) for i, _ in choices])


def _plan_rows(
    encoded: Sequence[tuple[list[int], list[list[int]]]],
    max_length: int,
    fast_path: bool,
    pack: bool = True,
    pack_limit: int | None = None,
) -> list[_Row]:
    """The sequences to run: one per item on the fast path (letters; texts if `pack`), else one per choice.

    A packed row is made only when it is at most `pack_limit` tokens long (a sliding attention window:
    the block mask does not encode it, so a longer packed row would attend too far).
    """
    rows = []
    n_fast = 0
    for index, (context, continuations) in enumerate(encoded):
        choices = [(i, ids) for i, ids in enumerate(continuations) if ids]  # empty: log-likelihood 0.0
        if len(choices) < len(continuations):
            logger.warning("request %d: a continuation has no tokens of its own; its log-likelihood is 0", index)
        if not choices:
            continue
        shared = {tuple(ids[:-1]) for _, ids in choices}
        fits = all(len(context) + len(ids) <= max_length + 1 for _, ids in choices)
        fits &= pack_limit is None or len(context) + sum(len(ids) - 1 for _, ids in choices) <= pack_limit
        if fast_path and len(choices) == len(continuations) and len(shared) == 1:
            rows.append(_make_row(index, context, choices, max_length))
            n_fast += 1
        elif pack and len(choices) > 1 and fits:
            rows.append(_make_packed_row(index, context, choices))
            n_fast += 1
        else:
            rows.extend(_make_row(index, context, [choice], max_length) for choice in choices)
    logger.debug("%d of %d requests take one sequence", n_fast, len(encoded))
    return rows


def _merge_identical(rows: list[_Row]) -> list[_Row]:
    """Rows with identical inputs (and blocks) run once, every read of each kept, as lm-eval's logits cache.

    Items often share a context (the same question with other options, or a repeated prompt); the model
    output of a sequence does not depend on which item it belongs to.
    """
    merged: dict[tuple, _Row] = {}
    for row in rows:
        key = (tuple(row.inputs), tuple(row.blocks) if row.blocks is not None else None)
        if key in merged:
            first = merged[key]
            first.requests += row.requests
            first.reads += row.reads
            first.choices += row.choices
        else:
            merged[key] = row
    if len(merged) < len(rows):
        logger.debug("%d identical sequences computed once", len(rows) - len(merged))
    return list(merged.values())


def _batches(rows: list[_Row], batch_size: int, share: bool) -> list[list[_Row]]:
    """The rows in batches of at most `batch_size`, longest batches first (an OOM shows at once).

    Without `share`, the rows are sorted by length. With it, rows that share a long prefix (at least
    `SHARED_PREFIX_MIN` tokens more than the rows around them: a few-shot priming, a system prompt,
    an instruction) are batched together, so that `_score_batch` computes that prefix once per batch;
    within such a group, and among the other rows, batches are cut from the rows sorted by length.
    """
    if not rows:
        return []
    if share:
        batches = _group_batches(sorted(rows, key=lambda row: row.inputs), 0, batch_size)
    else:
        ordered = sorted(rows, key=lambda row: len(row.inputs), reverse=True)
        batches = [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]
    return sorted(batches, key=lambda batch: max(len(row.inputs) for row in batch), reverse=True)


def _group_batches(rows: list[_Row], depth: int, batch_size: int) -> list[list[_Row]]:
    """Batches of `rows` (sorted lexicographically, all sharing their first `depth` tokens).

    Runs of at least `SHARED_GROUP_MIN` rows that share `SHARED_PREFIX_MIN` more tokens become groups,
    batched recursively on their own; the other rows are sorted by length and batched together.
    """
    groups, pool, run = [], [], [rows[0]]
    for previous, row in zip(rows, rows[1:]):
        if _common_prefix(previous.inputs, row.inputs) >= depth + SHARED_PREFIX_MIN:
            run.append(row)
            continue
        (groups.append(run) if len(run) >= SHARED_GROUP_MIN else pool.extend(run))
        run = [row]
    (groups.append(run) if len(run) >= SHARED_GROUP_MIN else pool.extend(run))
    batches = []
    for group in groups:
        shared = min(_common_prefix(a.inputs, b.inputs) for a, b in zip(group, group[1:]))
        batches += _group_batches(group, shared, batch_size)
    pool.sort(key=lambda row: len(row.inputs), reverse=True)
    return batches + [pool[start : start + batch_size] for start in range(0, len(pool), batch_size)]


def _shared_prefix(rows: Sequence[_Row], window: int | None = None) -> int:
    """How many leading tokens a batch computes once: those all rows share before their first read.

    0 for a single row, when the shared prefix is shorter than `SHARED_PREFIX_MIN`, or when a row is
    longer than the model's sliding attention `window` (its cache would keep only the window).
    """
    if len(rows) < 2 or (window is not None and max(len(row.inputs) for row in rows) > window):
        return 0
    inputs = [row.inputs for row in rows]
    shared = min(_common_prefix(min(inputs), max(inputs)), min(pos for row in rows for pos, _, _ in row.reads))
    return shared if shared >= SHARED_PREFIX_MIN else 0


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token lists (bisection over slice comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _packed_inputs(rows: Sequence[_Row], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids and the 4D boolean attention mask (True: attend) of a batch with packed rows.

    Each position attends causally to the context and to its own block; padding attends to itself.
    """
    n = len(rows)
    block = torch.full((n, width), -1, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    for b, row in enumerate(rows):
        cursor = 0
        for k, size in enumerate(row.blocks or [len(row.inputs)]):
            block[b, cursor : cursor + size] = k
            start = 0 if k == 0 else row.blocks[0]
            positions[b, cursor : cursor + size] = torch.arange(start, start + size)
            cursor += size
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    same = (block[:, None, :] == 0) | (block[:, None, :] == block[:, :, None])
    mask = causal & same & (block[:, None, :] >= 0)
    mask |= torch.eye(width, dtype=torch.bool)
    return positions, mask[:, None, :, :]


def _score_batch(model, tokenizer, rows: Sequence[_Row], prefix: int = 0) -> list[dict[tuple[int, int], float]]:
    """Run one right-padded batch; per row, the log-likelihood of each of its (request, choice) pairs.

    Plain rows need no attention mask, as lm-eval: with causal attention the padding after a row
    cannot change it. A batch with a packed row gets position ids and a block attention mask. With
    `prefix` > 0 the rows' first `prefix` tokens (the same in every row, before any read position) run
    once and the rest of each row attends to their keys and values (a KV cache repeated over the batch).
    """
    width = max(len(row.inputs) for row in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([row.inputs + [pad] * (width - len(row.inputs)) for row in rows], dtype=torch.long)
    keep = torch.zeros(ids.shape, dtype=torch.bool)
    for b, row in enumerate(rows):
        keep[b, [pos for pos, _, _ in row.reads]] = True
    keep = keep[:, prefix:]
    flat = torch.cumsum(keep.flatten(), 0).view(keep.shape) - 1  # row of each kept position in the logits
    read_rows = torch.tensor([b for b, row in enumerate(rows) for _ in row.reads])
    index = flat[read_rows, torch.tensor([pos - prefix for row in rows for pos, _, _ in row.reads])]
    targets = torch.tensor([tok for row in rows for _, tok, _ in row.reads])
    device = _input_device(model)
    extra = {}
    if any(row.blocks is not None for row in rows):
        positions, mask = _packed_inputs(rows, width)
        mask = mask[:, :, prefix:, :]  # the queries after the prefix, the keys of the whole row
        if _attention_implementation(model) == "eager":  # eager attention adds the mask to the scores
            dtype = model.get_input_embeddings().weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        extra = {"position_ids": positions[:, prefix:].to(device), "attention_mask": mask.to(device)}
    if prefix:
        extra.update(past_key_values=_prefix_cache(model, ids[:1, :prefix].to(device), len(rows)), use_cache=True)
    logits = _selected_logits(model, ids[:, prefix:].to(device), keep.to(device), int(keep.sum()), extra)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values = logprobs[index.to(logprobs.device), targets.to(logprobs.device)].double().cpu().numpy()
    scores, cursor = [], 0
    for row in rows:
        sums = dict.fromkeys(row.choices, 0.0)
        for (_, _, choice), value in zip(row.reads, values[cursor : cursor + len(row.reads)]):
            sums[choice] += float(value)
        scores.append(sums)
        cursor += len(row.reads)
    return scores


def _prefix_cache(model, prefix_ids: torch.Tensor, n_rows: int):
    """The KV cache of `prefix_ids` (one row) repeated for `n_rows` rows."""
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(type(_base_model(model))) else {}
    cache = model(input_ids=prefix_ids, use_cache=True, **extra).past_key_values
    cache.batch_repeat_interleave(n_rows)
    return cache


def _selected_logits(model, ids: torch.Tensor, keep: torch.Tensor, n_keep: int, extra: dict | None = None) -> torch.Tensor:
    """Logits at the `keep` positions, flattened row by row to (n_keep, vocab).

    Models whose forward takes `logits_to_keep` project only those positions onto the vocabulary.
    `extra` holds further forward arguments (position ids and attention mask of packed rows).
    """
    extra = {"use_cache": False, **(extra or {})}
    if _accepts_logits_to_keep(type(_base_model(model))):
        logits = model(input_ids=ids, logits_to_keep=keep, **extra).logits
        if logits.dim() == 2 and logits.shape[0] == n_keep:
            return logits
        raise RuntimeError(
            f"{type(_base_model(model)).__name__} returned logits of shape {tuple(logits.shape)} for a boolean "
            f"logits_to_keep mask selecting {n_keep} positions; expected ({n_keep}, vocab)"
        )
    return model(input_ids=ids, **extra).logits[keep]


def _attention_implementation(model) -> str | None:
    """The attention kernel of the model (`sdpa`, `eager`, `flash_attention_2`, ...), None if unknown."""
    return getattr(getattr(_base_model(model), "config", None), "_attn_implementation", None)


def _can_pack(model) -> bool:
    """Whether option texts are packed and prefixes shared: an attention taking a 4D mask (sdpa, eager).

    Flash-attention kernels take no custom mask. Any dtype: in bf16/fp16 the masked kernel rounds
    differently from the causal one (see the module docstring for the standard that holds there).
    """
    return _attention_implementation(model) in ("sdpa", "eager")


def _sliding_window(model) -> int | None:
    """The model's sliding attention window in tokens (Gemma, Mistral, ...), None when it has none."""
    config = getattr(_base_model(model), "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or window <= 0 or getattr(config, "use_sliding_window", True) is False:
        return None
    return window


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
