"""Chain of thought on a real instruct model: `--protocol cot` on SmolLM2-135M-Instruct with its chat template."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from transfergrid import gguf_models
from transfergrid.cot import extract_letter
from transfergrid.tracking import names

pytestmark = pytest.mark.slow

QUESTIONS = {  # id -> language -> (question, options, gold index)
    "capital": {"en": ("What is the capital of France?", ["Berlin", "Paris", "Rome", "Madrid"], 1),
                "zh": ("法国的首都是哪里？", ["柏林", "巴黎", "罗马", "马德里"], 1)},
    "legs": {"en": ("How many legs does a spider have?", ["Six", "Four", "Eight", "Ten"], 2),
             "zh": ("蜘蛛有几条腿？", ["六条", "四条", "八条", "十条"], 2)},
    "water": {"en": ("At what temperature does water boil at sea level?", ["100 °C", "50 °C", "0 °C", "200 °C"], 0),
              "zh": ("海平面上水在多少度沸腾？", ["100 °C", "50 °C", "0 °C", "200 °C"], 0)},
}
SUITE = """name: real-cot
version: "1"
chat_template: true
models: [builtin:smollm2-135m-instruct]
benchmarks:
  - name: facts
    languages: [en, zh]
    source: {path: json, data_files: {test: "{language}.jsonl"}}
    splits: {test: test}
    id_field: id
    fields: {question: "{question}", choices: options, answer: gold, answer_type: index}
    eval_format: {template: "{question}\\n{options}\\nAnswer:", option_template: "{letter}. {text}", target: letter}
"""


def write_suite(tmp_path, model):
    reason = gguf_models.unavailable_reason(model.name)
    if reason:
        pytest.skip(f"real model not installed: {reason}")
    for language in ("en", "zh"):
        rows = [{"id": key, "question": q[language][0], "options": q[language][1], "gold": q[language][2]}
                for key, q in QUESTIONS.items()]
        (tmp_path / f"{language}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "real-cot.yaml").write_text(SUITE, encoding="utf-8")
    return str(tmp_path / "real-cot.yaml")


def test_cot_on_smollm2_instruct_generates_extracts_and_logs_the_extraction_rate(tracking_uri, tmp_path):
    from entrypoints import baseline

    suite = write_suite(tmp_path, gguf_models.SMOLLM2)
    run_id = baseline.main(["--suite", suite, "--protocol", "cot", "--cot_max_new_tokens", "48"])

    run = mlflow.tracking.MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[names.EVAL_PROTOCOL] == "cot"
    assert run.data.tags[names.MODEL] == "builtin:smollm2-135m-instruct" and run.data.tags[names.MODEL_FAMILY] == "SmolLM2"
    predictions = pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{names.PREDICTIONS_ARTIFACT}"))
    assert len(predictions) == 6
    assert all(context.startswith("<|im_start|>system") for context in predictions["context"])  # its chat template
    assert all(len(text.strip()) > 0 for text in predictions["generation"])  # the model generated
    for _, row in predictions.iterrows():  # the documented rule, applied to what the model wrote
        letter = extract_letter(row["generation"], len(row["choices"]))
        assert row["predicted"] == (-1 if letter is None else letter)
    extracted = predictions["predicted"] >= 0
    assert run.data.metrics["cot/extracted_items"] == extracted.sum()
    assert run.data.metrics["cot/extraction_rate"] == pytest.approx(extracted.mean())
    for language in ("en", "zh"):
        part = predictions[predictions["language"] == language]
        assert run.data.metrics[f"cot/extracted/facts/{language}"] == pytest.approx((part["predicted"] >= 0).mean())
        assert run.data.metrics[f"score/facts/{language}"] == pytest.approx((part["predicted"] == part["gold"]).mean())



def test_a_base_model_without_chat_template_is_refused_with_the_fix(tracking_uri, tmp_path, capsys):
    from entrypoints import baseline

    suite = write_suite(tmp_path, gguf_models.GEMMA3)  # the suite turns the chat template on
    with pytest.raises(SystemExit) as exit_info:
        baseline.main(["--suite", suite, "--model", "builtin:gemma-3-270m", "--limit", "1"])
    assert exit_info.value.code == 2
    assert "builtin:gemma-3-270m has no chat template (a base model); evaluate it with --chat_template false" in capsys.readouterr().err
