"""Benchmark suites written as YAML: the paper's suite and any suite a user adds (SPEC 1.2-1.6).

A *benchmark file* describes one task: where its data lives (a `datasets.load_dataset` path at a
pinned revision, local files, or a `save_to_disk` directory), how a row becomes an `Item` (field
mapping), how the train and test pools are drawn, and its training and evaluation formats. A *suite
file* lists benchmark files (or inline benchmarks, or `use:` references to the built-in ones with
keys overridden) plus the language families and the suite's default models. The full schema is in
`docs/suites.md`; `suites/paper.yaml` and `suites/paper/*.yaml` are complete examples.

Data is loaded lazily, on the first `items()` call for a cell, so planning (`--dry_run`) and run keys
never need the data or the network.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
import string
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from transfergrid.data import LETTERS, SPLITS, Item, PromptFormat, Split, TaskSpec, split_train_validation
from transfergrid.grid import Cell, check_choice

logger = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "suites"
SPLIT_SEED = 42  # seed of the train/test pool sampling and of the 90/10 validation split (SPEC 1.2, 1.5)
ANSWER_TYPES = ("letter", "index", "first", "one_hot")
CLEANERS = ("none", "strip", "okapi")
_BENCHMARK_KEYS = {
    "name", "description", "construction", "version", "languages", "source", "language_sources", "splits",
    "split_manifest", "id_field", "id_language", "fields", "clean", "train_format", "eval_format",
}
_SUITE_KEYS = {"name", "version", "description", "benchmarks", "language_families", "models", "chat_template"}
_SOURCE_KEYS = {"path", "name", "revision", "data_files", "load_from_disk", "split_names"}


class SuiteFileError(ValueError):
    """A suite or benchmark file that does not follow the schema (the message names the file and key)."""


def okapi_clean(text: str | None) -> str:
    """lm-eval okapi `preprocess`: strip, ` [title]` -> `. `, drop bracketed spans, collapse double spaces."""
    if text is None:
        return " "
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


_CLEAN = {"none": lambda text: text, "strip": lambda text: text.strip(), "okapi": okapi_clean}


class _RowFormatter(string.Formatter):
    """`str.format` over a dataset row, with dotted field paths and `!c` for Python's `capitalize()`."""

    def get_field(self, field_name, args, kwargs):
        return _get(kwargs, field_name), field_name

    def convert_field(self, value, conversion):
        return str(value).capitalize() if conversion == "c" else super().convert_field(value, conversion)


