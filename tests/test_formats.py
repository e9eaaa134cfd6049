"""Golden tests of formats.py: prompts, loss masks, truncation (SPEC 1.5) and scoring requests (SPEC 1.6)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers_models import build_tiny_tokenizer

from transfergrid.data import Item, PromptFormat
from transfergrid.formats import (
    IGNORE_INDEX,
    build_scoring_request,
    build_sft_example,
    choice_strings,
    render_prompt,
    render_target,
)

ITEM = Item("q1", "the cat runs over the river", ("blue house", "red stone", "old tree", "dark road"), gold=1)
ARC = PromptFormat(template="Question: {question}\n{options}\nAnswer:")  # SPEC 1.5 ARC-Challenge layout
ARC_PROMPT = "Question: the cat runs over the river\nA) blue house\nB) red stone\nC) old tree\nD) dark road\nAnswer:"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def loss_span(example: dict[str, list[int]]) -> list[int]:
    return [label for label in example["labels"] if label != IGNORE_INDEX]


def test_letter_prompt_is_the_paper_layout():
    assert render_prompt(ITEM, ARC) == ARC_PROMPT
    assert render_target(ITEM, ARC) == " B"
    assert choice_strings(ITEM, ARC) == ["A", "B", "C", "D"]


def test_global_mmlu_layout_and_more_than_four_options():
    mmlu = PromptFormat(template="{question}\n{options}\nAnswer:", option_template="{letter}. {text}")
    item = Item("q2", "pick one", ("a", "b", "c", "d", "e"), gold=4)
    assert render_prompt(item, mmlu) == "pick one\nA. a\nB. b\nC. c\nD. d\nE. e\nAnswer:"
    assert render_target(item, mmlu) == " E"


def test_only_the_answer_letter_carries_loss_and_no_eos_is_appended(tokenizer):
    example = build_sft_example(ITEM, ARC, tokenizer)
    ids, labels = example["input_ids"], example["labels"]
    assert ids == tokens(tokenizer, ARC_PROMPT + " B")
    assert tokenizer.convert_ids_to_tokens(ids[-3:]) == ["Answer", ":", "ĠB"]  # " B" is one token
    assert labels == [IGNORE_INDEX] * (len(ids) - 1) + [tokenizer.convert_tokens_to_ids("ĠB")]
    assert tokenizer.eos_token_id not in ids and tokenizer.bos_token_id not in ids


def test_add_bos_prepends_an_unlabelled_bos(tokenizer):
    plain = build_sft_example(ITEM, ARC, tokenizer)
    with_bos = build_sft_example(ITEM, PromptFormat(template=ARC.template, add_bos=True), tokenizer)
    assert with_bos["input_ids"] == [tokenizer.bos_token_id, *plain["input_ids"]]
    assert with_bos["labels"] == [IGNORE_INDEX, *plain["labels"]]


def test_left_truncation_keeps_the_answer(tokenizer):
    full = build_sft_example(ITEM, ARC, tokenizer)
    short = build_sft_example(ITEM, PromptFormat(template=ARC.template, max_length=5), tokenizer)
    assert short["input_ids"] == full["input_ids"][-5:] and short["labels"] == full["labels"][-5:]
    assert tokenizer.decode(short["input_ids"]) == " road\nAnswer: B"
    assert loss_span(short) == [tokenizer.convert_tokens_to_ids("ĠB")]


def test_right_truncation_keeps_the_beginning(tokenizer):
    full = build_sft_example(ITEM, ARC, tokenizer)
    fmt = PromptFormat(template=ARC.template, truncation="right", max_length=5)
    short = build_sft_example(ITEM, fmt, tokenizer)
    assert short["input_ids"] == full["input_ids"][:5] and short["labels"] == [IGNORE_INDEX] * 5
    assert tokenizer.decode(short["input_ids"]) == "Question: the cat runs"


def test_full_loss_labels_every_token_truthfulqa_style(tokenizer):
    # SPEC 1.5 TruthfulQA: "Question: ...\nAnswer: <text>", BOS added, loss on every token, right truncation.
    truthfulqa = PromptFormat(
        template="Question: {question}\nAnswer:", target="text", loss="full", truncation="right", max_length=128,
        add_bos=True,
    )
    example = build_sft_example(ITEM, truthfulqa, tokenizer)
    assert example["labels"] == example["input_ids"]
    assert example["input_ids"][0] == tokenizer.bos_token_id
    assert tokenizer.decode(example["input_ids"][1:]) == "Question: the cat runs over the river\nAnswer: red stone"
    cut = build_sft_example(ITEM, dataclasses.replace(truthfulqa, max_length=4), tokenizer)
    assert cut["input_ids"] == example["input_ids"][:4] == cut["labels"]


def test_text_target_carries_loss_on_the_option_text(tokenizer):
    fmt = PromptFormat(template=ARC.template, target="text")
    example = build_sft_example(ITEM, fmt, tokenizer)
    assert render_target(ITEM, fmt) == " red stone"
    assert loss_span(example) == tokens(tokenizer, " red stone") == example["input_ids"][-2:]
    assert choice_strings(ITEM, fmt) == list(ITEM.choices)


def test_target_merging_into_the_prompt_keeps_the_prompt_tokens(tokenizer):
    # "...\nQues" + "tion" tokenizes as "...Question": the example keeps the prompt's own tokens.
    fmt = PromptFormat(template="{question}\nQues", target="text", target_delimiter="")
    item = Item("m", "the cat", ("tion", "x"), gold=0)
    assert tokens(tokenizer, "the cat\nQues")[-2:] != tokens(tokenizer, "the cat\nQuestion")[-2:]
    example = build_sft_example(item, fmt, tokenizer)
    assert example["input_ids"] == tokens(tokenizer, "the cat\nQues") + tokens(tokenizer, "tion")
    assert loss_span(example) == tokens(tokenizer, "tion")


def test_scoring_request_without_chat_template():
    letters = build_scoring_request(ITEM, ARC)
    assert (letters.context, letters.gold) == (ARC_PROMPT, 1)
    assert letters.continuations == (" A", " B", " C", " D") and letters.choice_texts == ("A", "B", "C", "D")
    okapi = PromptFormat(template="Question: {question}\nAnswer:", target="text")  # SPEC 1.6 ARC eval
    texts = build_scoring_request(ITEM, okapi)
    assert texts.context == "Question: the cat runs over the river\nAnswer:"
    assert texts.continuations == (" blue house", " red stone", " old tree", " dark road")
    assert texts.choice_texts == ITEM.choices


def test_scoring_request_with_chat_template_has_an_empty_delimiter(tokenizer):
    request = build_scoring_request(ITEM, ARC, tokenizer, chat_template=True)
    assert request.context == f"<|user|>\n{ARC_PROMPT}\n<|assistant|>\n"
    assert request.continuations == ("A", "B", "C", "D") and request.choice_texts == ("A", "B", "C", "D")
    text_format = PromptFormat(template=ARC.template, target="text")
    texts = build_scoring_request(ITEM, text_format, tokenizer, chat_template=True)
    assert texts.continuations == ITEM.choices and texts.gold == 1


def test_chat_template_needs_a_tokenizer_that_defines_one():
    with pytest.raises(ValueError, match="chat template"):
        build_scoring_request(ITEM, ARC, None, chat_template=True)
    with pytest.raises(ValueError, match="chat template"):
        build_scoring_request(ITEM, ARC, build_tiny_tokenizer(chat_template=False), chat_template=True)
