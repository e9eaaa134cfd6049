"""Suite templates with the power of lm-eval task files: Jinja over the row, per-language value maps,
evaluation-only benchmarks, and the scored text recorded in the predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers_models import build_tiny_tokenizer
from test_suite_pools import XCOPA_SUITE, write_xcopa

from transfergrid.data import get_suite, suite_cells
from transfergrid.formats import build_scoring_request, render_prompt
from transfergrid.grid import Cell
from transfergrid.yaml_suite import SuiteFileError, load_suite_file

ROOT = Path(__file__).resolve().parents[1]
# COPA's faucet item as XCOPA has it in Italian, and in English for the `en` fixture language
FAUCET = {
    "it": {"premise": "L'uomo aprì il rubinetto.", "choice1": "Il gabinetto si riempì d'acqua.",
           "choice2": "L'acqua scorreva dal beccuccio.", "question": "effect", "label": 1, "idx": 0},
    "en": {"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
           "choice2": "The grass was cut.", "question": "cause", "label": 0, "idx": 0},
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


LM_EVAL_XCOPA = XCOPA_SUITE.replace(
    '    fields: {question: "{premise}", choices: [choice1, choice2], answer: label, answer_type: index}',
    """    template_vars:
      en: {cause: because, effect: therefore}
      it: {cause: perché, effect: quindi}
    fields:
      question: "{{ premise.strip()[:-1] }} {{ vars[question] }}"
      choices: ["{{ choice1 | lower_first }}", "{{ choice2[0].lower() + choice2[1:] }}"]
      answer: label
      answer_type: index""")


def test_jinja_fields_with_per_language_connectors_render_as_lm_eval_xcopa(tmp_path):
    write_xcopa(tmp_path)
    for language, row in FAUCET.items():  # the first test item of each language is the real COPA item
        path = tmp_path / "xcopa" / language / "test.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join([json.dumps(row, ensure_ascii=False)] + lines[1:]) + "\n", encoding="utf-8")
    suite = get_suite(str(_write(tmp_path / "xcopa.yaml", LM_EVAL_XCOPA)))
    fmt = suite.tasks["xcopa"].eval_format
    it = build_scoring_request(suite.items(Cell("xcopa", "it"), "test")[0], fmt)
    assert it.context == "L'uomo aprì il rubinetto quindi"
    assert it.continuations == (" il gabinetto si riempì d'acqua.", " l'acqua scorreva dal beccuccio.") and it.gold == 1
    en = build_scoring_request(suite.items(Cell("xcopa", "en"), "test")[0], fmt)
    assert en.context == "My body cast a shadow over the grass because"
    assert en.continuations == (" the sun was rising.", " the grass was cut.") and en.gold == 0
    second = suite.items(Cell("xcopa", "en"), "test")[1]  # idx 1: an `effect` item of the generated rows
    assert second.question == "en test premise 1 was seen therefore"
    # the same file without templates reads as before: the suite version changes only with Jinja in it
    assert get_suite(str(_write(tmp_path / "plain.yaml", XCOPA_SUITE))).version != suite.version


def test_a_value_map_in_the_template_and_lm_eval_doc_to_choice_and_doc_to_target_forms(tmp_path):
    write_xcopa(tmp_path, languages=("en",))
    text = XCOPA_SUITE.replace("languages: [en, it]", "languages: [en]").replace(
        '    fields: {question: "{premise}", choices: [choice1, choice2], answer: label, answer_type: index}',
        """    fields:
      question: "{{ premise }}\\nQuestion: {{ {'cause': 'What was the cause?', 'effect': 'What happened as a result?'}[question] }}"
      choices: "{{ [choice1 | regex_replace('[.]$', ''), choice2 | upper | regex_replace('[.]$', '')] }}"
      answer: "{{ 1 - label }}"
      answer_type: index""").replace(
        'eval_format: {template: "{question}", target: text}',
        'eval_format: {template: "{question}\\n{options}\\nAnswer:", target: letter}')
    suite = get_suite(str(_write(tmp_path / "s.yaml", text)))
    first, second = suite.items(Cell("xcopa", "en"), "test")[:2]
    assert render_prompt(first, suite.tasks["xcopa"].eval_format) == (
        "en test premise 0 was seen.\nQuestion: What was the cause?\nA) The test cause 0 one\nB) THE TEST CAUSE 0 TWO\nAnswer:")
    assert first.gold == 1 and second.gold == 0  # label 0 -> 1, label 1 -> 0
    assert second.question.endswith("Question: What happened as a result?")


@pytest.mark.parametrize("fields,match", [
    ('{question: "{{ premise }} {{ vars.cause }}", choices: [choice1, choice2], answer: label, answer_type: index}',
     r"item '0': Jinja template '\{\{ premise \}\} \{\{ vars.cause \}\}' failed: UndefinedError: .*'cause'.*"
     r"\(its fields: choice1, choice2, idx, label, premise, question\)"),
    ('{question: "{{ premis }}", choices: [choice1, choice2], answer: label, answer_type: index}',
     r"'premis' is undefined"),
])
def test_a_template_that_fails_on_a_row_names_the_template_the_item_and_the_fields(tmp_path, fields, match):
    write_xcopa(tmp_path)
    text = XCOPA_SUITE.replace(
        '{question: "{premise}", choices: [choice1, choice2], answer: label, answer_type: index}', fields)
    suite = load_suite_file(_write(tmp_path / "s.yaml", text))
    with pytest.raises(SuiteFileError, match=match):
        suite.items(Cell("xcopa", "it"), "test")


PLAIN_FIELDS = '    fields: {question: "{premise}", choices: [choice1, choice2], answer: label, answer_type: index}\n'


@pytest.mark.parametrize("old,new,match", [
    (PLAIN_FIELDS, '    fields: {question: "{{ premise ", choices: [choice1, choice2], answer: label, answer_type: index}\n',
     r"fields: Jinja template '\{\{ premise ' does not parse"),
    (PLAIN_FIELDS, "    template_vars: {en: {cause: because}}\n" + PLAIN_FIELDS,
     r"template_vars has no entry for it \(it needs one per language: en, it\)"),
    (PLAIN_FIELDS, "    template_vars: {en: {cause: because}, it: {causa: perché}}\n" + PLAIN_FIELDS,
     r"template_vars.it has names \['causa'\], template_vars.en has \['cause'\]: every language needs the same names"),
    (PLAIN_FIELDS, "    row_ids: global\n" + PLAIN_FIELDS, r"unknown row_ids 'global'; valid: per_split, across_splits"),
    ("splits: {train: validation, test: test}", "splits: {test: test}",
     r"splits needs `train`.*a benchmark with a train_format fine-tunes on it"),
    ("splits: {train: validation, test: test}", "splits: {train: validation, tests: test}", r"splits: unknown key 'tests'"),
])
def test_bad_template_keys_fail_when_the_suite_file_is_read(tmp_path, old, new, match):
    assert old in XCOPA_SUITE
    with pytest.raises(SuiteFileError, match=match):
        load_suite_file(_write(tmp_path / "bad.yaml", XCOPA_SUITE.replace(old, new)))


def _docs_block(marker: str) -> str:
    text = (ROOT / "docs" / "suites.md").read_text(encoding="utf-8")
    return re.search(rf"```yaml\n({re.escape(marker)}.*?)```", text, re.S).group(1)


def test_the_documented_xcopa_example_is_evaluation_only_and_renders_as_documented(tmp_path):
    block = _docs_block("# xcopa.yaml")
    assert "source: {path: cambridgeltl/xcopa" in block
    for language in ("id", "it", "tr", "zh"):
        rows = [{**FAUCET["it"], "premise": f"{language} premessa {i}.", "idx": i} for i in range(4)]
        _jsonl(tmp_path / language / "test.jsonl", [FAUCET["it"]] + rows[1:] if language == "it" else rows)
    local = block.replace('source: {path: cambridgeltl/xcopa, name: "{language}"}',
                          'source: {path: json, data_files: {test: "{language}/test.jsonl"}}')
    suite = get_suite(str(_write(tmp_path / "xcopa.yaml", local)))
    spec = suite.tasks["xcopa"]
    assert spec.train_format is None and [str(c) for c in suite_cells(suite)] == ["xcopa.id", "xcopa.it", "xcopa.tr", "xcopa.zh"]
    request = build_scoring_request(suite.items(Cell("xcopa", "it"), "test")[0], spec.eval_format)
    documented = "`L'uomo aprì il rubinetto quindi` with the continuations ` il gabinetto si riempì d'acqua.` and\n` l'acqua scorreva dal beccuccio.`"
    assert documented in (ROOT / "docs" / "suites.md").read_text(encoding="utf-8")
    assert request.context == "L'uomo aprì il rubinetto quindi"
    assert request.continuations == (" il gabinetto si riempì d'acqua.", " l'acqua scorreva dal beccuccio.")
    assert suite.items(Cell("xcopa", "zh"), "test")[0].question == "zh premessa 0 所以"
    with pytest.raises(SuiteFileError, match="xcopa has no train pool .*evaluation-only"):
        suite.items(Cell("xcopa", "it"), "train")
    # the second documented form (a value map inside the template, lm-eval's doc_to_choice list) renders too
    fields = _docs_block("    fields:\n      question: \"{{ premise }}")
    second = re.sub(r"    fields:.*?eval_format: [^\n]*\n", lambda _: fields, local, flags=re.S)
    assert second != local
    item = get_suite(str(_write(tmp_path / "letters.yaml", second))).items(Cell("xcopa", "it"), "test")[0]
    assert item.question == "L'uomo aprì il rubinetto.\nQuestion: What happened as a result?" and item.gold == 1
    assert item.choices == ("Il gabinetto si riempì d'acqua.", "L'acqua scorreva dal beccuccio.")


def test_an_evaluation_only_task_is_a_target_never_a_source(tmp_path):
    from transfergrid import jobs
    from transfergrid.config import FinetuneConfig, MainConfig
    from transfergrid.models import study_model

    write_xcopa(tmp_path)
    text = XCOPA_SUITE + """  - name: xcopa_eval
    languages: [en, it]
    source: {path: json, data_files: {test: "xcopa/{language}/test.jsonl"}}
    splits: {test: test}
    id_field: idx
    fields: {question: "{premise}", choices: [choice1, choice2], answer: label, answer_type: index}
    eval_format: {template: "{question}", target: text}