def _get(row: dict, path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


@dataclass(frozen=True)
class SplitSpec:
    """Where a pool comes from: an upstream split, optionally sampled down to `n` items (seed 42)."""

    split: str
    n: int | None = None


@dataclass
class Benchmark:
    """One task of a YAML suite: data source, field mapping, pools and formats."""

    spec: TaskSpec
    source: dict
    language_sources: dict
    splits: dict[str, SplitSpec]
    id_field: str | None
    id_language: str
    fields: dict
    clean: str
    file: str
    split_manifest: Path | None = None
    description: str = ""
    _rows: dict = field(default_factory=dict, repr=False)

    # ---- data sources -------------------------------------------------------------------------------
    def source_for(self, language: str) -> dict:
        """The load arguments of `language` (placeholders `{language}` filled in)."""
        merged = {**self.source, **self.language_sources.get(language, {})}
        return {k: _fill(v, language) for k, v in merged.items()}

    def hub_datasets(self, languages) -> list[tuple[str, str]]:
        """(Hub dataset id, revision) pairs this benchmark downloads for `languages` (none for local files)."""
        pairs = []
        for language in languages:
            src = self.source_for(language)
            if "load_from_disk" in src or src.get("data_files") or _is_local(src.get("path", "")):
                continue
            pairs.append((src["path"], str(src.get("revision") or "main")))
        return sorted(set(pairs))

    def rows(self, language: str, split: str) -> list[dict]:
        """The upstream rows of `split` in `language`, loaded once through `datasets`."""
        key = (language, split)
        if key not in self._rows:
            self._rows[key] = _load_rows(self.source_for(language), split, f"{self.spec.name}.{language}")
        return self._rows[key]

    # ---- rows -> items ------------------------------------------------------------------------------
    def to_item(self, row: dict, index: int) -> Item | None:
        """The item of one row, or None when its gold answer is not among the kept choices (logged)."""
        f = self.fields
        ident = str(_get(row, self.id_field)) if self.id_field else f"row-{index}"
        clean = _CLEAN[self.clean]
        question = clean(_RowFormatter().format(f["question"], **row))
        raw_choices = f["choices"]
        if isinstance(raw_choices, str):
            texts = list(_get(row, raw_choices))
        else:
            texts = [_get(row, name) for name in raw_choices]
        choices = tuple(clean(t) if f.get("clean_choices", True) else t for t in texts)
        answer_type = f.get("answer_type", "letter")
        if answer_type == "first":
            gold = 0
        else:
            answer = _get(row, f["answer"])
            if answer_type == "letter":
                gold = LETTERS.index(str(answer).strip()) if str(answer).strip() in LETTERS else -1
            elif answer_type == "index":
                gold = int(str(answer).strip())
            else:  # one_hot
                gold = list(answer).index(1) if 1 in list(answer) else -1
        if not 0 <= gold < len(choices):
            return None
        return Item(id=ident, question=question, choices=choices, gold=gold)

    def items_of(self, language: str, split: str) -> dict[str, Item]:
        """Every usable item of an upstream split in `language`, by id."""
        items, dropped = {}, 0
        for index, row in enumerate(self.rows(language, split)):
            try:
                item = self.to_item(row, index)
            except KeyError as exc:
                raise SuiteFileError(
                    f"{self.file}: {self.spec.name}.{language} split {split!r} has no field {exc.args[0]!r} "
                    f"(its fields: {', '.join(sorted(row))}); fix `fields`/`id_field`"
                ) from None
            if item is None:
                dropped += 1
            else:
                items[item.id] = item
        if dropped:
            logger.info("%s.%s/%s: dropped %d items whose gold answer is not among the choices",
                        self.spec.name, language, split, dropped)
        return items

    @cached_property
    def pool_ids(self) -> dict[str, list[str]]:
        """The ids of the `train` and `test` pools, identical for every language (SPEC 1.2).

        A split manifest (CSV `split,id`) fixes them. Otherwise a pool is its upstream split in file order,
        or, where a size `n` is set, a seed-42 draw from the reference language's split; pools drawn from
        the same upstream split are disjoint.
        """
        if self.split_manifest is not None:
            return read_split_manifest(self.split_manifest)
        rng_taken: dict[str, list[str]] = {}
        pools: dict[str, list[str]] = {}
        for pool in ("train", "test"):
            spec = self.splits[pool]
            if spec.split not in rng_taken:
                ids = list(self.items_of(self.id_language, spec.split))  # file order
                if any(s.split == spec.split and s.n is not None for s in self.splits.values()):
                    ids = sorted(ids)
                    random.Random(f"{SPLIT_SEED}:{self.spec.name}:{spec.split}").shuffle(ids)
                rng_taken[spec.split] = ids
            remaining = rng_taken[spec.split]
            n = len(remaining) if spec.n is None else spec.n
            if n > len(remaining):
                raise ValueError(
                    f"{self.file}: pool {pool!r} wants {n} items from split {spec.split!r} of "
                    f"{self.spec.name}.{self.id_language}, but only {len(remaining)} are left"
                )
            pools[pool], rng_taken[spec.split] = remaining[:n], remaining[n:]
        return pools

    def pool(self, language: str, pool: str) -> list[Item]:
        """The items of `pool` (train or test) in `language`, in pool order; ids missing there are skipped."""
        wanted = self.pool_ids[pool]
        upstream = {s.split for s in self.splits.values()}
        available: dict[str, Item] = {}
        for split in sorted(upstream):
            available.update(self.items_of(language, split))
        items = [available[i] for i in wanted if i in available]
        if len(items) < len(wanted):
            logger.warning("%s.%s: %d of %d %s ids are missing in this language", self.spec.name, language,
                           len(wanted) - len(items), len(wanted), pool)
        return items


def _fill(value: Any, language: str) -> Any:
    if isinstance(value, str):
        return value.replace("{language}", language)
    if isinstance(value, dict):
        return {k: _fill(v, language) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, language) for v in value]
    return value


def _relative_to(value: Any, base_dir: Path) -> Any:
    if isinstance(value, list):
        return [_relative_to(v, base_dir) for v in value]
    return str(value) if Path(str(value)).is_absolute() else str(base_dir / str(value))


