"""Units of work with their MLflow runs: baseline, finetune, evaluate, analysis, and the whole study.

Each job validates its inputs, computes its run key, reuses a FINISHED run with the same key, and
otherwise does the work inside a run that ends FINISHED, or FAILED with the reason in a tag.
Entry points are thin wrappers around these functions; `main` calls them in sequence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from transfergrid import analysis_run, claims, runkeys, stopping
from transfergrid.config import (
    AnalysisConfig,
    BaselineConfig,
    EvalConfig,
    EvaluateConfig,
    FinetuneConfig,
    MainConfig,
    StudyConfig,
    to_dict,
)
from transfergrid.data import Suite, get_suite, suite_cells
from transfergrid.grid import Cell, check_choice, delta_pp
from transfergrid.models import ModelSpec, check_loadable, is_hub_model, load_model, study_model
from transfergrid.tracking import names, reader, writer

logger = logging.getLogger(__name__)


@dataclass
class Study:
    """A validated study context: where runs go, which suite, model and target cells."""

    tracking_uri: str
    experiment_id: str | None  # None: a dry run's experiment that does not exist yet
    suite: Suite
    model: ModelSpec
    cells: list[Cell]
    models: dict = field(default_factory=dict)  # loaded base models, reused across jobs in a process
    claims: claims.Claims | None = None  # run-key claims: two processes never run one key at once

    def base_model(self, device: str | None):
        """The base (model, tokenizer), loaded once per process and reused by every evaluation."""
        if self.model.id not in self.models:
            self.models[self.model.id] = load_model(self.model, device)
        return self.models[self.model.id]


def study_models(cfg: StudyConfig, suite: Suite) -> list[str]:
    """The models a command runs: `--model`, or the suite's default models when it is empty."""
    return [cfg.model] if cfg.model else list(suite.models)


def open_study(
    cfg: StudyConfig, launcher_run_id: str | None = None, experiment_id: str | None = None, *, check_hub: bool = True,
    create: bool = True,
) -> Study:
    """Validate the suite, grid selection and model, and resolve the experiment, before any heavy work.

    Suite defaults are resolved into `cfg` (an empty `model` becomes the suite's single default model,
    an unset `chat_template` the suite's choice), so the logged config is the resolved one. With
    `check_hub`, Hub models and datasets that cannot be had (no network, not cached) fail here, in
    seconds (`hub.HubUnavailable`). When launched by `mlflow run`, the study lives in the experiment
    MLflow put the launcher run in; a queued job passes the `experiment_id` its grid was enqueued from.
    The tracking store is checked first (seconds, `stores.check_tracking_store`). With `create` off (a dry
    run) nothing is written: a missing experiment leaves `experiment_id` None (nothing recorded yet).
    """
    from transfergrid import hub

    suite = get_suite(cfg.suite)
    cells = suite_cells(suite, cfg.tasks, cfg.languages)
    models = study_models(cfg, suite)
    if len(models) != 1:
        raise ValueError(
            f"suite {suite.name!r} has {len(models)} default models; choose one with --model: {', '.join(models)}"
        )
    cfg.model = models[0]
    model = study_model(cfg)
    check_loadable(model)  # a GGUF model without its packages: say what to install, now
    if check_hub:
        hub.check_available(
            [(model.id, model.revision)] if is_hub_model(model) else [],
            suite.hub_datasets(cells) if hasattr(suite, "hub_datasets") else [],
            suite=cfg.suite, model_arg=model.id,
        )
    uri = writer.checked_tracking_uri(cfg.tracking_uri)
    if not experiment_id:
        if launcher_run_id:  # the experiment `mlflow run --experiment-name` made: tagged for the UI as ours are
            experiment_id = reader.get_run(uri, launcher_run_id).info.experiment_id
            if create:
                writer.prepare_experiment(uri, experiment_id)
        else:
            experiment_id = writer.ensure_experiment(uri, cfg.experiment) if create else writer.find_experiment(uri, cfg.experiment)
    key_claims = claims.Claims(
        claims.claims_url(uri, getattr(cfg, "storage", "")), heartbeat_interval=getattr(cfg, "heartbeat_interval", 30),
        grace_period=getattr(cfg, "grace_period", 120), poll_seconds=getattr(cfg, "poll_seconds", 2.0),
    )
    return resolve_defaults(cfg, Study(uri, experiment_id, suite, model, cells, claims=key_claims))


def resolve_defaults(cfg: StudyConfig, study: Study) -> Study:
    """Fill `cfg`'s suite defaults from an open study (a config made apart from the one that opened it,
    e.g. a queued job's): an empty `model` is the study's model, an unset `chat_template` the suite's.
    Run keys and logged configs therefore never depend on which config opened the study."""
    if not cfg.model:
        cfg.model = study.model.id
    if getattr(cfg, "chat_template", False) is None:
        cfg.chat_template = study.suite.chat_template
    if getattr(cfg, "chat_template", False):
        _check_chat_template(study.model, known=True)
    return study


