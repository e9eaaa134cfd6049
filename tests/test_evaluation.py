"""Evaluator: lm-eval `multiple_choice` semantics against an un-batched reference on tiny random models."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers_models import build_gemma3_sliding, build_tiny_llama, build_tiny_tokenizer  # noqa: E402
from transfergrid import evaluation  # noqa: E402
from transfergrid.data import Item, PromptFormat, TaskSpec  # noqa: E402
from transfergrid.evaluation import PREDICTION_COLUMNS, evaluate_cells, predict, score_requests  # noqa: E402
from transfergrid.formats import ScoringRequest, build_scoring_request  # noqa: E402
from transfergrid.grid import Cell  # noqa: E402

LETTER_FORMAT = PromptFormat(template="Question: {question}\n{options}\nAnswer:", target="letter")
TEXT_FORMAT = PromptFormat(template="Question: {question}\nAnswer:", target="text")
WORDS = "the cat dog river stone blue green quick slow jumps over near water fire tree bird sun".split()
LETTERS = Cell("letters", "xx")
OPTIONS = Cell("options", "xx")


class FakeSuite:
    """Two tasks (answer letters; option texts) in two languages with random items, or fixed items."""

    name = "fake"
    version = "1"
    language_families = {"xx": "X", "yy": "Y"}

    def __init__(self, n_items: int = 6, fixed: dict[Cell, list[Item]] | None = None):
        self.n_items = n_items
        self.fixed = fixed or {}
        self.tasks = {
            "letters": TaskSpec("letters", ("xx", "yy"), LETTER_FORMAT, LETTER_FORMAT),
            "options": TaskSpec("options", ("xx", "yy"), TEXT_FORMAT, TEXT_FORMAT),
        }

    def items(self, cell: Cell, split: str) -> list[Item]:
        if cell in self.fixed:
            return list(self.fixed[cell])
        rng = random.Random(f"{cell}/{split}")
        return [
            Item(
                id=f"{cell.task}-{i}",
                question=" ".join(rng.choices(WORDS, k=rng.randint(2, 9))) + "?",
                choices=tuple(" ".join(rng.choices(WORDS, k=rng.randint(1, 5))) for _ in range(4)),
                gold=rng.randrange(4),
            )
            for i in range(self.n_items)
        ]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_llama(len(tokenizer), seed=0)


def reference_logliks(model, tokenizer, request: ScoringRequest, max_length: int = 256) -> list[float]:
    """lm-eval's HFLM scoring written out plainly: one un-batched sequence per continuation."""

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    out = []
    for continuation in request.continuations:
        context = request.context
        if context == "":
            context_ids, continuation_ids = [tokenizer.bos_token_id], encode(continuation)
        else:
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces:
                continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
            context_ids = encode(context)
            continuation_ids = encode(context + continuation)[len(context_ids) :]
        inputs = (context_ids + continuation_ids)[-(max_length + 1) :][:-1]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([inputs])).logits[0].float(), dim=-1)
        picked = logprobs[len(inputs) - len(continuation_ids) :].gather(1, torch.tensor(continuation_ids)[:, None])
        out.append(float(picked.sum()))
    return out


def requests_of(suite, cell, tokenizer, chat_template=False):
    fmt = suite.tasks[cell.task].eval_format
    return [build_scoring_request(item, fmt, tokenizer, chat_template) for item in suite.items(cell, "test")]


def mixed_requests(tokenizer, n_items=4):
    suite = FakeSuite(n_items=n_items)
    return requests_of(suite, OPTIONS, tokenizer) + requests_of(suite, LETTERS, tokenizer)


class ForwardCounter:
    """Counts forward passes of a module."""

    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