def _is_local(path: str) -> bool:
    return path in ("json", "csv", "parquet", "text", "arrow") or Path(path).expanduser().exists()


def _load_rows(src: dict, split: str, what: str) -> list[dict]:
    """Rows of one split through `datasets` (Hub id at a revision, builder + data files, or save_to_disk)."""
    import datasets

    split = src.get("split_names", {}).get(split, split)
    if "load_from_disk" in src:
        loaded = datasets.load_from_disk(src["load_from_disk"])
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{what}: split {split!r} not in {src['load_from_disk']} (has {', '.join(loaded)})")
            loaded = loaded[split]
        return loaded.to_list()
    kwargs = {k: src[k] for k in ("name", "revision", "data_files") if src.get(k) is not None}
    path = src["path"]
    if not _is_local(path) and not src.get("data_files"):
        from transfergrid import hub

        if hub.offline_requested():
            # Offline, a Hub dataset is read from its snapshot in the hub cache (`hf download`/prefetch),
            # else from the `datasets` cache of an earlier online load.
            snapshot = hub.cached_snapshot(path, str(src.get("revision") or "main"), "dataset")
            if snapshot is not None:
                path = snapshot
                kwargs.pop("revision", None)
            try:
                return datasets.load_dataset(path, split=split, **kwargs).to_list()
            except (ConnectionError, FileNotFoundError) as exc:
                raise hub.HubUnavailable(hub.missing_message([("dataset", src["path"], str(src.get("revision") or "main"))],
                                                            "offline mode") + f"\n(datasets said: {exc})") from None
    return datasets.load_dataset(path, split=split, **kwargs).to_list()


def read_split_manifest(path: Path) -> dict[str, list[str]]:
    """A split manifest: CSV with columns `split,id` (split `train` or `test`), in file order."""
    pools: dict[str, list[str]] = {"train": [], "test": []}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"split", "id"} <= set(reader.fieldnames):
            raise SuiteFileError(f"split manifest {path}: needs columns split,id (has {reader.fieldnames})")
        for row in reader:
            check_choice(f"split in manifest {path}", row["split"], ["train", "test"])
            pools[row["split"]].append(row["id"])
    overlap = set(pools["train"]) & set(pools["test"])
    if overlap:
        raise SuiteFileError(f"split manifest {path}: {len(overlap)} ids are in both train and test, e.g. {sorted(overlap)[0]!r}")
    return pools


class YamlSuite:
    """A suite read from YAML (implements `data.Suite`)."""

    def __init__(self, name: str, version: str, benchmarks: dict[str, Benchmark], language_families: dict[str, str],
                 models: list[str], chat_template: bool, description: str = "") -> None:
        self.name = name
        self.version = version
        self.benchmarks = benchmarks
        self.tasks = {task: b.spec for task, b in benchmarks.items()}
        self.language_families = language_families
        self.models = models
        self.chat_template = chat_template
        self.description = description
        self._cache: dict = {}

    def items(self, cell: Cell, split: Split) -> list[Item]:
        """Items of `cell`: `test` is the test pool; `train`/`validation` the 90/10 split of the train pool."""
        check_choice("split", split, list(SPLITS))
        check_choice("task", cell.task, list(self.tasks))
        benchmark = self.benchmarks[cell.task]
        check_choice(f"language of task {cell.task}", cell.language, list(benchmark.spec.languages))
        pool = "test" if split == "test" else "train"
        if (cell, pool) not in self._cache:  # built once per cell and pool; only the pool asked for is loaded
            items = benchmark.pool(cell.language, pool)
            self._cache[cell, pool] = (
                {"test": items} if pool == "test" else dict(zip(("train", "validation"), split_train_validation(items, 0.1, SPLIT_SEED)))
            )
        return self._cache[cell, pool][split]

    def hub_datasets(self, cells) -> list[tuple[str, str]]:
        """(dataset id, revision) pairs needed for `cells` that come from the Hugging Face Hub."""
        pairs = set()
        for cell in cells:
            pairs.update(self.benchmarks[cell.task].hub_datasets([cell.language]))
            benchmark = self.benchmarks[cell.task]
            if benchmark.split_manifest is None:
                pairs.update(benchmark.hub_datasets([benchmark.id_language]))
        return sorted(pairs)


