"""Render items into training examples (SPEC 1.5) and scoring requests (SPEC 1.6).

The one place that knows how a prompt, a target and a loss mask are built.
"""

from __future__ import annotations

from dataclasses import dataclass

from transfergrid.data import LETTERS, Item, PromptFormat

IGNORE_INDEX = -100  # label of tokens that carry no loss (PyTorch cross-entropy ignore_index)


def render_prompt(item: Item, fmt: PromptFormat) -> str:
    """The prompt text of `item` under `fmt` (no target)."""
    options = fmt.option_separator.join(
        fmt.option_template.format(letter=LETTERS[i], text=text) for i, text in enumerate(item.choices)
    )
    return fmt.template.format(question=item.question, options=options)


def choice_strings(item: Item, fmt: PromptFormat) -> list[str]:
    """The strings scored as answers: the letters or the option texts (without delimiter)."""
    if fmt.target == "letter":
        return list(LETTERS[: len(item.choices)])
    return list(item.choices)


def render_target(item: Item, fmt: PromptFormat) -> str:
    """The gold continuation including the target delimiter (e.g. ' B')."""
    return fmt.target_delimiter + choice_strings(item, fmt)[item.gold]


def build_sft_example(item: Item, fmt: PromptFormat, tokenizer) -> dict[str, list[int]]:
    """Tokenize one training example with its loss mask (SPEC 1.5).

    `answer` loss: prompt tokens get label -100, target tokens keep their ids; no EOS is appended.
    `full` loss: every token carries loss. Truncation keeps the last `max_length` tokens (`left`) or the
    first (`right`). The prompt and target are tokenized as one string so that token boundaries equal
    those seen at inference; the answer span is located by tokenizing the prompt alone.

    Returns:
        dict with `input_ids` and `labels` (same length, unpadded).
    """
    prompt = render_prompt(item, fmt)
    target = render_target(item, fmt)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(prompt + target, add_special_tokens=False)["input_ids"]
    if ids[: len(prompt_ids)] != prompt_ids:
        # The target merged with the prompt's last token: keep the prompt's own tokens.
        ids = prompt_ids + tokenizer(target, add_special_tokens=False)["input_ids"]
    n_prompt = len(prompt_ids)
    if fmt.add_bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
        n_prompt += 1
    if fmt.loss == "answer":
        labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    else:
        labels = list(ids)
    if len(ids) > fmt.max_length:
        keep = slice(-fmt.max_length, None) if fmt.truncation == "left" else slice(None, fmt.max_length)
        ids, labels = ids[keep], labels[keep]
    return {"input_ids": ids, "labels": labels}


@dataclass(frozen=True)
class ScoringRequest:
    """One item as lm-eval's `multiple_choice` sees it.

    Attributes:
        context: the conditioning text (chat-templated when the template switch is on).
        continuations: one string per choice, each starting with the target delimiter.
        choice_texts: the raw choice strings whose character length normalises acc_norm.
        gold: index of the correct continuation.
    """

    context: str
    continuations: tuple[str, ...]
    choice_texts: tuple[str, ...]
    gold: int


def build_scoring_request(item: Item, fmt: PromptFormat, tokenizer=None, chat_template: bool = False) -> ScoringRequest:
    """The scoring request of `item` under `fmt` (SPEC 1.6).

    With `chat_template`, the context goes into a user turn with the generation prompt and the
    target delimiter becomes empty, reproducing lm-eval's `--apply_chat_template`.
    """
    context = render_prompt(item, fmt)
    delimiter = fmt.target_delimiter
    if chat_template:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template=True needs a tokenizer that defines a chat template")
        context = tokenizer.apply_chat_template(
            [{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True
        )
        delimiter = ""
    texts = choice_strings(item, fmt)
    return ScoringRequest(
        context=context,
        continuations=tuple(delimiter + text for text in texts),
        choice_texts=tuple(texts),
        gold=item.gold,
    )
