"""LoRA fine-tuning with TRL's SFTTrainer (SPEC 1.5): invariants on a tiny random Llama.

The slow tests share one training run (module fixture) and two more for reproducibility; the whole
file takes about 20 s on one CPU thread, most of it imports.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers_models import WORDS, build_gemma3_sliding, build_tiny_llama, build_tiny_tokenizer
from transformers import TrainerCallback, set_seed

from transfergrid import training
from transfergrid.config import SEVEN_PROJECTIONS, LoraConfig, TrainConfig
from transfergrid.data import Item, PromptFormat
from transfergrid.formats import IGNORE_INDEX, build_sft_example

torch.set_num_threads(1)

FMT = PromptFormat(template="Question: {question}\n{options}\nAnswer:", max_length=64)
LORA = LoraConfig(lora_r=4)
TRAIN = TrainConfig(learning_rate=1e-2, num_epochs=3, batch_size=8)  # a random tiny model needs a big step
SEED = 17


def make_items(n: int, seed: int = 0) -> list[Item]:
    """Letter items of varied length (so batches need padding), the gold option named in the question."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        options = rng.sample(WORDS, 4)
        gold = rng.randrange(4)
        filler = " ".join(rng.choices(WORDS, k=rng.randint(0, 6)))
        question = f"{filler} which is {options[gold]}".strip()
        items.append(Item(id=f"q{i}", question=question, choices=tuple(options), gold=gold))
    return items


ITEMS = make_items(60)
TRAIN_ITEMS, VALIDATION_ITEMS = ITEMS[:44], ITEMS[44:]


