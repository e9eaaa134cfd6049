"""LoRA fine-tuning of one source cell with TRL's `SFTTrainer` (SPEC 1.5).

The paper's recipe: examples tokenized by `formats.build_sft_example` (answer-only labels, no EOS,
left truncation), a LoRA adapter on the seven projections, the HF Trainer defaults (AdamW, linear
schedule, 10% warmup), evaluation and a checkpoint every epoch, and the adapter of the epoch with the
lowest validation loss kept.

The caller's model is wrapped with PEFT for the duration of `train_adapter` only: on return (or on an
error) the LoRA layers are removed again without merging (`PeftModel.unload()`), what TRL and the
Trainer changed on the model (patched `forward`, tags, `use_cache`, `pad_token_id`) is undone, and the
`requires_grad` flags and train/eval mode are restored, so the same base model object can be reused
for the next source cell or for evaluation. The trained adapter lives on
disk in `TrainResult.adapter_dir`; attach it with `peft.PeftModel.from_pretrained(model, adapter_dir)`.

Nothing here writes to MLflow: trainer logs reach the caller through `on_log`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from transfergrid import console
from transfergrid.config import LoraConfig, TrainConfig
from transfergrid.data import Item, PromptFormat
from transfergrid.formats import IGNORE_INDEX, build_sft_example

if TYPE_CHECKING:
    import datasets
    import peft
    import trl
    from transformers import TrainerCallback

logger = logging.getLogger(__name__)

ADAPTER_DIRNAME = "adapter"
FULL_MODEL_DIRNAME = "model"
CHECKPOINTS_DIRNAME = "checkpoints"
OnLog = Callable[[dict[str, float], int], None]


@dataclass
class TrainResult:
    """Outcome of one LoRA fine-tune.

    Attributes:
        adapter_dir: PEFT adapter (`adapter_config.json` + weights) of the best epoch, saved with
            `save_pretrained`; load it with `peft.PeftModel.from_pretrained(base_model, adapter_dir)`.
        best_epoch: epoch whose validation loss was lowest (the adapter kept).
        best_eval_loss: that validation loss.
        history: every trainer log (`step`, `epoch`, `loss`/`eval_loss`/`learning_rate`/`grad_norm`, ...).
        n_train: training examples.
        n_validation: validation examples.
        train_seconds: wall-clock time of `trainer.train()`, per-epoch evaluation and checkpoints included.
        tokens_per_second: non-pad training tokens processed per second of `train_seconds`.
    """

    adapter_dir: Path
    best_epoch: float
    best_eval_loss: float
    history: list[dict]
    n_train: int
    n_validation: int
    train_seconds: float
    tokens_per_second: float


NON_TEXT_MODULES = ("vision_tower", "vision_model", "multi_modal_projector", "audio_tower")


def to_peft_config(lora: LoraConfig, model=None) -> "peft.LoraConfig":
    """The PEFT LoRA configuration of `lora` (SPEC 1.5: bias none, causal LM, no DoRA).

    For a multimodal model (e.g. google/gemma-3-4b-it loads with a SigLIP vision tower whose attention
    also has `q_proj`/`k_proj`/`v_proj`), the targets are restricted to the language model: a text-only
    fine-tune would otherwise add adapters to the vision tower that no gradient ever reaches (SPEC 1.21 #4).
    """
    import peft

    targets: list[str] | str = list(lora.target_modules)
    if model is not None and any(part in NON_TEXT_MODULES for name, _ in model.named_modules() for part in name.split(".")):
        excluded = "|".join(NON_TEXT_MODULES)
        targets = rf"^(?!(?:.*\.)?(?:{excluded})\.).*\.(?:{'|'.join(map(re.escape, lora.target_modules))})$"
    return peft.LoraConfig(
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets,
        use_rslora=lora.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def check_target_modules(model, target_modules: Sequence[str]) -> None:
    """Check that every LoRA target names a module of `model`, as PEFT matches them (name suffix).

    Raises:
        ValueError: a target matches no module; the message lists the model's linear module names.
    """
    import torch

    names = [name for name, _ in model.named_modules()]
    missing = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(
            f"LoRA target module(s) {', '.join(map(repr, missing))} not found in {type(model).__name__}; "
            f"its linear modules are: {', '.join(linear)} (set target_modules to some of these)"
        )


def build_dataset(items: Sequence[Item], fmt: PromptFormat, tokenizer, split: str) -> "datasets.Dataset":
    """Tokenized examples with `input_ids` and `labels` columns, unpadded (SPEC 1.5).

    Examples left without any loss token (the answer cut by right truncation) are dropped with a
    warning, as TRL itself would do.

    Raises:
        ValueError: no items, or no example keeps a loss token.
    """
    from datasets import Dataset

    if not items:
        raise ValueError(f"no {split} items to fine-tune on; check the source cell and its {split} split")
    examples = [build_sft_example(item, fmt, tokenizer) for item in items]
    kept = [ex for ex in examples if any(label != IGNORE_INDEX for label in ex["labels"])]
    if len(kept) < len(examples):
        logger.warning(
            "%d of %d %s examples lost their answer to truncation (max_length=%d, truncation=%s) and are dropped",
            len(examples) - len(kept), len(examples), split, fmt.max_length, fmt.truncation,
        )
    if not kept:
        raise ValueError(f"every {split} example lost its answer to truncation; raise max_length or truncate left")
    return Dataset.from_dict({"input_ids": [ex["input_ids"] for ex in kept], "labels": [ex["labels"] for ex in kept]})


def sft_config(train: TrainConfig, *, seed: int, output_dir: Path, progress: bool, cuda: bool) -> "trl.SFTConfig":
    """TRL arguments of the paper's recipe (SPEC 1.5) for one run."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir / CHECKPOINTS_DIRNAME),
        learning_rate=train.learning_rate,
        num_train_epochs=train.num_epochs,
        warmup_steps=train.warmup_ratio,  # transformers 5: a float < 1 is a ratio (ceil(ratio * steps), as 4.x)
        lr_scheduler_type="linear",
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        seed=seed,
        data_seed=seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,  # checkpoints only pick the best epoch; no optimizer state, no resume
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=3,
        logging_strategy="steps",
        logging_steps=1,  # per-step curves
        logging_nan_inf_filter=False,  # a NaN/inf step loss is logged as is, so divergence stops the run at once
        report_to="none",  # we log to MLflow ourselves (on_log); no stray runs from transformers' callback
        max_length=None,  # examples are truncated by build_sft_example (left, SPEC 1.5); TRL must not re-truncate
        packing=False,
        # Default: pad to the longest example of each batch (dynamic padding). `padding_free`: the examples
        # flattened into one row with per-example position ids; transformers' masks keep each example to
        # itself, so the losses are equal; on CPU sdpa it measured slower (benchmarks/sft_padding.py).
        padding_free=train.padding_free,
        bf16=cuda,
        use_cpu=not cuda,
        # The paper's HF default (off). transformers 5 renamed `gradient_checkpointing` (TRL's default: True).
        activation_checkpointing=False,
        auto_find_batch_size=cuda,  # the paper halves batch 8 on OOM; no OOM to recover from on CPU
        disable_tqdm=True,  # transformers' bars stay on screen; `console.training_callback` shows the steps
    )