@pytest.mark.parametrize("chat_template", [False, True], ids=["plain", "chat"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("cell", [LETTERS, OPTIONS], ids=["letter", "text"])
def test_matches_unbatched_reference(model, tokenizer, monkeypatch, cell, batch_size, padding_side, chat_template):
    monkeypatch.setattr(tokenizer, "padding_side", padding_side)
    suite = FakeSuite(n_items=8)
    result = evaluate_cells(
        model, tokenizer, suite, [cell], batch_size=batch_size, chat_template=chat_template, progress=False
    )
    expected = [reference_logliks(model, tokenizer, r) for r in requests_of(suite, cell, tokenizer, chat_template)]
    got = result.predictions["loglik"].tolist()
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)
    assert result.predictions["predicted"].tolist() == [int(np.argmax(e)) for e in expected]
    assert result.metrics[cell]["n"] == 8


def test_batches_mix_lengths_and_cells(model, tokenizer):
    suite = FakeSuite(n_items=10)
    cells = [LETTERS, OPTIONS, Cell("options", "yy")]
    requests = [r for cell in cells for r in requests_of(suite, cell, tokenizer)]
    got = score_requests(model, tokenizer, requests, batch_size=16, progress=False)
    expected = [reference_logliks(model, tokenizer, r) for r in requests]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)


@pytest.mark.parametrize("chat_template", [False, True], ids=["plain", "chat"])
def test_fast_path_one_forward_per_letter_item(model, tokenizer, chat_template):
    requests = requests_of(FakeSuite(n_items=5), LETTERS, tokenizer, chat_template)
    counter = ForwardCounter(model)
    try:
        fast = score_requests(model, tokenizer, requests, batch_size=1, progress=False)
        assert counter.calls == 5
        counter.calls = 0
        general = score_requests(model, tokenizer, requests, batch_size=1, progress=False, fast_path=False)
        assert counter.calls == 5 * 4
    finally:
        counter.handle.remove()
    np.testing.assert_allclose(np.concatenate(fast), np.concatenate(general), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chat_template", [False, True], ids=["plain", "chat"])
def test_option_texts_take_one_packed_sequence_per_item(model, tokenizer, chat_template):
    requests = requests_of(FakeSuite(n_items=3), OPTIONS, tokenizer, chat_template)
    counter = ForwardCounter(model)
    try:
        packed = score_requests(model, tokenizer, requests, batch_size=1, progress=False)
        assert counter.calls == 3
        counter.calls = 0
        general = score_requests(model, tokenizer, requests, batch_size=1, progress=False, fast_path=False)
        assert counter.calls == 3 * 4
    finally:
        counter.handle.remove()
    np.testing.assert_allclose(np.concatenate(packed), np.concatenate(general), atol=1e-5, rtol=0)


def test_trailing_space_moves_to_continuation(model, tokenizer):
    spaced = ScoringRequest("Question: the cat?\nAnswer: ", ("A", "B", "C"), ("A", "B", "C"), 0)
    plain = ScoringRequest("Question: the cat?\nAnswer:", (" A", " B", " C"), ("A", "B", "C"), 0)
    (encoded_spaced, encoded_plain) = evaluation._encode_requests(tokenizer, [spaced, plain])
    assert encoded_spaced == encoded_plain
    assert encoded_spaced[1][0] == tokenizer(" A", add_special_tokens=False)["input_ids"]
    got = score_requests(model, tokenizer, [spaced, plain], progress=False)
    assert got[0] == pytest.approx(got[1], abs=1e-6)
    assert got[0] == pytest.approx(reference_logliks(model, tokenizer, spaced), abs=1e-4)


def test_empty_context_scores_after_bos(model, tokenizer):
    request = ScoringRequest("", ("the cat", " river stone"), ("the cat", " river stone"), 0)
    (context, continuations), = evaluation._encode_requests(tokenizer, [request])
    assert context == [tokenizer.bos_token_id]
    assert continuations[0] == tokenizer("the cat", add_special_tokens=False)["input_ids"]
    got = score_requests(model, tokenizer, [request], progress=False)[0]
    assert got == pytest.approx(reference_logliks(model, tokenizer, request), abs=1e-4)


def test_left_truncation_to_model_length(tokenizer):
    short = build_tiny_llama(len(tokenizer), seed=1, max_position_embeddings=12)
    requests = mixed_requests(tokenizer)
    got = score_requests(short, tokenizer, requests, batch_size=3, progress=False)
    expected = [reference_logliks(short, tokenizer, r, max_length=12) for r in requests]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)


