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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from transfergrid import suite_templates
from transfergrid.data import LETTERS, SPLITS, Item, PromptFormat, Split, TaskSpec, split_train_validation
from transfergrid.grid import Cell, check_choice
from transfergrid.suite_templates import TemplateError, get_field

logger = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "suites"
SPLIT_SEED = 42  # seed of the train/test pool sampling and of the 90/10 validation split (SPEC 1.2, 1.5)
ANSWER_TYPES = ("letter", "index", "first", "one_hot")
CLEANERS = ("none", "strip", "okapi")
ROW_IDS = ("per_split", "across_splits")  # ids of rows without an id field: `row-<i>`, or the paper's truth_id
_BENCHMARK_KEYS = {
    "name", "description", "construction", "version", "languages", "source", "language_sources", "splits",
    "split_manifest", "id_field", "id_language", "row_ids", "fields", "template_vars", "clean", "train_format",
    "eval_format",
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


@dataclass(frozen=True)
class SplitSpec:
    """Where a pool comes from: an upstream split, optionally sampled down to `n` items (seed 42)."""

    split: str
    n: int | None = None


@dataclass
class Benchmark:
    """One task of a YAML suite: data source, field mapping, pools and formats.

    Item ids are unique only within their upstream split (XCOPA's `validation` and `test` both number
    from 0): a pool is keyed by (upstream split, id) and only ever reads its own split, so a test item
    is never a training item.
    """

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
    row_ids: str = "per_split"
    template_vars: dict = field(default_factory=dict)
    _rows: dict = field(default_factory=dict, repr=False)
    _ids: dict = field(default_factory=dict, repr=False)
    _split_sizes: dict = field(default_factory=dict, repr=False)

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
            self._rows[key] = _load(self.source_for(language), split, f"{self.spec.name}.{language}").to_list()
        return self._rows[key]

    def _split_offset(self, language: str, split: str) -> int:
        """Total rows of the splits the dataset lists before `split` (the paper's TruthfulQA `truth_id`)."""
        if language not in self._split_sizes:
            loaded = _load(self.source_for(language), None, f"{self.spec.name}.{language}")
            self._split_sizes[language] = [(name, len(part)) for name, part in loaded.items()] if hasattr(loaded, "items") else []
        sizes = self._split_sizes[language]
        upstream = self.source_for(language).get("split_names", {}).get(split, split)
        names = [name for name, _ in sizes]
        if not sizes:  # a single Dataset: one split, numbered from 0
            return 0
        check_choice(f"{self.spec.name}.{language}: split", upstream, names)
        return sum(n for _, n in sizes[: names.index(upstream)])

    def ids_of(self, language: str, split: str) -> list[tuple[str, Any]]:
        """(id, sort key) of every row of `split` in `language`, in file order.

        The id is `str()` of the `id_field` value (its sort key the value itself); without an id field,
        `row-<i>` (`row_ids: per_split`) or `offset + i` with the offset of `_split_offset`
        (`row_ids: across_splits`).

        Raises:
            SuiteFileError: the id field is missing, or an id repeats within the split (ids may repeat
                across splits, never within one: nothing would say which row an id means).
        """
        key = (language, split)
        if key in self._ids:
            return self._ids[key]
        rows = self.rows(language, split)
        where = f"{self.spec.name}.{language}"
        if self.id_field is None:
            offset = self._split_offset(language, split) if self.row_ids == "across_splits" else None
            ids = [(f"row-{i}", i) if offset is None else (str(offset + i), offset + i) for i in range(len(rows))]
        else:
            ids = []
            for row in rows:
                try:
                    value = get_field(row, self.id_field)
                except KeyError:
                    raise SuiteFileError(f"{self.file}: {where} split {split!r} has no field {self.id_field!r} "
                                         f"(its fields: {', '.join(sorted(row))}); fix `id_field`") from None
                ids.append((str(value), value))
            first: dict[str, int] = {}
            for index, (ident, _) in enumerate(ids):
                if ident in first:
                    raise SuiteFileError(
                        f"{self.file}: id field {self.id_field!r} repeats within split {split!r} of {where}: "
                        f"{ident!r} is on rows {first[ident]} and {index}. Ids must be unique within a split "
                        "(across splits they may repeat: pools are keyed by split and id); choose a field that is "
                        "unique within each split, or `id_field: null` to number the rows"
                    )
                first[ident] = index
        self._ids[key] = ids
        return ids

    # ---- rows -> items ------------------------------------------------------------------------------
    def to_item(self, row: dict, index: int, *, language: str | None = None, ident: str | None = None) -> Item | None:
        """The item of one row, or None when its gold answer is not among the kept choices (logged).

        Args:
            row: one upstream row.
            index: its position in its split (the id `row-<index>` when there is no id field).
            language: the cell's language (the `language` and `vars` of Jinja templates); default `id_language`.
            ident: the item id when the caller knows it (`row_ids`); default from `id_field` or `index`.
        """
        f = self.fields
        language = language or self.id_language
        if ident is None:
            ident = str(get_field(row, self.id_field)) if self.id_field else f"row-{index}"
        variables = self.template_vars.get(language, {})

        def text(template: str) -> str:
            return suite_templates.render(template, row, language=language, variables=variables)

        clean = _CLEAN[self.clean]
        question = clean(text(f["question"]))
        raw_choices = f["choices"]
        if isinstance(raw_choices, str):
            texts = (suite_templates.render_list(raw_choices, row, language=language, variables=variables)
                     if suite_templates.is_jinja(raw_choices) else list(get_field(row, raw_choices)))
        else:
            texts = [text(name) if suite_templates.is_jinja(name) else get_field(row, name) for name in raw_choices]
        choices = tuple(clean(t) if f.get("clean_choices", True) else t for t in texts)
        answer_type = f.get("answer_type", "letter")
        if answer_type == "first":
            gold = 0
        else:
            if not suite_templates.is_jinja(f["answer"]):
                answer = get_field(row, f["answer"])
            elif answer_type == "one_hot":
                answer = suite_templates.render_list(f["answer"], row, language=language, variables=variables)
            else:
                answer = text(f["answer"])
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
        """Every usable item of an upstream split in `language`, by id (ids are unique within a split)."""
        items, dropped = {}, 0
        where = f"{self.spec.name}.{language}"
        for index, (row, (ident, _)) in enumerate(zip(self.rows(language, split), self.ids_of(language, split))):
            try:
                item = self.to_item(row, index, language=language, ident=ident)
            except KeyError as exc:
                raise SuiteFileError(
                    f"{self.file}: {where} split {split!r} has no field {exc.args[0]!r} "
                    f"(its fields: {', '.join(sorted(row))}); fix `fields`/`id_field`"
                ) from None
            except ValueError as exc:  # a template that fails on this row, an answer that is not an index
                raise SuiteFileError(f"{self.file}: {where} split {split!r}, item {ident!r}: {exc} "
                                     f"(its fields: {', '.join(sorted(row))})") from None
            if item is None:
                dropped += 1
            else:
                items[item.id] = item
        if dropped:
            logger.info("%s/%s: dropped %d items whose gold answer is not among the choices", where, split, dropped)
        return items

    # ---- pools --------------------------------------------------------------------------------------
    def _split_of(self, pool: str) -> str:
        if pool not in self.splits:
            raise SuiteFileError(f"{self.file}: {self.spec.name} has no {pool} pool (it is evaluation-only: no "
                                 f"`splits.{pool}`)")
        return self.splits[pool].split

    @cached_property
    def manifest(self) -> dict[str, list[str]]:
        """The split manifest's ids per pool; ids in both pools are refused where the pools share a split."""
        pools = read_split_manifest(self.split_manifest)
        if "train" in self.splits and self.splits["train"].split == self.splits["test"].split:
            overlap = sorted(set(pools["train"]) & set(pools["test"]))
            if overlap:
                raise SuiteFileError(
                    f"split manifest {self.split_manifest}: {len(overlap)} ids are in both the train and the test pool "
                    f"of {self.spec.name}, both drawn from split {self.splits['test'].split!r}, e.g. {overlap[0]!r}"
                )
        return pools

    @cached_property
    def pool_ids(self) -> dict[str, list[str]]:
        """The ids of the `train` and `test` pools (each in its own upstream split), identical for every language.

        A split manifest (CSV `split,id`) fixes them. Otherwise a pool is its upstream split in file order,
        or, where a size `n` is set, a seed-42 draw from the reference language's split; pools drawn from
        the same upstream split are disjoint (SPEC 1.2).
        """
        if self.split_manifest is not None:
            return {pool: ids for pool, ids in self.manifest.items() if pool in self.splits}
        rng_taken: dict[str, list[str]] = {}
        pools: dict[str, list[str]] = {}
        for pool in ("train", "test"):
            if pool not in self.splits:
                continue
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
        """The items of `pool` (train or test) in `language`, read from the pool's own upstream split only.

        With a split manifest: the manifest's ids, sorted by the id column (as the paper's materialisation);
        an id missing in a language is an error. Otherwise the pool order of `pool_ids`; ids missing in
        a language are skipped with a warning.
        """
        split = self._split_of(pool)
        available = self.items_of(language, split)
        if self.split_manifest is None:
            wanted = self.pool_ids[pool]
            items = [available[i] for i in wanted if i in available]
            if len(items) < len(wanted):
                logger.warning("%s.%s: %d of %d %s ids are missing in this language", self.spec.name, language,
                               len(wanted) - len(items), len(wanted), pool)
            return items
        wanted = self.manifest[pool]
        keys = dict(self.ids_of(language, split))
        missing = [i for i in wanted if i not in keys]
        dropped = [i for i in wanted if i in keys and i not in available]
        for ids, why in ((missing, f"missing from split {split!r}"),
                         (dropped, "items dropped because their gold answer is not among the kept choices")):
            if ids:
                raise SuiteFileError(
                    f"split manifest {self.split_manifest}: {len(ids)} of the {len(wanted)} {pool} ids of benchmark "
                    f"{self.spec.name}, language {language}, are {why}; first: {', '.join(ids[:5])}"
                    + (" (for other data, `split_manifest: null` draws the pools instead)" if ids is missing else "")
                )
        return [available[i] for i in _sorted_ids([(i, keys[i]) for i in set(wanted)])]


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


def _load(src: dict, split: str | None, what: str):
    """One split (a `Dataset`), or with `split=None` every split (a `DatasetDict` in the dataset's order),
    through `datasets`: a Hub id at a revision, a builder with data files, or a `save_to_disk` directory."""
    import datasets

    if split is not None:
        split = src.get("split_names", {}).get(split, split)
    if "load_from_disk" in src:
        loaded = datasets.load_from_disk(src["load_from_disk"])
        if split is not None and isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{what}: split {split!r} not in {src['load_from_disk']} (has {', '.join(loaded)})")
            loaded = loaded[split]
        return loaded
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
                return datasets.load_dataset(path, split=split, **kwargs)
            except (ConnectionError, FileNotFoundError) as exc:
                raise hub.HubUnavailable(hub.missing_message([("dataset", src["path"], str(src.get("revision") or "main"))],
                                                            "offline mode") + f"\n(datasets said: {exc})") from None
    return datasets.load_dataset(path, split=split, **kwargs)


def _sorted_ids(pairs: list[tuple[str, Any]]) -> list[str]:
    """Ids sorted by their id column's values (numbers as numbers), as the paper sorts a selected split."""
    try:
        return [ident for ident, _ in sorted(pairs, key=lambda pair: pair[1])]
    except TypeError:  # values of mixed types: compare their strings
        return sorted(ident for ident, _ in pairs)


def read_split_manifest(path: Path) -> dict[str, list[str]]:
    """A split manifest: CSV with columns `split,id` (split `train` or `test`: the pool), in file order.

    Each pool's ids are read from that pool's upstream split, so the same id may name a train and a
    test item where the two pools come from different splits (`Benchmark.manifest` checks the rest).
    """
    pools: dict[str, list[str]] = {"train": [], "test": []}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"split", "id"} <= set(reader.fieldnames):
            raise SuiteFileError(f"split manifest {path}: needs columns split,id (has {reader.fieldnames})")
        for row in reader:
            check_choice(f"split in manifest {path}", row["split"], ["train", "test"])
            pools[row["split"]].append(row["id"])
    for pool, ids in pools.items():
        seen: set[str] = set()
        for ident in ids:
            if ident in seen:
                raise SuiteFileError(f"split manifest {path}: {pool} id {ident!r} is listed more than once")
            seen.add(ident)
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
    for key in ("name", "languages", "source", "splits", "fields", "eval_format"):  # no train_format: evaluation-only
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
    trainable = data.get("train_format") is not None
    splits = _splits(data["splits"] or {}, trainable, file)
    fields = _fields(dict(data["fields"]), file)
    template_vars = _template_vars(data.get("template_vars"), languages, file)
    row_ids = str(data.get("row_ids", "per_split"))
    if row_ids not in ROW_IDS:
        raise SuiteFileError(f"{file}: unknown row_ids {row_ids!r}; valid: {', '.join(ROW_IDS)}")
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
        train_format=_format(data["train_format"], f"{file}: train_format") if trainable else None,
        eval_format=_format(data["eval_format"], f"{file}: eval_format"),
        construction=construction, version=int(data.get("version", 1)),
    )
    return Benchmark(
        spec=spec, source=source, language_sources=language_sources, splits=splits, id_field=data.get("id_field"),
        id_language=id_language, fields=fields, clean=clean, file=file, split_manifest=manifest_path,
        description=str(data.get("description", "")), row_ids=row_ids, template_vars=template_vars,
    )