def _check_chat_template(model: ModelSpec, tokenizer=None, known: bool = False) -> None:
    """Refuse an evaluation with the chat template on for a model that has none: before loading it where
    that is known (the built-in base model), else once its tokenizer is loaded."""
    from transfergrid.gguf_models import REAL_MODELS

    real = REAL_MODELS.get(model.id.removeprefix("builtin:")) if model.id.startswith("builtin:") else None
    lacks = (real is not None and not real.chat_template) if known else not getattr(tokenizer, "chat_template", None)
    if lacks:
        raise ValueError(f"model {model.id} has no chat template (a base model); evaluate it with --chat_template false")


def _data_version(suite: Suite, tasks) -> dict:
    return {"suite": suite.name, "suite_version": suite.version, "tasks": {t: suite.tasks[t].version for t in sorted(tasks)}}


def _model_payload(model: ModelSpec) -> dict:
    return {"model": model.id, "revision": model.revision}


def _eval_payload(study: Study, cfg: EvalConfig) -> dict:
    # Batch size and device change speed, not scores: they stay out of the key.
    payload = {
        "targets": [str(c) for c in study.cells],
        "chat_template": study.suite.chat_template if cfg.chat_template is None else cfg.chat_template,
        "limit": cfg.limit,
        **_data_version(study.suite, {c.task for c in study.cells}),
    }
    if cfg.exact_scoring:  # changes reduced-precision rounding; off keeps the keys of runs recorded before it
        payload["exact_scoring"] = True
    if cfg.protocol != "loglikelihood":  # the original protocol keeps its keys (runs recorded before CoT existed)
        payload |= {"protocol": cfg.protocol, "cot_prompt": cfg.cot_prompt, "cot_max_new_tokens": cfg.cot_max_new_tokens}
    return payload


def baseline_key(study: Study, cfg: BaselineConfig) -> str:
    """Run key of the base model's evaluation on the study's cells."""
    return runkeys.run_key("baseline", {**_model_payload(study.model), "seed": cfg.seed, **_eval_payload(study, cfg)})


def finetune_key(study: Study, cfg: FinetuneConfig, source: Cell) -> str:
    """Run key of one fine-tune: model, source cell and its data version, recipe, seed."""
    recipe = {k: v for k, v in to_dict(cfg).items() if k in _RECIPE_FIELDS}
    if cfg.recipe == "full":  # no adapter: the LoRA fields do not change the result
        recipe = {k: v for k, v in recipe.items() if k not in _LORA_FIELDS}
    if cfg.limit is not None:
        recipe["limit"] = cfg.limit
    return runkeys.run_key(
        "finetune",
        {**_model_payload(study.model), "source": str(source), "seed": cfg.seed, **recipe, **_data_version(study.suite, {source.task})},
    )


def evaluate_key(study: Study, cfg: EvalConfig, finetune_run_key: str) -> str:
    """Run key of one adapter's evaluation on the study's cells."""
    return runkeys.run_key("evaluate", {"finetune": finetune_run_key, **_eval_payload(study, cfg)})


_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora")
_RECIPE_FIELDS = (
    "recipe lora_r lora_alpha lora_dropout target_modules use_rslora learning_rate num_epochs warmup_ratio "
    "batch_size weight_decay max_grad_norm"
).split()


def _identity_tags(study: Study, cfg: StudyConfig, key: str) -> dict:
    return {
        names.MODEL: study.model.id,
        names.MODEL_FAMILY: study.model.family,
        names.MODEL_SIZE_B: study.model.size_b,
        names.SEED: cfg.seed,
        names.BENCHMARK_SUITE: study.suite.name,
        names.RUN_KEY: key,
    }


@contextlib.contextmanager
def claimed(study: Study, key: str, what: str):
    """Hold the claim of run key `key` (waiting while another process works on it); RUNNING runs of the key
    whose process is gone (killed, stopped, its machine rebooted) are marked FAILED as abandoned first."""
    if study.claims is None:
        yield
        return
    with study.claims.hold(key, what) as taken_over:
        fail_abandoned(study, key, taken_over)
        yield