def test_acc_norm_divides_by_choice_characters(model, tokenizer, monkeypatch):
    # Hand computation: raw -2 > -3 picks choice 0; per character -2/2 = -1 < -3/6 = -0.5 picks choice 1.
    item = Item(id="q1", question="which?", choices=("ab", "abcdef"), gold=1)
    suite = FakeSuite(fixed={OPTIONS: [item], LETTERS: [item]})
    monkeypatch.setattr(evaluation, "score_requests", lambda *a, **k: [[-2.0, -3.0]] * len(a[2]))
    result = evaluate_cells(model, tokenizer, suite, [OPTIONS, LETTERS], progress=False)
    rows = result.predictions.set_index("task")
    assert rows.loc["options", "choice_chars"] == [2, 6]  # without the " " target delimiter
    assert (rows.loc["options", "predicted"], rows.loc["options", "predicted_norm"]) == (0, 1)
    assert result.metrics[OPTIONS] == {"acc": 0.0, "acc_norm": 1.0, "score": 1.0, "n": 1}
    assert rows.loc["letters", "choice_chars"] == [1, 1]
    assert result.metrics[LETTERS] == {"acc": 0.0, "score": 0.0, "n": 1}


def test_predict_ties_go_to_first_choice():
    assert predict([-1.0, -1.0, -2.0], [1, 1, 1]) == (0, 0)
    assert predict([-4.0, -2.0, -3.0], [4, 1, 6]) == (1, 2)


def test_metric_names_and_prediction_columns(model, tokenizer):
    suite = FakeSuite(n_items=5)
    cells = [LETTERS, OPTIONS, Cell("options", "yy")]
    result = evaluate_cells(model, tokenizer, suite, cells, progress=False)
    assert list(result.predictions.columns) == list(PREDICTION_COLUMNS)
    assert len(result.predictions) == 15
    assert set(result.metrics) == set(cells)
    assert set(result.metrics[LETTERS]) == {"acc", "score", "n"}
    assert result.metrics[LETTERS]["score"] == result.metrics[LETTERS]["acc"]
    for cell in cells[1:]:
        assert set(result.metrics[cell]) == {"acc", "acc_norm", "score", "n"}
        assert result.metrics[cell]["score"] == result.metrics[cell]["acc_norm"]
    frame = result.predictions
    norm = [int(np.argmax(np.array(ll) / np.array(ch))) for ll, ch in zip(frame["loglik"], frame["choice_chars"])]
    assert frame["predicted_norm"].tolist() == norm
    text = frame[frame["task"] == "options"]
    text_xx = text[text["language"] == "xx"]
    assert result.metrics[OPTIONS]["acc_norm"] == pytest.approx((text_xx["predicted_norm"] == text_xx["gold"]).mean())
    assert result.items_per_second > 0 and result.seconds > 0


def test_limit_keeps_first_items_and_restores_training_mode(model, tokenizer):
    suite = FakeSuite(n_items=6)
    model.train()
    try:
        result = evaluate_cells(model, tokenizer, suite, [LETTERS, OPTIONS], limit=2, progress=False)
        assert model.training
    finally:
        model.eval()
    assert result.predictions["item_id"].tolist() == ["letters-0", "letters-1", "options-0", "options-1"]
    assert all(m["n"] == 2 for m in result.metrics.values())
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_cells(model, tokenizer, suite, [Cell("letterz", "xx")], progress=False)


def test_progress_bar_uses_description(model, tokenizer, capsys):
    requests = requests_of(FakeSuite(n_items=2), LETTERS, tokenizer)
    score_requests(model, tokenizer, requests, progress="baseline letters.xx")
    assert "baseline letters.xx" in capsys.readouterr().err


def test_models_without_logits_to_keep_give_the_same_numbers(model, tokenizer, monkeypatch):
    requests = mixed_requests(tokenizer)
    selected = score_requests(model, tokenizer, requests, batch_size=5, progress=False)
    monkeypatch.setattr(evaluation, "_accepts_logits_to_keep", lambda cls: False)
    full = score_requests(model, tokenizer, requests, batch_size=5, progress=False)
    np.testing.assert_allclose(np.concatenate(selected), np.concatenate(full), atol=1e-5, rtol=0)