def _splits(data: dict, trainable: bool, file: str) -> dict[str, SplitSpec]:
    """`splits`: the test pool's upstream split, and the train pool's unless the benchmark is evaluation-only."""
    _check_keys(data, {"train", "test"}, f"{file}: splits")
    splits = {}
    for pool in ("train", "test"):
        spec = data.get(pool)
        if spec is None:
            if pool == "train" and not trainable:
                continue  # an evaluation-only benchmark needs no train pool
            raise SuiteFileError(f"{file}: splits needs `{pool}` (upstream split and optional n)"
                                 + ("; a benchmark with a train_format fine-tunes on it" if pool == "train" else ""))
        spec = {"split": spec} if isinstance(spec, str) else dict(spec)
        _check_keys(spec, {"split", "n"}, f"{file}: splits.{pool}")
        splits[pool] = SplitSpec(str(spec["split"]), int(spec["n"]) if spec.get("n") is not None else None)
    return splits


def _field_templates(fields: dict) -> list:
    """The question, answer and choice entries of `fields` (field names, format strings or Jinja templates)."""
    choices = fields["choices"] if isinstance(fields["choices"], list) else [fields["choices"]]
    return [fields["question"], fields.get("answer"), *choices]


def _fields(fields: dict, file: str) -> dict:
    """`fields`, checked: required keys, the answer type, and Jinja templates that parse."""
    _check_keys(fields, {"question", "choices", "answer", "answer_type", "clean_choices"}, f"{file}: fields")
    for key in ("question", "choices"):
        if key not in fields:
            raise SuiteFileError(f"{file}: fields needs {key!r}")
    answer_type = fields.setdefault("answer_type", "letter")
    if answer_type not in ANSWER_TYPES:
        raise SuiteFileError(f"{file}: unknown fields.answer_type {answer_type!r}; valid: {', '.join(ANSWER_TYPES)}")
    if answer_type != "first" and "answer" not in fields:
        raise SuiteFileError(f"{file}: fields needs `answer` (or answer_type: first)")
    try:
        for template in _field_templates(fields):
            suite_templates.check(template)
    except TemplateError as exc:
        raise SuiteFileError(f"{file}: fields: {exc}") from None
    return fields