def fail_abandoned(study: Study, key: str, taken_over: dict | None = None) -> None:
    """Mark FAILED the RUNNING runs of `key` whose process is gone: on this machine with its pid not running,
    or the holder of a claim just taken over. Runs of live processes (and of other machines) are left alone."""
    host = socket.gethostname()
    for run_id in reader.running_run_ids(study.tracking_uri, study.experiment_id, key):
        tags = reader.get_run(study.tracking_uri, run_id).data.tags
        run_host, run_pid = tags.get(names.HOST), int(tags.get(names.PID) or 0)
        gone = run_host == host and run_pid and run_pid != os.getpid() and not stopping.process_alive(run_pid)
        if gone or (taken_over and (taken_over["host"], int(taken_over["pid"])) == (run_host, run_pid)):
            writer.fail_run(study.tracking_uri, run_id, f"abandoned: its process {run_host}:{run_pid} is gone "
                                                        f"(found by {host}:{os.getpid()} rerunning run key {key})")


def _reuse(study: Study, key: str, what: str, launcher_run_id: str | None) -> str | None:
    done = reader.find_finished(study.tracking_uri, study.experiment_id, key)
    if done:
        logger.debug("%s already FINISHED as run %s (run_key %s): skipped", what, done, key)
        if launcher_run_id:
            writer.mark_reused(study.tracking_uri, launcher_run_id, done)
    return done


def run_baseline(
    cfg: BaselineConfig, *, study: Study | None = None, parent_run_id: str | None = None, launcher_run_id: str | None = None
) -> str:
    """Zero-shot evaluation of the base model on every cell; returns the baseline run id."""
    study = resolve_defaults(cfg, study or open_study(cfg, launcher_run_id))
    key = baseline_key(study, cfg)
    with claimed(study, key, "baseline"):
        return _baseline(study, cfg, key, parent_run_id, launcher_run_id)


def _baseline(
    study: Study, cfg: BaselineConfig, key: str, parent_run_id: str | None, launcher_run_id: str | None
) -> str:
    if done := _reuse(study, key, "baseline", launcher_run_id):
        return done
    tags = {**_identity_tags(study, cfg, key), names.RECIPE: "none", names.EVAL_PROTOCOL: cfg.protocol}
    with writer.open_run(
        study.tracking_uri, study.experiment_id, kind="baseline", tags=tags,
        run_name=f"baseline {study.model.id} seed={cfg.seed}", parent_run_id=parent_run_id, adopt_run_id=launcher_run_id,
    ) as run:
        run.log_config(to_dict(cfg))
        run.log_params(_params(cfg))
        model, tokenizer = study.base_model(cfg.device)
        result = _score(study, cfg, model, tokenizer, progress=f"baseline {study.model.id}")
        _log_evaluation(run, result)
        return run.run_id


def _score(study: Study, cfg: EvalConfig, model, tokenizer, progress: str):
    """Evaluate `model` on the study's cells with the configured protocol (log-likelihood or CoT)."""
    if cfg.chat_template:
        _check_chat_template(study.model, tokenizer)
    if cfg.protocol == "cot":
        from transfergrid.cot import generate_cells

        return generate_cells(
            model, tokenizer, study.suite, study.cells, cot_prompt=cfg.cot_prompt, max_new_tokens=cfg.cot_max_new_tokens,
            batch_size=cfg.eval_batch_size, chat_template=cfg.chat_template, limit=cfg.limit, progress=progress,
        )
    from transfergrid.evaluation import evaluate_cells

    return evaluate_cells(
        model, tokenizer, study.suite, study.cells, batch_size=cfg.eval_batch_size,
        chat_template=cfg.chat_template, limit=cfg.limit, progress=progress, exact=cfg.exact_scoring,
    )


def _params(cfg) -> dict:
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in to_dict(cfg).items()}


def _log_evaluation(run: writer.RunWriter, result) -> None:
    run.log_cell_metrics(result.metrics)
    run.log_metrics(
        {
            "eval/items_per_second": result.items_per_second, "eval/seconds": result.seconds,
            "eval/tokens_per_second": result.tokens_per_second, "eval/peak_memory_mb": result.peak_memory_mb,
            "eval/adapter_swap_seconds": result.swap_seconds, **result.extra_metrics,
        }
    )
    run.log_dataframe(result.predictions, names.PREDICTIONS_ARTIFACT)


def source_cell(study: Study, cfg: FinetuneConfig) -> Cell:
    """The source cell of a fine-tune: `cfg.source`, or the first trainable selected cell; must be in the suite
    and have a training format (an evaluation-only task is a target, never a source)."""
    trainable = [t for t, spec in study.suite.tasks.items() if spec.train_format is not None]
    cell = Cell.parse(cfg.source) if cfg.source else next((c for c in study.cells if c.task in trainable), study.cells[0])
    check_choice("task", cell.task, list(study.suite.tasks))
    check_choice(f"language of task {cell.task}", cell.language, list(study.suite.tasks[cell.task].languages))
    if cell.task not in trainable:
        raise ValueError(f"task {cell.task!r} is evaluation-only (its benchmark has no train_format): it cannot be a "
                         f"fine-tuning source; tasks that can: {', '.join(trainable) or '(none in this suite)'}")
    return cell


