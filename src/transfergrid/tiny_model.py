"""The built-in model `builtin:tiny-llama`: a 172k-parameter Llama built locally, offline.

The model is a randomly initialised `LlamaForCausalLM` (real q/k/v/o/gate/up/down projections, so the
paper's LoRA recipe applies unchanged) with a byte-level BPE tokenizer trained with `tokenizers` on
the `synthetic` suite's texts. Both are deterministic: the same weights bit for bit (fixed torch seed
in a forked RNG) and the same tokenizer files byte for byte on every build.

`ensure_built(cache_dir)` builds once into `cache_dir / f"tiny-llama-{VERSION}"` and reuses it. A build
goes to a temporary directory beside the target and is renamed into place atomically, so concurrent
callers never see a half-written model; the loser of a race discards its copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from transfergrid import synthetic
from transfergrid.buildcache import BUILD_INFO, build_once, checked_build

logger = logging.getLogger(__name__)

# Bump the first part on any change of the build below; the second follows the suite whose texts
# train the tokenizer, so a new suite version builds a new model directory.
VERSION = f"1-syn{synthetic.VERSION}"
# LoRA learning rate for this random model, chosen by experiment (docs/synthetic.md): with the paper's
# recipe otherwise unchanged (r=32, 3 epochs of 34 steps), 5e-5 stays at chance; 2e-3 to 5e-3 all learn;
# 3e-3 gave >= 0.97 accuracy on every synthetic source cell for seeds 17, 42 and 101.
RECOMMENDED_LEARNING_RATE = 3e-3

HIDDEN_SIZE = 64
NUM_LAYERS = 2
NUM_HEADS = 4
INTERMEDIATE_SIZE = 192
VOCAB_SIZE = 1024  # model rows; the trained tokenizer may use fewer (unused rows are harmless)
MAX_POSITIONS = 512  # the paper's longest max_length (SPEC 1.5)
INIT_SEED = 20240613
INIT_STD = 0.125  # ~1/sqrt(hidden): at 0.02 logits cannot exceed ~1.3, so the frozen head never gets confident

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
ANSWER_LETTERS = ("A", "B", "C", "D")


def parameter_count() -> int:
    """Number of parameters of the built model, computed from the config (nothing is built)."""
    attention = 4 * HIDDEN_SIZE * HIDDEN_SIZE  # q, k, v, o (as many key/value heads as heads)
    mlp = 3 * HIDDEN_SIZE * INTERMEDIATE_SIZE  # gate, up, down
    norms = 2 * HIDDEN_SIZE
    # Tied embeddings: the output head reuses the input embedding matrix.
    return VOCAB_SIZE * HIDDEN_SIZE + NUM_LAYERS * (attention + mlp + norms) + HIDDEN_SIZE


def ensure_built(cache_dir: Path) -> Path:
    """Build the model and tokenizer into `cache_dir` on first use; return their directory.

    Safe when several processes call it at once: each builds into its own temporary directory in
    `cache_dir` and renames it into place; whoever comes second discards its copy.

    Args:
        cache_dir: parent directory of the build (created if missing).

    Returns:
        `cache_dir / f"tiny-llama-{VERSION}"`, loadable with `AutoModelForCausalLM`/`AutoTokenizer`.

    Raises:
        RuntimeError: the target exists but is not a complete build (delete it and retry).
    """
    target = Path(cache_dir) / f"tiny-llama-{VERSION}"
    if build_once(target, _build_into):
        logger.info("built %s (%d parameters)", target, parameter_count())
    return _checked(target)


def _checked(target: Path) -> Path:
    """`target` if it holds a complete build of this version, else a RuntimeError."""
    return checked_build(target, "version", VERSION, f"tiny-llama {VERSION} build")


def _build_into(directory: Path) -> None:
    """Write tokenizer, model and the build-info marker (last) into `directory`."""
    started = time.perf_counter()
    texts = synthetic.corpus()
    tokenizer = build_tokenizer(texts)
    tokenizer.save_pretrained(directory)
    model = build_model(tokenizer)
    model.save_pretrained(directory)
    info = {
        "version": VERSION,
        "suite_version": synthetic.VERSION,
        "parameters": parameter_count(),
        "tokenizer_vocab": len(tokenizer),
        "corpus_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
    }
    (directory / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    logger.debug("tiny-llama build took %.2f s", time.perf_counter() - started)


def build_tokenizer(texts: list[str]):
    """Train a byte-level BPE tokenizer on `texts`; return it as a `PreTrainedTokenizerFast`.

    Byte-level pre-tokenization makes decoding round-trip exactly. Training is single-threaded
    (`TOKENIZERS_PARALLELISM` does not change the result, but a fixed setting keeps it boring).

    Raises:
        RuntimeError: an answer letter (" A".." D" or "A".."D") is not a single token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK, *CHAT_TOKENS]
    core = Tokenizer(models.BPE(unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Letters appear often after "Answer:" anyway; the extra lines guarantee " A".." D" get merged.
    letters = [" ".join(ANSWER_LETTERS)] * 10
    core.train_from_iterator(list(texts) + letters, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=list(CHAT_TOKENS),
        model_max_length=MAX_POSITIONS,
        padding_side="right",  # SPEC 1.5: right-padded
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    for letter in ANSWER_LETTERS:
        for text in (letter, " " + letter):
            if len(tokenizer(text, add_special_tokens=False)["input_ids"]) != 1:
                raise RuntimeError(f"answer {text!r} is not a single token; enlarge the corpus or VOCAB_SIZE")
    return tokenizer


def build_model(tokenizer):
    """A randomly initialised `LlamaForCausalLM`, bit-identical on every call (fixed, forked seed)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if len(tokenizer) > VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, more than the model's {VOCAB_SIZE}")
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=INIT_STD,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state untouched
        torch.manual_seed(INIT_SEED)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32).eval()
