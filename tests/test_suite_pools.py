"""Custom suites' train/test pools: ids are unique only within their upstream split, never a leak.

The fixture is shaped like XCOPA (`cambridgeltl/xcopa`): one config per language, splits `validation`
(100 items) and `test` (500 items), each numbering its rows from 0 in the `idx` field, with the fields
premise, choice1, choice2, question (`cause`/`effect`) and label. Stored as JSON lines, the way a
user keeps a local copy ("train and test files number their items independently").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfergrid.data import get_suite
from transfergrid.grid import Cell
from transfergrid.yaml_suite import SuiteFileError, load_suite_file

XCOPA_LANGS = ("en", "it")


def xcopa_rows(language: str, split: str, n: int) -> list[dict]:
    """XCOPA rows: premise, choice1, choice2, question, label, idx (idx from 0 in every split)."""
    return [{
        "premise": f"{language} {split} premise {i} was seen.", "choice1": f"The {split} cause {i} one.",
        "choice2": f"The {split} cause {i} two.", "question": "cause" if i % 2 == 0 else "effect",
        "label": i % 2, "idx": i,
    } for i in range(n)]


def write_xcopa(root: Path, n_validation: int = 20, n_test: int = 50, languages=XCOPA_LANGS) -> Path:
    """Per language, `validation.jsonl` and `test.jsonl` under `root/xcopa/<language>/`; returns `root`."""
    for language in languages:
        folder = root / "xcopa" / language
        folder.mkdir(parents=True, exist_ok=True)
        for split, n in (("validation", n_validation), ("test", n_test)):
            with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
                for row in xcopa_rows(language, split, n):
                    handle.write(json.dumps(row) + "\n")
    return root


XCOPA_SUITE = """
name: xcopa-suite
models: [builtin:tiny-llama]
benchmarks:
  - name: xcopa
    languages: [en, it]
    source: {path: json, data_files: {validation: "xcopa/{language}/validation.jsonl", test: "xcopa/{language}/test.jsonl"}}
    splits: {train: validation, test: test}
    id_field: idx
    fields: {question: "{premise}", choices: [choice1, choice2], answer: label, answer_type: index}
    train_format: {template: "{question}", target: text}
    eval_format: {template: "{question}", target: text}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_train_and_test_files_numbered_from_zero_do_not_leak_into_each_other(tmp_path):
    write_xcopa(tmp_path)
    suite = get_suite(str(_write(tmp_path / "xcopa.yaml", XCOPA_SUITE)))
    for language in XCOPA_LANGS:
        cell = Cell("xcopa", language)
        test = suite.items(cell, "test")
        train = suite.items(cell, "train") + suite.items(cell, "validation")
        assert len(test) == 50 and len(train) == 20
        assert all(" test premise " in item.question for item in test), "a training item is in the test pool"
        assert all(" validation premise " in item.question for item in train)
        assert [item.id for item in test] == [str(i) for i in range(50)]  # every test row, in file order
        assert sorted(int(item.id) for item in train) == list(range(20))


def test_an_id_that_repeats_inside_one_split_is_refused_with_a_message_that_says_so(tmp_path):
    write_xcopa(tmp_path)
    # two files for one split, each numbering from 0: the declared id field no longer identifies a row
    text = XCOPA_SUITE.replace('test: "xcopa/{language}/test.jsonl"',
                               'test: ["xcopa/{language}/test.jsonl", "xcopa/{language}/validation.jsonl"]')
    suite = load_suite_file(_write(tmp_path / "xcopa.yaml", text))
    with pytest.raises(SuiteFileError, match=r"id field 'idx' repeats within split 'test' of xcopa\.(en|it): "
                                             r"'0' is on rows 0 and 50.*unique within a split"):
        suite.items(Cell("xcopa", "it"), "test")


def test_pools_sharing_one_split_stay_disjoint_and_a_manifest_may_reuse_an_id_across_splits(tmp_path):
    write_xcopa(tmp_path)
    # both pools drawn from `test`: disjoint by construction
    text = XCOPA_SUITE.replace("splits: {train: validation, test: test}",
                               "splits: {train: {split: test, n: 30}, test: {split: test, n: 20}}")
    suite = load_suite_file(_write(tmp_path / "same.yaml", text))
    cell = Cell("xcopa", "en")
    train = {i.id for i in suite.items(cell, "train") + suite.items(cell, "validation")}
    test = {i.id for i in suite.items(cell, "test")}
    assert len(train) == 30 and len(test) == 20 and not train & test
    # a manifest naming id 3 in both pools: two different rows when the pools come from different splits ...
    manifest = _write(tmp_path / "m.csv", "split,id\ntrain,3\ntrain,4\ntest,3\ntest,7\n")
    text = XCOPA_SUITE.replace("    id_field: idx", f"    split_manifest: {manifest}\n    id_field: idx")
    suite = load_suite_file(_write(tmp_path / "manifest.yaml", text))
    test_items = suite.items(cell, "test")
    assert [i.id for i in test_items] == ["3", "7"] and all(" test premise " in i.question for i in test_items)
    pool = suite.benchmarks["xcopa"].pool("en", "train")
    assert [i.id for i in pool] == ["3", "4"] and all(" validation premise " in i.question for i in pool)
    # ... and a leak when both pools come from the same split
    text = text.replace("splits: {train: validation, test: test}", "splits: {train: test, test: test}")
    suite = load_suite_file(_write(tmp_path / "manifest.yaml", text))
    with pytest.raises(SuiteFileError, match=r"1 ids are in both the train and the test pool.*both drawn from split 'test'.*'3'"):
        suite.items(cell, "test")
