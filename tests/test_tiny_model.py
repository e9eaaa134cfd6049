"""The built-in tiny model: deterministic, reused, concurrency-safe, loadable offline."""

from __future__ import annotations

import filecmp
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfergrid import synthetic, tiny_model
from transfergrid.config import SEVEN_PROJECTIONS


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return tiny_model.ensure_built(tmp_path_factory.mktemp("tiny-cache"))


@pytest.fixture(scope="module")
def tokenizer(built):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built)


@pytest.fixture(scope="module")
def model(built):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(built)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_directory_is_named_after_the_version(built):
    assert built.name == f"tiny-llama-{tiny_model.VERSION}"
    assert synthetic.VERSION in tiny_model.VERSION  # a new suite (tokenizer corpus) gives a new build


def test_two_builds_are_identical(built, tmp_path):
    import torch
    from safetensors.torch import load_file

    other = tiny_model.ensure_built(tmp_path)
    assert _files(other) == _files(built)
    match, mismatch, errors = filecmp.cmpfiles(built, other, _files(built), shallow=False)
    assert mismatch == [] and errors == []
    first, second = load_file(built / "model.safetensors"), load_file(other / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_second_call_reuses_the_build(built, monkeypatch):
    before = {name: (built / name).stat().st_mtime_ns for name in _files(built)}

    def fail(directory):
        raise AssertionError("ensure_built rebuilt an existing model")

    monkeypatch.setattr(tiny_model, "_build_into", fail)
    assert tiny_model.ensure_built(built.parent) == built
    assert {name: (built / name).stat().st_mtime_ns for name in _files(built)} == before


def test_incomplete_directory_is_never_reused(tmp_path):
    target = tmp_path / f"tiny-llama-{tiny_model.VERSION}"
    target.mkdir()
    (target / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="not a complete"):
        tiny_model.ensure_built(tmp_path)


def _build_in(cache_dir: str) -> str:
    return str(tiny_model.ensure_built(Path(cache_dir)))


def test_concurrent_builds_leave_one_valid_directory(tmp_path):
    # fork: the children inherit the imported libraries, so each only pays for the build itself.
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        paths = pool.map(_build_in, [str(tmp_path)] * 3)
    assert len(set(paths)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [f"tiny-llama-{tiny_model.VERSION}"]  # no temp dirs left
    assert tiny_model.ensure_built(tmp_path) == Path(paths[0])


def test_loads_offline_with_auto_classes(built, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert isinstance(AutoModelForCausalLM.from_pretrained(built), LlamaForCausalLM)
    assert AutoTokenizer.from_pretrained(built).bos_token == tiny_model.BOS


def test_parameter_count_without_building(model):
    assert tiny_model.parameter_count() == sum(p.numel() for p in model.parameters())


def test_has_the_seven_projection_modules(model):
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert set(SEVEN_PROJECTIONS) <= names


def test_special_tokens(tokenizer):
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == (
        tiny_model.BOS,
        tiny_model.EOS,
        tiny_model.PAD,
        tiny_model.UNK,
    )
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}) == 4
    # No automatic BOS: training examples (add_special_tokens=False) and scoring see the same ids.
    assert tokenizer("Answer:")["input_ids"] == tokenizer("Answer:", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("letter", ["A", "B", "C", "D"])
def test_answer_letters_are_single_tokens(tokenizer, letter):
    assert len(tokenizer(letter, add_special_tokens=False)["input_ids"]) == 1
    assert len(tokenizer(" " + letter, add_special_tokens=False)["input_ids"]) == 1
    assert len(tokenizer("Answer: " + letter, add_special_tokens=False)["input_ids"]) == 3  # "Answer", ":", " X"


def test_every_suite_word_is_a_single_token(tokenizer):
    words = {w for text in synthetic.corpus() for w in text.split() if w.isalpha()}
    assert [w for w in words if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) != 1] == []


def test_chat_template_is_set_and_renders(tokenizer):
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Question: lop nili\nAnswer:"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>\nQuestion: lop nili\nAnswer:\n<|assistant|>\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|user|>") == ids[0]
    assert tokenizer.convert_tokens_to_ids("<|assistant|>") in ids


def test_decoding_round_trips(tokenizer):
    text = "Question: lop nili\nA) kozit\nB) vovos\nAnswer: B\n<|user|>\nÄ unseen wörd 42!"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_build_does_not_touch_the_global_torch_rng(tokenizer):
    import torch

    state = torch.random.get_rng_state()
    tiny_model.build_model(tokenizer)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.slow
def test_tokenizer_is_identical_across_processes(built, tmp_path):
    """A fresh interpreter with another hash seed trains byte-identical tokenizer files."""
    code = (
        "import sys; from pathlib import Path; from transfergrid import tiny_model; "
        "tiny_model.ensure_built(Path(sys.argv[1]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(tiny_model.__file__).parents[1]), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env, timeout=300)
    other = tmp_path / built.name
    _, mismatch, errors = filecmp.cmpfiles(built, other, _files(built), shallow=False)
    assert mismatch == [] and errors == []
