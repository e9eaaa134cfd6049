"""Configuration: dataclass defaults < model overrides < YAML file < command line, unknown keys rejected.

Every field name is unique across the nested dataclasses, so the command line (`--lora_r 16`), MLflow
parameters (`-P lora_r=16`) and YAML files (`lora_r: 16`) all use the same flat names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import yaml

from transfergrid.grid import Cell, suggest

PAPER_SEEDS = (17, 42, 101)
RECIPES = ("lora", "full")
ALPHA_RULES = ("2r", "rslora")  # ablation: alpha = 2r (the paper), or rsLoRA scaling alpha/sqrt(r) with alpha = 2r
SEVEN_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraConfig:
    """LoRA adapter (SPEC 1.5): r=32, alpha=2r, dropout 0, all seven projection modules."""

    recipe: str = "lora"  # lora | full (SPEC 1.18: every weight trained, no PEFT; the lora_* fields are unused)
    lora_r: int = 32
    lora_alpha: float | None = None  # None: 2 * lora_r, as the paper
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(SEVEN_PROJECTIONS))
    use_rslora: bool = False

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}{suggest(self.recipe, RECIPES)}; valid recipes: {', '.join(RECIPES)}")
        if self.lora_r <= 0:
            raise ValueError(f"lora_r must be a positive integer, got {self.lora_r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_alpha is None:
            self.lora_alpha = 2.0 * self.lora_r
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0 (the paper: 2 * lora_r), got {self.lora_alpha}")
        if not self.target_modules:
            raise ValueError("target_modules is empty; the paper uses " + ",".join(SEVEN_PROJECTIONS))


@dataclass
class TrainConfig:
    """Trainer recipe (SPEC 1.5): lr 5e-5 linear, 10% warmup, 3 epochs, batch 8, best-eval-loss epoch.

    The 90/10 train/validation split is the suite's (seed 42 whatever the experiment seed, SPEC 1.5).
    """

    learning_rate: float = 5e-5
    num_epochs: float = 3.0
    warmup_ratio: float = 0.1
    batch_size: int = 8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # speed only (equal losses): a batch's examples flattened into one row with per-example position ids
    # instead of padded to the longest; slower than padding on CPU sdpa, for flash-attention GPUs
    padding_free: bool = False

    def __post_init__(self) -> None:
        for name in ("learning_rate", "num_epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


PROTOCOLS = ("loglikelihood", "cot")
DEFAULT_COT_PROMPT = (
    "Think step by step, then give your final answer on the last line as 'Answer: X', "
    "where X is the letter of the correct option."
)


@dataclass
class EvalConfig:
    """Scoring options (SPEC 1.6) and the chain-of-thought protocol (SPEC 2)."""

    eval_batch_size: int = 32
    chat_template: bool | None = None  # None: the suite's default (paper: on, as lm-eval --apply_chat_template)
    # lm-eval's computation (one sequence per option text, no shared prefix), for its bf16/fp16 kernels
    # (log-probabilities stay float32); slower. Off: option texts packed, shared prefixes run once
    exact_scoring: bool = False
    protocol: str = "loglikelihood"  # loglikelihood (lm-eval multiple_choice) | cot (generate, extract the letter)
    cot_prompt: str = DEFAULT_COT_PROMPT  # appended after the lettered options in the cot protocol
    cot_max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.eval_batch_size <= 0:
            raise ValueError(f"eval_batch_size must be > 0, got {self.eval_batch_size}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}{suggest(self.protocol, PROTOCOLS)}; valid protocols: {', '.join(PROTOCOLS)}")
        if self.cot_max_new_tokens <= 0:
            raise ValueError(f"cot_max_new_tokens must be > 0, got {self.cot_max_new_tokens}")


@dataclass
class StudyConfig:
    """What every entry point shares: the model, the grid and where runs are recorded."""

    model: str = ""  # empty: the suite's default model(s): builtin:tiny-llama for synthetic, the nine for paper
    model_family: str = ""  # override the registry / inferred family label
    model_size_b: float | None = None  # override the registry / inferred size (billions)
    model_registry: str = ""  # extra model registry YAML (same schema as src/transfergrid/model_registry.yaml)
    suite: str = "synthetic"  # synthetic, paper, or a path to a suite YAML
    tasks: list[str] = field(default_factory=list)  # empty: every task of the suite
    languages: list[str] = field(default_factory=list)  # empty: every language
    limit: int | None = None  # items per cell for quick runs: first N of each test cell and of each train pool
    seed: int = 42
    experiment: str = "transfergrid"
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db
    device: str | None = None  # None: cuda if available, else cpu

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0 items per cell, got {self.limit}")
        check_seed("seed", self.seed)
        check_device(self.device)


MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit
_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")


def check_seed(name: str, seed: int) -> None:
    """A seed the random generators accept: 0 <= seed <= 2**32 - 1."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed}")


