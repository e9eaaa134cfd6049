"""The built-in benchmark suite `synthetic`: 3 tasks x 4 languages with planted transfer structure.

The suite is generated deterministically (string-seeded `random.Random`, never the global RNG) so
that the tiny built-in model learns every cell in seconds and the analysis has a known answer to
recover. `docs/synthetic.md` explains the design at length; in short:

**Concepts and surface forms.** There are 24 concepts in 6 blocks of 4. Each concept has a *cue*
word and an *answer* word (an option text); each block has a *classifier* word that precedes the cue
of its concepts, so a question reads `{classifier} {cue}`. How a language spells the words of a block
is its form class there: `P` the proto form shared by every language that uses it, `N` a Northern
innovation shared by `xn1` and `xn2` only, `own` a form of that language alone, and `mix` (language
`xs1`) the proto form in the items whose `borrow` flag is set (half of each concept's items) and its
own form in the others:

    block   B0  B1   B2   B3   B4   B5
    xn1     P   P    P    N    P    own     Northern: conservative hub
    xn2     P   P    P    N    own  own     Northern
    xs1     P   P    mix  own  mix  own     Southern: alternates borrowed/native forms
    xi1     P   own  own  own  own  own     Isolate

    language_distance = 1 - expected share of concepts spelled the same
              xn1    xn2    xs1    xi1
    xn1       0      0.333  0.5    0.833
    xn2       0.333  0      0.583  0.833
    xs1       0.5    0.583  0      0.833
    xi1       0.833  0.833  0.833  0

A fine-tuned tiny model only knows the surface forms it was trained on (its embeddings are frozen and
random), so cross-language transfer is the share of the target's items whose cue the source taught.

**Tasks.** 300 train items (270 train + 30 validation) and 100 test items per cell, aligned across
languages (same ids, concepts and gold), gold letters balanced.
- `syn_lookup` (broad, letter-scored): all 24 concepts; the gold letter is a fixed function of the
  concept (one concept per letter in each block, so the classifier alone says nothing).
- `syn_match` (narrow, letter-scored): 12 of the concepts (two per block); its concept->letter map
  equals `syn_lookup`'s on 10 of them; two letters are swapped (planted shared task structure).
- `syn_define` (isolated, text-scored like ARC/HellaSwag): all 24 concepts; the target is the
  concept's answer word, scored on option texts so it reports acc_norm. Its output space (words)
  shares nothing with the letter tasks.

**Intended roles.** Languages (MT-CL): `xn1` hub (strong donor, strongest recipient), `xs1` better
donor than recipient (its training data teach both of its forms; as a target only its borrowing items
are covered), `xi1` isolated. Tasks (CT-ML): `syn_lookup` donor (it covers every concept of
`syn_match`), `syn_match` recipient, `syn_define` isolated. Expected means: MT-CL > CT-ML > CT-CL.
`ground_truth()` computes all of this from the generator.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

from transfergrid.data import Item, PromptFormat, TaskSpec, split_train_validation
from transfergrid.grid import Cell, check_choice

logger = logging.getLogger(__name__)

SUITE_NAME = "synthetic"
VERSION = "2"  # bump on any change of words, items or prompts (it is part of every run key)

LANGUAGES = ("xn1", "xn2", "xs1", "xi1")
LANGUAGE_FAMILIES = {"xn1": "Northern", "xn2": "Northern", "xs1": "Southern", "xi1": "Isolate"}
N_BLOCKS = 6
CONCEPTS_PER_BLOCK = 4  # = number of options, so each block holds one concept per letter
N_CONCEPTS = N_BLOCKS * CONCEPTS_PER_BLOCK
N_OPTIONS = 4
TRAIN_SIZE = 300  # per cell, as the paper's ARC pool: items("train") returns 270, items("validation") 30
TEST_SIZE = 100  # per cell: 12 cells x 100 = 1,200 items to evaluate
VALIDATION_FRACTION = 0.1  # the paper's 90/10 split (SPEC 1.5)
VALIDATION_SEED = 42
CHANCE = 1.0 / N_OPTIONS

# Form class of each lexicon block per language (see the module docstring).
BLOCK_FORMS: dict[str, tuple[str, ...]] = {
    "xn1": ("P", "P", "P", "N", "P", "own"),
    "xn2": ("P", "P", "P", "N", "own", "own"),
    "xs1": ("P", "P", "mix", "own", "mix", "own"),
    "xi1": ("P", "own", "own", "own", "own", "own"),
}
LANGUAGE_ROLES = {
    "xn1": "hub: conservative, shares most forms; strong donor and strongest recipient",
    "xn2": "Northern sibling of xn1: close to xn1, further from the others",
    "xs1": "mixed: alternates borrowed and native forms; better donor than recipient",
    "xi1": "isolate: shares one block only; weak donor and weak recipient",
}
TASK_ROLES = {
    "syn_lookup": "broad letter task (24 concepts): donor to syn_match",
    "syn_match": "narrow letter task (12 concepts, 10 share syn_lookup's letter): recipient",
    "syn_define": "isolated text-scored task: answers are words, no transfer to or from letter tasks",
}

_SEED = f"transfergrid-synthetic-v{VERSION}"
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _fmt(template: str, **kwargs) -> PromptFormat:
    """A training/eval format: answer-only loss, left truncation, no EOS (SPEC 1.5)."""
    return PromptFormat(template=template, loss="answer", truncation="left", max_length=128, **kwargs)


# Prompt formats in the spirit of SPEC 1.5/1.6: ARC-like, Global-MMLU-like, and okapi-style text scoring.
_FORMATS = {
    "syn_lookup": _fmt("Question: {question}\n{options}\nAnswer:", option_template="{letter}) {text}"),
    "syn_match": _fmt("Match: {question}\n{options}\nAnswer:", option_template="{letter}. {text}"),
    "syn_define": _fmt("Define: {question}\nAnswer:", target="text"),
}


@dataclass(frozen=True)
class Skeleton:
    """A language-independent item; rendering it in each language gives the aligned items.

    Attributes:
        id: item id, shared by every language.
        concept: the concept whose cue word is in the question.
        option_concepts: concept of each option (its answer word), gold at `gold`.
        gold: index of the correct option.
        borrow: whether a `mix` language uses the proto forms in this item.
    """

    id: str
    concept: int
    option_concepts: tuple[int, ...]
    gold: int
    borrow: bool


@dataclass(frozen=True)
class TaskDesign:
    """What a task asks: its concepts and, for letter tasks, the concept -> gold letter index map."""

    name: str
    concepts: tuple[int, ...]
    letter_of: dict[int, int] | None  # None: text-scored task (gold position is random)


def block_of(concept: int) -> int:
    """The lexicon block of a concept (concepts 0-3 form block 0, and so on)."""
    return concept // CONCEPTS_PER_BLOCK


def form_class(language: str, block: int, borrow: bool) -> str:
    """The form class (`P`, `N` or `own`) a language uses for a block in an item."""
    cls = BLOCK_FORMS[language][block]
    if cls == "mix":
        return "P" if borrow else "own"
    return cls


def _origin(language: str, block: int, borrow: bool) -> str:
    """Key of the word table: `P`, `N`, or the language code for its own forms."""
    cls = form_class(language, block, borrow)
    return language if cls == "own" else cls


def _build_lexicon() -> dict[tuple[str, int, str], str]:
    """Distinct pseudo-words for every (kind, meaning, origin) the suite uses.

    Kinds: `cue` and `answer` (per concept) and `classifier` (per block).
    """
    rng = random.Random(f"{_SEED}-lexicon")
    used: set[str] = set()

    def new_word(syllables: int, coda: bool) -> str:
        while True:
            word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
            word += rng.choice(_CONSONANTS) if coda else ""
            if word not in used:
                used.add(word)
                return word

    origins = ["P", "N", *LANGUAGES]
    lexicon = {}
    for origin in origins:
        for concept in range(N_CONCEPTS):
            lexicon[("cue", concept, origin)] = new_word(2, coda=False)
            lexicon[("answer", concept, origin)] = new_word(2, coda=True)
        for block in range(N_BLOCKS):
            lexicon[("classifier", block, origin)] = new_word(1, coda=True)
    return lexicon


def _task_designs() -> dict[str, TaskDesign]:
    """The three tasks; `syn_match` shares `syn_lookup`'s letter on 10 of its 12 concepts."""
    rng = random.Random(f"{_SEED}-tasks")
    lookup: dict[int, int] = {}
    for block in range(N_BLOCKS):
        letters = rng.sample(range(N_OPTIONS), N_OPTIONS)  # one concept per letter in every block
        for k, letter in enumerate(letters):
            lookup[block * CONCEPTS_PER_BLOCK + k] = letter
    # Narrow task: two concepts per block whose letters alternate {A,B} / {C,D}, so letters stay balanced.
    narrow = [c for c in range(N_CONCEPTS) if lookup[c] in ((2 * block_of(c)) % 4, (2 * block_of(c) + 1) % 4)]
    match = {c: lookup[c] for c in narrow}
    # Swap the letters of two narrow concepts (balance kept): syn_match agrees with syn_lookup on 10 of
    # its 12 concepts. A 4-cycle (8 of 12) planted a donor asymmetry no larger than the off-task noise.
    first = rng.choice(narrow)
    second = rng.choice([c for c in narrow if lookup[c] != lookup[first] and block_of(c) != block_of(first)])
    match[first], match[second] = lookup[second], lookup[first]
    return {
        "syn_lookup": TaskDesign("syn_lookup", tuple(range(N_CONCEPTS)), lookup),
        "syn_match": TaskDesign("syn_match", tuple(narrow), match),
        "syn_define": TaskDesign("syn_define", tuple(range(N_CONCEPTS)), None),
    }


