"""Bad input, dead stores and read-only commands: one-line errors (exit 2) before any work, and nothing written.

Most checks call the entry points in-process (fast); what only a real process shows (an uncaught
traceback, the time a dead store costs) runs them as subprocesses. None of these tests trains, except the
two that need a real fine-tune (a diverging one, and one whose adapter files are then deleted).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest

import helpers_queue as hq
from entrypoints import analysis as analysis_entry
from entrypoints import evaluate as evaluate_entry
from entrypoints import finetune as finetune_entry
from entrypoints import grid as grid_entry
from entrypoints import main as main_entry
from entrypoints import status as status_entry
from entrypoints import worker as worker_entry
from transfergrid import console, jobs
from transfergrid.config import FinetuneConfig, MainConfig, load_config
from transfergrid.tracking import names, writer

QUICK_FINETUNE = ["--limit", "8", "--num_epochs", "1", "--batch_size", "2"]


def run_entry(entry: str, *args: str, cwd: Path, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """`python -m entrypoints.<entry> args` in `cwd`; returns the finished process (stdout, stderr, returncode)."""
    return subprocess.run([sys.executable, "-m", f"entrypoints.{entry}", *args], cwd=cwd, env=hq.env(**env),
                          capture_output=True, text=True, timeout=timeout)


def exits_2(entry, argv, capsys) -> str:
    """Call an entry point's `main(argv)` in-process; it must exit with status 2; returns its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        entry.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def all_runs(uri: str):
    return mlflow.MlflowClient(uri).search_runs([e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()])


# --- YAML values are never silently changed ---------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [("lora_r: true\n", "lora_r"), ("lora_r: 8.7\n", "lora_r"),
                                       ("seed: 42.9\n", "seed"), ("limit: 2.5\n", "limit"),
                                       ("learning_rate: .inf\n", "learning_rate"), ("lora_dropout: .nan\n", "lora_dropout")])
def test_yaml_value_of_the_wrong_type_is_refused_naming_file_and_key(tmp_path, text, key):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_config(FinetuneConfig, ["--config", str(path)])
    assert str(error.value).startswith(f"{key}: expected") and f"config file {path}" in str(error.value)


def test_yaml_duplicate_key_is_refused_naming_file_key_and_line(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("lora_r: 8\nseed: 17\nlora_r: 16\n")
    with pytest.raises(ValueError, match=rf"config file {path}, line 3, column 1: key 'lora_r' is given twice"):
        load_config(FinetuneConfig, ["--config", str(path)])


def test_malformed_yaml_is_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "study.yaml").write_text("lora_r: [8\nseed: 17\n")
    done = run_entry("main", "--config", "study.yaml", "--dry_run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: config file study.yaml, line 2, column 5: expected ',' or ']', but got ':'"


# --- recipe values refused before a run is created ----------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--learning_rate", "inf"], "learning_rate: expected a finite number, got 'inf'"),
    (["--learning_rate", "nan"], "learning_rate: expected a finite number, got 'nan'"),
    (["--warmup_ratio", "nan"], "warmup_ratio: expected a finite number"),
    (["--lora_alpha", "0"], "lora_alpha must be > 0"),
    (["--lora_alpha", "-16"], "lora_alpha must be > 0"),
    (["--seed", "-1"], "seed must be an integer from 0 to 4294967295, got -1"),
    (["--device", "gpu0"], "unknown device 'gpu0'; valid: cpu, cuda, cuda:<index>, mps"),
    (["--tasks", ","], "tasks: empty entry in ','"),
])
def test_bad_recipe_values_exit_2_before_any_run(tracking_uri, capsys, argv, message):
    assert message in exits_2(finetune_entry, argv, capsys)
    assert not all_runs(tracking_uri)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_exits_2(tracking_uri, capsys):
    assert "device 'cuda': this machine has 0 CUDA GPUs" in exits_2(finetune_entry, ["--device", "cuda"], capsys)
    assert not all_runs(tracking_uri)


@pytest.mark.slow
def test_target_module_typo_exits_2_before_the_finetune_run(tracking_uri, capsys):
    err = exits_2(finetune_entry, ["--target_modules", "q_prj,v_proj", *QUICK_FINETUNE], capsys)
    assert "LoRA target module(s) 'q_prj' not found" in err and "q_proj" in err
    assert not all_runs(tracking_uri)


