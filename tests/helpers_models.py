"""A tiny random Llama and a locally trained BPE tokenizer for tests (offline, about 0.1 s to build).

Independent of `transfergrid.tiny_model` on purpose: tests of the evaluator and the trainer must not
depend on the built-in model's choices. Reuse with::

    from helpers_models import build_tiny_tokenizer, build_tiny_llama
"""

from __future__ import annotations

import random

SPECIAL_TOKENS = ("<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>")
# Ends with a newline on purpose: lm-eval moves a context's trailing whitespace into the continuation.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|user|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
WORDS = (
    "the a cat dog house river stone blue green red quick slow jumps runs over under near far water "
    "fire tree bird sun moon star road city small large old new bright dark cold warm"
).split()


def tiny_corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    """Lines that look like the prompts the tests render, so that ' A'..' D' become single tokens."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        question = " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
        options = "\n".join(f"{letter}) {' '.join(rng.choices(WORDS, k=2))}" for letter in "ABCD")
        lines.append(f"Question: {question}?\n{options}\nAnswer: {rng.choice('ABCD')}")
    return lines


def build_tiny_tokenizer(vocab_size: int = 400, chat_template: bool = True):
    """A byte-level BPE tokenizer trained on `tiny_corpus()`, wrapped in `PreTrainedTokenizerFast`.

    Defines BOS `<s>`, EOS `</s>`, PAD `<pad>` and (optionally) a minimal chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tiny_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(
    vocab_size: int,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    max_position_embeddings: int = 256,
    initializer_range: float = 0.2,
):
    """A randomly initialised Llama in float32 eval mode, identical for the same arguments.

    `initializer_range` is larger than Llama's 0.02 so that choices get clearly different
    log-likelihoods (no near-ties that float noise could flip).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def build_gemma3_sliding(tokenizer, window: int, hidden_size: int = 32, heads: int = 2, max_positions: int = 256):
    """A tiny random Gemma-3-style text model (sliding + full attention layers), sdpa."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=3,
        num_attention_heads=heads, num_key_value_heads=heads // 2, head_dim=16, sliding_window=window,
        max_position_embeddings=max_positions, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa",
    )
    return Gemma3ForCausalLM(config)