@pytest.fixture(scope="module", autouse=True)
def no_telemetry():
    """TRL pings the Hub when a trainer is built unless telemetry is off (the constant is read at import)."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
        yield


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def new_model(tokenizer):
    return build_tiny_llama(len(tokenizer), hidden_size=32)


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def probe_ids(tokenizer) -> torch.Tensor:
    return torch.tensor([build_sft_example(VALIDATION_ITEMS[0], FMT, tokenizer)["input_ids"]])


def adapter_tensors(adapter_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(adapter_dir) / "adapter_model.safetensors")


def split_batch(ids, labels, position_ids=None, attention_mask=None):
    """The (input ids, labels) of each example of a batch: a padding-free batch (one row, the examples
    one after another, each restarting its position ids at 0) or a padded one (attention mask)."""
    if position_ids is not None and attention_mask is None:
        assert ids.shape[0] == 1
        starts = (position_ids[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
        return [(ids[0, a:b], labels[0, a:b]) for a, b in zip(starts, starts[1:])]
    return [(ids[i, :n], labels[i, :n]) for i, n in enumerate(attention_mask.sum(dim=1).tolist())]


class Recorder(TrainerCallback):
    """Records every batch that reaches the PEFT model, and the trained model's logits at the end.

    For each forward call with labels it also recomputes, from the model's full logits, the
    cross-entropy over the labels it was given, to compare with the loss TRL's fused forward returned.
    """

    def __init__(self, probe: torch.Tensor):
        self.probe = probe
        self.batches: list[dict] = []
        self.probe_logits = None
        self._busy = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        if self._busy or kwargs.get("labels") is None:
            return
        ids, labels = kwargs["input_ids"], kwargs["labels"]
        examples = split_batch(ids, labels, kwargs.get("position_ids"), kwargs.get("attention_mask"))
        self._busy = True
        try:  # each example alone, unpadded: the loss the batch must give
            per_example = [(logits(module, e_ids[None])[0], e_labels) for e_ids, e_labels in examples]
        finally:
            self._busy = False
        total = sum(torch.nn.functional.cross_entropy(full[:-1], lab[1:], ignore_index=IGNORE_INDEX, reduction="sum")
                    for full, lab in per_example)
        count = sum(int((lab[1:] != IGNORE_INDEX).sum()) for _, lab in per_example)
        self.batches.append(
            {
                "training": module.training,
                "input_ids": ids.clone(),
                "position_ids": None if kwargs.get("position_ids") is None else kwargs["position_ids"].clone(),
                "examples": [(e_ids.tolist(), e_labels.tolist()) for e_ids, e_labels in examples],
                "loss": float(output.loss.detach()),
                "reference_loss": float(total / count),
            }
        )

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._handle.remove()
        was_training = model.training
        model.eval()
        self.probe_logits = logits(model, self.probe)
        model.train(was_training)


@pytest.fixture(scope="module")
def trained(tokenizer, tmp_path_factory):
    """One fine-tune of the tiny model, with its logs, the batches the model saw and the base weights."""
    model = new_model(tokenizer)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    probe = probe_ids(tokenizer)
    base_logits = logits(model, probe)
    recorder = Recorder(probe)
    logs: list[tuple[int, dict]] = []
    result = training.train_adapter(
        model, tokenizer, TRAIN_ITEMS, VALIDATION_ITEMS, FMT, LORA, TRAIN,
        seed=SEED, output_dir=tmp_path_factory.mktemp("run"), on_log=lambda m, s: logs.append((s, m)),
        progress=False, callbacks=[recorder],
    )
    return SimpleNamespace(
        model=model, base_state=base_state, probe=probe, base_logits=base_logits,
        recorder=recorder, logs=logs, result=result,
    )


# ---- fast ----------------------------------------------------------------------------------------


def test_lora_at_initialisation_gives_exactly_the_base_logits(tokenizer):
    import peft

    model = new_model(tokenizer)
    ids = probe_ids(tokenizer)
    base = logits(model, ids)
    peft_model = peft.get_peft_model(model, training.to_peft_config(LORA))
    lora_b = [p for name, p in peft_model.named_parameters() if "lora_B" in name]
    assert len(lora_b) == 2 * len(SEVEN_PROJECTIONS)  # 2 layers x 7 projections
    assert all(torch.count_nonzero(p) == 0 for p in lora_b)
    assert torch.equal(logits(peft_model, ids), base)
    assert torch.equal(logits(peft_model.unload(), ids), base)


def test_peft_config_is_the_paper_recipe():
    config = training.to_peft_config(LoraConfig())
    assert (config.r, config.lora_alpha, config.lora_dropout) == (32, 64, 0.0)
    assert set(config.target_modules) == set(SEVEN_PROJECTIONS)
    assert (config.bias, config.task_type, config.use_rslora, config.use_dora) == ("none", "CAUSAL_LM", False, False)
    assert training.to_peft_config(LoraConfig(lora_r=8, use_rslora=True)).use_rslora


def test_trainer_arguments_are_the_paper_recipe_on_cpu(tmp_path):
    args = training.sft_config(TrainConfig(), seed=101, output_dir=tmp_path, progress=False, cuda=False)
    assert (args.learning_rate, args.num_train_epochs, args.warmup_steps) == (5e-5, 3.0, 0.1)
    assert args.lr_scheduler_type == "linear" and args.weight_decay == 0.0 and args.max_grad_norm == 1.0
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size) == (8, 8)
    assert (args.seed, args.data_seed) == (101, 101)
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch" and args.save_total_limit == 3
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert args.logging_steps == 1 and args.report_to == [] and args.disable_tqdm
    assert args.max_length is None and not args.packing and not args.padding_free  # dynamic padding
    assert training.sft_config(TrainConfig(padding_free=True), seed=1, output_dir=tmp_path, progress=False,
                               cuda=False).padding_free
    assert not args.bf16 and args.use_cpu and not args.gradient_checkpointing and not args.auto_find_batch_size
    assert Path(args.output_dir) == tmp_path / "checkpoints"


def test_unknown_target_module_is_a_clear_error(tokenizer, tmp_path):
    model = new_model(tokenizer)
    lora = LoraConfig(lora_r=4, target_modules=["q_proj", "qkv_proj"])
    with pytest.raises(ValueError, match=r"'qkv_proj' not found in LlamaForCausalLM.*down_proj, gate_proj, k_proj"):
        training.train_adapter(
            model, tokenizer, TRAIN_ITEMS, VALIDATION_ITEMS, FMT, lora, TRAIN, seed=SEED, output_dir=tmp_path
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("which", ["train", "validation"])
def test_empty_items_are_an_error(tokenizer, tmp_path, which):
    train_items, validation_items = (TRAIN_ITEMS, []) if which == "validation" else ([], VALIDATION_ITEMS)
    with pytest.raises(ValueError, match=f"no {which} items"):
        training.train_adapter(
            new_model(tokenizer), tokenizer, train_items, validation_items, FMT, LORA, TRAIN,
            seed=SEED, output_dir=tmp_path,
        )


def test_examples_whose_answer_was_truncated_away_are_dropped(tokenizer, caplog):
    short, long = Item("short", "sun", ("a", "b", "c", "d"), 1), Item("long", "sun " * 20, ("a", "b", "c", "d"), 1)
    n_short = len(build_sft_example(short, FMT, tokenizer)["input_ids"])
    fmt = PromptFormat(template=FMT.template, truncation="right", max_length=n_short)
    dataset = training.build_dataset([long, short], fmt, tokenizer, "train")
    assert dataset["input_ids"] == [build_sft_example(short, fmt, tokenizer)["input_ids"]]
    assert "1 of 2 train examples lost their answer" in caplog.text
    with pytest.raises(ValueError, match="every train example lost its answer"):
        training.build_dataset([long], fmt, tokenizer, "train")


def test_dataset_holds_our_examples_unpadded(tokenizer):
    dataset = training.build_dataset(TRAIN_ITEMS, FMT, tokenizer, "train")
    assert dataset.column_names == ["input_ids", "labels"]
    assert [dict(row) for row in dataset] == [build_sft_example(item, FMT, tokenizer) for item in TRAIN_ITEMS]


# ---- slow: one fine-tune shared by the tests below -----------------------------------------------


@pytest.mark.slow
def test_base_weights_unchanged_and_adapter_weights_moved(trained, tokenizer):
    import peft

    state = trained.model.state_dict()
    assert state.keys() == trained.base_state.keys()
    assert all(torch.equal(state[name], trained.base_state[name]) for name in state)
    adapter = adapter_tensors(trained.result.adapter_dir)
    assert all(torch.count_nonzero(t) > 0 for name, t in adapter.items() if "lora_B" in name)  # B starts at 0
    set_seed(SEED)
    initial = peft.get_peft_model(new_model(tokenizer), training.to_peft_config(LORA))
    initial_a = {n: p for n, p in initial.named_parameters() if "lora_A" in n}
    assert initial_a and all(not torch.equal(p, adapter[n.replace(".default", "")]) for n, p in initial_a.items())


@pytest.mark.slow
def test_caller_gets_its_base_model_back(trained):
    model = trained.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert "forward" not in vars(model)  # TRL's fused-LM-head patch is gone
    assert not any("lora" in name for name, _ in model.named_modules())
    assert all(p.requires_grad for p in model.parameters()) and not model.training
    assert model.config.use_cache and getattr(model, "model_tags", None) is None
    assert torch.equal(logits(model, trained.probe), trained.base_logits)


@pytest.mark.slow
def test_caller_gets_its_base_model_back_when_training_fails(tokenizer, tmp_path):
    model = new_model(tokenizer)
    ids = probe_ids(tokenizer)
    base = logits(model, ids)

    def on_log(metrics, step):
        raise RuntimeError("tracking server down")

    with pytest.raises(RuntimeError, match="tracking server down"):
        training.train_adapter(
            model, tokenizer, TRAIN_ITEMS, VALIDATION_ITEMS, FMT, LORA, TRAIN,
            seed=SEED, output_dir=tmp_path, on_log=on_log, progress=False,
        )
    assert "forward" not in vars(model) and not any("lora" in name for name, _ in model.named_modules())
    assert all(p.requires_grad for p in model.parameters()) and not model.training
    assert torch.equal(logits(model, ids), base)


@pytest.mark.slow
def test_labels_reaching_the_model_are_exactly_ours(trained, tokenizer):
    ours = {tuple(ex["input_ids"]): ex["labels"] for ex in map(lambda i: build_sft_example(i, FMT, tokenizer), ITEMS)}
    batches = trained.recorder.batches
    train_batches = [b for b in batches if b["training"]]
    assert len(train_batches) == math.ceil(len(TRAIN_ITEMS) / TRAIN.batch_size) * TRAIN.num_epochs
    assert len(batches) - len(train_batches) == math.ceil(len(VALIDATION_ITEMS) / TRAIN.batch_size) * TRAIN.num_epochs
    answer_ids = set(tokenizer.convert_tokens_to_ids([f"Ġ{letter}" for letter in "ABCD"]))
    seen = set()
    for batch in batches:
        assert batch["position_ids"] is None  # dynamic padding (the default): padded to the longest in the batch
        assert batch["input_ids"].shape[1] == max(len(ids) for ids, _ in batch["examples"])
        for row, (ids, labels) in zip(batch["input_ids"].tolist(), batch["examples"]):
            key, n = tuple(ids), len(ids)
            assert key in ours and labels == ours[key]  # our labels, untouched, no EOS appended
            assert row[n:] == [tokenizer.pad_token_id] * (len(row) - n)
            loss_tokens = [t for t in labels if t != IGNORE_INDEX]
            assert len(loss_tokens) == 1 and loss_tokens[0] in answer_ids and loss_tokens[0] == ids[-1]
            assert tokenizer.eos_token_id not in ids
            seen.add(key)
        # the loss the trainer optimises is the cross-entropy over exactly these labels, each example alone
        assert batch["loss"] == pytest.approx(batch["reference_loss"], abs=1e-5)
    assert len(seen) == len(ITEMS)


@pytest.mark.slow
def test_best_epoch_is_the_minimum_validation_loss(trained):
    result = trained.result
    evals = [h for h in result.history if "eval_loss" in h]
    assert [h["epoch"] for h in evals] == [1.0, 2.0, 3.0]
    best = min(evals, key=lambda h: h["eval_loss"])
    assert (result.best_epoch, result.best_eval_loss) == (best["epoch"], best["eval_loss"])
    checkpoint = result.adapter_dir.parent / "checkpoints" / f"checkpoint-{best['step']}"
    kept, saved = adapter_tensors(result.adapter_dir), adapter_tensors(checkpoint)
    assert kept.keys() == saved.keys() and all(torch.equal(kept[k], saved[k]) for k in kept)
    assert (result.n_train, result.n_validation) == (len(TRAIN_ITEMS), len(VALIDATION_ITEMS))
    assert result.train_seconds > 0 and result.tokens_per_second > 0


@pytest.mark.slow
def test_on_log_gets_per_step_loss_and_per_epoch_eval_loss(trained):
    steps_per_epoch = math.ceil(len(TRAIN_ITEMS) / TRAIN.batch_size)
    logs = trained.logs
    assert all(isinstance(v, float) for _, metrics in logs for v in metrics.values())
    loss_steps = [step for step, metrics in logs if "loss" in metrics]
    assert loss_steps == list(range(1, 3 * steps_per_epoch + 1))
    assert all({"grad_norm", "learning_rate", "epoch"} <= m.keys() for _, m in logs if "loss" in m)
    eval_steps = [(step, m["epoch"]) for step, m in logs if "eval_loss" in m]
    assert eval_steps == [(steps_per_epoch * e, float(e)) for e in (1, 2, 3)]
    assert [m for _, m in logs] == [{k: v for k, v in h.items() if k != "step"} for h in trained.result.history]


@pytest.mark.slow
def test_saved_adapter_reloads_to_the_trained_model(trained):
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(trained.model, trained.result.adapter_dir)
    try:
        torch.testing.assert_close(logits(reloaded, trained.probe), trained.recorder.probe_logits, rtol=0, atol=1e-6)
        assert not torch.allclose(trained.recorder.probe_logits, trained.base_logits)
    finally:
        reloaded.unload()
    assert torch.equal(logits(trained.model, trained.probe), trained.base_logits)


@pytest.mark.slow
def test_same_seed_gives_identical_adapter_weights(trained, tokenizer, tmp_path):
    # The same base model object again: also checks that it is reusable after a fine-tune.
    def run(seed, name):
        result = training.train_adapter(
            trained.model, tokenizer, TRAIN_ITEMS, VALIDATION_ITEMS, FMT, LORA, TRAIN,
            seed=seed, output_dir=tmp_path / name, progress=False,
        )
        return adapter_tensors(result.adapter_dir), result.history

    first = adapter_tensors(trained.result.adapter_dir)
    again, history = run(SEED, "again")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses == [h["loss"] for h in trained.result.history if "loss" in h]
    other, _ = run(SEED + 1, "other")
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_lora_targets_skip_the_vision_tower_of_a_multimodal_model():
    import peft
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.v_proj = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    class Multimodal(torch.nn.Module):  # the module layout of Gemma-3 loaded as a causal LM
        def __init__(self):
            super().__init__()
            self.vision_tower = torch.nn.ModuleDict({"layer": Block()})
            self.language_model = torch.nn.ModuleDict({"layer": Block()})

    config = training.to_peft_config(LoraConfig(target_modules=["q_proj", "v_proj"]), Multimodal())
    wrapped = peft.inject_adapter_in_model(config, Multimodal())
    adapted = {name.rpartition(".lora_A")[0] for name, _ in wrapped.named_modules() if name.endswith("lora_A")}
    assert adapted == {"language_model.layer.q_proj", "language_model.layer.v_proj"}
    assert training.to_peft_config(LoraConfig()).target_modules == set(LoraConfig().target_modules)  # text-only: the list


def gemma3_sliding(tokenizer, window: int):
    return build_gemma3_sliding(tokenizer, window)


def gemma3_multimodal(tokenizer, window: int):
    """A tiny random Gemma-3 with a vision tower (how google/gemma-3-4b-it loads), text-only batches."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    text = gemma3_sliding(tokenizer, window).config
    text.vocab_size = len(tokenizer) + 1  # the image token
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=len(tokenizer),
                          attn_implementation="sdpa")
    torch.manual_seed(0)
    return Gemma3ForConditionalGeneration(config)


