"""The evaluator tokenizes as lm-eval 0.4.13: the tokenizer's own special tokens (a BOS-adding tokenizer,
as Gemma's, gets BOS before every context), none again after a chat template that writes BOS, none
before an empty context's continuation."""

from __future__ import annotations

from helpers_models import build_tiny_tokenizer
from tokenizers import processors

from transfergrid.evaluation import encode_requests
from transfergrid.formats import ScoringRequest


def bos_adding_tokenizer():
    tokenizer = build_tiny_tokenizer()
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    assert tokenizer("the cat")["input_ids"][0] == bos  # like Gemma's: BOS by default
    return tokenizer


def request(context, *continuations):
    return ScoringRequest(context=context, continuations=continuations, choice_texts=continuations, gold=0)


def test_bos_adding_tokenizer_scores_after_one_bos_as_lmeval():
    tokenizer = bos_adding_tokenizer()
    bos = tokenizer.bos_token_id
    plain = tokenizer("Question: the cat?\nAnswer:", add_special_tokens=False)["input_ids"]
    (context, continuations), = encode_requests(tokenizer, [request("Question: the cat?\nAnswer:", " A", " B")])
    assert context == [bos] + plain
    assert continuations == [tokenizer("Question: the cat?\nAnswer: A", add_special_tokens=False)["input_ids"][len(plain):],
                             tokenizer("Question: the cat?\nAnswer: B", add_special_tokens=False)["input_ids"][len(plain):]]
    (context, _), = encode_requests(tokenizer, [request("<s>Question: the cat?\nAnswer:", "A")])
    assert context.count(bos) == 1 and context[0] == bos  # a template that writes BOS gets no second one
    (context, continuations), = encode_requests(tokenizer, [request("", "the cat")])
    assert context == [bos] and continuations == [tokenizer("the cat", add_special_tokens=False)["input_ids"]]


def test_the_same_as_lmeval_encodes_it():
    import pytest

    huggingface = pytest.importorskip("lm_eval.models.huggingface", reason="lm-eval 0.4.13 is not installed (pip install -e '.[test]')")
    from helpers_models import build_tiny_llama

    tokenizer = bos_adding_tokenizer()
    lm = huggingface.HFLM(pretrained=build_tiny_llama(len(tokenizer)), tokenizer=tokenizer, batch_size=1, device="cpu")
    for context, continuation in [("Question: the cat?\nAnswer:", " A"), ("<s>the dog runs ", "over"), ("the", " red house.")]:
        (ours, (cont,)), = encode_requests(tokenizer, [request(context, continuation)])
        assert (ours, cont) == tuple(lm._encode_pair(context, continuation))