class TrainingDiverged(ValueError):
    """A training or validation loss became NaN or infinite: the recipe (usually the learning rate) diverges."""


def _divergence_guard() -> "TrainerCallback":
    """A callback that stops training at the first non-finite `loss` or `eval_loss` (raising `TrainingDiverged`).

    Without it a diverged run would end normally with `eval_loss nan` and its adapter be kept as a result.
    """
    import math

    from transformers import TrainerCallback

    class DivergenceGuard(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "eval_loss"):
                value = (logs or {}).get(key)
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    raise TrainingDiverged(
                        f"training diverged: {key} is {value} at step {state.global_step} (epoch {state.epoch or 0:g}) "
                        f"with learning_rate {args.learning_rate:g}; nothing is kept; lower learning_rate "
                        "or max_grad_norm and run again"
                    )

    return DivergenceGuard()


def _log_forwarder(on_log: OnLog) -> "TrainerCallback":
    """A callback passing every trainer log to `on_log(metrics, step)` with float values only."""
    from transformers import TrainerCallback

    class LogForwarder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            metrics = {
                key: float(value)
                for key, value in (logs or {}).items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)
            }
            on_log(metrics, state.global_step)

    return LogForwarder()


@contextlib.contextmanager
def _lora_wrapped(model, lora: LoraConfig) -> Iterator["peft.PeftModel"]:
    """Wrap `model` with a fresh LoRA adapter; on exit, give the caller its base model back as it was.

    PEFT injects the LoRA layers into `model` in place and freezes its parameters; TRL patches
    `model.forward` with its fused LM head, tags the model and copies the pad token id into its
    configs; the Trainer sets `config.use_cache = False`. All of it is undone on exit, whatever happened.
    """
    import peft

    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    instance = {key: vars(model)[key] for key in ("forward", "model_tags") if key in vars(model)}
    configs = [model.config, model.config.get_text_config(), getattr(model, "generation_config", None)]
    configs = [c for c in configs if c is not None]
    settings = [(c, key, getattr(c, key)) for c in configs for key in ("use_cache", "pad_token_id") if hasattr(c, key)]
    peft_model = peft.get_peft_model(model, to_peft_config(lora, model))
    try:
        yield peft_model
    finally:
        peft_model.unload()  # removes the LoRA layers without merging: the original modules come back
        for key in ("forward", "model_tags"):
            vars(model).pop(key, None)
        vars(model).update(instance)
        for config, key, value in settings:
            setattr(config, key, value)
        for name, p in model.named_parameters():
            p.requires_grad_(requires_grad.get(name, p.requires_grad))
        model.train(was_training)


