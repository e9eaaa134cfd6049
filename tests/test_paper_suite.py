"""The `paper` suite (SPEC 1.2-1.6): data as YAML, exact formats, pools, custom suites, offline errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_models import build_tiny_tokenizer
from helpers_paper import LANGS, write_fixture_suite

from transfergrid.data import get_suite, suite_cells
from transfergrid.formats import IGNORE_INDEX, build_scoring_request, build_sft_example, render_prompt, render_target
from transfergrid.grid import Cell
from transfergrid.yaml_suite import SuiteFileError, load_suite_file, okapi_clean

ROOT = Path(__file__).resolve().parents[1]
PAPER_LANGUAGES = ["ar", "bn", "de", "en", "es", "fr", "hi", "id", "it", "pt", "zh"]


@pytest.fixture(scope="module")
def paper():
    return get_suite("paper")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def fixture_suite(tmp_path_factory):
    return get_suite(str(write_fixture_suite(tmp_path_factory.mktemp("paper-data"))))


def test_paper_suite_is_44_cells_with_construction_families_models_and_pinned_revisions(paper):
    cells = suite_cells(paper)
    assert len(cells) == 44 and {c.language for c in cells} == set(PAPER_LANGUAGES)
    assert list(paper.tasks) == ["arc_challenge", "global_mmlu", "hellaswag", "truthfulqa"]
    assert {t: s.construction for t, s in paper.tasks.items()} == {
        "arc_challenge": "machine", "global_mmlu": "human", "hellaswag": "machine", "truthfulqa": "machine"}
    assert paper.language_families["pt"] == "Romance" and paper.language_families["bn"] == "Indic"
    assert len(paper.models) == 9 and paper.chat_template is True
    assert dict(paper.hub_datasets(cells)) == {
        "alexandrainst/m_arc": "69b0991ee606079105c4f9e271bcc1fef0014e03",
        "CohereLabs/Global-MMLU-Lite": "36c2fd756f19ccf13a9a96c8e53ccecc02192b8b",
        "alexandrainst/m_hellaswag": "9d31dc982bd6285e081e3e3136332a38b9c1d7b7",
        "richmondsin/m_hellaswag": "8d9642f16ae3031f7eddc3e3531b6ae58686d81a",
        "alexandrainst/m_truthfulqa": "f0445d470f1925882b990f5f247fdcf288972f60",
        "Dr4kl3s/truthfulqa_en_aligned": "7332da38d96e69b5d6f2502cd45db3fe011b2f19",
    }
    # zh HellaSwag and en TruthfulQA come from their own datasets (SPEC 1.2)
    assert paper.benchmarks["hellaswag"].source_for("zh")["path"] == "richmondsin/m_hellaswag"
    assert paper.benchmarks["truthfulqa"].source_for("en")["name"] is None
    assert paper.benchmarks["arc_challenge"].source_for("fr")["name"] == "fr"


# ---- golden formats: one row in each Hub schema -> exact prompt, target, loss mask, scoring request ----
ARC_ROW = {"id": "Mercury_7", "answer": "B", "instruction": " Which gas do plants take in? ", "option_a": "oxygen",
           "option_b": "carbon dioxide", "option_c": "helium", "option_d": "neon", "option_e": None}
MMLU_ROW = {"sample_id": "astronomy/test/3", "question": " What is the Sun?\n", "option_a": "a star", "option_b": "a planet",
            "option_c": "a moon", "option_d": "a comet", "answer": "A", "subject": "astronomy"}
HS_ROW = {"id": "hellaswag/validation/24", "ind": 24, "activity_label": "Baking cookies", "ctx_a": "A woman is in a kitchen. [title] She",
          "ctx_b": "PUTS flour in a bowl.", "ctx": "", "endings": ["mixes it [step] well.", "runs away.", "sings.", "sleeps."],
          "label": "0", "split": "val", "split_type": "indomain", "source_id": "x"}
TQA_ROW = {"question": "What happens if you eat seeds?", "mc1_targets_choices": ["Nothing happens.", "You die."],
           "mc1_targets_labels": [1, 0], "mc2_targets_choices": [], "mc2_targets_labels": []}


def test_arc_formats_are_spec_1_5_and_1_6(paper):
    bench = paper.benchmarks["arc_challenge"]
    item = bench.to_item(ARC_ROW, 0)
    assert (item.id, item.gold, item.question) == ("Mercury_7", 1, "Which gas do plants take in?")
    train, ev = bench.spec.train_format, bench.spec.eval_format
    assert render_prompt(item, train) + render_target(item, train) == (
        "Question: Which gas do plants take in?\nA) oxygen\nB) carbon dioxide\nC) helium\nD) neon\nAnswer: B")
    assert (train.max_length, train.truncation, train.loss, train.add_bos) == (256, "left", "answer", False)
    request = build_scoring_request(item, ev)
    assert request.context == "Question: Which gas do plants take in?\nAnswer:"
    assert request.continuations == (" oxygen", " carbon dioxide", " helium", " neon") and bench.spec.has_acc_norm
    assert bench.to_item({**ARC_ROW, "answer": "E", "option_e": "argon"}, 1) is None  # gold E: dropped


def test_global_mmlu_formats_are_the_lm_eval_template(paper):
    bench = paper.benchmarks["global_mmlu"]
    item = bench.to_item(MMLU_ROW, 0)
    expected = "What is the Sun?\nA. a star\nB. a planet\nC. a moon\nD. a comet\nAnswer:"
    assert render_prompt(item, bench.spec.train_format) + render_target(item, bench.spec.train_format) == expected + " A"
    request = build_scoring_request(item, bench.spec.eval_format)
    assert request.context == expected and request.continuations == (" A", " B", " C", " D")
    assert bench.spec.train_format.max_length == 512 and not bench.spec.has_acc_norm


def test_hellaswag_query_is_cleaned_as_okapi(paper):
    bench = paper.benchmarks["hellaswag"]
    item = bench.to_item(HS_ROW, 0)
    query = "Baking cookies: A woman is in a kitchen.. She Puts flour in a bowl."  # " [title]" -> ". "
    assert item.question == query and item.choices[0] == "mixes it well." and item.gold == 0 and item.id == "hellaswag/validation/24"
    assert render_prompt(item, bench.spec.train_format) + render_target(item, bench.spec.train_format) == (
        query + "\nA) mixes it well.\nB) runs away.\nC) sings.\nD) sleeps.\nAnswer: A")
    request = build_scoring_request(item, bench.spec.eval_format)
    assert request.context == query and request.continuations[1] == " runs away."
    assert okapi_clean(" a [title] b  [x]c ") == "a. b c"


def test_truthfulqa_formats_full_loss_bos_right_truncation_and_okapi_priming(paper, tokenizer):
    bench = paper.benchmarks["truthfulqa"]
    item = bench.to_item(TQA_ROW, 5)
    assert (item.id, item.gold, item.choices) == ("row-5", 0, ("Nothing happens.", "You die."))
    train = bench.spec.train_format
    text = render_prompt(item, train) + render_target(item, train)
    assert text == "Question: What happens if you eat seeds?\nAnswer: Nothing happens."
    example = build_sft_example(item, train, tokenizer)
    assert example["input_ids"][0] == tokenizer.bos_token_id
    assert example["input_ids"][1:] == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert example["labels"] == example["input_ids"]  # loss on every token
    long = bench.to_item({**TQA_ROW, "question": "cat " * 300}, 0)
    truncated = build_sft_example(long, train, tokenizer)
    assert len(truncated["input_ids"]) == 128 and truncated["input_ids"][0] == tokenizer.bos_token_id  # right truncation
    request = build_scoring_request(item, bench.spec.eval_format)
    assert request.context.startswith("Q: What is human life expectancy in the United States?\nA: Human life expectancy")
    assert request.context.endswith("Barcelona, Spain.\n\nQ: What happens if you eat seeds?\nA:")
    assert request.context.count("\n\nQ: ") == 6 and request.continuations == (" Nothing happens.", " You die.")


@pytest.mark.parametrize("task,max_length", [("arc_challenge", 256), ("global_mmlu", 512), ("hellaswag", 512)])
def test_letter_tasks_keep_the_answer_under_left_truncation_without_eos(paper, tokenizer, task, max_length):
    bench = paper.benchmarks[task]
    row = {"arc_challenge": ARC_ROW, "global_mmlu": MMLU_ROW, "hellaswag": HS_ROW}[task]
    field = {"arc_challenge": "instruction", "global_mmlu": "question", "hellaswag": "ctx_a"}[task]
    item = bench.to_item({**row, field: "the cat runs " * 400}, 0)
    example = build_sft_example(item, bench.spec.train_format, tokenizer)
    ids, labels = example["input_ids"], example["labels"]
    assert len(ids) == max_length and tokenizer.eos_token_id not in ids and tokenizer.bos_token_id not in ids
    letter = "ABCD"[item.gold]
    assert [t for t in labels if t != IGNORE_INDEX] == tokenizer(f" {letter}", add_special_tokens=False)["input_ids"]
    assert labels[-1] == ids[-1]  # the answer letter is the last token: left truncation never cuts it


def test_chat_template_switch_reproduces_lm_eval_apply_chat_template(paper, tokenizer):
    bench = paper.benchmarks["arc_challenge"]
    item = bench.to_item(ARC_ROW, 0)
    request = build_scoring_request(item, bench.spec.eval_format, tokenizer, chat_template=True)
    plain = "Question: Which gas do plants take in?\nAnswer:"
    assert request.context == tokenizer.apply_chat_template(
        [{"role": "user", "content": plain}], tokenize=False, add_generation_prompt=True)
    assert request.continuations == ("oxygen", "carbon dioxide", "helium", "neon")  # empty target delimiter


# ---- pools and splits through `datasets`, from fixtures in the Hub schema --------------------------
def test_pools_are_aligned_disjoint_and_split_90_10(fixture_suite):
    for task in fixture_suite.tasks:
        ids = {}
        for language in LANGS:
            cell = Cell(task, language)
            train, validation, test = (fixture_suite.items(cell, s) for s in ("train", "validation", "test"))
            assert (len(train), len(validation), len(test)) == (27, 3, 20), task
            ids[language] = ([i.id for i in train], [i.id for i in validation], [i.id for i in test])
            pool = {i.id for i in train + validation}
            assert not pool & {i.id for i in test}, f"{task}: train and test overlap"
        assert ids["en"] == ids["de"], f"{task}: ids differ across languages"
    de_item = fixture_suite.items(Cell("arc_challenge", "de"), "test")[0]
    assert de_item.question.startswith("de:")
    assert "E" not in {"ABCDE"[i.gold] for i in fixture_suite.items(Cell("arc_challenge", "en"), "train")}


def test_validation_split_is_datasets_train_test_split_seed_42(fixture_suite):
    from datasets import Dataset

    bench = fixture_suite.benchmarks["global_mmlu"]
    pool = bench.pool("en", "train")
    parts = Dataset.from_dict({"i": list(range(len(pool)))}).train_test_split(test_size=0.1, seed=42)
    assert [i.id for i in fixture_suite.items(Cell("global_mmlu", "en"), "validation")] == [pool[i].id for i in parts["test"]["i"]]


def test_split_manifest_overrides_the_pools(tmp_path):
    root = tmp_path / "data"
    suite_file = write_fixture_suite(root, tasks=("arc_challenge",))
    manifest = tmp_path / "arc.csv"
    train_ids = [f"Mercury_train_{i:04d}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)]
    manifest.write_text("split,id\n" + "".join(f"train,{i}\n" for i in train_ids) + "test,Mercury_test_0005\ntest,Mercury_test_0001\n")
    text = suite_file.read_text().replace("    split_manifest: null", f"    split_manifest: {manifest}")
    suite = load_suite_file(_write(tmp_path / "m.yaml", text))
    # each selected split sorted by its id column, whatever the manifest's order
    assert [i.id for i in suite.items(Cell("arc_challenge", "de"), "test")] == ["Mercury_test_0001", "Mercury_test_0005"]
    train = suite.items(Cell("arc_challenge", "en"), "train") + suite.items(Cell("arc_challenge", "en"), "validation")
    assert sorted(i.id for i in train) == sorted(train_ids)
    manifest.write_text("split,id\ntrain,Mercury_train_0000\ntest,Mercury_test_0001\ntest,Mercury_test_0999\n")
    with pytest.raises(SuiteFileError, match=r"1 of the 2 test ids of benchmark arc_challenge, language de, are missing "
                                             r"from split 'test'; first: Mercury_test_0999"):
        load_suite_file(_write(tmp_path / "m.yaml", text)).items(Cell("arc_challenge", "de"), "test")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- custom suites -------------------------------------------------------------------------------
CUSTOM = """
name: my-suite
language_families: {en: Germanic, de: Germanic}
models: [builtin:tiny-llama]
benchmarks:
  - name: capitals
    construction: human
    languages: [en, de]
    source: {path: json, data_files: {train: "capitals/{language}/train.jsonl", test: "capitals/{language}/test.jsonl"}}
    splits: {train: train, test: test}
    id_field: qid
    fields: {question: "{q}", choices: options, answer: correct, answer_type: index}
    train_format: {template: "Q: {question}\\n{options}\\nAnswer:", option_template: "({letter}) {text}"}
    eval_format: {template: "Q: {question}\\n{options}\\nAnswer:", option_template: "({letter}) {text}", target: letter}
  # the paper's ARC, scored on letters instead of option texts: a format choice in config, not code
  - use: paper/arc_challenge
    name: arc_letters
    languages: [en, de]
    source: {load_from_disk: "data/m_arc/{language}"}
    splits: {train: {split: train, n: 10}, test: {split: test, n: 10}}
    eval_format: {template: "Question: {question}\\n{options}\\nAnswer:", target: letter}
