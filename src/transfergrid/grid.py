"""Grid vocabulary: cells, regimes, and selection of a task x language grid (ARCHITECTURE.md section 2).

Pure Python on purpose: `analysis/` imports this module and must stay free of mlflow and torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

REGIMES = ("MT-ML", "MT-CL", "CT-ML", "CT-CL")
TRANSFER_REGIMES = ("MT-CL", "CT-ML", "CT-CL")
HARM_THRESHOLD_PP = -1.0  # harm: delta <= -1.0 pp (SPEC 1.9)


def delta_pp(score: float, base: float, n_items: int | None) -> float:
    """Δ = 100 x (score - base) in pp of two accuracies over the same `n_items` items, from their item counts.

    100 * (k - j) / n is exact where the float difference of k/n and j/n is not: equal counts give
    exactly 0 and one item lost in 100 exactly -1.0, so the win (Δ > 0) and harm (Δ <= -1) rates
    see no float residue. Scores that are not counts over `n_items` fall back to the float formula.
    """
    if n_items:
        k, j = score * n_items, base * n_items
        if abs(k - round(k)) < 1e-9 * n_items and abs(j - round(j)) < 1e-9 * n_items:
            return 100.0 * (round(k) - round(j)) / n_items
    return 100.0 * (score - base)


@dataclass(frozen=True, order=True)
class Cell:
    """One (task, language) cell, written `task.language`."""

    task: str
    language: str

    def __str__(self) -> str:
        return f"{self.task}.{self.language}"

    @classmethod
    def parse(cls, text: str) -> "Cell":
        """Parse `task.language` (the language is the part after the last dot).

        Raises:
            ValueError: if `text` is not of the form `task.language`.
        """
        task, dot, language = str(text).strip().rpartition(".")
        if not dot or not task or not language:
            raise ValueError(f"invalid cell {text!r}: expected 'task.language', e.g. 'arc_challenge.de'")
        return cls(task, language)


def regime(source: Cell, target: Cell) -> str:
    """Regime of an ordered (source, target) pair: MT-ML, MT-CL, CT-ML or CT-CL (SPEC 1.8)."""
    same_task = source.task == target.task
    same_language = source.language == target.language
    if same_task:
        return "MT-ML" if same_language else "MT-CL"
    return "CT-ML" if same_language else "CT-CL"


def size_bucket(size_b: float | None) -> str:
    """S (<= 1.5B), M (< 7B) or L (>= 7B), as SPEC 1.4; '?' for an unknown size."""
    if size_b is None or size_b != size_b:  # size_b != size_b: NaN
        return "?"
    if size_b <= 1.5:
        return "S"
    return "M" if size_b < 7 else "L"


def suggest(value: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for an unknown name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(what: str, value: str, choices: Sequence[str]) -> str:
    """Return `value` if it is one of `choices`, else raise a ValueError naming the valid ones."""
    if value not in choices:
        raise ValueError(
            f"unknown {what} {value!r}{suggest(value, choices)}; valid {what}s: {', '.join(sorted(choices))}"
        )
    return value


def select_cells(
    tasks: dict[str, Sequence[str]],
    task_filter: Sequence[str] | None = None,
    language_filter: Sequence[str] | None = None,
) -> list[Cell]:
    """Cells of a suite restricted to the given tasks and languages, in a stable order.

    Args:
        tasks: task name -> languages that task is available in.
        task_filter: task names to keep (None or empty: all).
        language_filter: language codes to keep (None or empty: all).

    Raises:
        ValueError: an unknown task or language, or a selection with no cells.
    """
    all_languages = sorted({lang for langs in tasks.values() for lang in langs})
    for name in task_filter or ():
        check_choice("task", name, list(tasks))
    for lang in language_filter or ():
        check_choice("language", lang, all_languages)
    cells = [
        Cell(task, lang)
        for task in tasks
        if not task_filter or task in task_filter
        for lang in tasks[task]
        if not language_filter or lang in language_filter
    ]
    if not cells:
        raise ValueError(
            f"empty grid selection: tasks={list(task_filter or [])} languages={list(language_filter or [])} "
            f"select no cell; available tasks: {', '.join(tasks)}; languages: {', '.join(all_languages)}"
        )
    return cells


def on_task_gain(source: Cell, deltas: Mapping[Cell, float]) -> float:
    """On-task gain of a fine-tune (pp): the mean of its MT-ML Δ and its mean MT-CL Δ (the ablation's objective 1).

    Args:
        source: the cell trained on.
        deltas: target cell -> Δ (pp).

    Raises:
        ValueError: no target of the source's task was evaluated.
    """
    groups: dict[str, list[float]] = {}
    for cell, delta in deltas.items():
        groups.setdefault(regime(source, cell), []).append(delta)
    means = [sum(groups[r]) / len(groups[r]) for r in ("MT-ML", "MT-CL") if groups.get(r)]
    if not means:
        raise ValueError(f"no target of task {source.task!r} was evaluated: the on-task gain of {source} is undefined")
    return sum(means) / len(means)


def off_task_harm_rate(source: Cell, deltas: Mapping[Cell, float]) -> float:
    """Share (%) of off-task targets (CT-ML, CT-CL) with Δ <= HARM_THRESHOLD_PP (objective 2); 0 when none."""
    off = [d for cell, d in deltas.items() if cell.task != source.task]
    return 100.0 * sum(d <= HARM_THRESHOLD_PP for d in off) / len(off) if off else 0.0
