"""The paper's exact items: the authors' four split manifests, shipped as the `paper` suite's default split.

Each manifest (`split,id`) names the train and test items by the id rules of the authors'
materialisation: ARC `id` of m_arc (train split -> train pool, test split -> test pool), Global-MMLU
`sample_id` (dev -> train, test -> test), HellaSwag `id` of m_hellaswag (both pools from val) and
TruthfulQA's `truth_id` (the row number across every split of the dataset, offset by the lengths of
the splits before; both pools from val). Fixtures in the upstream schemas (tests/helpers_paper.py)
carry the manifests' ids among extra rows, in shuffled order, so the tests prove the mapping offline.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import random
import tomllib
from pathlib import Path

import pytest
from helpers_paper import arc_rows, fixture_sources, hellaswag_rows, mmlu_rows, truthfulqa_rows

from transfergrid.data import get_suite, split_train_validation
from transfergrid.grid import Cell
from transfergrid.yaml_suite import BUILTIN_DIR, SuiteFileError, load_suite_file, okapi_clean

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = BUILTIN_DIR / "paper" / "manifests"
TASKS = ("arc_challenge", "global_mmlu", "hellaswag", "truthfulqa")
LANGS = ("en", "de")
COUNTS = {"arc_challenge": (300, 400), "global_mmlu": (215, 400), "hellaswag": (300, 400), "truthfulqa": (300, 400)}


def manifest(task: str) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {"train": [], "test": []}
    with open(MANIFESTS / f"{task}.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            pools[row["split"]].append(row["id"])
    return pools


def _with_ids(rows: list[dict], ids: list[str], field: str) -> list[dict]:
    return [{**row, field: ident} for row, ident in zip(rows, ids, strict=True)]


def _shuffled(ids: list[str], seed: str) -> list[str]:
    ids = list(ids)
    random.Random(seed).shuffle(ids)
    return ids


def write_manifest_fixtures(root: Path, drop: dict | None = None) -> dict:
    """Each benchmark in its upstream schema for `LANGS`, holding the manifests' ids among extra rows.

    Returns {task: {language: {upstream split: {id: row}}}} to compare the items with. `drop` maps
    (task, language) to an id left out of that language's data.
    """
    from datasets import Dataset, DatasetDict

    drop = drop or {}
    data: dict = {task: {} for task in TASKS}
    for language in LANGS:
        gone = {task: drop.get((task, language)) for task in TASKS}

        def keep(task, ids):
            return [i for i in ids if i != gone[task]]

        arc = manifest("arc_challenge")
        arc_ids = {  # extras first: row 3 of the train rows is a five-option item with gold E (dropped)
            "train": keep("arc_challenge", [f"ARC-Challenge/train/Extra_{k}" for k in range(5)] + _shuffled(arc["train"], "arc")),
            "validation": [f"ARC-Challenge/validation/Extra_{k}" for k in range(5)],
            "test": keep("arc_challenge", _shuffled(arc["test"] + [f"ARC-Challenge/test/Extra_{k}" for k in range(5)], "arct")),
        }
        splits = {s: _with_ids(arc_rows(language, s, len(ids)), ids, "id") for s, ids in arc_ids.items()}
        DatasetDict({s: Dataset.from_list(rows) for s, rows in splits.items()}).save_to_disk(str(root / "m_arc" / language))
        data["arc_challenge"][language] = {s: {r["id"]: r for r in rows} for s, rows in splits.items()}

        mmlu = manifest("global_mmlu")
        folder = root / "global_mmlu" / language
        folder.mkdir(parents=True)
        data["global_mmlu"][language] = {}
        for split, pool in (("dev", "train"), ("test", "test")):
            ids = keep("global_mmlu", _shuffled(mmlu[pool], "mmlu" + split))
            rows = _with_ids(mmlu_rows(language, split, len(ids)), ids, "sample_id")
            Dataset.from_list(rows).to_parquet(str(folder / f"{split}.parquet"))
            data["global_mmlu"][language][split] = {r["sample_id"]: r for r in rows}

        hs = manifest("hellaswag")
        ids = keep("hellaswag", _shuffled(hs["train"] + hs["test"] + [f"hellaswag/validation/{k}" for k in range(20000, 20020)], "hs"))
        rows = _with_ids(hellaswag_rows(language, len(ids)), ids, "id")
        (root / "m_hellaswag" / language).mkdir(parents=True)
        (root / "m_hellaswag" / language / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        data["hellaswag"][language] = {"val": {r["id"]: r for r in rows}}

        rows = truthfulqa_rows(language, 790)  # truth_id = row number: the manifests use 0..772
        if gone["truthfulqa"] is not None:
            rows = rows[: int(gone["truthfulqa"])]
        DatasetDict({"val": Dataset.from_list(rows)}).save_to_disk(str(root / "m_truthfulqa" / language))
        data["truthfulqa"][language] = {"val": {str(i): r for i, r in enumerate(rows)}}
    return data


def manifest_suite(root: Path, tasks=TASKS) -> Path:
    """A suite reusing the paper benchmarks with only their source replaced: the shipped manifests apply."""
    sources = fixture_sources(root)
    lines = ["name: paper-items", "benchmarks:"]
    for task in tasks:
        lines += [f"  - use: paper/{task}", "    languages: [en, de]", f"    source: {sources[task]}"]
    path = root / "suite.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest-data")
    return root, write_manifest_fixtures(root)


def test_the_paper_suite_ships_the_four_manifests_as_its_default_split():
    paper = get_suite("paper")
    for task in TASKS:
        bench = paper.benchmarks[task]
        assert bench.split_manifest == MANIFESTS / f"{task}.csv"
        assert bench.split_manifest.read_bytes() == (MANIFESTS / f"{task}.csv").read_bytes()
        pools = manifest(task)
        assert (len(pools["train"]), len(pools["test"])) == COUNTS[task]
        assert not set(pools["train"]) & set(pools["test"])
    assert paper.benchmarks["hellaswag"].id_field == "id" and paper.benchmarks["global_mmlu"].id_field == "sample_id"
    assert paper.benchmarks["truthfulqa"].id_field is None and paper.benchmarks["truthfulqa"].row_ids == "across_splits"
    # they are package data: every file under suites/ matches a package-data pattern of pyproject.toml
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["transfergrid"]
    package = BUILTIN_DIR.parent
    for path in BUILTIN_DIR.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns), relative


@pytest.mark.parametrize("task,splits", [
    ("arc_challenge", {"train": "train", "test": "test"}),
    ("global_mmlu", {"train": "dev", "test": "test"}),
    ("hellaswag", {"train": "val", "test": "val"}),
    ("truthfulqa", {"train": "val", "test": "val"}),
])
def test_manifest_ids_map_to_their_upstream_rows_sorted_by_the_id_column(fixtures, task, splits):
    root, data = fixtures
    suite = load_suite_file(manifest_suite(root, tasks=(task,)))
    pools = manifest(task)
    by_number = task == "truthfulqa"  # truth_id is an integer column: sorted as numbers
    key = (lambda i: int(i)) if by_number else (lambda i: i)
    expected_test = sorted(pools["test"], key=key)
    expected_train = sorted(pools["train"], key=key)
    assert by_number == (expected_test != sorted(pools["test"]))  # the two orders differ for truth_id
    for language in LANGS:
        cell = Cell(task, language)
        test = suite.items(cell, "test")
        assert [i.id for i in test] == expected_test
        train, validation = suite.items(cell, "train"), suite.items(cell, "validation")
        assert ([i.id for i in train], [i.id for i in validation]) == split_train_validation(expected_train, 0.1, 42)
        for pool, items in (("test", test), ("train", train + validation)):
            rows = data[task][language][splits[pool]]
            for item in items[:25] + items[-5:]:  # each id reads its own upstream row
                row = rows[item.id]
                if task == "hellaswag":
                    assert item.choices[0] == okapi_clean(row["endings"][0]) and item.gold == int(row["label"])
                elif task == "global_mmlu":
                    assert item.question == row["question"].strip() and item.choices[0] == row["option_a"]
                else:
                    assert item.question == okapi_clean(row["instruction" if task == "arc_challenge" else "question"])


def test_truth_id_counts_rows_across_every_split_in_the_datasets_order(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = truthfulqa_rows("en", 9)
    # the English source names its split `validation`; a split listed before it offsets the ids
    DatasetDict({"train": Dataset.from_list(rows[:3]), "validation": Dataset.from_list(rows[3:])}).save_to_disk(str(tmp_path / "tqa"))
    (tmp_path / "m.csv").write_text("split,id\ntrain,3\ntrain,4\ntrain,8\ntest,7\ntest,5\n", encoding="utf-8")
    suite = load_suite_file(_write(tmp_path / "s.yaml", f"""