def check_device(device: str | None) -> None:
    """A torch device this machine has: cpu, cuda, cuda:<index>, mps; None is the default (cuda if available)."""
    if device is None:
        return
    valid = "valid: cpu, cuda, cuda:<index>, mps, or leave it empty (cuda if available, else cpu)"
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"unknown device {device!r}{suggest(device, ('cpu', 'cuda', 'mps'))}; {valid}")
    if device == "cpu":
        return
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' is not available on this machine; use --device cpu or leave it empty")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise ValueError(f"device {device!r}: this machine has {count} CUDA GPUs"
                         + (" (torch sees no CUDA)" if not count else f" (cuda:0 .. cuda:{count - 1})")
                         + "; use --device cpu or leave it empty")


@dataclass
class BaselineConfig(StudyConfig, EvalConfig):
    """`baseline`: zero-shot evaluation of the base model on every selected cell."""

    def __post_init__(self) -> None:
        StudyConfig.__post_init__(self)
        EvalConfig.__post_init__(self)


@dataclass
class FinetuneConfig(StudyConfig, LoraConfig, TrainConfig):
    """`finetune`: one adapter on one source cell."""

    source: str = ""  # task.language; empty: the first cell of the selected grid

    def __post_init__(self) -> None:
        StudyConfig.__post_init__(self)
        LoraConfig.__post_init__(self)
        TrainConfig.__post_init__(self)
        if self.source:
            Cell.parse(self.source)


@dataclass
class EvaluateConfig(StudyConfig, EvalConfig):
    """`evaluate`: a finetune run's adapter on every selected target cell."""

    finetune_run_id: str = ""  # empty (and no list or filter): the newest FINISHED finetune run of this model and seed
    finetune_run_ids: list[str] = field(default_factory=list)  # several finetune runs, one base model load
    finetune_filter: str = ""  # MLflow filter over FINISHED finetune runs of this model and seed

    def __post_init__(self) -> None:
        StudyConfig.__post_init__(self)
        EvalConfig.__post_init__(self)
        if self.finetune_filter and (self.finetune_run_id or self.finetune_run_ids):
            raise ValueError("give finetune_filter or finetune_run_id(s), not both")


@dataclass
class QueueConfig:
    """Where jobs wait (an Optuna RDB storage) and how a dead worker is noticed (heartbeats)."""

    storage: str = ""  # Optuna storage URL; empty: sqlite:///<cwd>/optuna.db (a team: postgresql://...)
    study_name: str = ""  # empty: grid-<experiment> / ablation-<experiment>-<hash of the search space>
    heartbeat_interval: int = 30  # seconds between a running job's heartbeats
    grace_period: int = 120  # seconds without a heartbeat after which a job counts as dead and is retried
    max_retries: int = 2  # retries of a job whose worker died; then the job stays FAILED with the reason

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0 or self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"need 0 < heartbeat_interval < grace_period, got {self.heartbeat_interval} and {self.grace_period}"
            )
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")


LAUNCHERS = ("local", "slurm")
_SLURM_TIME = re.compile(r"(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2}|UNLIMITED|INFINITE)")  # sbatch --time formats
_SLURM_MEM = re.compile(r"\d+[KMGT]?")  # sbatch --mem: a size, default unit megabytes
_SBATCH_OPTION = re.compile(r"(--[A-Za-z][\w-]*([= ][^\n]*)?|-[A-Za-z]( [^\n]*)?)")  # one option, one line