@pytest.mark.slow
def test_diverging_finetune_ends_failed_and_is_not_reused(tracking_uri, capsys):
    argv = ["--learning_rate", "1e30", *QUICK_FINETUNE]
    assert "training diverged: loss is nan" in exits_2(finetune_entry, argv, capsys)
    assert console._depth == 0  # the training steps' display closed too: later displays keep their level
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags[names.FAILURE_REASON].startswith("TrainingDiverged: training diverged")
    assert "adapter" not in {a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(run.info.run_id)}
    cfg = load_config(FinetuneConfig, argv)  # its run key is not FINISHED: a rerun trains again, never reuses it
    study = jobs.open_study(cfg)
    key = jobs.finetune_key(study, cfg, jobs.source_cell(study, cfg))
    assert run.data.tags[names.RUN_KEY] == key and jobs._reuse(study, key, "finetune", None) is None


# --- duplicates and nonsense counts -------------------------------------------------------------------------------

def test_duplicate_sources_and_negative_max_jobs_exit_2(tracking_uri, capsys):
    err = exits_2(grid_entry, ["--sources", "syn_lookup.xs1,syn_lookup.xs1", "--dry_run"], capsys)
    assert "sources: syn_lookup.xs1 given twice (command line)" in err
    assert "max_jobs must be >= 0" in exits_2(worker_entry, ["--max_jobs", "-1"], capsys)
    assert load_config(MainConfig, ["--sources", "syn_lookup.xs1,syn_lookup.xs2"]).sources == ["syn_lookup.xs1", "syn_lookup.xs2"]


# --- filters ----------------------------------------------------------------------------------------------------

def test_filters_with_a_bad_comparator_exit_2_naming_the_valid_ones(tracking_uri, capsys):
    for entry, flag in ((analysis_entry, "--filter"), (evaluate_entry, "--finetune_filter")):
        err = exits_2(entry, [flag, "tags.model == 'builtin:tiny-llama'"], capsys)
        assert f"invalid {flag} \"tags.model == 'builtin:tiny-llama'\": comparator '==' cannot compare tags.model" in err
        assert "valid comparators: =, !=, LIKE, ILIKE, IS NULL, IS NOT NULL" in err
    assert not all_runs(tracking_uri) and mlflow.MlflowClient(tracking_uri).get_experiment_by_name("transfergrid") is None


# --- read-only commands write nothing -----------------------------------------------------------------------------

def test_dry_runs_and_a_mistyped_experiment_create_nothing(tracking_uri, tmp_path, capsys):
    writer.ensure_experiment(tracking_uri, "other")  # a store that exists, without the study's experiment
    main_entry.main(["--dry_run"])
    done = grid_entry.main(["--dry_run"])
    assert done.to_enqueue == len(done.plan) // 2 + 1  # every job would be enqueued: nothing is FINISHED or queued
    err = exits_2(analysis_entry, ["--experiment", "othr"], capsys)
    assert "no experiment 'othr' on" in err and "did you mean 'other'" in err
    assert {e.name for e in mlflow.MlflowClient(tracking_uri).search_experiments()} == {"Default", "other"}
    assert not (tmp_path / "optuna.db").exists()


