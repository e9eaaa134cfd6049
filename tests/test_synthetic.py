"""The `synthetic` suite: deterministic, aligned, balanced, and its planted structure is real."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from transfergrid import synthetic
from transfergrid.data import get_suite, suite_cells
from transfergrid.grid import Cell

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def suite():
    return synthetic.load_suite()


@pytest.fixture(scope="module")
def truth(suite):
    return suite.ground_truth()


def test_is_the_registered_synthetic_suite(suite):
    assert get_suite("synthetic").version == suite.version == synthetic.VERSION
    assert suite.name == "synthetic"
    assert len(suite.tasks) >= 3 and len(synthetic.LANGUAGES) >= 4
    assert set(suite.language_families) == set(synthetic.LANGUAGES)
    assert all(spec.languages == synthetic.LANGUAGES for spec in suite.tasks.values())
    assert len(suite_cells(suite)) == len(suite.tasks) * len(synthetic.LANGUAGES)


def test_generation_is_deterministic_and_leaves_the_global_rng_alone(suite):
    state = random.getstate()
    again = synthetic.load_suite()
    assert random.getstate() == state
    for cell in suite.cells():
        for split in SPLITS:
            assert again.items(cell, split) == suite.items(cell, split)


def test_splits_are_sized_as_documented_and_disjoint(suite):
    for cell in suite.cells():
        parts = {split: [item.id for item in suite.items(cell, split)] for split in SPLITS}
        assert [len(parts[s]) for s in SPLITS] == [270, 30, synthetic.TEST_SIZE]
        assert len(set().union(*parts.values())) == sum(len(ids) for ids in parts.values())


def test_item_ids_are_aligned_across_languages(suite):
    for task in suite.tasks:
        for split in SPLITS:
            per_language = [
                [(i.id, i.gold) for i in suite.items(Cell(task, lang), split)] for lang in synthetic.LANGUAGES
            ]
            assert all(ids == per_language[0] for ids in per_language)


def test_items_have_four_distinct_options(suite):
    for cell in suite.cells():
        for item in suite.items(cell, "test"):
            assert len(item.choices) == 4 == len(set(item.choices))
            assert len(item.question.split()) == 2  # classifier + cue


def test_gold_letters_are_balanced(suite):
    for cell in suite.cells():
        for skeletons in (suite.skeletons_of(cell.task, "pool"), suite.skeletons_of(cell.task, "test")):
            counts = Counter(s.gold for s in skeletons)
            assert set(counts.values()) == {len(skeletons) // 4}


def test_text_and_letter_scored_tasks(suite):
    targets = {spec.eval_format.target for spec in suite.tasks.values()}
    assert targets == {"text", "letter"}
    for spec in suite.tasks.values():
        fmt = spec.train_format
        assert (fmt.loss, fmt.truncation, fmt.target) == ("answer", "left", spec.eval_format.target)
        assert "{question}" in fmt.template and fmt.template.endswith("Answer:")
    text_task = next(spec for spec in suite.tasks.values() if spec.has_acc_norm)
    item = suite.items(Cell(text_task.name, "xn1"), "test")[0]
    assert all(len(choice.split()) == 1 for choice in item.choices)  # one-word option texts


@pytest.mark.parametrize(
    "cell, split, message",
    [
        (Cell("syn_lookupp", "xn1"), "test", "did you mean 'syn_lookup'"),
        (Cell("syn_lookup", "en"), "test", "unknown language"),
        (Cell("syn_lookup", "xn1"), "dev", "unknown split"),
    ],
)
def test_unknown_cell_or_split_raises_a_clear_error(suite, cell, split, message):
    with pytest.raises(ValueError, match=message):
        suite.items(cell, split)


def test_distance_matrix_is_symmetric_with_zero_diagonal(truth):
    distance = truth["language_distance"]
    assert list(distance.index) == list(distance.columns) == list(synthetic.LANGUAGES)
    assert (distance.values == distance.values.T).all()
    assert all(distance.loc[lang, lang] == 0 for lang in synthetic.LANGUAGES)
    assert ((distance.values >= 0) & (distance.values <= 1)).all()
    assert distance.loc["xn1", "xn2"] < distance.loc["xn1", "xs1"] < distance.loc["xn1", "xi1"]  # family tree


def test_measured_sharing_matches_the_documented_distance(suite, truth):
    """Measured on generated items: how often aligned items use the same cue (and classifier) word."""
    distance = truth["language_distance"]
    for first, second in itertools.combinations(synthetic.LANGUAGES, 2):
        same_cue = same_classifier = total = 0
        for task in suite.tasks:
            for split in ("train", "test"):
                for a, b in zip(suite.items(Cell(task, first), split), suite.items(Cell(task, second), split)):
                    (class_a, cue_a), (class_b, cue_b) = a.question.split(), b.question.split()
                    same_cue += cue_a == cue_b
                    same_classifier += class_a == class_b
                    total += 1
        # Concepts are spread evenly over blocks, so the item share equals the concept share.
        assert same_cue / total == pytest.approx(1 - distance.loc[first, second], abs=0.03), (first, second)
        assert same_classifier / total == pytest.approx(same_cue / total, abs=1e-9)


def test_shared_task_structure(suite, truth):
    lookup, match = suite.designs["syn_lookup"], suite.designs["syn_match"]
    assert set(match.concepts) < set(lookup.concepts)
    agree = sum(match.letter_of[c] == lookup.letter_of[c] for c in match.concepts)
    assert agree == 10 and len(match.concepts) == 12
    assert truth["letter_agreement"].loc["syn_lookup", "syn_match"] == pytest.approx(10 / 12)


def test_expected_transfer_has_the_planted_order_and_roles(truth):
    regimes = truth["regime_means"]
    assert regimes["MT-ML"] == pytest.approx(75.0)
    assert regimes["MT-CL"] > regimes["CT-ML"] > regimes["CT-CL"] > 0
    languages, tasks = truth["language_roles"], truth["task_roles"]
    assert languages.loc["xs1", "donor"] > languages.loc["xs1", "recipient"]  # mixed language: donor
    assert languages["recipient"].idxmax() == "xn1"  # hub
    assert languages["donor"].idxmin() == languages["recipient"].idxmin() == "xi1"  # isolate
    assert tasks["donor"].idxmax() == "syn_lookup" and tasks["recipient"].idxmax() == "syn_match"
    assert tasks.loc["syn_define", "donor"] == tasks.loc["syn_define", "recipient"] == 0.0
    expected = truth["expected_transfer"]
    assert expected.shape == (12, 12) and (expected.values >= -1e-9).all()


def test_corpus_contains_every_prompt(suite):
    corpus = synthetic.corpus(suite)
    assert len(corpus) == 2 * len(suite.cells()) * (synthetic.TRAIN_SIZE + synthetic.TEST_SIZE)
    assert any(text.startswith("Question: ") and text.endswith("Answer: A") for text in corpus)


def test_train_and_validation_are_the_papers_split_of_the_pool(suite):
    from transfergrid.data import split_train_validation

    cell = Cell("syn_match", "xs1")
    pool = [suite.render(s, cell.language) for s in suite.skeletons_of(cell.task, "pool")]
    train, validation = split_train_validation(pool, 0.1, 42)
    assert suite.items(cell, "train") == train and suite.items(cell, "validation") == validation