@dataclass
class LauncherConfig:
    """Where `--workers N` worker processes run: local processes, or a Slurm job array (one job per worker)."""

    workers: int = 0  # 0: no worker processes (main/ablation run the jobs in-process, grid only enqueues)
    launcher: str = "local"  # local | slurm (sbatch from a login node; the workers run on compute nodes)
    slurm_partition: str = ""  # empty: the cluster's default partition
    slurm_account: str = ""  # empty: the user's default account
    slurm_qos: str = ""  # empty: the account's default QOS
    slurm_time: str = ""  # time limit per worker in sbatch's format (24:00:00, 2-00:00:00); empty: the partition's
    slurm_gpus_per_worker: int = 0  # --gres=gpu:N per worker job
    slurm_cpus_per_worker: int = 1  # --cpus-per-task; the worker runs that many torch threads
    slurm_mem: str = ""  # memory per worker (64G); empty: the partition's default
    slurm_sbatch: list[str] = field(default_factory=list)  # extra #SBATCH options, e.g. constraint=a100 (YAML list
    # in a --config file where a value holds a comma)
    slurm_signal_seconds: int = 120  # Slurm sends the worker SIGUSR1 this long before the time limit: it gives its
    # job back at once (Slurm may send it up to a minute early); 0: no warning
    slurm_log_dir: str = ""  # folder of the batch script and the workers' logs; empty: ./slurm-logs/<study name>
    slurm_poll_seconds: float = 30.0  # how often main/ablation ask the scheduler while waiting for the workers

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.launcher!r}{suggest(self.launcher, LAUNCHERS)}; valid: {', '.join(LAUNCHERS)}")
        if self.launcher == "slurm" and not self.workers:
            raise ValueError("--launcher slurm submits --workers N worker jobs: give N > 0")
        if self.slurm_time and not _SLURM_TIME.fullmatch(self.slurm_time):
            raise ValueError(f"slurm_time {self.slurm_time!r} is not a Slurm time limit; valid forms: minutes, "
                             "hours:minutes:seconds, days-hours, days-hours:minutes:seconds (e.g. 24:00:00, 2-00:00:00)")
        if self.slurm_mem and not _SLURM_MEM.fullmatch(self.slurm_mem):
            raise ValueError(f"slurm_mem {self.slurm_mem!r} is not a memory size; valid: a number with an optional "
                             "unit K, M, G or T (e.g. 64G, 500M)")
        for name, value, low in (("slurm_gpus_per_worker", self.slurm_gpus_per_worker, 0),
                                 ("slurm_cpus_per_worker", self.slurm_cpus_per_worker, 1),
                                 ("slurm_signal_seconds", self.slurm_signal_seconds, 0)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.slurm_poll_seconds <= 0:
            raise ValueError(f"slurm_poll_seconds must be > 0, got {self.slurm_poll_seconds}")
        self.slurm_sbatch = [_sbatch_option(line) for line in self.slurm_sbatch]


def _sbatch_option(line: str) -> str:
    """An extra `#SBATCH` line as `--option[=value]`: `constraint=a100`, `--exclusive`, `#SBATCH -C a100` all work."""
    option = line.strip().removeprefix("#SBATCH").strip()
    option = option if option.startswith("-") else f"--{option}"
    if not _SBATCH_OPTION.fullmatch(option):
        raise ValueError(f"slurm_sbatch entry {line!r} is not one sbatch option; valid: e.g. constraint=a100, "
                         "--exclude=node7, --exclusive or '#SBATCH -C a100'")
    return option


@dataclass
class GridConfig(StudyConfig, LoraConfig, TrainConfig, EvalConfig, QueueConfig, LauncherConfig):
    """`grid`: enqueue the study's jobs (baseline, one fine-tune + evaluation per source) for `worker`s.

    With `--workers N`, also start N workers: local processes (grid waits for them) or a Slurm job array
    (grid returns once it is submitted).
    """

    sources: list[str] = field(default_factory=list)  # empty: every selected cell
    dry_run: bool = False

    def __post_init__(self) -> None:
        StudyConfig.__post_init__(self)
        LoraConfig.__post_init__(self)
        TrainConfig.__post_init__(self)
        EvalConfig.__post_init__(self)
        QueueConfig.__post_init__(self)
        LauncherConfig.__post_init__(self)
        for text in self.sources:
            Cell.parse(text)


@dataclass
class MainConfig(GridConfig):
    """`main`: baselines, every source's fine-tune and evaluation, then the analysis.

    `workers`: 0 runs every job in this process; N enqueues, starts N workers on the launcher, waits.
    """


@dataclass
class WorkerConfig(QueueConfig):
    """`worker`: claim enqueued jobs from the storage and run them until none is left."""

    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else the URI the job was enqueued with
    device: str | None = None
    max_jobs: int = 0  # 0: no limit
    torch_threads: int = 0  # 0: torch's default; `main --workers N` starts workers with 1 thread each
    wait: bool = True  # keep polling while other workers' jobs run (a dead one's job may come back)
    poll_seconds: float = 2.0

    def __post_init__(self) -> None:
        QueueConfig.__post_init__(self)
        check_device(self.device)
        for name in ("max_jobs", "torch_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: {'no limit' if name == 'max_jobs' else 'torch default'}), "
                                 f"got {getattr(self, name)}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be > 0, got {self.poll_seconds}")


@dataclass
class StatusConfig:
    """`status`: progress of the enqueued jobs (Optuna storage) and of their runs (tracking server)."""

    storage: str = ""  # empty: sqlite:///<cwd>/optuna.db
    study_name: str = ""  # empty: every study in the storage
    tracking_uri: str | None = None
    experiment: str = "transfergrid"


@dataclass
class AblationConfig(StudyConfig, LoraConfig, TrainConfig, EvalConfig, QueueConfig, LauncherConfig):
    """`ablation`: an Optuna study over LoRA rank, recipe, alpha rule and learning rate (SPEC 1.17, 1.18)."""

    ranks: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    recipes: list[str] = field(default_factory=lambda: ["lora"])  # add `full` for SPEC 1.18
    alpha_rules: list[str] = field(default_factory=lambda: ["2r"])  # 2r | rslora
    learning_rates: list[float] = field(default_factory=list)  # empty: learning_rate
    models: list[str] = field(default_factory=list)  # empty: model
    sources: list[str] = field(default_factory=list)  # empty: the first selected cell
    seeds: list[int] = field(default_factory=list)  # empty: seed

    def __post_init__(self) -> None:
        StudyConfig.__post_init__(self)
        LoraConfig.__post_init__(self)
        TrainConfig.__post_init__(self)
        EvalConfig.__post_init__(self)
        QueueConfig.__post_init__(self)
        LauncherConfig.__post_init__(self)
        for name, values, valid in (("recipes", self.recipes, RECIPES), ("alpha_rules", self.alpha_rules, ALPHA_RULES)):
            if not values:
                raise ValueError(f"{name} is empty; valid values: {', '.join(valid)}")
            for value in values:
                if value not in valid:
                    raise ValueError(f"unknown {name[:-1]} {value!r}{suggest(value, valid)}; valid: {', '.join(valid)}")
        if not self.ranks or any(r <= 0 for r in self.ranks):
            raise ValueError(f"ranks must be positive integers, got {self.ranks}")
        if any(lr <= 0 for lr in self.learning_rates):
            raise ValueError(f"learning_rates must be > 0, got {self.learning_rates}")
        for seed in self.seeds:
            check_seed("seeds", seed)
        for text in self.sources:
            Cell.parse(text)


@dataclass
class AnalysisConfig:
    """`analysis`: read FINISHED runs back and log the tables."""

    experiment: str = "transfergrid"
    tracking_uri: str | None = None
    filter: str = ""  # extra MLflow filter string, e.g. "tags.model = 'builtin:tiny-llama'"
    # Run selection; empty = all. Combined with `filter` by AND.
    models: list[str] = field(default_factory=list)  # tags.model
    suites: list[str] = field(default_factory=list)  # tags.benchmark_suite
    seeds: list[str] = field(default_factory=list)  # tags.seed (e.g. 42, or "mean" for seed-aggregated imports)
    recipes: list[str] = field(default_factory=list)  # tags.recipe (lora|full)
    lora_ranks: list[int] = field(default_factory=list)  # tags.lora_r
    # Per-cell significance from per-item predictions (downloads predictions.parquet of every run read):
    # None = on when the selection holds at most 200 evaluate runs, where the download stays cheap.
    significance: bool | None = None


IMPORT_FORMATS = ("auto", "csv", "lmeval")


@dataclass
class ImportConfig:
    """`import_results`: log an external results table or lm-eval output as baseline/evaluate runs."""

    path: str = ""  # a results CSV (seed-aggregated or per-seed), a directory of lm-eval results_*.json, or one .json
    experiment: str = "transfergrid"
    tracking_uri: str | None = None
    format: str = "auto"  # auto (a directory or a .json file is lmeval, another file csv) | csv | lmeval
    recipe: str = "lora"  # recipe tag of the imported evaluate runs (the paper: LoRA r = 32)
    lora_r: int = 32

    def __post_init__(self):
        if self.format not in IMPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(IMPORT_FORMATS)}, got {self.format!r}")