def run_finetune(
    cfg: FinetuneConfig, *, study: Study | None = None, parent_run_id: str | None = None, launcher_run_id: str | None = None,
    extra_tags: dict | None = None,
) -> str:
    """Fine-tune on one source cell (LoRA, or every weight with recipe `full`); returns the run id.

    Logs the curves per step and the adapter under `adapter/` (the whole model under `model/` for `full`).
    `extra_tags` (e.g. the Optuna study and trial of a queued job) are set on a new run only.
    """
    study = resolve_defaults(cfg, study or open_study(cfg, launcher_run_id))
    source = source_cell(study, cfg)
    key = finetune_key(study, cfg, source)
    with claimed(study, key, f"finetune {source}"):
        return _finetune(study, cfg, source, key, parent_run_id, launcher_run_id, extra_tags)


def _finetune(
    study: Study, cfg: FinetuneConfig, source: Cell, key: str, parent_run_id: str | None, launcher_run_id: str | None,
    extra_tags: dict | None,
) -> str:
    if done := _reuse(study, key, f"finetune {source}", launcher_run_id):
        return done
    from transfergrid.training import check_target_modules, train_adapter

    full = cfg.recipe == "full"
    model, tokenizer = load_model(study.model, cfg.device)  # fresh copy: LoRA wraps it in place
    if not full:
        check_target_modules(model, cfg.target_modules)  # a typo is refused before any run is created
    tags = {
        **_identity_tags(study, cfg, key), names.RECIPE: cfg.recipe, names.LORA_R: None if full else cfg.lora_r,
        names.SOURCE_TASK: source.task, names.SOURCE_LANGUAGE: source.language, names.SOURCE_CELL: str(source),
        **(extra_tags or {}),
    }
    with writer.open_run(
        study.tracking_uri, study.experiment_id, kind="finetune", tags=tags,
        run_name=f"finetune {source} {'full' if full else f'r={cfg.lora_r}'} seed={cfg.seed}",
        parent_run_id=parent_run_id, adopt_run_id=launcher_run_id,
    ) as run, tempfile.TemporaryDirectory(prefix="transfergrid-ft-") as tmp:
        run.log_config(to_dict(cfg))
        run.log_params(_params(cfg))
        _fault_injection_pause()
        train_items = study.suite.items(source, "train")[: cfg.limit]
        validation_items = study.suite.items(source, "validation")[: cfg.limit]
        result = train_adapter(
            model, tokenizer, train_items, validation_items, study.suite.tasks[source.task].train_format,
            cfg, cfg, seed=cfg.seed, output_dir=Path(tmp), on_log=lambda metrics, step: run.log_metrics(_curve_names(metrics), step),
        )
        run.log_metrics(
            {
                "best_epoch": result.best_epoch, "best_eval_loss": result.best_eval_loss, "n_train": result.n_train,
                "n_validation": result.n_validation, "train_seconds": result.train_seconds,
                "train_tokens_per_second": result.tokens_per_second,
            }
        )
        run.log_dir(result.adapter_dir, names.FULL_MODEL_DIR if full else names.ADAPTER_DIR)
        return run.run_id


FAULT_SLEEP_ENV = "TRANSFERGRID_FAULT_SLEEP_S"  # tests: a worker sleeps inside its finetune run, to be killed there


def _fault_injection_pause() -> None:
    """Sleep `$TRANSFERGRID_FAULT_SLEEP_S` seconds with the finetune run open (fault-injection tests only)."""
    import os
    import time

    if seconds := float(os.environ.get(FAULT_SLEEP_ENV) or 0):
        logger.warning("fault injection: sleeping %.0f s inside the finetune run", seconds)
        time.sleep(seconds)


def _curve_names(metrics: dict[str, float]) -> dict[str, float]:
    """Trainer log keys -> grouped metric names: `loss` -> `train/loss`, `eval_loss` -> `eval/loss`."""
    return {
        (f"eval/{k[len('eval_'):]}" if k.startswith("eval_") else f"train/{k}"): v
        for k, v in metrics.items()
        if isinstance(v, (int, float))
    }


def run_evaluate(
    cfg: EvaluateConfig, *, study: Study | None = None, parent_run_id: str | None = None, launcher_run_id: str | None = None,
    extra_tags: dict | None = None,
) -> str:
    """Evaluate one finetune run's adapter on every cell, with Δ against the matching baseline.

    Returns the first evaluate run id of `run_evaluate_many` (the only one unless `cfg` names several).
    """
    return run_evaluate_many(
        cfg, study=study, parent_run_id=parent_run_id, launcher_run_id=launcher_run_id, extra_tags=extra_tags
    )[0]