def test_peft_lora_at_init_gives_base_logliks(model, tokenizer):
    peft = pytest.importorskip("peft")
    requests = mixed_requests(tokenizer)
    base = score_requests(model, tokenizer, requests, batch_size=4, progress=False)
    fresh = build_tiny_llama(len(tokenizer), seed=0)  # get_peft_model changes the model it wraps
    config = peft.LoraConfig(
        r=4, lora_alpha=8, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    wrapped = peft.get_peft_model(fresh, config)
    assert any("lora_B" in name for name, _ in wrapped.named_parameters())
    lora = score_requests(wrapped, tokenizer, requests, batch_size=4, progress=False)
    np.testing.assert_allclose(np.concatenate(lora), np.concatenate(base), atol=1e-5, rtol=0)


def test_bf16_model_scores_in_float32(model, tokenizer):
    requests = requests_of(FakeSuite(n_items=4), OPTIONS, tokenizer)
    half = build_tiny_llama(len(tokenizer), seed=0).to(torch.bfloat16)
    got = score_requests(half, tokenizer, requests, batch_size=4, progress=False, exact=True)
    expected = [reference_logliks(half, tokenizer, r) for r in requests]
    assert all(isinstance(v, float) for row in got for v in row)
    # The same sequences as the reference (exact): a bf16 log-softmax would be off by ~0.05 per token; batch shapes change bf16 logits by far less.
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-2, rtol=0)


def test_packed_option_texts_with_eager_attention(tokenizer):
    eager = build_tiny_llama(len(tokenizer), seed=3)
    eager.config._attn_implementation = "eager"
    requests = mixed_requests(tokenizer, n_items=5)
    got = score_requests(eager, tokenizer, requests, batch_size=4, progress=False)
    expected = [reference_logliks(eager, tokenizer, r) for r in requests]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)


def test_tokenization_is_cached_per_tokenizer_and_cell(model, tokenizer, monkeypatch):
    suite = FakeSuite(n_items=4)
    first = evaluate_cells(model, tokenizer, suite, [OPTIONS, LETTERS], progress=False)
    calls = []
    real = evaluation.encode_requests
    monkeypatch.setattr(evaluation, "encode_requests", lambda *a: calls.append(1) or real(*a))
    second = evaluate_cells(model, tokenizer, suite, [OPTIONS, LETTERS], progress=False)
    assert calls == []
    evaluate_cells(model, tokenizer, suite, [OPTIONS], chat_template=True, progress=False)
    assert calls == [1]  # another option: tokenized once more
    assert first.predictions["loglik"].tolist() == second.predictions["loglik"].tolist()


def test_throughput_is_reported(model, tokenizer):
    result = evaluate_cells(model, tokenizer, FakeSuite(n_items=4), [OPTIONS, LETTERS], progress=False)
    assert result.n_tokens > 0
    assert result.tokens_per_second == pytest.approx(result.n_tokens / result.seconds)
    assert result.items_per_second == pytest.approx(8 / result.seconds)
    assert result.peak_memory_mb > 10  # CPU: the process's peak RSS


def test_identical_sequences_run_once(model, tokenizer):
    requests = mixed_requests(tokenizer, n_items=3)
    twice = requests + requests[::-1]
    counter = ForwardCounter(model)
    try:
        got = score_requests(model, tokenizer, twice, batch_size=1, progress=False)
    finally:
        counter.handle.remove()
    assert counter.calls == len(requests)
    expected = [reference_logliks(model, tokenizer, r) for r in twice]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)


PRIMINGS = (
    "Q: the quick dog jumps over the river?\nA: the slow cat near the water.\n\nQ: blue fire?\nA: green tree.\n\n",
    "Question: which bird is near the sun?\nAnswer: the blue bird over the stone.\n\n",
)


def primed_requests(tokenizer, n_items=9, chat_template=False):
    """Letter and option-text items after a long few-shot priming (two primings), plus unprimed items."""
    suite = FakeSuite(n_items=n_items)
    requests = []
    for priming in PRIMINGS:
        for cell, fmt in ((LETTERS, LETTER_FORMAT), (OPTIONS, TEXT_FORMAT)):
            primed = PromptFormat(template=priming + fmt.template, target=fmt.target)
            requests += [build_scoring_request(item, primed, tokenizer, chat_template) for item in suite.items(cell, "test")]
    return requests + mixed_requests(tokenizer, n_items=3)