def test_status_and_worker_on_a_mistyped_storage_exit_2_creating_nothing(tracking_uri, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuan.db'}"
    for entry in (status_entry, worker_entry):
        err = exits_2(entry, ["--storage", storage], capsys)
        assert f"no Optuna storage at {storage}" in err
    assert not (tmp_path / "optuan.db").exists()


def test_relative_sqlite_urls_are_made_absolute_and_said(tmp_path):
    done = run_entry("grid", "--dry_run", "--storage", "sqlite:///queue.db", cwd=tmp_path,
                     MLFLOW_TRACKING_URI="sqlite:///runs.db")
    assert done.returncode == 0, done.stderr
    assert f"tracking URI sqlite:///runs.db is a path relative to the current folder: using sqlite:///{tmp_path}/runs.db" \
        in done.stderr
    assert f"Optuna storage sqlite:///queue.db is a path relative to the current folder: using sqlite:///{tmp_path}/queue.db" \
        in done.stderr
    assert f"on sqlite:///{tmp_path}/queue.db" in done.stdout


# --- queue with a mistyped study, and status without a tracking server ----------------------------------------------

def test_worker_study_typo_lists_studies_and_status_shows_the_queue_without_tracking_server(tracking_uri, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    grid_entry.main(["--storage", storage, "--sources", "syn_lookup.xs1"])
    capsys.readouterr()
    err = exits_2(worker_entry, ["--storage", storage, "--study_name", "grid-transfergrd"], capsys)
    assert "unknown study 'grid-transfergrd' (did you mean 'grid-transfergrid'?) in this storage; its studies: " \
           "grid-transfergrid" in err
    status_entry.main(["--storage", storage, "--tracking_uri", "http://tg:s3cret@127.0.0.1:9"])
    out = capsys.readouterr().out
    assert "study grid-transfergrid: 2 jobs: 0 done, 0 running, 2 waiting, 0 failed" in out
    assert "runs: not shown: tracking server http://tg:***@127.0.0.1:9 is not reachable" in out and "s3cret" not in out


# --- dead, unwritable and unsupported tracking stores: one line, in seconds, password masked ------------------------

@pytest.mark.parametrize("uri, message", [
    ("http://tg:s3cret@127.0.0.1:9", "error: tracking server http://tg:***@127.0.0.1:9 is not reachable"),
    ("file:///tmp/mlruns", "error: tracking URI 'file:///tmp/mlruns': MLflow's file store is in maintenance mode"),
    ("foo://bar", "error: unsupported tracking URI 'foo://bar' (scheme 'foo')"),
    ("postgresql://tg:s3cret@127.0.0.1:9/mlflow",
     "error: tracking store postgresql+psycopg2://tg:***@127.0.0.1:9/mlflow cannot be reached"),
    ("sqlite:///{tmp}/notes.txt/mlflow.db", "error: tracking store sqlite:///{tmp}/notes.txt/mlflow.db: {tmp}/notes.txt is a file, not a folder"),
])
def test_unusable_tracking_store_fails_fast_in_one_line(tmp_path, uri, message):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    uri, message = uri.format(tmp=tmp_path), message.format(tmp=tmp_path)
    done = run_entry("main", cwd=tmp_path, MLFLOW_TRACKING_URI=uri)  # times: benchmarks/store_check.py
    assert done.returncode == 2 and done.stderr.strip().startswith(message), done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_postgresql_tracking_uri_uses_the_installed_driver(tmp_path):
    database = hq.create_database()
    try:
        done = run_entry("main", "--dry_run", cwd=tmp_path, MLFLOW_TRACKING_URI=f"postgresql://postgres@127.0.0.1:5432/{database}")
        assert done.returncode == 0, done.stderr
        assert "planned jobs" in done.stdout
    finally:
        hq.drop_database(database)


def test_uncaught_traceback_and_logs_mask_url_passwords(tmp_path):
    code = ("import logging; from transfergrid import cli; cli.setup_logging(); "
            "logging.getLogger('mlflow').warning('retrying http://tg:s3cret@host:5000/api'); "
            "raise RuntimeError('GET http://tg:s3cret@host:5000/api failed')")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=hq.env(), capture_output=True, text=True)
    assert done.returncode == 1 and "RuntimeError: GET http://tg:***@host:5000/api failed" in done.stderr
    assert "WARNING mlflow: retrying http://tg:***@host:5000/api" in done.stderr
    assert "s3cret" not in done.stderr


# --- a FINISHED finetune whose adapter files are gone -----------------------------------------------------------------

@pytest.mark.slow
def test_evaluating_a_finetune_whose_adapter_is_gone_names_the_run_and_the_fix(tracking_uri, tmp_path, capsys):
    run_id = finetune_entry.main(QUICK_FINETUNE)
    shutil.rmtree(Path(urlparse(mlflow.get_run(run_id).info.artifact_uri).path) / names.ADAPTER_DIR)
    capsys.readouterr()
    err = exits_2(evaluate_entry, ["--finetune_run_id", run_id, "--limit", "8"], capsys)
    assert f"finetune run {run_id} (" in err and "is FINISHED but its adapter/ files are gone" in err
    assert f"mlflow runs delete --run-id {run_id}" in err
    assert [r.data.tags[names.KIND] for r in all_runs(tracking_uri)] == ["finetune"]  # no evaluate run was opened


@pytest.mark.e2e
def test_a_running_tracking_server_passes_the_check(tmp_path):
    server, url = hq.start_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log")
    try:
        with_password = url.replace("http://", "http://tg:s3cret@")  # a server without authentication ignores it
        for uri in (url, with_password):
            done = run_entry("main", "--dry_run", cwd=tmp_path, MLFLOW_TRACKING_URI=uri)
            assert done.returncode == 0 and "planned jobs" in done.stdout, done.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