@pytest.mark.parametrize("arch", ["llama", "gemma3-sliding-window-4", "gemma3-multimodal"])
def test_padding_free_batches_give_the_losses_and_gradients_of_dynamic_padding(tokenizer, arch):
    """The trainer's padding-free batches (examples flattened into one row, position ids restarting at 0)
    give the same loss and LoRA gradients as dynamic padding: no example attends to another, also in
    sliding-window layers whose window is shorter than the examples and in Gemma-3 loaded with its vision tower."""
    import peft
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    builders = {"llama": lambda: new_model(tokenizer), "gemma3-sliding-window-4": lambda: gemma3_sliding(tokenizer, 4),
                "gemma3-multimodal": lambda: gemma3_multimodal(tokenizer, 4)}
    base = builders[arch]()
    model = peft.get_peft_model(base, training.to_peft_config(LORA, base))
    for name, p in model.named_parameters():  # LoRA B is zero at init: give the gradients something to differ in
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    model.train()
    examples = [build_sft_example(item, FMT, tokenizer) for item in TRAIN_ITEMS[:8]]
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]
    assert len({len(e["input_ids"]) for e in examples}) > 1  # dynamic padding pads these
    results = {}
    for padding_free in (True, False):
        batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=padding_free)(examples)
        assert ("attention_mask" in batch) != padding_free
        model.zero_grad()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        grads = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None])
        results[padding_free] = (float(loss.detach()), grads)
    (free_loss, free_grads), (padded_loss, padded_grads) = results[True], results[False]
    assert free_loss == pytest.approx(padded_loss, abs=1e-5)
    torch.testing.assert_close(free_grads, padded_grads, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_padding_free_option_trains_on_flattened_batches_with_the_same_losses(tokenizer, tmp_path):
    """`padding_free: true`: the trainer feeds one flattened row per batch, every example alone in it."""
    import dataclasses

    model = new_model(tokenizer)
    recorder = Recorder(probe_ids(tokenizer))
    train = dataclasses.replace(TRAIN, num_epochs=1, padding_free=True)
    training.train_adapter(model, tokenizer, TRAIN_ITEMS, VALIDATION_ITEMS, FMT, LORA, train, seed=SEED,
                           output_dir=tmp_path, progress=False, callbacks=[recorder])
    assert recorder.batches
    for batch in recorder.batches:
        assert batch["position_ids"] is not None and batch["input_ids"].shape[0] == 1
        assert batch["input_ids"].shape[1] == sum(len(ids) for ids, _ in batch["examples"])  # no padding token
        assert batch["loss"] == pytest.approx(batch["reference_loss"], abs=1e-5)
