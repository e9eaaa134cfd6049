"""Offline fixtures of the paper's four benchmarks, written in each Hub dataset's real schema.

Field names and types follow the upstream datasets of SPEC 1.2 (alexandrainst/m_arc,
CohereLabs/Global-MMLU-Lite, alexandrainst/m_hellaswag, alexandrainst/m_truthfulqa) and are stored
the ways users store local copies: `save_to_disk` directories (ARC, TruthfulQA), Parquet files
(Global-MMLU) and JSON lines (HellaSwag), all read through the same `datasets` code path as the Hub.
`write_fixture_suite` writes a suite YAML that reuses the built-in paper benchmarks (`use:`) with only
their source, languages and pool sizes overridden, so every format under test is the real one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = "the cat dog house river stone blue green red quick slow jumps runs over under near far water fire tree".split()
LANGS = ("en", "de")


def _text(rng: random.Random, language: str, k: int) -> str:
    return f"{language}:" + " ".join(rng.choices(WORDS, k=k))


def arc_rows(language: str, split: str, n: int) -> list[dict]:
    """m_arc rows: id, answer (letter), instruction, option_a..option_e (option_e mostly empty)."""
    rng = random.Random(f"arc{split}")  # same structure and gold in every language: aligned ids
    rows = []
    for i in range(n):
        answer = "ABCD"[i % 4]
        row = {"id": f"Mercury_{split}_{i:04d}", "answer": answer, "instruction": _text(rng, language, 6) + "?"}
        row |= {f"option_{c}": _text(rng, language, 2) for c in "abcd"}
        row["option_e"] = None
        if split == "train" and i == 3:  # one five-option item whose gold is E: dropped, as the paper
            row["answer"], row["option_e"] = "E", _text(rng, language, 2)
        rows.append(row)
    return rows


def mmlu_rows(language: str, split: str, n: int) -> list[dict]:
    """Global-MMLU-Lite rows (every column of the Hub dataset)."""
    rng = random.Random(f"mmlu{split}")
    rows = []
    for i in range(n):
        rows.append({
            "sample_id": f"{'astronomy' if i % 2 else 'virology'}/{split}/{i}", "subject": "astronomy",
            "subject_category": "STEM", "question": "  " + _text(rng, language, 7) + "  ",
            **{f"option_{c}": _text(rng, language, 2) for c in "abcd"}, "answer": "ABCD"[(i * 3) % 4],
            "required_knowledge": "['conceptual']", "time_sensitive": "['No']", "reference": "[]", "culture": "[]",
            "region": "[]", "country": "[]", "cultural_sensitivity_label": "CA", "is_annotated": bool(i % 2),
        })
    return rows


def hellaswag_rows(language: str, n: int) -> list[dict]:
    """m_hellaswag `val` rows: id (`hellaswag/validation/<n>`, the paper's id column), ind, activity_label,
    ctx_a, ctx_b, ctx, endings, source_id, split, split_type, label."""
    rng = random.Random("hellaswag")
    rows = []
    for i in range(n):
        ctx_a, ctx_b = _text(rng, language, 5) + " [title] " + _text(rng, language, 2), "THE " + _text(rng, language, 3)
        rows.append({
            "id": f"hellaswag/validation/{1000 + i}", "ind": 1000 + i, "activity_label": f"Activity {i % 3}", "ctx_a": ctx_a, "ctx_b": ctx_b,
            "ctx": f"{ctx_a} {ctx_b}", "endings": [_text(rng, language, 3) + " [step] x" for _ in range(4)],
            "source_id": f"wikihow~{i}", "split": "val", "split_type": "indomain", "label": str(i % 4),
        })
    return rows


def truthfulqa_rows(language: str, n: int) -> list[dict]:
    """m_truthfulqa `val` rows: question, mc1/mc2 targets (choices + labels, correct mc1 choice first)."""
    rng = random.Random("tqa")
    rows = []
    for _ in range(n):
        choices = [_text(rng, language, 4) for _ in range(rng.randint(3, 5))]
        rows.append({
            "question": " " + _text(rng, language, 6) + "? [a]", "mc1_targets_choices": choices,
            "mc1_targets_labels": [1] + [0] * (len(choices) - 1), "mc2_targets_choices": choices[:2],
            "mc2_targets_labels": [1, 0],
        })
    return rows


def write_fixtures(root: Path, languages=LANGS, train_n: int = 40, test_n: int = 30) -> Path:
    """Write all four benchmarks for `languages` under `root`; returns `root`."""
    from datasets import Dataset, DatasetDict

    for language in languages:
        DatasetDict({
            "train": Dataset.from_list(arc_rows(language, "train", train_n)),
            "validation": Dataset.from_list(arc_rows(language, "validation", 5)),
            "test": Dataset.from_list(arc_rows(language, "test", test_n)),
        }).save_to_disk(str(root / "m_arc" / language))
        mmlu = root / "global_mmlu" / language
        mmlu.mkdir(parents=True)
        Dataset.from_list(mmlu_rows(language, "dev", train_n)).to_parquet(str(mmlu / "dev.parquet"))
        Dataset.from_list(mmlu_rows(language, "test", test_n)).to_parquet(str(mmlu / "test.parquet"))
        hs = root / "m_hellaswag" / language
        hs.mkdir(parents=True)
        with open(hs / "val.jsonl", "w", encoding="utf-8") as handle:
            for row in hellaswag_rows(language, train_n + test_n):
                handle.write(json.dumps(row) + "\n")
        DatasetDict({"val": Dataset.from_list(truthfulqa_rows(language, train_n + test_n))}).save_to_disk(
            str(root / "m_truthfulqa" / language)
        )
    return root


def fixture_sources(root: Path) -> dict[str, str]:
    """Each paper benchmark's `source`, as suite YAML, reading the fixtures (upstream schemas) under `root`."""
    return {
        "arc_challenge": f'{{load_from_disk: "{root}/m_arc/{{language}}"}}',
        "global_mmlu": f'{{path: parquet, data_files: {{dev: "{root}/global_mmlu/{{language}}/dev.parquet", '
                       f'test: "{root}/global_mmlu/{{language}}/test.parquet"}}}}',
        "hellaswag": f'{{path: json, data_files: {{val: "{root}/m_hellaswag/{{language}}/val.jsonl"}}}}',
        "truthfulqa": f'{{load_from_disk: "{root}/m_truthfulqa/{{language}}"}}',
    }


def fixture_suite_yaml(root: Path, languages=LANGS, tasks=("arc_challenge", "global_mmlu", "hellaswag", "truthfulqa"),
                       train_n: int = 30, test_n: int = 20, extra: str = "") -> str:
    """A suite reusing the built-in paper benchmarks, reading the fixtures under `root`, with pools drawn
    (seed 42, `train_n`/`test_n` items) instead of the paper's manifests, whose ids these fixtures lack."""
    langs = "[" + ", ".join(languages) + "]"
    sources = fixture_sources(root)
    splits = {
        "arc_challenge": f"{{train: {{split: train, n: {train_n}}}, test: {{split: test, n: {test_n}}}}}",
        "global_mmlu": f"{{train: {{split: dev, n: {train_n}}}, test: {{split: test, n: {test_n}}}}}",
        "hellaswag": f"{{train: {{split: val, n: {train_n}}}, test: {{split: val, n: {test_n}}}}}",
        "truthfulqa": f"{{train: {{split: val, n: {train_n}}}, test: {{split: val, n: {test_n}}}}}",
    }
    lines = ["name: paper-fixture", "chat_template: true", "models: [builtin:tiny-llama]", "benchmarks:"]
    for task in tasks:
        lines += [f"  - use: paper/{task}", f"    languages: {langs}", f"    source: {sources[task]}", f"    splits: {splits[task]}",
                  "    split_manifest: null"]
    return "\n".join(lines) + "\n" + extra


def write_fixture_suite(root: Path, **kwargs) -> Path:
    """Fixtures plus their suite file; returns the suite file's path."""
    if not (root / "m_arc").exists():
        write_fixtures(root, languages=kwargs.get("languages", LANGS))
    path = root / "paper-fixture.yaml"
    path.write_text(fixture_suite_yaml(root, **kwargs), encoding="utf-8")
    return path


def write_hub_dataset(hub_cache: Path, repo_id: str, revision: str, files: dict[str, list[dict]]) -> None:
    """A dataset snapshot in the Hugging Face hub cache layout (as `hf download --repo-type dataset` leaves it).

    `files` maps `<config>/<split>` to rows; each config gets a `configs:` entry in the README, as Hub
    datasets declare them.
    """
    from datasets import Dataset

    folder = hub_cache / f"datasets--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    configs: dict[str, list[str]] = {}
    for key, rows in files.items():
        config, split = key.split("/")
        (snapshot / config).mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows).to_parquet(str(snapshot / config / f"{split}-00000-of-00001.parquet"))
        configs.setdefault(config, []).append(split)
    readme = ["---", "configs:"]
    for config, splits in configs.items():
        readme += [f"- config_name: {config}", "  data_files:"]
        readme += [f"  - split: {split}\n    path: {config}/{split}-*.parquet" for split in splits]
    (snapshot / "README.md").write_text("\n".join(readme + ["---", ""]))


def write_hub_model(hub_cache: Path, repo_id: str, revision: str, model_dir: Path) -> None:
    """A model snapshot in the hub cache layout, copied from a saved model directory."""
    import shutil

    folder = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    shutil.copytree(model_dir, folder / "snapshots" / revision)