def _template_vars(data: Any, languages: tuple[str, ...], file: str) -> dict[str, dict]:
    """`template_vars`: per language, the names Jinja templates read as `vars` (every language, the same names)."""
    if not data:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SuiteFileError(f"{file}: template_vars maps each language to a mapping of names, e.g. "
                             "{it: {cause: perché, effect: quindi}}")
    data = {str(k): v for k, v in data.items()}
    missing = [language for language in languages if language not in data]
    if missing:
        raise SuiteFileError(f"{file}: template_vars has no entry for {', '.join(missing)} "
                             f"(it needs one per language: {', '.join(languages)})")
    names = set(data[languages[0]])
    for language in languages[1:]:
        if set(data[language]) != names:
            raise SuiteFileError(f"{file}: template_vars.{language} has names {sorted(data[language])}, "
                                 f"template_vars.{languages[0]} has {sorted(names)}: every language needs the same names")
    return {language: data[language] for language in languages}  # entries of languages not used are dropped


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
            manifest = data.get("split_manifest")
            if manifest and "split_manifest" not in entry:  # an inherited manifest stays beside its benchmark file
                data["split_manifest"] = str(path.parent / manifest)
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
    fingerprint = {
        "spec": repr(b.spec), "source": b.source, "language_sources": b.language_sources,
        "splits": {k: (v.split, v.n) for k, v in b.splits.items()}, "id_field": b.id_field, "fields": b.fields,
        "clean": b.clean, "id_language": b.id_language, "manifest": manifest,
    }
    # Keys added later enter only where they are used, so that the versions of suites written before them
    # (and their run keys) stay the same; a field template read as Jinja changes the version.
    if any(suite_templates.is_jinja(t) for t in _field_templates(b.fields)):
        fingerprint["templates"] = "jinja"
    if b.template_vars:
        fingerprint["template_vars"] = b.template_vars
    if b.row_ids != "per_split":
        fingerprint["row_ids"] = b.row_ids
    return fingerprint