def _convert(name: str, text: Any, annotation: Any) -> Any:
    """Convert a command-line string or YAML value to the field's declared type, never silently changing it.

    A YAML `true` or `8.7` for an integer setting is refused (not read as 1 or 8), as is a non-finite float.
    """
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"Any": Any})  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        if text is None or (isinstance(text, str) and text.lower() in ("", "none", "null")):
            return None
        return _convert(name, text, args[0])
    if origin is list:
        if isinstance(text, str):
            parts = [part.strip() for part in text.split(",")]
            if not all(parts):
                raise ValueError(f"{name}: empty entry in {text!r}; give comma-separated values (a,b), "
                                 "or leave it out for the default")
            text = parts
        return [_convert(name, part, args[0]) for part in text]
    if annotation is bool:
        if isinstance(text, bool):
            return text
        if str(text).lower() in ("1", "true", "yes", "on"):
            return True
        if str(text).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}: expected true/false, got {text!r}")
    if annotation in (int, float) and (isinstance(text, bool) or (annotation is int and isinstance(text, float))):
        raise ValueError(f"{name}: expected {annotation.__name__}, got {text!r}")
    try:
        value = annotation(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {annotation.__name__}, got {text!r}") from None
    if annotation is float and not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {text!r}")
    return value


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_config_file(config_file: str) -> dict:
    """The `key: value` mapping of a YAML config file.

    Raises:
        ValueError: missing file, invalid YAML or a duplicate key (file and line named), not a mapping.
    """
    path = Path(config_file)
    if not path.is_file():
        raise ValueError(f"config file {config_file!r} not found (cwd: {os.getcwd()})")
    try:
        data = yaml.load(path.read_text(), Loader=_ConfigLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"config file {config_file}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {config_file!r} must hold a mapping of key: value")
    return data


def parse_args(argv: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """Split `--key value` / `--key=value` / `--flag` arguments; returns (values, config file)."""
    values: dict[str, str] = {}
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}; use --key value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            else:
                value = "true"
        if value != "":  # an empty value means "not given": MLproject passes declared params as ''
            values[key] = value
        i += 1
    return values, values.pop("config", None) or None


def load_config(cls: type, argv: Sequence[str] = (), overrides: dict | None = None):
    """Build a config dataclass from defaults, model overrides, an optional YAML file and argv.

    Precedence: dataclass defaults < `overrides` (e.g. a model's recommended recipe) < the YAML file
    given with `--config` < command-line `--key value` pairs.

    Raises:
        ValueError: unknown key (with a suggestion), bad value (naming the key and where it was given), a
            duplicate list entry, a missing or invalid config file, or a failed check.
    """
    cli, config_file = parse_args(argv)
    valid = {f.name: f for f in fields(cls)}
    merged: dict[str, Any] = {}
    layers: list[tuple[str, dict]] = [("defaults for the model", dict(overrides or {}))]
    if config_file:
        layers.append((f"config file {config_file}", read_config_file(config_file)))
    layers.append(("command line", cli))
    for origin, layer in layers:
        for key, value in layer.items():
            if key not in valid:
                if origin.startswith("defaults"):
                    continue  # a model override for a field this entry point does not have
                raise ValueError(
                    f"unknown key {key!r} in {origin}{suggest(key, valid)}; valid keys: {', '.join(sorted(valid))}"
                )
            try:
                merged[key] = _convert(key, value, valid[key].type)
            except ValueError as error:
                raise ValueError(f"{error} ({origin})") from None
            if isinstance(merged[key], list) and len(set(map(str, merged[key]))) < len(merged[key]):
                twice = sorted({str(v) for v in merged[key] if list(map(str, merged[key])).count(str(v)) > 1})
                raise ValueError(f"{key}: {', '.join(twice)} given twice ({origin}); give each value once")
    return cls(**merged)


def to_dict(config) -> dict[str, Any]:
    """The resolved configuration as plain data (for `config.yaml` and run keys)."""
    return dataclasses.asdict(config)