def _skeletons(design: TaskDesign, split: str, size: int) -> list[Skeleton]:
    """Aligned, letter-balanced items of one task and split."""
    rng = random.Random(f"{_SEED}-{design.name}-{split}")
    golds = [i % N_OPTIONS for i in range(size)]
    rng.shuffle(golds)
    if design.letter_of is not None:
        by_letter = {g: [c for c in design.concepts if design.letter_of[c] == g] for g in range(N_OPTIONS)}
        seen = dict.fromkeys(range(N_OPTIONS), 0)
        concepts = []
        for g in golds:  # cycle through the concepts of each letter: concepts balanced too
            concepts.append(by_letter[g][seen[g] % len(by_letter[g])])
            seen[g] += 1
    else:
        order = rng.sample(design.concepts, len(design.concepts))
        concepts = [order[i % len(order)] for i in range(size)]
    occurrences = dict.fromkeys(design.concepts, 0)
    prefix = "tr" if split == "train" else "te"
    items = []
    for i, (concept, gold) in enumerate(zip(concepts, golds)):
        others = rng.sample([c for c in design.concepts if c != concept], N_OPTIONS - 1)
        options = others[:gold] + [concept] + others[gold:]
        # Alternate per concept so a `mix` language borrows on exactly half of each concept's items.
        borrow = occurrences[concept] % 2 == 0
        occurrences[concept] += 1
        items.append(Skeleton(f"{design.name}-{prefix}{i:03d}", concept, tuple(options), gold, borrow))
    return items