def run_evaluate_many(
    cfg: EvaluateConfig, *, study: Study | None = None, parent_run_id: str | None = None, launcher_run_id: str | None = None,
    extra_tags: dict | None = None,
) -> list[str]:
    """Evaluate every selected finetune run's adapter on one loaded base model, swapping PEFT adapters.

    The finetune runs are `cfg.finetune_run_ids` (plus `cfg.finetune_run_id`), or those matching
    `cfg.finetune_filter`, or the newest one. Adapters whose evaluation is already FINISHED (same run
    key) are skipped without loading. One evaluate run per adapter, each with its Δ against the baseline;
    with several, the runs of an `mlflow run` launcher are nested under it instead of adopting it.

    Returns:
        The evaluate run ids, in the order of the finetune runs.
    """
    from transfergrid.adapters import AdapterHost

    reader.check_filter(cfg.finetune_filter, "--finetune_filter")
    study = resolve_defaults(cfg, study or open_study(cfg, launcher_run_id))
    ft_runs = _finetune_runs(study, cfg)
    single = len(ft_runs) == 1
    adopt, parent = (launcher_run_id, parent_run_id) if single else (None, parent_run_id or launcher_run_id)
    run_ids: dict[str, str] = {}
    todo = []
    for ft_run in ft_runs:
        key = evaluate_key(study, cfg, ft_run.data.tags[names.RUN_KEY])
        if done := _reuse(study, key, f"evaluate {ft_run.info.run_id}", adopt):
            run_ids[ft_run.info.run_id] = done
        else:
            _check_weights(study, ft_run)
            todo.append((ft_run, key))
    if todo:
        baseline_cfg = subconfig(BaselineConfig, cfg)
        baseline_id = run_baseline(baseline_cfg, study=study, parent_run_id=parent)
        base_scores = names.cell_values(reader.get_run(study.tracking_uri, baseline_id).data.metrics, "score")
        model, tokenizer = study.base_model(cfg.device)
        run_args = {"parent_run_id": parent, "adopt_run_id": adopt, "extra_tags": extra_tags}
        with AdapterHost(model) as host:
            for ft_run, key in todo:
                with claimed(study, key, f"evaluate {ft_run.info.run_id}"):
                    if not (done := _reuse(study, key, f"evaluate {ft_run.info.run_id}", adopt)):
                        done = _evaluate_one(study, cfg, host, ft_run, key, (baseline_id, base_scores), **run_args)
                run_ids[ft_run.info.run_id] = done
            study.models[study.model.id] = (host.close(), tokenizer)
        logger.debug("evaluated %d fine-tunes on one base model (%.2f s swapping adapters)", len(todo), host.swap_seconds)
    return [run_ids[run.info.run_id] for run in ft_runs]


def _evaluate_one(
    study: Study, cfg: EvaluateConfig, host, ft_run, key: str, baseline: tuple, *, extra_tags: dict | None = None, **run_args
) -> str:
    """One evaluate run: download the adapter, activate it on the shared base (or load a full fine-tune), score, log Δ."""
    baseline_id, base_scores = baseline
    source = Cell(ft_run.data.tags[names.SOURCE_TASK], ft_run.data.tags[names.SOURCE_LANGUAGE])
    full = ft_run.data.tags.get(names.RECIPE) == "full"
    tags = {
        **_identity_tags(study, cfg, key), names.RECIPE: ft_run.data.tags.get(names.RECIPE),
        names.LORA_R: ft_run.data.tags.get(names.LORA_R), names.SOURCE_TASK: source.task,
        names.SOURCE_LANGUAGE: source.language, names.SOURCE_CELL: str(source), names.FINETUNE_RUN_ID: ft_run.info.run_id, names.BASELINE_RUN_ID: baseline_id,
        names.EVAL_PROTOCOL: cfg.protocol,
        **(extra_tags or {}),
    }
    with writer.open_run(
        study.tracking_uri, study.experiment_id, kind="evaluate", tags=tags,
        run_name=f"evaluate {source} seed={cfg.seed}", **run_args,
    ) as run, tempfile.TemporaryDirectory(prefix="transfergrid-ev-") as tmp:
        run.log_config({**to_dict(cfg), "finetune_run_id": ft_run.info.run_id})
        run.log_params(_params(cfg))
        artifact = names.FULL_MODEL_DIR if full else names.ADAPTER_DIR
        weights = reader.download_artifacts(study.tracking_uri, ft_run.info.run_id, artifact, Path(tmp))
        evaluate = _evaluate_full if full else _evaluate_adapter
        result = evaluate(study, cfg, host, weights, label=f"evaluate {source}")
        for cell, values in result.metrics.items():
            values[names.DELTA] = delta_pp(values["score"], base_scores[cell], values.get("n"))
        _log_evaluation(run, result)
        run.log_metrics(names.transfer_metrics(source, {cell: v[names.DELTA] for cell, v in result.metrics.items()}))
        return run.run_id


