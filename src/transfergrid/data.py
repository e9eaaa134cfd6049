"""Benchmark items, prompt formats and suites: the data every other module consumes.

A suite is a set of tasks, each available in a list of languages, whose items are aligned across
languages (the same item ids in every language, as in the paper's design, SPEC 1.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

from transfergrid.grid import Cell, check_choice, select_cells

logger = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")
Split = Literal["train", "validation", "test"]
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Item:
    """One multiple-choice item of one cell.

    Attributes:
        id: item id, identical across the languages of a task.
        question: the text the prompt template puts in `{question}` (already cleaned).
        choices: option texts, in letter order.
        gold: index of the correct option.
    """

    id: str
    question: str
    choices: tuple[str, ...]
    gold: int

    def __post_init__(self) -> None:
        if not 0 <= self.gold < len(self.choices):
            raise ValueError(f"item {self.id!r}: gold index {self.gold} outside 0..{len(self.choices) - 1}")


@dataclass(frozen=True)
class PromptFormat:
    """How an item becomes a prompt and a target, for training or for evaluation.

    Attributes:
        template: format string with `{question}` and optionally `{options}`.
        option_template: one option line, with `{letter}` and `{text}`.
        option_separator: joins option lines inside `{options}`.
        target: `letter` (the gold letter) or `text` (the gold option text).
        target_delimiter: put between prompt and target (lm-eval's `target_delimiter`).
        loss: training only: `answer` (loss on the target tokens) or `full` (every non-pad token).
        truncation: training only: `left` keeps the last `max_length` tokens (the answer survives).
        max_length: training only: maximum tokens per example.
        add_bos: training only: prepend the tokenizer's BOS token when it defines one.
    """

    template: str
    option_template: str = "{letter}) {text}"
    option_separator: str = "\n"
    target: Literal["letter", "text"] = "letter"
    target_delimiter: str = " "
    loss: Literal["answer", "full"] = "answer"
    truncation: Literal["left", "right"] = "left"
    max_length: int = 256
    add_bos: bool = False

    def __post_init__(self) -> None:
        check_choice("format target", self.target, ["letter", "text"])
        check_choice("format loss", self.loss, ["answer", "full"])
        check_choice("format truncation", self.truncation, ["left", "right"])
        if self.max_length <= 0:
            raise ValueError(f"format max_length must be > 0, got {self.max_length}")


@dataclass(frozen=True)
class TaskSpec:
    """A benchmark of a suite.

    Attributes:
        name: task code name (e.g. `arc_challenge`).
        languages: language codes the task is available in.
        train_format: how source items are rendered for fine-tuning (SPEC 1.5); None for an
            evaluation-only task (a target, never a fine-tuning source).
        eval_format: how target items are scored (SPEC 1.6); `target=text` reports acc_norm.
        construction: `human`, `machine` (translated) or `synthetic`.
        version: bumped on any prompt or data change; part of every run key.
    """

    name: str
    languages: tuple[str, ...]
    train_format: PromptFormat | None
    eval_format: PromptFormat
    construction: str = "synthetic"
    version: int = 1

    @property
    def has_acc_norm(self) -> bool:
        """Whether the task reports acc_norm (option-text scoring), so that score = acc_norm."""
        return self.eval_format.target == "text"


class Suite(Protocol):
    """A benchmark suite: tasks x languages with aligned items."""

    name: str
    version: str
    tasks: dict[str, TaskSpec]
    language_families: dict[str, str]
    models: list[str]  # the suite's default models (`main` runs them all when no --model is given)
    chat_template: bool  # whether evaluation applies the chat template by default (SPEC 1.6)

    def items(self, cell: Cell, split: Split) -> list[Item]:
        """Items of `cell` in `split` (`train`, `validation` or `test`)."""
        ...


def suite_cells(suite: Suite, tasks: Sequence[str] | None = None, languages: Sequence[str] | None = None) -> list[Cell]:
    """The suite's cells restricted to `tasks` and `languages` (empty or None: all)."""
    return select_cells({name: spec.languages for name, spec in suite.tasks.items()}, tasks, languages)


def split_train_validation(items: Sequence[Item], fraction: float = 0.1, seed: int = 42) -> tuple[list[Item], list[Item]]:
    """Split a source train pool into train/validation exactly as the paper (SPEC 1.5).

    Uses `datasets.Dataset.train_test_split(test_size=fraction, seed=seed)` so that the same ids land
    in validation as in the authors' runs (HF rounds the validation share up).
    """
    from datasets import Dataset  # local import: `datasets` is slow to import

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    index = Dataset.from_dict({"i": list(range(len(items)))})
    parts = index.train_test_split(test_size=fraction, seed=seed)
    return [items[i] for i in parts["train"]["i"]], [items[i] for i in parts["test"]["i"]]


def get_suite(name: str) -> Suite:
    """Look up a benchmark suite: `synthetic`, a built-in YAML suite (`paper`), or a path to a suite YAML.

    Raises:
        ValueError: unknown suite name (the message lists the valid ones), or an invalid suite file.
    """
    from pathlib import Path

    from transfergrid import synthetic, yaml_suite

    if name.endswith((".yaml", ".yml")) or Path(name).is_file():
        return yaml_suite.load_suite_file(name)
    builtin = yaml_suite.builtin_suites()
    check_choice("benchmark suite (or a path to a suite .yaml)", name, ["synthetic", *builtin])
    if name == "synthetic":
        return synthetic.load_suite()
    return yaml_suite.load_suite_file(yaml_suite.BUILTIN_DIR / f"{name}.yaml")