class SyntheticSuite:
    """The `synthetic` suite (implements `data.Suite`); see the module docstring for the design."""

    def __init__(self) -> None:
        self.name = SUITE_NAME
        self.version = VERSION
        self.language_families = dict(LANGUAGE_FAMILIES)
        self.models = ["builtin:tiny-llama"]
        self.chat_template = False
        self.designs = _task_designs()
        self.lexicon = _build_lexicon()
        self.tasks = {
            name: TaskSpec(
                name=name,
                languages=LANGUAGES,
                train_format=_FORMATS[name],
                eval_format=_FORMATS[name],
                construction="synthetic",
                version=int(VERSION),
            )
            for name in self.designs
        }
        self.skeletons = {
            (name, split): _skeletons(design, split, size)
            for name, design in self.designs.items()
            for split, size in (("train", TRAIN_SIZE), ("test", TEST_SIZE))
        }

    def word(self, kind: str, meaning: int, language: str, borrow: bool) -> str:
        """Surface form of a `cue`/`answer` (meaning = concept) or a `classifier` (meaning = block)."""
        block = meaning if kind == "classifier" else block_of(meaning)
        return self.lexicon[(kind, meaning, _origin(language, block, borrow))]

    def render(self, skeleton: Skeleton, language: str) -> Item:
        """The item of `skeleton` in `language`."""
        # The question is the concept's classifier (the word of its block) then its cue. Random filler
        # words around the cue made the letter tasks unlearnable in 3 epochs for the random tiny model.
        classifier = self.word("classifier", block_of(skeleton.concept), language, skeleton.borrow)
        question = f"{classifier} {self.word('cue', skeleton.concept, language, skeleton.borrow)}"
        choices = tuple(self.word("answer", c, language, skeleton.borrow) for c in skeleton.option_concepts)
        return Item(id=skeleton.id, question=question, choices=choices, gold=skeleton.gold)

    @cached_property
    def _split_ids(self) -> dict[tuple[str, str], list[str]]:
        """(task, `train`/`validation`) -> item ids in the order `split_train_validation` returns them.

        The split depends only on positions in the pool, so it is the same for every language.
        """
        result = {}
        for name in self.designs:
            pool = [self.render(s, LANGUAGES[0]) for s in self.skeletons[(name, "train")]]
            train, validation = split_train_validation(pool, VALIDATION_FRACTION, VALIDATION_SEED)
            result[(name, "train")] = [item.id for item in train]
            result[(name, "validation")] = [item.id for item in validation]
        return result

    def skeletons_of(self, task: str, split: str) -> list[Skeleton]:
        """Skeletons of a task's split (`train` = the 90 %, `validation`, `test`, or `pool` = all train).

        Raises:
            ValueError: unknown task or split.
        """
        check_choice("task", task, list(self.designs))
        check_choice("split", split, ["train", "validation", "test", "pool"])
        if split == "test":
            return list(self.skeletons[(task, "test")])
        pool = self.skeletons[(task, "train")]
        if split == "pool":
            return list(pool)
        by_id = {s.id: s for s in pool}
        return [by_id[item_id] for item_id in self._split_ids[(task, split)]]

    def items(self, cell: Cell, split: str) -> list[Item]:
        """Items of `cell` in `split` (`train`, `validation` or `test`), in a stable order.

        Raises:
            ValueError: unknown task, language or split (the message lists the valid ones).
        """
        check_choice("task", cell.task, list(self.tasks))
        check_choice("language", cell.language, list(LANGUAGES))
        check_choice("split", split, ["train", "validation", "test"])
        return [self.render(s, cell.language) for s in self.skeletons_of(cell.task, split)]

    def cells(self) -> list[Cell]:
        """All 12 cells, task-major."""
        return [Cell(task, lang) for task in self.tasks for lang in LANGUAGES]

    def ground_truth(self) -> dict:
        """The planted structure, computed from the generator; see the module function `ground_truth`."""
        return ground_truth(self)