def _evaluate_adapter(study: Study, cfg: EvalConfig, host, adapter_dir: Path, label: str):
    """Activate an adapter on the shared base model (`host`, an `AdapterHost`) and evaluate it."""
    swapped = host.swap_seconds
    peft_model = host.activate(adapter_dir)
    _, tokenizer = study.base_model(getattr(cfg, "device", None))
    result = _score(study, cfg, peft_model, tokenizer, progress=label)
    result.swap_seconds = host.swap_seconds - swapped
    return result


def _evaluate_full(study: Study, cfg: EvalConfig, host, model_dir: Path, label: str):
    """Load a full fine-tune's weights (recipe `full`, SPEC 1.18) and evaluate them; the shared base is untouched."""
    from transformers import AutoModelForCausalLM

    base, tokenizer = study.base_model(getattr(cfg, "device", None))
    param = next(base.parameters())
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=param.dtype).to(param.device)
    model.eval()
    return _score(study, cfg, model, tokenizer, progress=label)


def _finetune_runs(study: Study, cfg: EvaluateConfig) -> list:
    """The finetune runs to evaluate: the listed ids, those matching `cfg.finetune_filter`, or the newest.

    A filter selects FINISHED finetune runs of this model, suite and seed (Δ needs the baseline of the
    same seed), newest first.

    Raises:
        ValueError: nothing selected, or a listed run is not a FINISHED finetune run of this model.
    """
    scope = {names.MODEL: study.model.id, names.SEED: str(cfg.seed), names.BENCHMARK_SUITE: study.suite.name}
    run_ids = list(dict.fromkeys(([cfg.finetune_run_id] if cfg.finetune_run_id else []) + list(cfg.finetune_run_ids)))
    if cfg.finetune_filter:
        run_ids = reader.finished_run_ids(study.tracking_uri, study.experiment_id, "finetune", scope, cfg.finetune_filter)
        if not run_ids:
            raise ValueError(f"no FINISHED finetune run of model {study.model.id!r} seed {cfg.seed} matches {cfg.finetune_filter!r}")
    elif not run_ids:
        newest = reader.newest_finished(study.tracking_uri, study.experiment_id, "finetune", scope)
        if not newest:
            raise ValueError(
                f"no FINISHED finetune run of model {study.model.id!r} seed {cfg.seed} in this experiment; "
                "run the `finetune` entry point first or pass --finetune_run_id"
            )
        run_ids = [newest]
    return [_finetune_run(study, run_id) for run_id in run_ids]


def _finetune_run(study: Study, run_id: str):
    """The finetune run `run_id`, checked: FINISHED, kind finetune, trained on this study's model."""
    run = reader.get_run(study.tracking_uri, run_id)
    if run.data.tags.get(names.KIND) != "finetune" or run.info.status != "FINISHED":
        raise ValueError(
            f"run {run_id} is not a FINISHED finetune run (kind={run.data.tags.get(names.KIND)!r}, status={run.info.status})"
        )
    if run.data.tags.get(names.MODEL) != study.model.id:
        raise ValueError(f"finetune run {run_id} trained model {run.data.tags.get(names.MODEL)!r}, not --model {study.model.id!r}")
    return run


def _check_weights(study: Study, run) -> None:
    """Before any evaluation: the finetune run's adapter (or full model) files are still in the artifact store.

    Raises:
        ValueError: they are gone; the message names the run and how to redo it.
    """
    artifact = names.FULL_MODEL_DIR if run.data.tags.get(names.RECIPE) == "full" else names.ADAPTER_DIR
    if not reader.has_artifacts(study.tracking_uri, run.info.run_id, artifact):
        source = f"{run.data.tags.get(names.SOURCE_TASK)}.{run.data.tags.get(names.SOURCE_LANGUAGE)}"
        raise ValueError(
            f"finetune run {run.info.run_id} ({source}) is FINISHED but its {artifact}/ files are gone from "
            f"{run.info.artifact_uri}; to redo it, delete the run (mlflow runs delete --run-id {run.info.run_id}) "
            f"and run the same command again (finetune --source {source} with its settings, or main)")


@dataclass(frozen=True)
class PlannedJob:
    """One job of a study: its kind, source cell (None for the baseline), run key and model."""

    kind: str
    source: Cell | None
    key: str
    model: str = ""

    def __str__(self) -> str:
        return f"{self.kind:<9} {self.model}  {self.source or '(base model)'}  run_key={self.key}"


def subconfig(cls, cfg, **extra):
    """A `cls` config holding `cfg`'s values of the fields they share, plus `extra`."""
    return cls(**{k: v for k, v in to_dict(cfg).items() if k in cls.__dataclass_fields__}, **extra)