"""
    suite_file = str(_write(tmp_path / "mixed.yaml", text))
    cfg = MainConfig(suite=suite_file, model="builtin:tiny-llama")
    suite = get_suite(suite_file)
    study = jobs.Study("sqlite:///unused.db", "0", suite, study_model(cfg), suite_cells(suite))  # planning needs no store
    plan = jobs.plan_study(study, cfg)
    assert [(job.kind, str(job.source)) for job in plan if job.kind != "baseline"] == [
        ("finetune", "xcopa.en"), ("evaluate", "xcopa.en"), ("finetune", "xcopa.it"), ("evaluate", "xcopa.it")]
    assert study.cells == [Cell("xcopa", "en"), Cell("xcopa", "it"), Cell("xcopa_eval", "en"), Cell("xcopa_eval", "it")]
    with pytest.raises(ValueError, match=r"task 'xcopa_eval' is evaluation-only \(its benchmark has no train_format\): "
                                         r"it cannot be a fine-tuning source; tasks that can: xcopa"):
        jobs.source_cell(study, FinetuneConfig(suite=suite_file, source="xcopa_eval.it"))


@pytest.mark.slow
def test_predictions_record_the_scored_context_and_choices(tmp_path):
    """The tiny model scores the Jinja-rendered XCOPA items; each prediction row carries what was scored."""
    from helpers_models import build_tiny_llama

    from transfergrid.evaluation import evaluate_cells

    write_xcopa(tmp_path, n_test=6)
    suite = get_suite(str(_write(tmp_path / "xcopa.yaml", LM_EVAL_XCOPA)))
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    cells = [Cell("xcopa", "en"), Cell("xcopa", "it")]
    for chat in (False, True):
        frame = evaluate_cells(model, tokenizer, suite, cells, chat_template=chat, progress=False).predictions
        assert len(frame) == 12
        for row in frame.itertuples():
            item = next(i for i in suite.items(Cell(row.task, row.language), "test") if i.id == row.item_id)
            request = build_scoring_request(item, suite.tasks["xcopa"].eval_format, tokenizer, chat_template=chat)
            assert row.context == request.context and list(row.choices) == list(request.continuations)
        first = frame[(frame["language"] == "it") & (frame["item_id"] == "1")].iloc[0]
        plain, delimiter = "it test premise 1 was seen quindi", "" if chat else " "  # chat: lm-eval's empty delimiter
        assert (first["context"] == plain) != chat and plain in first["context"]
        assert list(first["choices"]) == [delimiter + "the test cause 1 one.", delimiter + "the test cause 1 two."]


# ---- suite versions (content hashes, part of every run key) -------------------------------------------
HUB_SUITE = """name: hub-suite
benchmarks:
  - name: qa
    languages: [en, de]
    source: {path: org/qa, revision: 0123456789abcdef0123456789abcdef01234567, name: "{language}"}
    language_sources: {de: {path: org/qa-de}}
    splits: {train: {split: val, n: 30}, test: {split: val, n: 20}}
    id_field: null
    fields: {question: "{activity_label}: {ctx.a} {ctx_b!c}", choices: [a, b], answer: label, answer_type: index}
    clean: okapi
    train_format: {template: "{question}\\n{options}\\nAnswer:", max_length: 128}
    eval_format: {template: "{question}", target: text}