def fed_tokens(model, tokenizer, requests, batch_size, **kwargs):
    stats = {}
    got = score_requests(model, tokenizer, requests, batch_size=batch_size, progress=False, stats=stats, **kwargs)
    return got, stats["n_tokens"]


@pytest.mark.parametrize("chat_template", [False, True], ids=["plain", "chat"])
@pytest.mark.parametrize("batch_size", [1, 6])
def test_shared_prefix_runs_once_per_batch(model, tokenizer, monkeypatch, batch_size, chat_template):
    requests = primed_requests(tokenizer, chat_template=chat_template)
    got, fed = fed_tokens(model, tokenizer, requests, batch_size)
    expected = [reference_logliks(model, tokenizer, r) for r in requests]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)
    assert [predict(g, [1] * len(g))[0] for g in got] == [int(np.argmax(e)) for e in expected]
    monkeypatch.setattr(evaluation, "SHARED_PREFIX_MIN", 10**6)  # no sharing: every row runs whole
    _, unshared = fed_tokens(model, tokenizer, requests, batch_size)
    priming = min(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PRIMINGS)
    n_primed = 4 * 9
    if batch_size == 1:
        assert fed == unshared
    else:  # every primed batch of up to 6 rows computes the priming once instead of once per row
        assert unshared - fed >= priming * (n_primed - 2 * 2 * -(-9 // 6)), (unshared, fed, priming)


def test_shared_prefix_with_eager_attention_and_unmerged_lora(tokenizer):
    peft = pytest.importorskip("peft")
    requests = primed_requests(tokenizer, n_items=5)
    eager = build_tiny_llama(len(tokenizer), seed=3)
    eager.config._attn_implementation = "eager"
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    for model in (eager, peft.get_peft_model(build_tiny_llama(len(tokenizer), seed=4), config)):
        got, _ = fed_tokens(model, tokenizer, requests, 8)
        expected = [reference_logliks(model, tokenizer, r) for r in requests]
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)


def test_batches_group_rows_by_shared_prefix():
    """A system prompt shared by all rows, two primings shared by groups inside it: nested groups."""
    rng = random.Random(0)
    system, priming_a, priming_b = [1] * 20, [2] * 40, [3] * 40

    def row(prefix):
        inputs = prefix + [rng.randrange(10, 99) for _ in range(rng.randint(3, 12))]
        return evaluation._Row([0], inputs, [(len(inputs) - 1, 5, (0, 0))])

    kinds = {"a": system + priming_a, "b": system + priming_b, "system": system, "none": []}
    counts = {"a": 9, "b": 7, "system": 6, "none": 2}
    rows, kind_of = [], {}
    for kind, n in counts.items():
        for _ in range(n):
            rows.append(row(kinds[kind]))
            kind_of[id(rows[-1])] = kind
    batches = evaluation._batches(list(rows), 4, share=True)
    assert sorted(id(r) for b in batches for r in b) == sorted(id(r) for r in rows)
    assert len(batches) == 3 + 2 + 2 + 1 and all(len(b) <= 4 for b in batches)  # a, b, system, none
    for batch in batches:
        batch_kinds = {kind_of[id(r)] for r in batch}
        if batch_kinds & {"a", "b"}:  # a primed group is batched on its own, its priming computed once
            assert len(batch_kinds) == 1 and evaluation._shared_prefix(batch) == (60 if len(batch) > 1 else 0)
    assert any(evaluation._shared_prefix(b) == 20 for b in batches)  # rows sharing the system prompt only
    widths = [max(len(r.inputs) for r in b) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest batches first
    unshared = evaluation._batches(list(rows), 4, share=False)
    assert [len(r.inputs) for b in unshared for r in b] == sorted((len(r.inputs) for r in rows), reverse=True)


@pytest.mark.parametrize("window", [8, 512], ids=["window-shorter-than-rows", "window-longer"])
def test_sliding_window_models_pack_and_share_only_within_the_window(tokenizer, window):
    """Gemma-3-style layers (sliding + full attention): a block mask or a cached prefix longer than the
    window would let a sliding layer attend too far, so such rows run whole (one sequence per choice)."""
    gemma = build_gemma3_sliding(tokenizer, window, hidden_size=64, heads=4, max_positions=1024).eval()
    requests = primed_requests(tokenizer, n_items=4)
    got, fed = fed_tokens(gemma, tokenizer, requests, 6)
    expected = [reference_logliks(gemma, tokenizer, r) for r in requests]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-4, rtol=0)
    _, whole = fed_tokens(gemma, tokenizer, requests, 6, fast_path=False)
    assert (fed < whole / 2) if window == 512 else (fed > whole / 2)  # packed and shared only within the window


def one_sequence_tokens(tokenizer, requests) -> int:
    """Tokens lm-eval feeds: one sequence per distinct (context + continuation)[:-1] (its caches run choices
    that differ only in their last token, answer letters, and repeated sequences once)."""
    distinct = {tuple(context + ids[:-1]) for context, continuations in evaluation.encode_requests(tokenizer, requests)
                for ids in continuations}
    return sum(map(len, distinct))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_reduced_precision_packs_shares_and_stays_close_to_float32(model, tokenizer, dtype):
    """bf16/fp16 take the fast paths (packing, shared prefixes) and stay as close to a float32 reference
    of the same weights as the one-sequence-per-choice computation does, with the same predictions."""
    requests = primed_requests(tokenizer, n_items=6) + mixed_requests(tokenizer, n_items=4)
    reference, _ = fed_tokens(model, tokenizer, requests, 6, exact=True)
    half = build_tiny_llama(len(tokenizer), seed=0).to(dtype)
    fast, fed_fast = fed_tokens(half, tokenizer, requests, 6)
    exact, fed_exact = fed_tokens(half, tokenizer, requests, 6, exact=True)
    assert fed_exact == one_sequence_tokens(tokenizer, requests)
    assert fed_fast < fed_exact / 2  # texts packed, primings run once per batch
    drift_fast = np.max(np.abs(np.concatenate(fast) - np.concatenate(reference)))
    drift_exact = np.max(np.abs(np.concatenate(exact) - np.concatenate(reference)))
    assert drift_fast <= max(1.5 * drift_exact, 1e-3), (drift_fast, drift_exact)
    agree = lambda got: sum(predict(g, [1] * len(g)) == predict(r, [1] * len(r)) for g, r in zip(got, reference))  # noqa: E731
    assert agree(fast) >= agree(exact)


def test_exact_scoring_takes_lm_evals_one_sequence_path(model, tokenizer):
    """The `exact_scoring` switch, from the configuration to the scorer: one sequence per option text and
    no shared prefix in any precision, the numbers of the plain reference."""
    from transfergrid import jobs
    from transfergrid.config import BaselineConfig, load_config

    suite = FakeSuite(n_items=4)
    suite.tasks["options"] = TaskSpec("options", ("xx", "yy"), TEXT_FORMAT, PromptFormat(
        template=PRIMINGS[0] + TEXT_FORMAT.template, target="text"))
    cells = [OPTIONS, LETTERS]
    requests = requests_of(suite, OPTIONS, tokenizer) + requests_of(suite, LETTERS, tokenizer)
    suite.chat_template = False
    study = jobs.Study("unused", "0", suite, None, cells)
    half = build_tiny_llama(len(tokenizer), seed=0).to(torch.bfloat16)
    for net in (model, half):
        # batch size 1: bf16 rounding then depends on the sequences alone, not on their batch's padding
        fast = jobs._score(study, load_config(BaselineConfig, ["--eval_batch_size", "1"]), net, tokenizer, progress=False)
        cfg = load_config(BaselineConfig, ["--exact_scoring", "true", "--eval_batch_size", "1"])
        exact = jobs._score(study, cfg, net, tokenizer, progress=False)
        assert exact.n_tokens == one_sequence_tokens(tokenizer, requests) > 2 * fast.n_tokens
        expected = [reference_logliks(net, tokenizer, r) for r in requests]
        np.testing.assert_allclose(np.concatenate(exact.predictions["loglik"].tolist()), np.concatenate(expected),
                                   atol=1e-4, rtol=0)
    # its runs are told apart from fast-path ones; runs recorded before the switch keep their keys
    default, switched = load_config(BaselineConfig, []), load_config(BaselineConfig, ["--exact_scoring", "true"])
    assert "exact_scoring" not in jobs._eval_payload(study, default)
    assert jobs._eval_payload(study, switched) == {**jobs._eval_payload(study, default), "exact_scoring": True}