def plan_study(study: Study, cfg: MainConfig) -> list[PlannedJob]:
    """Every job of the study with its run key, computed before any work (all keys are content hashes)."""
    resolve_defaults(cfg, study)
    sources = [Cell.parse(text) for text in cfg.sources] or [  # evaluation-only tasks are targets only
        cell for cell in study.cells if study.suite.tasks[cell.task].train_format is not None]
    model = study.model.id
    plan = [PlannedJob("baseline", None, baseline_key(study, subconfig(BaselineConfig, cfg)), model)]
    for source in sources:
        ft_cfg = subconfig(FinetuneConfig, cfg, source=str(source))
        source_cell(study, ft_cfg)  # unknown source task/language fails here, before any work
        ft_key = finetune_key(study, ft_cfg, source)
        plan += [PlannedJob("finetune", source, ft_key, model), PlannedJob("evaluate", source, evaluate_key(study, cfg, ft_key), model)]
    return plan


def grid_key(plan: list[PlannedJob]) -> str:
    """Run key of the grid run of a study plan (claimed for the whole study: two `main` never run it twice)."""
    return runkeys.run_key("grid", {"jobs": [job.key for job in plan]})


def run_main(cfg: MainConfig, *, launcher_run_id: str | None = None, adopt: bool = True) -> list[PlannedJob]:
    """The whole study: baseline, every source's fine-tune and evaluation, then the analysis.

    Without `--model`, every default model of the suite in turn (the paper's nine), one grid run each
    (an `mlflow run` launcher run becomes the first model's grid run). Jobs whose run key is already
    FINISHED are skipped; when nothing is left to do, no run is created. With `cfg.workers` > 0 the jobs
    go through the queue instead (`gridjobs.run_main_on_workers`).

    Returns:
        The plan (for `--dry_run`, nothing else happens).
    """
    from dataclasses import replace

    models = study_models(cfg, get_suite(cfg.suite))
    if len(models) > 1:
        return [
            job
            for i, model in enumerate(models)
            for job in run_main(replace(cfg, model=model), launcher_run_id=launcher_run_id, adopt=i == 0)
        ]
    if cfg.workers and not cfg.dry_run:  # the queue: N local worker processes claim the jobs from the Optuna storage
        from transfergrid import gridjobs

        return gridjobs.run_main_on_workers(cfg, launcher_run_id=launcher_run_id if adopt else None)
    study = open_study(cfg, launcher_run_id, check_hub=not cfg.dry_run, create=not cfg.dry_run)
    launcher_run_id = launcher_run_id if adopt else None
    plan = plan_study(study, cfg)
    if cfg.dry_run:
        return plan
    key = grid_key(plan)
    with claimed(study, key, f"the study of {study.model.id} on {study.suite.name}"):  # a second `main` waits, reuses
        _run_study(study, cfg, plan, key, launcher_run_id)
    return plan


def _run_study(study: Study, cfg: MainConfig, plan: list[PlannedJob], key: str, launcher_run_id: str | None) -> None:
    from transfergrid import console

    pending = [job for job in plan if not reader.find_finished(study.tracking_uri, study.experiment_id, job.key)]
    analysis_cfg = AnalysisConfig(experiment=cfg.experiment, tracking_uri=cfg.tracking_uri)
    logger.info("%d of %d jobs to run (%d already FINISHED)", len(pending), len(plan), len(plan) - len(pending))
    if not pending and analysis_done(study, analysis_cfg):
        logger.info("nothing to do: every job and the analysis are FINISHED")
        if launcher_run_id:
            writer.mark_reused(study.tracking_uri, launcher_run_id, "(all jobs of this study)")
        return
    tags = {names.MODEL: study.model.id, names.BENCHMARK_SUITE: study.suite.name, names.SEED: cfg.seed,
            names.RUN_KEY: key}
    with writer.open_run(
        study.tracking_uri, study.experiment_id, kind="grid", tags=tags,
        run_name=f"study {study.model.id} {study.suite.name} seed={cfg.seed}", adopt_run_id=launcher_run_id,
    ) as grid:
        grid.log_config(to_dict(cfg))
        grid.log_text("\n".join(map(str, plan)) + "\n", "plan.txt")
        finetune_ids: dict[Cell, str] = {}
        with console.progress(total=len(plan), desc="study jobs", unit="job") as jobs_done:
            for job in plan:
                jobs_done.set_postfix_str(f"{job.kind} {job.source or job.model}")
                finetune_ids |= _run_job(study, cfg, job, finetune_ids, grid.run_id)
                jobs_done.update(1)
        grid.log_metrics({"jobs_total": len(plan), "jobs_run": len(pending)})
        analysis_run.run_analysis(analysis_cfg, experiment_id=study.experiment_id, parent_run_id=grid.run_id)


