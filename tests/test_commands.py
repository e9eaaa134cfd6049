"""The installed `transfergrid` command: same arguments and help as the entry points, usable from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transfergrid import hub
from transfergrid.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
COMMAND = shutil.which("transfergrid", path=str(Path(sys.executable).parent))


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "PYTHONPATH")}
    return {**env, **extra}


def test_transfergrid_command_is_installed_with_every_entry_point():
    assert COMMAND, f"no `transfergrid` script beside {sys.executable}: the package's console script is missing"
    assert set(COMMANDS) == {p.stem for p in (ROOT / "entrypoints").glob("*.py") if p.stem != "__init__"}
    listing = subprocess.run([COMMAND, "--help"], capture_output=True, text=True, check=True).stdout
    assert all(f"  {name} " in listing for name in COMMANDS)


def test_unknown_command_names_the_valid_ones(tmp_path):
    done = subprocess.run([COMMAND, "fine-tune"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "unknown command 'fine-tune'" in done.stderr and "finetune" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing created


@pytest.mark.parametrize("name", ["baseline", "main"])
def test_help_is_the_same_as_the_entry_points(tmp_path, name):
    installed = subprocess.run([COMMAND, name, "--help"], capture_output=True, text=True, cwd=tmp_path, env=_env())
    module = subprocess.run([sys.executable, "-m", f"entrypoints.{name}", "--help"], capture_output=True, text=True,
                            cwd=ROOT, env=_env())
    assert installed.returncode == module.returncode == 0, installed.stderr + module.stderr
    assert installed.stdout == module.stdout
    assert "--seed" in installed.stdout and "default: 42" in installed.stdout and f"transfergrid {name}" in installed.stdout


@pytest.mark.slow
def test_command_runs_from_any_folder_and_keeps_its_store_there(tmp_path):
    """From a folder outside the checkout (where `python -m entrypoints...` cannot import), without
    MLFLOW_TRACKING_URI: the runs go to ./mlflow.db and ./mlartifacts of that folder, none into the checkout."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    before = {p.name for p in ROOT.iterdir()}
    args = ["baseline", "--tasks", "syn_lookup", "--languages", "xn1", "--limit", "4"]
    done = subprocess.run([COMMAND, *args], capture_output=True, text=True, cwd=work, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "baseline run: " in done.stdout
    assert (work / "mlflow.db").is_file() and any((work / "mlartifacts").rglob("predictions.parquet"))
    assert {p.name for p in ROOT.iterdir()} == before
    unimportable = subprocess.run([sys.executable, "-m", "entrypoints.baseline", *args[1:]], capture_output=True, text=True,
                                  cwd=work, env=_env())
    assert "No module named 'entrypoints'" in unimportable.stderr  # what the installed command is for


def test_offline_hint_names_the_hub_model_but_never_a_local_model_path(tmp_path):
    missing = [("dataset", "CohereLabs/Global-MMLU-Lite", "abc")]
    hub_model = hub.missing_message(missing, "offline", suite="paper", model_arg="Qwen/Qwen2.5-0.5B-Instruct")
    assert "transfergrid prefetch --suite paper --model Qwen/Qwen2.5-0.5B-Instruct" in hub_model
    local = tmp_path / "my-model"
    local.mkdir()
    text = hub.missing_message(missing, "offline", suite="paper", model_arg=str(local))
    assert str(local) not in text and "--model" not in text  # the path would not exist on the machine with network
    assert "hf download CohereLabs/Global-MMLU-Lite --revision abc --repo-type dataset" in text
    assert "python -m entrypoints" not in hub_model + text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_no_internal_document(name, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"transfergrid.commands.{name}").main(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0 and "keys (--key value" in text and "  --" in text
    assert not any(word in text for word in ("SPEC", "ARCHITECTURE", "STACK", "issue "))