name: s
benchmarks:
  - use: paper/truthfulqa
    languages: [en]
    source: {{load_from_disk: "{tmp_path}/tqa", split_names: {{val: validation}}}}
    split_manifest: m.csv
"""))
    test = suite.items(Cell("truthfulqa", "en"), "test")
    assert [i.id for i in test] == ["5", "7"]
    assert [i.question for i in test] == [okapi_clean(rows[5]["question"]), okapi_clean(rows[7]["question"])]
    train = suite.benchmarks["truthfulqa"].pool("en", "train")
    assert [i.id for i in train] == ["3", "4", "8"] and train[0].question == okapi_clean(rows[3]["question"])


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("task,pool", [("hellaswag", "test"), ("arc_challenge", "train"), ("truthfulqa", "test")])
def test_a_manifest_id_missing_from_the_pool_names_benchmark_language_and_ids(tmp_path, task, pool):
    ids = manifest(task)[pool]
    gone = ids[-1] if task == "truthfulqa" else ids[7]  # truthfulqa: the data ends before the last test id
    write_manifest_fixtures(tmp_path, drop={(task, "de"): gone})
    suite = load_suite_file(manifest_suite(tmp_path, tasks=(task,)))
    assert suite.items(Cell(task, "en"), "test")  # complete in en
    split = {"hellaswag": "val", "arc_challenge": "train", "truthfulqa": "val"}[task]
    with pytest.raises(SuiteFileError, match=rf"of the {len(ids)} {pool} ids of benchmark {task}, language de, are "
                                             rf"missing from split '{split}'; first: {gone}"):
        suite.items(Cell(task, "de"), "test" if pool == "test" else "train")