def load_suite() -> SyntheticSuite:
    """Build the `synthetic` suite (deterministic; takes milliseconds)."""
    return SyntheticSuite()


def corpus(suite: SyntheticSuite | None = None) -> list[str]:
    """Every text the suite can show a model: prompts plus targets of all cells and splits.

    The tiny model's tokenizer is trained on this, so every suite word is in its vocabulary.
    """
    from transfergrid.formats import render_prompt, render_target

    suite = suite or load_suite()
    texts = []
    for cell in suite.cells():
        fmt = suite.tasks[cell.task].train_format
        for split in ("pool", "test"):
            for skeleton in suite.skeletons_of(cell.task, split):
                item = suite.render(skeleton, cell.language)
                texts.append(render_prompt(item, fmt) + render_target(item, fmt))
                texts.append(" ".join(item.choices))
    return texts


def cue_form(suite: SyntheticSuite, skeleton: Skeleton, language: str) -> str:
    """The cue word of `skeleton` in `language` (the one word that determines the answer)."""
    return suite.word("cue", skeleton.concept, language, skeleton.borrow)


def sharing(suite: SyntheticSuite, first: str, second: str, concepts: Sequence[int] | None = None) -> float:
    """Expected share of concepts two languages spell the same (a `mix` block counts per borrow flag)."""
    concepts = range(N_CONCEPTS) if concepts is None else concepts
    same = [
        suite.word("cue", c, first, borrow) == suite.word("cue", c, second, borrow)
        for c in concepts
        for borrow in (True, False)
    ]
    return sum(same) / len(same)


def _knowledge(suite: SyntheticSuite, cell: Cell) -> dict[str, tuple[str, object]]:
    """What an ideal learner of `cell` knows: cue form -> (`letter`, gold index) or (`text`, word)."""
    is_letter = suite.designs[cell.task].letter_of is not None
    known = {}
    for s in suite.skeletons_of(cell.task, "pool"):
        answer = s.gold if is_letter else suite.word("answer", s.concept, cell.language, s.borrow)
        known[cue_form(suite, s, cell.language)] = ("letter" if is_letter else "text", answer)
    return known


def _ideal_accuracy(suite: SyntheticSuite, known: dict, target: Cell) -> tuple[float, float]:
    """(expected accuracy, coverage) on `target`'s test items of a learner that knows `known`.

    A known cue in the target's output space gives the learnt answer (right or wrong); anything
    else is a guess among the options (chance).
    """
    target_kind = "letter" if suite.designs[target.task].letter_of is not None else "text"
    total = covered = 0.0
    skeletons = suite.skeletons_of(target.task, "test")
    for s in skeletons:
        kind, answer = known.get(cue_form(suite, s, target.language), (None, None))
        if kind != target_kind:
            total += CHANCE
            continue
        covered += 1
        item = suite.render(s, target.language)
        gold = item.gold if kind == "letter" else item.choices[item.gold]
        options = range(N_OPTIONS) if kind == "letter" else item.choices
        total += 1.0 if answer == gold else (0.0 if answer in options else CHANCE)
    return total / len(skeletons), covered / len(skeletons)