@contextlib.contextmanager
def _fully_trainable(model) -> Iterator:
    """Full fine-tuning (SPEC 1.18, recipe `full`): every weight trainable; the model is changed in place.

    The caller passes a model it will not reuse as the base (`run_finetune` loads a fresh copy).
    """
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        yield model
    finally:
        vars(model).pop("forward", None)  # TRL's patched forward; the trained weights stay
        model.train(was_training)


def _best_eval(history: list[dict], best_step: int | None) -> tuple[float, float]:
    """(epoch, eval_loss) of the checkpoint the trainer kept, read from its log history."""
    evals = [h for h in history if "eval_loss" in h]
    if not evals:
        raise RuntimeError("the trainer logged no eval_loss; was the validation set empty?")
    kept = [h for h in evals if h.get("step") == best_step]
    best = kept[0] if kept else min(evals, key=lambda h: h["eval_loss"])  # first minimum, as the trainer
    return float(best["epoch"]), float(best["eval_loss"])


def _tokens_trained(history: list[dict], train_dataset, epochs: float) -> float:
    """Non-pad training tokens processed: TRL's running `num_tokens`, else lengths x epochs."""
    counts = [h["num_tokens"] for h in history if "num_tokens" in h]  # eval logs carry `eval_num_tokens`
    if counts:
        return float(max(counts))
    return float(sum(len(ids) for ids in train_dataset["input_ids"]) * epochs)