# ---- loading ----------------------------------------------------------------------------------------
def builtin_suites() -> list[str]:
    """Names of the suites shipped as YAML (`src/transfergrid/suites/*.yaml`)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteFileError(f"suite file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SuiteFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteFileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _check_keys(data: dict, allowed: set, where: str) -> None:
    from transfergrid.grid import suggest

    for key in data:
        if key not in allowed:
            raise SuiteFileError(f"{where}: unknown key {key!r}{suggest(key, allowed)}; valid keys: {', '.join(sorted(allowed))}")


def _format(data: Any, where: str) -> PromptFormat:
    if not isinstance(data, dict) or "template" not in data:
        raise SuiteFileError(f"{where}: a format needs at least `template`")
    allowed = {f.name for f in PromptFormat.__dataclass_fields__.values()}
    _check_keys(data, allowed, where)
    try:
        return PromptFormat(**data)
    except (TypeError, ValueError) as exc:
        raise SuiteFileError(f"{where}: {exc}") from None


def load_benchmark(data: dict, file: str, base_dir: Path) -> Benchmark:
    """Validate one benchmark mapping (from `file`, paths relative to `base_dir`)."""
    _check_keys(data, _BENCHMARK_KEYS, file)
    for key in ("name", "languages", "source", "splits", "fields", "train_format", "eval_format"):
        if key not in data:
            raise SuiteFileError(f"{file}: missing required key {key!r}")
    name = str(data["name"])
    languages = tuple(str(x) for x in data["languages"])
    if not languages:
        raise SuiteFileError(f"{file}: `languages` is empty")
    source = dict(data["source"])
    _check_keys(source, _SOURCE_KEYS, f"{file}: source")
    if "path" not in source and "load_from_disk" not in source:
        raise SuiteFileError(f"{file}: source needs `path` (datasets.load_dataset) or `load_from_disk`")
    if "load_from_disk" in source and not Path(source["load_from_disk"]).is_absolute():
        source["load_from_disk"] = str(base_dir / source["load_from_disk"])
    if isinstance(source.get("data_files"), dict):  # local files: relative to the file that names them
        source["data_files"] = {k: _relative_to(v, base_dir) for k, v in source["data_files"].items()}
    language_sources = {str(k): dict(v) for k, v in (data.get("language_sources") or {}).items()}
    for language, override in language_sources.items():
        check_choice(f"{file}: language_sources language", language, list(languages))
        _check_keys(override, _SOURCE_KEYS, f"{file}: language_sources.{language}")
    splits = {}
    for pool in ("train", "test"):
        spec = (data["splits"] or {}).get(pool)
        if spec is None:
            raise SuiteFileError(f"{file}: splits needs `{pool}` (upstream split and optional n)")
        spec = {"split": spec} if isinstance(spec, str) else dict(spec)
        _check_keys(spec, {"split", "n"}, f"{file}: splits.{pool}")
        splits[pool] = SplitSpec(str(spec["split"]), int(spec["n"]) if spec.get("n") is not None else None)
    fields = dict(data["fields"])
    _check_keys(fields, {"question", "choices", "answer", "answer_type", "clean_choices"}, f"{file}: fields")
    for key in ("question", "choices"):
        if key not in fields:
            raise SuiteFileError(f"{file}: fields needs {key!r}")
    answer_type = fields.setdefault("answer_type", "letter")
    if answer_type not in ANSWER_TYPES:
        raise SuiteFileError(f"{file}: unknown fields.answer_type {answer_type!r}; valid: {', '.join(ANSWER_TYPES)}")
    if answer_type != "first" and "answer" not in fields:
        raise SuiteFileError(f"{file}: fields needs `answer` (or answer_type: first)")
    clean = str(data.get("clean", "none"))
    if clean not in CLEANERS:
        raise SuiteFileError(f"{file}: unknown clean {clean!r}; valid: {', '.join(CLEANERS)}")
    construction = str(data.get("construction", "unknown"))
    manifest = data.get("split_manifest")
    manifest_path = None
    if manifest:
        manifest_path = Path(manifest) if Path(manifest).is_absolute() else base_dir / manifest
        if not manifest_path.exists():
            raise SuiteFileError(f"{file}: split_manifest {manifest_path} does not exist")
    id_language = str(data.get("id_language", "en" if "en" in languages else languages[0]))
    check_choice(f"{file}: id_language", id_language, list(languages))
    spec = TaskSpec(
        name=name, languages=languages,
        train_format=_format(data["train_format"], f"{file}: train_format"),
        eval_format=_format(data["eval_format"], f"{file}: eval_format"),
        construction=construction, version=int(data.get("version", 1)),
    )
    return Benchmark(
        spec=spec, source=source, language_sources=language_sources, splits=splits, id_field=data.get("id_field"),
        id_language=id_language, fields=fields, clean=clean, file=file, split_manifest=manifest_path,
        description=str(data.get("description", "")),
    )


def _benchmark_entry(entry: Any, suite_file: Path) -> Benchmark:
    """A suite's `benchmarks:` entry: a file path, an inline mapping, or `{use: <ref>, ...overrides}`."""
    if isinstance(entry, str):
        path = _resolve_ref(entry, suite_file.parent)
        return load_benchmark(_read_yaml(path), str(path), path.parent)
    if not isinstance(entry, dict):
        raise SuiteFileError(f"{suite_file}: each benchmarks entry is a file path or a mapping, got {entry!r}")
    entry = dict(entry)
    if "use" in entry:
        path = _resolve_ref(str(entry.pop("use")), suite_file.parent)
        data = _read_yaml(path)
        base = path.parent
        if "source" in entry or "split_manifest" in entry or "language_sources" in entry:
            base = suite_file.parent  # overridden local paths are relative to the suite file
        if "source" in entry:
            data.pop("language_sources", None)  # they refine the replaced source
        elif "languages" in entry and "language_sources" not in entry:  # keep those of the languages kept
            kept = set(map(str, entry["languages"]))
            data["language_sources"] = {k: v for k, v in (data.get("language_sources") or {}).items() if str(k) in kept}
        data.update(entry)
        return load_benchmark(data, f"{suite_file} (use {path.name})", base)
    return load_benchmark(entry, str(suite_file), suite_file.parent)