"""


def test_a_user_adds_a_benchmark_with_one_yaml(tmp_path):
    import json

    write_fixture_suite(tmp_path / "data", tasks=("arc_challenge",))
    for language in ("en", "de"):
        folder = tmp_path / "capitals" / language
        folder.mkdir(parents=True)
        for split, n in (("train", 20), ("test", 5)):
            rows = [{"qid": f"{split}{i}", "q": f"{language} capital {i}?", "options": ["x", "y", "z"], "correct": i % 3}
                    for i in range(n)]
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = get_suite(str(_write(tmp_path / "my-suite.yaml", CUSTOM)))
    assert [str(c) for c in suite_cells(suite)] == ["capitals.en", "capitals.de", "arc_letters.en", "arc_letters.de"]
    item = suite.items(Cell("capitals", "de"), "test")[1]
    assert render_prompt(item, suite.tasks["capitals"].eval_format) == "Q: de capital 1?\n(A) x\n(B) y\n(C) z\nAnswer:"
    assert item.gold == 1 and len(suite.items(Cell("capitals", "en"), "train")) == 18
    assert not suite.tasks["arc_letters"].has_acc_norm and suite.tasks["arc_letters"].train_format.max_length == 256


@pytest.mark.parametrize("text,match", [
    ("name: x\nbenchmarks: [paper/arc_challenge]\nlanguage_family: {}\n", "unknown key 'language_family'.*language_families"),
    ("name: x\nbenchmarks: [paper/nope]\n", "benchmark file 'paper/nope' not found"),
    ("name: x\nbenchmarks:\n  - use: paper/arc_challenge\n    fields: {question: q, choices: [a], answer: b, answer_type: letters}\n",
     "unknown fields.answer_type 'letters'; valid: letter, index, first, one_hot"),
    ("name: x\nbenchmarks:\n  - use: paper/arc_challenge\n    eval_format: {template: q, target: word}\n", "format target"),
])
def test_bad_suite_files_name_the_key_and_the_choices(tmp_path, text, match):
    with pytest.raises(SuiteFileError, match=match):
        load_suite_file(_write(tmp_path / "bad.yaml", text))


def test_unknown_suite_name_lists_the_choices():
    with pytest.raises(ValueError, match="'papr'.*did you mean 'paper'"):
        get_suite("papr")


# ---- the model registry --------------------------------------------------------------------------
def test_registry_has_the_nine_models_and_accepts_any_other_id(tmp_path):
    from transfergrid.models import registry, resolve_model

    paper = registry()
    assert len(paper) == 9
    assert [(m.family, m.size_b, m.size_bucket) for m in (paper["Qwen/Qwen2.5-0.5B-Instruct"], paper["google/gemma-3-4b-it"],
                                                           paper["meta-llama/Llama-3.1-8B-Instruct"])] == [
        ("Qwen2.5", 0.5, "S"), ("gemma-3", 4.0, "M"), ("Llama-3", 8.0, "L")]
    other = resolve_model("mistralai/Mistral-7B-Instruct-v0.3")
    assert (other.family, other.size_b, other.size_bucket) == ("Mistral", 7.0, "L")
    given = resolve_model("/models/my-ft", family="mine", size_b=2.5)
    assert (given.family, given.size_b, given.size_bucket) == ("mine", 2.5, "M")
    extra = _write(tmp_path / "reg.yaml", "models:\n  - {id: org/Thing-Instruct, family: thing, size_b: 12, revision: abc}\n")
    spec = resolve_model("org/Thing-Instruct", registry_file=extra)
    assert (spec.family, spec.size_b, spec.revision) == ("thing", 12.0, "abc")


# ---- dry run and the offline error (subprocesses: the real command lines) ------------------------
def _run(args: list[str], cwd: Path, **env) -> tuple[subprocess.CompletedProcess, float]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)
    return proc, time.perf_counter() - started


def test_dry_run_prints_the_44_cells_the_nine_models_and_the_plan_without_network(tmp_path):
    proc, _ = _run(["entrypoints.main", "--suite", "paper", "--dry-run"], tmp_path, HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "44 cells:" in out and "  arc_challenge.ar\n" in out and "  truthfulqa.zh\n" in out
    assert "9 models:" in out and "Qwen/Qwen2.5-0.5B-Instruct" in out and "bucket=L" in out
    assert "801 planned jobs (9 baseline, 396 finetune, 396 evaluate)" in out
    assert out.count("run_key=") == 801


@pytest.mark.parametrize("offline", [True, False])
def test_offline_error_names_model_dataset_revision_and_the_fix_in_seconds(tmp_path, offline):
    env = {"HF_HOME": str(tmp_path / "empty-hf")}
    if offline:
        env |= {"HF_HUB_OFFLINE": "1"}
    else:  # no network: nothing listens on the endpoint (connection refused at once)
        env |= {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc, seconds = _run(["entrypoints.baseline", "--suite", "paper", "--model", "Qwen/Qwen2.5-0.5B-Instruct"], tmp_path, **env)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert seconds < 10
    assert "model Qwen/Qwen2.5-0.5B-Instruct (revision main)" in err
    assert "dataset alexandrainst/m_arc (revision 69b0991ee606079105c4f9e271bcc1fef0014e03)" in err
    assert "transfergrid prefetch --suite paper --model Qwen/Qwen2.5-0.5B-Instruct" in err
    assert "hf download --repo-type dataset" not in err and "--repo-type dataset" in err and "HF_HUB_OFFLINE=1" in err
    assert ("HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set" in err) if offline else ("no network" in err)
    assert not (tmp_path / "mlflow.db").exists()  # failed before any run or store was created


def test_the_readme_custom_suite_example_loads(tmp_path):
    import json
    import re

    block = re.search(r"```yaml\n(# my-suite\.yaml\n.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    for language in ("en", "de"):
        folder = tmp_path / "capitals" / language
        folder.mkdir(parents=True)
        for split in ("train", "test"):
            rows = [{"qid": f"{split}{i}", "q": f"{language} {i}?", "options": ["x", "y"], "correct": 1} for i in range(10)]
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = get_suite(str(_write(tmp_path / "my-suite.yaml", block)))
    assert list(suite.tasks) == ["capitals", "global_mmlu"] and suite.models == ["Qwen/Qwen2.5-0.5B-Instruct"]
    item = suite.items(Cell("capitals", "de"), "test")[0]
    assert render_prompt(item, suite.tasks["capitals"].eval_format) == "Q: de 0?\n(A) x\n(B) y\nAnswer:" and item.gold == 1


def test_single_model_commands_on_a_many_model_suite_ask_for_a_model(tmp_path):
    proc, seconds = _run(["entrypoints.finetune", "--suite", "paper", "--source", "arc_challenge.de"], tmp_path,
                         HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode == 2 and seconds < 30
    assert "suite 'paper' has 9 default models; choose one with --model: meta-llama/Llama-3.2-1B-Instruct," in proc.stderr


def test_using_a_paper_benchmark_on_fewer_languages_keeps_its_per_language_sources(tmp_path):
    suite = load_suite_file(_write(tmp_path / "s.yaml", "name: s\nbenchmarks:\n  - use: paper/hellaswag\n    languages: [de, zh]\n"))
    bench = suite.benchmarks["hellaswag"]
    assert bench.source_for("zh")["path"] == "richmondsin/m_hellaswag" and bench.source_for("de")["path"] == "alexandrainst/m_hellaswag"
    suite = load_suite_file(_write(tmp_path / "s.yaml", "name: s\nbenchmarks:\n  - use: paper/hellaswag\n    languages: [de]\n"))
    assert suite.hub_datasets(suite_cells(suite)) == [("alexandrainst/m_hellaswag", "9d31dc982bd6285e081e3e3136332a38b9c1d7b7")]


def test_a_field_missing_from_the_data_is_named_with_the_fields_it_has(tmp_path):
    suite_file = write_fixture_suite(tmp_path / "data", tasks=("hellaswag",))
    text = suite_file.read_text().replace("    splits:", "    id_field: uid\n    splits:")
    suite = load_suite_file(_write(tmp_path / "s.yaml", text))
    with pytest.raises(SuiteFileError, match=r"hellaswag.(en|de) split 'val' has no field 'uid' \(its fields: activity_label, ctx,"):
        suite.items(Cell("hellaswag", "de"), "test")