def _role_scores(expected, regime_name: str, key) -> "pd.DataFrame":
    """Mean expected delta per source key (donor) and per target key (recipient) within one regime."""
    import pandas as pd

    from transfergrid.grid import regime

    rows = [
        {"source": key(Cell.parse(s)), "target": key(Cell.parse(t)), "delta": expected.loc[s, t]}
        for s in expected.index
        for t in expected.columns
        if regime(Cell.parse(s), Cell.parse(t)) == regime_name
    ]
    long = pd.DataFrame(rows)
    return pd.DataFrame(
        {"donor": long.groupby("source")["delta"].mean(), "recipient": long.groupby("target")["delta"].mean()}
    )


def _ideal_matrices(suite: SyntheticSuite) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(expected accuracy, coverage), source cell x target cell, of ideal learners of each source."""
    import pandas as pd

    names = [str(c) for c in suite.cells()]
    accuracy = pd.DataFrame(index=names, columns=names, dtype=float)
    coverage = accuracy.copy()
    for source in suite.cells():
        known = _knowledge(suite, source)
        for target in suite.cells():
            acc, cov = _ideal_accuracy(suite, known, target)
            accuracy.loc[str(source), str(target)], coverage.loc[str(source), str(target)] = acc, cov
    return accuracy, coverage


def _letter_agreement(suite: SyntheticSuite) -> "pd.DataFrame":
    """Source task x target task: share of the target's concepts whose letter the source's map gives."""
    import pandas as pd

    names = list(suite.designs)
    agreement = pd.DataFrame(index=names, columns=names, dtype=float)
    for src, sd in suite.designs.items():
        for tgt, td in suite.designs.items():
            if sd.letter_of is not None and td.letter_of is not None:
                same = sum(sd.letter_of.get(c) == td.letter_of[c] for c in td.concepts)
                agreement.loc[src, tgt] = same / len(td.concepts)
    return agreement


def ground_truth(suite: SyntheticSuite | None = None) -> dict:
    """The planted structure of the suite, computed from the generator itself.

    Args:
        suite: the suite to describe (default: a fresh `load_suite()`).

    Returns:
        dict of pandas objects:
        `language_distance` (language x language, symmetric, 0 on the diagonal: 1 - expected share of
        concepts spelled the same); `expected_accuracy` and `coverage` (source cell x target cell, for
        an ideal learner of the source cell's train pool that guesses on unknown cues);
        `expected_transfer` (the same as expected delta in pp: 100 x (expected accuracy - chance));
        `letter_agreement` (source task x target task; NaN for the text task); `language_roles` and
        `task_roles` (family, design role, expected donor and recipient scores as SPEC 1.10: MT-CL for
        languages, CT-ML for tasks); `regime_means` (expected mean delta per regime).
    """
    import pandas as pd

    from transfergrid.grid import REGIMES, regime

    suite = suite or load_suite()
    accuracy, coverage = _ideal_matrices(suite)
    expected = 100.0 * (accuracy - CHANCE)
    languages = list(LANGUAGES)
    distance = pd.DataFrame(
        [[1.0 - sharing(suite, a, b) for b in languages] for a in languages], index=languages, columns=languages
    )
    language_roles = _role_scores(expected, "MT-CL", lambda c: c.language).loc[languages]
    language_roles.insert(0, "role", pd.Series(LANGUAGE_ROLES))
    language_roles.insert(0, "family", pd.Series(LANGUAGE_FAMILIES))
    task_roles = _role_scores(expected, "CT-ML", lambda c: c.task).loc[list(suite.designs)]
    task_roles.insert(0, "role", pd.Series(TASK_ROLES))
    labels = [[regime(Cell.parse(s), Cell.parse(t)) for t in expected.columns] for s in expected.index]
    values = [(label, expected.iloc[i, j]) for i, row in enumerate(labels) for j, label in enumerate(row)]
    regime_means = pd.Series({r: float(pd.Series([v for lab, v in values if lab == r]).mean()) for r in REGIMES})
    return {
        "language_distance": distance,
        "expected_accuracy": accuracy,
        "expected_transfer": expected,
        "coverage": coverage,
        "letter_agreement": _letter_agreement(suite),
        "language_roles": language_roles,
        "task_roles": task_roles,
        "regime_means": regime_means,
    }