def _resolve_ref(ref: str, base_dir: Path) -> Path:
    """`paper/arc_challenge` (a built-in benchmark) or a path relative to the suite file."""
    candidates = [base_dir / ref, base_dir / f"{ref}.yaml", BUILTIN_DIR / ref, BUILTIN_DIR / f"{ref}.yaml", Path(ref)]
    for path in candidates:
        if path.is_file():
            return path
    raise SuiteFileError(f"benchmark file {ref!r} not found (looked in {base_dir} and {BUILTIN_DIR})")


def load_suite_file(path: str | Path) -> YamlSuite:
    """Read and validate a suite file; no data is loaded."""
    path = Path(path)
    data = _read_yaml(path)
    _check_keys(data, _SUITE_KEYS, str(path))
    if not data.get("benchmarks"):
        raise SuiteFileError(f"{path}: `benchmarks` is empty")
    benchmarks: dict[str, Benchmark] = {}
    for entry in data["benchmarks"]:
        benchmark = _benchmark_entry(entry, path)
        if benchmark.spec.name in benchmarks:
            raise SuiteFileError(f"{path}: benchmark {benchmark.spec.name!r} listed twice")
        benchmarks[benchmark.spec.name] = benchmark
    languages = {lang for b in benchmarks.values() for lang in b.spec.languages}
    families = {str(k): str(v) for k, v in (data.get("language_families") or {}).items()}
    families = {lang: families.get(lang, lang) for lang in sorted(languages)}
    content = json.dumps({t: _fingerprint(b) for t, b in sorted(benchmarks.items())}, sort_keys=True)
    version = str(data.get("version", "1")) + "-" + hashlib.sha256(content.encode()).hexdigest()[:8]
    return YamlSuite(
        name=str(data.get("name", path.stem)), version=version, benchmarks=benchmarks, language_families=families,
        models=[str(m) for m in data.get("models") or []], chat_template=bool(data.get("chat_template", False)),
        description=str(data.get("description", "")),
    )


def _fingerprint(b: Benchmark) -> dict:
    """What determines a benchmark's items and prompts; part of the suite version, hence of run keys."""
    manifest = b.split_manifest.read_text(encoding="utf-8") if b.split_manifest else None
    return {
        "spec": repr(b.spec), "source": b.source, "language_sources": b.language_sources,
        "splits": {k: (v.split, v.n) for k, v in b.splits.items()}, "id_field": b.id_field, "fields": b.fields,
        "clean": b.clean, "id_language": b.id_language, "manifest": manifest,
    }