def describe_plan(cfg: MainConfig, plan: list[PlannedJob]) -> str:
    """The `--dry_run` report: the target cells (`task.language`), the models, and every planned job."""
    suite = get_suite(cfg.suite)
    cells = suite_cells(suite, cfg.tasks, cfg.languages)
    models = list(dict.fromkeys(job.model for job in plan))
    lines = [f"suite: {suite.name} (version {suite.version})", f"{len(cells)} cells:"]
    lines += [f"  {cell}" for cell in cells]
    lines.append(f"{len(models)} models:")
    for model_id in models:
        spec = study_model(cfg, model_id)
        lines.append(f"  {spec.id:<36} family={spec.family:<10} size_b={spec.size_b:g} bucket={spec.size_bucket}")
    counts = {kind: sum(job.kind == kind for job in plan) for kind in ("baseline", "finetune", "evaluate")}
    lines.append(f"{len(plan)} planned jobs ({', '.join(f'{n} {k}' for k, n in counts.items())}), seed {cfg.seed}:")
    lines += [f"  {job}" for job in plan]
    return "\n".join(lines)


def _run_job(study: Study, cfg: MainConfig, job: PlannedJob, finetune_ids: dict, parent: str) -> dict:
    if job.kind == "baseline":
        run_baseline(subconfig(BaselineConfig, cfg), study=study, parent_run_id=parent)
        return {}
    if job.kind == "finetune":
        ft_cfg = subconfig(FinetuneConfig, cfg, source=str(job.source))
        return {job.source: run_finetune(ft_cfg, study=study, parent_run_id=parent)}
    ev_cfg = subconfig(EvaluateConfig, cfg, finetune_run_id=finetune_ids[job.source])
    run_evaluate(ev_cfg, study=study, parent_run_id=parent)
    return {}


def analysis_done(study: Study, cfg: AnalysisConfig) -> bool:
    """Whether the analysis of the FINISHED runs `cfg` selects is itself FINISHED already."""
    try:
        _, _, key, _ = analysis_run.analysis_inputs(study.tracking_uri, study.experiment_id, cfg)
    except ValueError:
        return False
    return reader.find_finished(study.tracking_uri, study.experiment_id, key) is not None


def study_summary(cfg: MainConfig, plan: list[PlannedJob], *, experiment_id: str, since_ms: int) -> str:
    """What `main` ends with: runs created and reused, the regime table of the newest analysis, where its
    report is, and the link to the study's view in the MLflow UI (numbers rounded for display only)."""
    from transfergrid.tracking import ui

    from urllib.parse import urlparse

    uri = writer.resolve_tracking_uri(cfg.tracking_uri)
    base = ui.ui_base_url(uri)
    starts = [reader.get_run(uri, run_id).info.start_time
              for job in plan if (run_id := reader.find_finished(uri, experiment_id, job.key))]
    created = sum(start >= since_ms for start in starts)
    lines = [f"job runs: {created} created, {len(starts) - created} reused (already FINISHED)"
             + (f", {len(plan) - len(starts)} of {len(plan)} jobs not FINISHED" if len(starts) < len(plan) else "")]
    analysis_id = reader.newest_finished(uri, experiment_id, "analysis", {})
    if analysis_id:
        analysis = reader.get_run(uri, analysis_id)
        metrics = analysis.data.metrics
        lines.append(f"{'regime':<12} {'n':>5} {'mean Δ (pp)':>12} {'win rate':>9} {'harm rate':>10}")
        for label, metric in {**names.REGIME_METRIC, "all transfer": "transfer/all_transfer"}.items():
            prefix = "regime/" + metric.split("/", 1)[1]
            if metrics.get(f"{prefix}/n"):  # regimes without cells (one task or one language) are left out
                lines.append(f"{label:<12} {metrics[f'{prefix}/n']:>5.0f} {metrics.get(f'{prefix}/mean_delta', float('nan')):>+12.2f} "
                             f"{metrics.get(f'{prefix}/win_rate', float('nan')):>8.1f}% "
                             f"{metrics.get(f'{prefix}/harm_rate', float('nan')):>9.1f}%")
        location = f"{analysis.info.artifact_uri.rstrip('/')}/report.html"
        if location.startswith("file://"):
            location = str(Path(urlparse(location).path))
        lines.append(f"report: {location}")
        lines.append(f"  in the UI: {ui.run_url(base, experiment_id, analysis_id, 'report.html')}")
    lines.append(f"MLflow UI, the evaluate runs side by side: {ui.runs_url(base, experiment_id)}")
    if hint := ui.open_hint(uri):
        lines.append(f"  (serve it first: make ui, or {hint})")
    return "\n".join(lines)