def train_adapter(
    model,
    tokenizer,
    train_items: Sequence[Item],
    validation_items: Sequence[Item],
    fmt: PromptFormat,
    lora: LoraConfig,
    train: TrainConfig,
    *,
    seed: int,
    output_dir: Path,
    on_log: OnLog | None = None,
    progress: bool = True,
    callbacks: Sequence["TrainerCallback"] = (),
) -> TrainResult:
    """Fine-tune a LoRA adapter on one source cell and keep the best-validation-loss epoch (SPEC 1.5).

    The base model's weights never change. `model` is wrapped with PEFT during training and given back
    on return (also on error) as it was: LoRA layers unloaded without merging, TRL's `forward` patch
    and tags removed, `use_cache`/`pad_token_id` in its configs, `requires_grad` flags and train/eval
    mode restored. Use the adapter from
    `TrainResult.adapter_dir`: `peft.PeftModel.from_pretrained(model, adapter_dir)` (then
    `merge_and_unload()` for evaluation as the paper, or `unload()` to get the base model back).

    Args:
        model: a causal LM (`PreTrainedModel`), on the device it should train on.
        tokenizer: its tokenizer; a missing pad token is set to EOS (SPEC 1.5).
        train_items: items to train on.
        validation_items: items whose loss picks the epoch kept.
        fmt: training prompt format of the source task (`TaskSpec.train_format`).
        lora: adapter rank, alpha, dropout and target modules.
        train: learning rate, epochs, warmup, batch size, weight decay, gradient clipping.
        seed: experiment seed: `set_seed`, `seed` and `data_seed` of the trainer, LoRA initialisation.
        output_dir: the adapter goes to `output_dir/adapter`, per-epoch checkpoints to
            `output_dir/checkpoints` (left in place; delete them when done).
        on_log: called with `(metrics, global_step)` on every trainer log (per-step `loss`,
            `grad_norm`, `learning_rate`, ...; per-epoch `eval_loss`, ...), floats only.
        progress: show the trainer's progress bars.
        callbacks: extra `transformers.TrainerCallback`s (e.g. an Optuna pruning callback).

    With `lora.recipe == "full"` (SPEC 1.18) no adapter is made: every weight of `model` is trained in
    place and the best epoch's whole model is saved to `output_dir/model` (`TrainResult.adapter_dir`);
    load it with `AutoModelForCausalLM.from_pretrained`.

    Returns:
        The adapter directory, the best epoch and its validation loss, the log history and speed.

    Raises:
        ValueError: empty train or validation items, or a LoRA target module the model lacks.
        TrainingDiverged: a training or validation loss became NaN or infinite (logged first through `on_log`).
    """
    full = lora.recipe == "full"
    if not full:
        check_target_modules(model, lora.target_modules)  # before the slow imports: fail fast
    train_dataset = build_dataset(train_items, fmt, tokenizer, "train")
    eval_dataset = build_dataset(validation_items, fmt, tokenizer, "validation")

    from transformers import PrinterCallback, ProgressCallback, set_seed
    from trl import SFTTrainer

    output_dir = Path(output_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad = EOS where the tokenizer has none (SPEC 1.5)
    cuda = next(model.parameters()).device.type == "cuda"  # train where the caller put the model
    args = sft_config(train, seed=seed, output_dir=output_dir, progress=progress, cuda=cuda)
    forwarders = [_log_forwarder(on_log)] if on_log is not None else []
    logger.debug(
        "training %s on %d examples (%d validation), %s epochs, seed %d, %s",
        "all weights (full fine-tuning)" if full else f"LoRA r={lora.lora_r}", len(train_dataset), len(eval_dataset),
        train.num_epochs, seed, "cuda" if cuda else "cpu",
    )

    set_seed(seed)  # before the adapter exists: its A matrices are drawn at random
    with (_fully_trainable(model) if full else _lora_wrapped(model, lora)) as peft_model:
        trainer = SFTTrainer(
            model=peft_model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=[*forwarders, _divergence_guard(), *callbacks],
        )
        trainer.remove_callback(PrinterCallback)  # with tqdm off, transformers prints every log instead
        trainer.remove_callback(ProgressCallback)  # its bar stays on screen; ours is one level of the console's
        steps = console.training_callback() if progress else None
        if steps is not None:  # the steps with the loss as note, instead of one printed dict per step
            trainer.add_callback(steps)
        start = time.perf_counter()
        try:
            trainer.train()  # ends with the best epoch's adapter loaded (load_best_model_at_end)
        finally:  # a diverged or interrupted run never reaches on_train_end: its display closes here
            if steps is not None and steps.display is not None:
                steps.display.close()
        seconds = time.perf_counter() - start
        adapter_dir = output_dir / (FULL_MODEL_DIRNAME if full else ADAPTER_DIRNAME)
        peft_model.save_pretrained(adapter_dir)  # full: the whole model (config + safetensors), from_pretrained-able
        history = [dict(h) for h in trainer.state.log_history]
        best_step = trainer.state.best_global_step

    best_epoch, best_loss = _best_eval(history, best_step)
    tokens = _tokens_trained(history, train_dataset, train.num_epochs)
    logger.debug(
        "kept epoch %g (eval_loss %.4f); %.1f s, %.0f tokens/s", best_epoch, best_loss, seconds, tokens / seconds
    )
    return TrainResult(
        adapter_dir=adapter_dir,
        best_epoch=best_epoch,
        best_eval_loss=best_loss,
        history=history,
        n_train=len(train_dataset),
        n_validation=len(eval_dataset),
        train_seconds=seconds,
        tokens_per_second=tokens / seconds if seconds > 0 else float("nan"),
    )