"""
PAPER_WITHOUT_MANIFESTS = """name: paper-before-manifests
benchmarks:
  - {use: paper/arc_challenge, split_manifest: null}
  - {use: paper/global_mmlu, split_manifest: null}
  - {use: paper/hellaswag, split_manifest: null, id_field: ind}
  - {use: paper/truthfulqa, split_manifest: null, row_ids: per_split}
"""


def test_suite_versions_change_only_with_content(tmp_path):
    """The versions pinned here were computed by the code before templates, manifests and row_ids existed."""
    assert load_suite_file(_write(tmp_path / "hub.yaml", HUB_SUITE)).version == "1-df4831d1"  # an older suite file: unchanged
    # the paper suite differs from what it was only by the authors' items: without them it is the same version
    assert load_suite_file(_write(tmp_path / "old.yaml", PAPER_WITHOUT_MANIFESTS)).version == "1-72bef6d6"
    assert get_suite("paper").version != "1-72bef6d6"
    jinja = HUB_SUITE.replace('"{activity_label}: {ctx.a} {ctx_b!c}"', '"{{ activity_label }}: {{ ctx.a }} {{ ctx_b | capitalize }}"')
    assert load_suite_file(_write(tmp_path / "jinja.yaml", jinja)).version != "1-df4831d1"
