"""The paper's recipe on real weights: LoRA (r 32, alpha 64, seven projections, lr 5e-5) and one full
fine-tuning step on SmolLM2-135M-Instruct; LoRA placement and sliding-window scoring on Gemma 3 270M."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_real_eval import ITEMS, requests_for
from transformers import TrainerCallback

from transfergrid import training
from transfergrid.adapters import AdapterHost
from transfergrid.config import SEVEN_PROJECTIONS, LoraConfig, TrainConfig
from transfergrid.data import Item, get_suite
from transfergrid.evaluation import predict, score_requests
from transfergrid.models import load_model, resolve_model

pytestmark = pytest.mark.slow

FMT = get_suite("paper").tasks["global_mmlu"].train_format  # letters, answer-only loss
TRAIN_ITEMS = [Item(id=str(i), question=q, choices=tuple(c), gold=(i % 4)) for i, (_, q, c, _) in enumerate(ITEMS)]
# the gold letter rotates so that the answer is learnable only from the items (loss must fall on them)
TRAIN_ITEMS = [Item(id=it.id, question=it.question, choices=it.choices[-it.gold:] + it.choices[:-it.gold] if it.gold else it.choices,
                    gold=it.gold) for it in TRAIN_ITEMS]


def probe(tokenizer):
    return tokenizer(["Question: What is the capital of Italy?\nA. Rome\nB. Paris\nAnswer: A", "पानी का सूत्र"],
                     return_tensors="pt", padding=True)["input_ids"]


def logits_of(model, ids):
    was = model.training
    model.eval()
    with torch.inference_mode():
        out = model(input_ids=ids).logits.float()
    model.train(was)
    return out


class EndLogits(TrainerCallback):
    """The trained model's probe logits at the end of training (the kept epoch's weights)."""

    def __init__(self, ids):
        self.ids, self.logits = ids, None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.logits = logits_of(model, self.ids)


def letter_requests(tokenizer):
    return requests_for("letters", tokenizer, chat=False)


def test_lora_recipe_on_smollm2(smollm2, tmp_path):
    from peft import PeftModel

    model, tokenizer = smollm2
    lora, train = LoraConfig(), TrainConfig(num_epochs=3)
    assert (lora.lora_r, lora.lora_alpha, tuple(lora.target_modules), train.learning_rate) == (32, 64, SEVEN_PROJECTIONS, 5e-5)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ids = probe(tokenizer)
    base_logits = logits_of(model, ids)
    end = EndLogits(ids)
    items = TRAIN_ITEMS[:8]  # one step of 8 per epoch
    result = training.train_adapter(model, tokenizer, items, items, FMT, lora, train, seed=42,
                                    output_dir=tmp_path, progress=False, callbacks=[end])
    losses = [h["eval_loss"] for h in result.history if "eval_loss" in h]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2], losses  # the loss falls, epoch after epoch
    # only adapter weights moved: the base comes back bit for bit, and the adapter's B matrices left zero
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert not torch.equal(end.logits, base_logits)
    reloaded = PeftModel.from_pretrained(model, str(result.adapter_dir))
    try:
        moved = [n for n, p in reloaded.named_parameters() if "lora_B" in n and p.abs().max() > 0]
        assert {n.split(".lora_B")[0].rsplit(".", 1)[-1] for n in moved} == set(SEVEN_PROJECTIONS)
        assert torch.equal(logits_of(reloaded, ids), end.logits)  # the saved adapter reloads to identical logits
    finally:
        reloaded.unload()

    # evaluate's way (the adapter swapped into the loaded base) scores as the paper's merged reload
    requests = letter_requests(tokenizer)[::2]
    with AdapterHost(model) as host:
        swapped = score_requests(host.activate(result.adapter_dir), tokenizer, requests, progress=False)
    fresh, _ = load_model(resolve_model("builtin:smollm2-135m-instruct"), "cpu")
    merged = PeftModel.from_pretrained(fresh, str(result.adapter_dir)).merge_and_unload()
    reference = score_requests(merged, tokenizer, requests, progress=False)
    for request, a, b in zip(requests, swapped, reference):
        chars = [len(t) for t in request.choice_texts]
        assert predict(a, chars) == predict(b, chars)
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_one_full_finetuning_step_on_smollm2(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_model(resolve_model("builtin:smollm2-135m-instruct"), "cpu")  # trained in place
    # one step at the paper's learning rate: with a 10% warmup a one-step run would take it at lr 0
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ids = probe(tokenizer)
    end = EndLogits(ids)
    result = training.train_adapter(model, tokenizer, TRAIN_ITEMS[:8], TRAIN_ITEMS[:4], FMT, LoraConfig(recipe="full"),
                                    TrainConfig(num_epochs=1, warmup_ratio=0.0), seed=42, output_dir=tmp_path, progress=False, callbacks=[end])
    assert [h["step"] for h in result.history if "loss" in h] == [1]  # one optimizer step
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved == set(before)  # every weight tensor is trained
    reloaded = AutoModelForCausalLM.from_pretrained(result.adapter_dir, dtype=torch.float32)
    assert torch.equal(logits_of(reloaded, ids), end.logits)


def test_gemma3_lora_targets_every_layer_type(gemma3):
    model, _ = gemma3
    types = model.config.layer_types
    with training._lora_wrapped(model, LoraConfig()) as peft_model:
        wrapped = {name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
        for kind in set(types):  # sliding-window and full-attention layers alike
            layers = [i for i, t in enumerate(types) if t == kind]
            assert layers
            for i in layers:
                for projection in SEVEN_PROJECTIONS:
                    assert any(name.endswith(f"layers.{i}.{'self_attn' if projection.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{projection}")
                               for name in wrapped), (kind, i, projection)
        assert len(wrapped) == 7 * len(types)
    assert not any(hasattr(module, "lora_A") for module in model.modules())


def test_gemma3_sliding_window_is_honoured_when_prompts_exceed_it(gemma3):
    """With the window shrunk below the prompts' length, the evaluator's shared-prefix and packed paths
    equal one plain sequence per choice (which the model masks itself), and differ from full attention."""
    model, tokenizer = gemma3
    requests = requests_for("TruthfulQA 6-pair priming", tokenizer, chat=False)[:1]
    requests += requests_for("option texts (acc_norm)", tokenizer, chat=False)[:4]
    wide = score_requests(model, tokenizer, requests, progress=False)
    config = model.config.get_text_config()
    window = config.sliding_window
    config.sliding_window = 8
    try:
        lengths = [len(tokenizer(r.context)["input_ids"]) for r in requests]
        assert min(lengths) > 8
        fast = score_requests(model, tokenizer, requests, progress=False)
        reference = score_requests(model, tokenizer, requests, progress=False, fast_path=False)
    finally:
        config.sliding_window = window
    for request, a, b in zip(requests, fast, reference):
        chars = [len(t) for t in request.choice_texts]
        assert predict(a, chars) == predict(b, chars)
        np.testing.assert_allclose(a, b, atol=1e-3)
    assert max(abs(x - y) for a, b in zip(fast, wide) for x, y in zip(a, b)) > 0.1  # the shrunken window is in effect
