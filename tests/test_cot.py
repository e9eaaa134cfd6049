"""Chain-of-thought protocol (SPEC 2): the answer-extraction rule, prompts, and CoT runs in the analysis."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from transfergrid.cot import cot_format, cot_prompt_text, extract_letter
from transfergrid.data import Item, get_suite


@pytest.mark.parametrize("text,expected", [
    ("Let's see. B looks wrong. The answer is C.", 2),
    ("Reasoning...\nAnswer: (D)", 3),
    ("answer: **a**", 0),
    ("First A) then B) ... so the final answer is B", 1),
    ("I think Answer: B. Wait, actually the answer is A", 0),  # the last cue wins
    ("Options C and D are close; I pick D.", 3),  # no cue: the last standalone letter before . ) : or the end
    ("The answer is E", None),  # E is not among four choices
    ("no idea", None),
    ("A banana is not a letter answer", None),  # a capital starting a word is not an answer
])
def test_extract_letter_rule(text, expected):
    assert extract_letter(text, 4) == expected


def test_cot_prompt_lists_lettered_options_and_drops_the_answer_cue():
    suite = get_suite("paper")
    item = Item("q", "Which gas?", ("oxygen", "neon"), gold=0)
    arc = cot_format(suite, "arc_challenge")  # trained on letters: its own layout
    assert cot_prompt_text(item, arc, "Think.") == "Question: Which gas?\nA) oxygen\nB) neon\nThink."
    tqa = cot_format(suite, "truthfulqa")  # trained on texts: the generic lettered layout
    assert cot_prompt_text(item, tqa, "Think.") == "Which gas?\nA) oxygen\nB) neon\nThink."


@pytest.mark.slow
def test_cot_baseline_is_its_own_protocol_and_feeds_the_ft_vs_cot_analysis(tracking_uri):
    from entrypoints import analysis as analysis_entry
    from entrypoints import baseline as baseline_entry
    from entrypoints import evaluate as evaluate_entry
    from entrypoints import finetune as finetune_entry
    from transfergrid.config import DEFAULT_COT_PROMPT
    from transfergrid.tracking import names

    grid = ["--tasks", "syn_lookup,syn_match", "--languages", "xn1,xs1"]
    ft = finetune_entry.main(grid + ["--source", "syn_lookup.xn1", "--num_epochs", "1"])
    evaluate_entry.main(grid + ["--finetune_run_id", ft])  # with its plain baseline
    cot_id = baseline_entry.main(grid + ["--protocol", "cot", "--cot_max_new_tokens", "6", "--limit", "8"])
    client = mlflow.tracking.MlflowClient(tracking_uri)
    cot = client.get_run(cot_id)
    assert cot.data.tags[names.EVAL_PROTOCOL] == "cot"
    runs = mlflow.search_runs(experiment_names=["transfergrid"])
    baselines = runs[runs["tags.kind"] == "baseline"]
    assert len(baselines) == 2 and baselines["tags.run_key"].nunique() == 2  # CoT never reuses the plain baseline
    assert 0.0 <= cot.data.metrics["score/syn_match/xs1"] <= 1.0 and cot.data.metrics["eval/items_per_second"] > 0
    predictions = pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{cot_id}/{names.PREDICTIONS_ARTIFACT}"))
    assert len(predictions) == 4 * 8 and {"generation", "predicted", "gold"} <= set(predictions.columns)
    extracted = predictions["predicted"] >= 0  # the extraction rate is logged: how many items yielded a letter
    assert cot.data.metrics["cot/extracted_items"] == extracted.sum()
    assert cot.data.metrics["cot/extraction_rate"] == pytest.approx(extracted.mean())
    part = predictions[(predictions["task"] == "syn_match") & (predictions["language"] == "xs1")]
    assert cot.data.metrics["cot/extracted/syn_match/xs1"] == pytest.approx((part["predicted"] >= 0).mean())
    shown = predictions.iloc[0]  # what the model was shown: the lettered prompt with the CoT instruction, and the options
    assert DEFAULT_COT_PROMPT in shown["context"] and len(shown["choices"]) >= 2
    assert all(choice in shown["context"] for choice in shown["choices"])
    assert baseline_entry.main(grid + ["--protocol", "cot", "--cot_max_new_tokens", "6", "--limit", "8"]) == cot_id  # rerun: reused

    analysis_id = analysis_entry.main([])
    table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{analysis_id}/tables/ft_vs_cot.csv"))
    assert table["model"].tolist() == ["builtin:tiny-llama"] and table["cot_gain"].notna().all()
