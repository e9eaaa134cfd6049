"""Configuration: precedence, type conversion and clear errors before any model is loaded."""

import pytest
import yaml

from transfergrid import cli
from transfergrid.config import (
    BaselineConfig,
    FinetuneConfig,
    MainConfig,
    load_config,
)


def test_defaults_are_the_paper_recipe():
    cfg = load_config(FinetuneConfig, [])
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (32, 64.0, 0.0)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (cfg.learning_rate, cfg.num_epochs, cfg.warmup_ratio, cfg.batch_size) == (5e-5, 3.0, 0.1, 8)


def test_precedence_defaults_overrides_yaml_cli(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"lora_r": 8, "learning_rate": 1e-3, "seed": 17}))
    overrides = {"learning_rate": 9.0, "num_epochs": 1}
    cfg = load_config(FinetuneConfig, ["--config", str(path), "--seed", "101"], overrides=overrides)
    assert cfg.num_epochs == 1.0  # model override beats the dataclass default
    assert cfg.learning_rate == 1e-3  # YAML beats the model override
    assert cfg.lora_r == 8 and cfg.lora_alpha == 16.0  # alpha follows r when not given
    assert cfg.seed == 101  # command line beats YAML


def test_types_lists_bools_and_none():
    cfg = load_config(MainConfig, ["--tasks", "a, b", "--limit", "none", "--dry_run", "--chat_template=false"])
    assert cfg.tasks == ["a", "b"] and cfg.limit is None and cfg.dry_run is True and cfg.chat_template is False


def test_empty_value_means_default():
    # MLproject passes undeclared-by-the-user params as ''
    cfg = load_config(FinetuneConfig, ["--source", "", "--config", "", "--seed", "42"])
    assert cfg.source == "" and cfg.seed == 42


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lora_rr", "3"], "unknown key 'lora_rr' in command line (did you mean 'lora_r'?)"),
        (["--lora_r", "0"], "lora_r must be a positive integer, got 0"),
        (["--lora_r", "x"], "lora_r: expected int, got 'x'"),
        (["--learning_rate", "-1"], "learning_rate must be > 0"),
        (["--source", "nodot"], "invalid cell 'nodot'"),
        (["--config", "/nonexistent.yaml"], "config file '/nonexistent.yaml' not found"),
        (["--recipe", "qlora"], "unknown recipe 'qlora' (did you mean 'lora'?); valid recipes: lora, full"),
    ],
)
def test_bad_values_name_the_value(argv, message):
    with pytest.raises(ValueError) as error:
        load_config(FinetuneConfig, argv)
    assert message in str(error.value)


def test_unknown_yaml_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("eval_batchsize: 4\n")
    with pytest.raises(ValueError, match=r"unknown key 'eval_batchsize' in config file .*did you mean 'eval_batch_size'"):
        load_config(BaselineConfig, ["--config", str(path)])


def test_entry_config_applies_model_recipe_and_exits_2_on_error(capsys):
    cfg = cli.load_entry_config(FinetuneConfig, [])
    assert cfg.learning_rate != 5e-5  # the tiny model's recommended learning rate
    assert cli.load_entry_config(FinetuneConfig, ["--learning_rate", "5e-5"]).learning_rate == 5e-5
    with pytest.raises(SystemExit) as exit_info:
        cli.load_entry_config(FinetuneConfig, ["--model", "builtin:tiny-lama"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'builtin:tiny-lama'" in err and "did you mean 'builtin:tiny-llama'" in err
