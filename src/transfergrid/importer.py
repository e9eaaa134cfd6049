"""Import results computed elsewhere as `baseline`/`evaluate` runs.

Two input formats, both turned into per-seed score tables and logged with exactly the tags and
metric names of the project's own runs, so the `analysis` entry point runs on them unchanged:

* a long-format results CSV in the schema of the authors' released `results/transfer_results.csv`
  (`model_name, model_size, fine_tuned_dataset, fine_tuned_language, eval_dataset, eval_language, regime`,
  `score_*`, `score_base_*`, `score_norm_*`, `score_norm_base_*`, `delta_score_*`, `delta_score_norm_*`
  columns with `_mean`/`_std`/`_se` suffixes, `n_seeds`; `base_score_*`/`base_score_norm_*` are
  accepted as other spellings of the base columns).
  Such a table is **seed-aggregated**: its runs carry the seed tag `mean` (`SEED_AGGREGATED`), one
  `baseline` run per model and one `evaluate` run per (model, source cell), and their scores are the
  seed means. A **per-seed** CSV (a `seed` column and un-suffixed `score, score_norm, base_score,
  base_score_norm[, delta_score, delta_score_norm]` columns; base scores may instead come as rows
  with an empty / `n/a` / `base` `fine_tuned_dataset`) gives one run per seed, like our own runs;
* lm-eval output directories: every `results_*.json` below the path is one evaluation; its seed
  and source cell come from the path (a `seed<N>` component and a `<task>_<lang>` or `base`
  component), its model from `model_name` (or `pretrained=` in `config.model_args`).

Score = `score_norm` (acc_norm where the task has it, else acc; SPEC 1.6); `acc/...` is logged
where known and `acc_norm/...` for the tasks that report it (ARC, HellaSwag). Δ (`delta/...`) is
the table's `delta_score_norm*` when given, unchanged (the analysis uses it as it is), else
100 x (score - base score) (SPEC 1.7). Scores must lie in [0, 1]. The seed-variation columns
(`*_std`, `*_se`, `n_seeds`, per-seed `*_stderr`) are kept per run as the artifact
`cell_statistics.csv` (one row per target cell, the file's column names; on baseline runs the base
columns without their `base` part), read back by `tracking.reader.load_cell_statistics`.

Identity: `run_key` is a content hash of the imported rows of that run (model, seed, source cell
and every target's values), so importing the same data twice, from any file name, creates nothing
the second time. The tag `imported_from` records the file name and the content hash of the input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from transfergrid import runkeys
from transfergrid.config import ImportConfig
from transfergrid.grid import Cell
from transfergrid.models import infer_size_b, resolve_model
from transfergrid.tracking import names, reader, writer

logger = logging.getLogger(__name__)

SUITE = "paper"
SEED_AGGREGATED = "mean"  # seed tag of runs imported from a seed-aggregated table
TASK_ALIASES = {
    "arc_challenge": "arc_challenge", "arc": "arc_challenge", "arc-challenge": "arc_challenge", "m_arc": "arc_challenge",
    "global_mmlu": "global_mmlu", "global_mmlu_lite": "global_mmlu", "global-mmlu": "global_mmlu", "globalmmlu": "global_mmlu",
    "hellaswag": "hellaswag", "m_hellaswag": "hellaswag",
    "truthfulqa": "truthfulqa", "truthfulqa_mc1": "truthfulqa", "truthful_qa": "truthfulqa", "m_truthfulqa": "truthfulqa",
}
ACC_NORM_TASKS = ("arc_challenge", "hellaswag")  # tasks whose score_norm is acc_norm (SPEC 1.6)
BASE_MARKERS = ("", "n/a", "na", "nan", "none", "base", "-")
ID_COLUMNS = ["model_name", "model_size", "fine_tuned_dataset", "fine_tuned_language", "eval_dataset", "eval_language"]
_SCORES = ["score", "score_norm", "base_score", "base_score_norm", "delta_score", "delta_score_norm"]
AGGREGATED_COLUMNS = set(ID_COLUMNS) | {"n_seeds"} | {f"{c}_{s}" for c in _SCORES for s in ("mean", "std", "se")}
PER_SEED_COLUMNS = set(ID_COLUMNS) | {"seed"} | set(_SCORES) | {f"{c}_stderr" for c in _SCORES}
IGNORED_COLUMNS = {"regime", "model_family", "size_bucket", "n"}  # derived columns some tables carry: not imported
# The released file spells the base columns `score_base_*` / `score_norm_base_*`; both spellings are read.
RELEASED_SPELLINGS = {"score_base": "base_score", "score_norm_base": "base_score_norm"}
_SUFFIXES = ("_mean", "_std", "_se", "_stderr", "")
STATISTICS_ARTIFACT = names.CELL_STATISTICS_ARTIFACT  # per-run seed variation of an imported table (module doc)
# Normalised per-seed table: one row per (model, seed, source cell or base, target cell).
_LANGUAGE = r"[A-Za-z][A-Za-z0-9_-]*"  # a language code; no '/' or '.', which would break metric names and cells
KEY = ["model", "seed", "source_task", "source_language", "target_task", "target_language"]


@dataclass
class ImportedRun:
    """One run to log: its kind, identity tags, metrics and content key."""

    kind: str
    model: str
    seed: str
    source: Cell | None
    metrics: dict[str, float]
    key: str
    tags: dict = field(default_factory=dict)
    statistics: pd.DataFrame | None = None  # the STATISTICS_ARTIFACT table, when the input has such columns


@dataclass
class ImportSummary:
    """What an import did: runs created, runs skipped (already imported), rows read."""

    created: int
    skipped: int
    rows: int
    run_ids: list[str]


def canonical_task(name, where: str) -> str:
    """Our task name for a dataset/task name of the input.

    Raises:
        ValueError: an unknown name, naming `where` it occurs.
    """
    key = str(name).strip().lower()
    if key not in TASK_ALIASES:
        raise ValueError(f"unknown task {name!r} in {where}; known names: {', '.join(sorted(TASK_ALIASES))}")
    return TASK_ALIASES[key]


def file_fingerprint(path: Path) -> str:
    """`<name> sha256:<first 16 hex>` of a file, or of every `results_*.json` under a directory."""
    digest = hashlib.sha256()
    files = sorted(path.rglob("results_*.json")) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return f"{path.name} sha256:{digest.hexdigest()[:16]}"


def _row_names(frame: pd.DataFrame, mask, limit: int = 5) -> str:
    """`row 3 (model=..., ...)` descriptions of the rows where `mask` holds (CSV line numbers when known)."""
    rows = frame[mask].head(limit)
    labels = []
    for index, row in rows.iterrows():
        where = row["_where"] if "_where" in row else f"row {index}"
        labels.append(f"{where} ({row.get('model')}, seed {row.get('seed')}, {row.get('source_task') or 'base'}"
                      f".{row.get('source_language') or ''} -> {row.get('target_task')}.{row.get('target_language')})")
    more = int(np.asarray(mask).sum()) - len(labels)
    return "; ".join(labels) + (f"; and {more} more" if more > 0 else "")


def _model_identity(name: str, size) -> tuple[str, str, float]:
    """(model id, family, size in B): the paper's HF id and family label when the name is one of its 9 models."""
    from analysis import paper

    text = str(name).strip()
    for hf_id, family, size_b in paper.MODELS:
        if text.lower() in (hf_id.lower(), hf_id.split("/")[-1].lower()):
            return hf_id, family, size_b
    spec = resolve_model(text)
    size_b = _parse_size(size)
    if size_b is None:
        size_b = infer_size_b(text)
    return text, spec.family, float("nan") if size_b is None else size_b


def _parse_size(value) -> float | None:
    match = re.search(r"\d+(?:\.\d+)?", str(value)) if value is not None else None
    return float(match.group(0)) if match and str(value).lower() != "nan" else None


def _canonical_column(name: str) -> str:
    """The internal name of a column: `score_base_mean` -> `base_score_mean`, others unchanged."""
    for suffix in _SUFFIXES:
        stem = name[: len(name) - len(suffix)] if suffix else name
        if name.endswith(suffix) and stem in RELEASED_SPELLINGS:
            return RELEASED_SPELLINGS[stem] + suffix
    return name


def _released_spelling(name: str) -> str:
    for released, internal in RELEASED_SPELLINGS.items():
        for suffix in _SUFFIXES:
            if name == internal + suffix:
                return released + suffix
    return name


def _read_csv(path: Path) -> pd.DataFrame:
    """The CSV as strings/numbers; an empty, unreadable or header-only file is an error naming it."""
    try:
        frame = pd.read_csv(path, dtype={"fine_tuned_dataset": str, "fine_tuned_language": str, "seed": str},
                            keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty (no header, no rows); expected a results CSV") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV file: {error}") from None
    if frame.empty:
        raise ValueError(f"{path}: the table has a header but no rows; nothing to import")
    return frame


def read_results_csv(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a results CSV (seed-aggregated or per-seed) into the normalised (base, fine-tuned) tables.

    Returns:
        (base, ft): `base` has KEY (empty source), `acc`, `score`; `ft` has KEY, `acc`, `score`, `delta`;
        both carry the seed-variation columns of the file as `stat:<column>` (see the module doc).

    Raises:
        ValueError: an empty file, missing or unknown columns, unknown tasks, duplicates, non-finite
            values or scores outside [0, 1], naming the file and rows.
    """
    frame = _read_csv(path)
    per_seed = "seed" in frame.columns
    allowed = (PER_SEED_COLUMNS if per_seed else AGGREGATED_COLUMNS) | IGNORED_COLUMNS
    known = allowed | {_released_spelling(c) for c in allowed}
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise ValueError(f"{path.name}: unknown columns {unknown} for a {'per-seed' if per_seed else 'seed-aggregated'} "
                         f"results table; known: {sorted(known)}")
    renamed = [_canonical_column(c) for c in frame.columns]
    twice = sorted({c for c in renamed if renamed.count(c) > 1})
    if twice:
        raise ValueError(f"{path.name}: columns {twice} are given twice (as {' and '.join(sorted(set(frame.columns) - set(renamed)))} "
                         "and in the other spelling); keep one")
    frame.columns = renamed
    frame["_where"] = [f"{path.name} line {i + 2}" for i in range(len(frame))]
    suffix = "" if per_seed else "_mean"
    _check_scores(frame, [f"{c}{suffix}" for c in ("score", "score_norm", "base_score", "base_score_norm")])
    required = [c for c in ID_COLUMNS if c != "model_size"] + [f"score_norm{suffix}"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name}: missing columns {missing}; it has {[c for c in frame.columns if c != '_where']}")
    frame = _normalise_ids(frame, per_seed)
    base_rows = frame["source_task"] == ""
    if f"base_score_norm{suffix}" in frame.columns:
        base = frame[~base_rows].assign(acc=_column(frame[~base_rows], f"base_score{suffix}"),
                                         score=frame.loc[~base_rows, f"base_score_norm{suffix}"])
        base = base.assign(source_task="", source_language="")
        base = pd.concat([base, frame[base_rows].assign(acc=_column(frame[base_rows], f"score{suffix}"),
                                                          score=frame.loc[base_rows, f"score_norm{suffix}"])])
    else:
        base = frame[base_rows].assign(acc=_column(frame[base_rows], f"score{suffix}"),
                                       score=frame.loc[base_rows, f"score_norm{suffix}"])
    ft = frame[~base_rows]
    ft = ft.assign(acc=_column(ft, f"score{suffix}"), score=ft[f"score_norm{suffix}"],
                   delta=_column(ft, f"delta_score_norm{suffix}"))
    _check_finite(base, ["score", "acc"], optional=["acc"])
    _check_finite(ft, ["score", "acc", "delta"], optional=["acc", "delta"])
    return _consistent_base(_statistics(base, base_rows=True)), _statistics(ft, base_rows=False)


def _statistics(frame: pd.DataFrame, *, base_rows: bool) -> pd.DataFrame:
    """Add the seed-variation columns of each row as `stat:<name>` (on base rows taken from a fine-tuned
    row, `base_score_std` becomes `stat:score_std`, in the released spelling's terms: the baseline's own score)."""
    columns = [c for c in frame.columns if c.endswith(("_std", "_se", "_stderr")) or c == "n_seeds"]
    stats = {}
    for column in columns:
        is_base = column.startswith("base_")
        name = column[len("base_"):] if is_base else column
        if column == "n_seeds" or (is_base if base_rows else not is_base):
            stats[f"stat:{name}"] = pd.to_numeric(frame[column], errors="coerce")
    if base_rows:  # rows of a base marker (empty source) carry the baseline's statistics in the un-prefixed columns
        own = frame["fine_tuned_dataset"].fillna("").astype(str).str.strip().str.lower().isin(BASE_MARKERS)
        for column in columns:
            if not column.startswith("base_") and column != "n_seeds":
                stats[f"stat:{column}"] = stats.get(f"stat:{column}", pd.Series(np.nan, index=frame.index)).where(
                    ~own, pd.to_numeric(frame[column], errors="coerce"))
    return frame.assign(**stats)


def _check_scores(frame: pd.DataFrame, columns: list[str]) -> None:
    """Scores are fractions: a value outside [0, 1] is an error naming the column and rows."""
    for column in (c for c in columns if c in frame.columns):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = (values < 0) | (values > 1)
        if bad.any():
            raise ValueError(f"{_released_spelling(column)} outside [0, 1] (scores are fractions) in {int(bad.sum())} rows: "
                             f"{_row_names(frame.assign(model=frame['model_name']), bad)}; first value {values[bad].iloc[0]!r}")


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(frame[name], errors="coerce") if name in frame.columns else pd.Series(np.nan, index=frame.index)


def _normalise_ids(frame: pd.DataFrame, per_seed: bool) -> pd.DataFrame:
    """Model ids, canonical task names and seed labels; raises on unknown task names with their rows."""
    frame = frame.copy()
    for column in ("fine_tuned_dataset", "eval_dataset"):
        values = frame[column].fillna("").astype(str).str.strip()
        base = values.str.lower().isin(BASE_MARKERS)
        bad = ~base & ~values.str.lower().isin(TASK_ALIASES)
        if column == "eval_dataset":
            bad |= base
        if bad.any():
            first = frame.loc[bad, "_where"].head(5).tolist()
            raise ValueError(f"unknown task {values[bad].iloc[0]!r} in column {column} ({', '.join(first)}); "
                             f"known names: {', '.join(sorted(TASK_ALIASES))}")
        frame[column] = np.where(base, "", values.str.lower().map(TASK_ALIASES).fillna(""))
    sizes = frame["model_size"].astype(str) if "model_size" in frame.columns else pd.Series("", index=frame.index)
    pairs = list(zip(frame["model_name"].astype(str), sizes))
    identities = {pair: _model_identity(*pair) for pair in set(pairs)}
    ident = [identities[pair] for pair in pairs]
    frame["model"] = [i[0] for i in ident]
    frame["model_family"] = [i[1] for i in ident]
    frame["model_size_b"] = [i[2] for i in ident]
    frame["seed"] = frame["seed"].astype(str).str.strip() if per_seed else SEED_AGGREGATED
    frame["source_task"] = frame["fine_tuned_dataset"]
    source_language = frame["fine_tuned_language"].fillna("").astype(str).str.strip()
    frame["source_language"] = np.where(frame["source_task"] == "", "", source_language)
    frame["target_task"] = frame["eval_dataset"]
    frame["target_language"] = frame["eval_language"].fillna("").astype(str).str.strip()
    valid = frame["target_language"].str.fullmatch(_LANGUAGE)
    valid &= (frame["source_task"] == "") | frame["source_language"].str.fullmatch(_LANGUAGE)
    valid &= frame["model_name"].notna() & (frame["model_name"].astype(str).str.strip() != "")
    if not valid.all():
        raise ValueError(f"empty model name or empty/invalid language in {_row_names(frame, ~valid)}")
    return frame


def _check_finite(frame: pd.DataFrame, columns: list[str], optional: list[str]) -> None:
    """Raise naming the rows with a non-finite value (optional columns may be missing altogether)."""
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        if column in optional and values.isna().all():
            continue
        bad = ~np.isfinite(values.astype(float))
        if bad.any():
            raise ValueError(f"non-finite {column} in {int(bad.sum())} rows: {_row_names(frame, bad)}")


def _consistent_base(base: pd.DataFrame) -> pd.DataFrame:
    """One base row per (model, seed, target); raises when the same base score differs between rows."""
    keys = ["model", "seed", "target_task", "target_language"]
    grouped = base.groupby(keys)["score"]
    bad = (grouped.transform("max") - grouped.transform("min")) > 1e-9
    if bad.any():
        raise ValueError(f"base scores differ between rows of the same model, seed and target: {_row_names(base, bad)}")
    return base.drop_duplicates(subset=keys, keep="first")


_LMEVAL_TASK = re.compile(r"^(arc|global_mmlu|hellaswag|truthfulqa)_([a-z]{2,3})(_mc1)?$")
_LMEVAL_TASK_NAMES = {"arc": "arc_challenge", "global_mmlu": "global_mmlu", "hellaswag": "hellaswag", "truthfulqa": "truthfulqa"}
_SEED_PART = re.compile(r"seed[_-]?(\d+)", re.IGNORECASE)
_SOURCE_PART = re.compile(r"^(" + "|".join(sorted(TASK_ALIASES, key=len, reverse=True)) + r")[._-]([a-z]{2,3})$", re.IGNORECASE)


def lmeval_task(name: str, where: str) -> Cell:
    """Our cell for an lm-eval task name: `arc_de`, `global_mmlu_de`, `truthfulqa_de_mc1`, `hellaswag_de`.

    Raises:
        ValueError: any other task name, naming `where`.
    """
    match = _LMEVAL_TASK.match(name)
    if not match or (match.group(3) is not None) != (match.group(1) == "truthfulqa"):
        raise ValueError(f"unknown lm-eval task {name!r} in {where}; expected arc_<lang>, global_mmlu_<lang>, "
                         "truthfulqa_<lang>_mc1 or hellaswag_<lang>")
    return Cell(_LMEVAL_TASK_NAMES[match.group(1)], match.group(2))


def _lmeval_meta(file: Path, root: Path, data: dict) -> tuple[str, str, Cell | None]:
    """(model name, seed, source cell or None for the base model) of one lm-eval results file."""
    parts = file.relative_to(root).parts[:-1]
    args = str((data.get("config") or {}).get("model_args") or "")
    seeds = [m.group(1) for part in parts if (m := _SEED_PART.search(part))]
    sources = [m for part in parts if (m := _SOURCE_PART.match(part))]
    is_base = any(part.lower() in ("base", "base_model") for part in parts)
    if not seeds:
        raise ValueError(f"{file}: no seed in the path; put the results under a directory named seed<N>")
    if bool(sources) == is_base:
        raise ValueError(f"{file}: the path must contain exactly one of a 'base' directory or a "
                         "'<task>_<lang>' source directory (e.g. arc_challenge_de)")
    pretrained = re.search(r"pretrained=([^,]+)", args)
    model = data.get("model_name") or (pretrained.group(1) if pretrained else "")
    if not model:
        raise ValueError(f"{file}: no model_name and no pretrained= in config.model_args")
    source = None if is_base else Cell(canonical_task(sources[-1].group(1), str(file)), sources[-1].group(2).lower())
    return str(model), seeds[-1], source


def read_lmeval_dir(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every `results_*.json` under `root` (or the one JSON file `root`) as the normalised (base, ft) tables
    of `read_results_csv`; seed and source cell come from the file's path (below `root`, or its whole path).

    Raises:
        ValueError: no results files, invalid JSON, unknown task names, missing metrics or baselines, naming the file.
    """
    files = sorted(root.rglob("results_*.json")) if root.is_dir() else [root]
    if not files:
        raise ValueError(f"{root}: no lm-eval results_*.json files below this directory")
    base_dir = root if root.is_dir() else Path(root.resolve().anchor)
    rows = []
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{file}: invalid JSON ({error}); expected an lm-eval results file") from None
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or not data["results"]:
            raise ValueError(f"{file}: no 'results' in this JSON; expected an lm-eval results file")
        name, seed, source = _lmeval_meta(file.resolve() if not root.is_dir() else file, base_dir, data)
        model, family, size_b = _model_identity(name, None)
        for task, values in data["results"].items():
            cell = lmeval_task(task, str(file))
            acc, acc_norm = values.get("acc,none"), values.get("acc_norm,none")
            if acc is None and acc_norm is None:
                raise ValueError(f"{file}: task {task} has neither 'acc,none' nor 'acc_norm,none'")
            rows.append({
                "model": model, "model_family": family, "model_size_b": size_b, "seed": seed,
                "source_task": source.task if source else "", "source_language": source.language if source else "",
                "target_task": cell.task, "target_language": cell.language,
                "acc": np.nan if acc is None else float(acc), "score": float(acc_norm if acc_norm is not None else acc),
                "delta": np.nan, "_where": f"{file.relative_to(root) if root.is_dir() else file.name} task {task}",
            })
    frame = pd.DataFrame(rows)
    _check_finite(frame, ["score"], optional=[])
    _check_scores(frame.assign(model_name=frame["model"]), ["score", "acc"])
    base_rows = frame["source_task"] == ""
    return frame[base_rows].copy(), frame[~base_rows].copy()


def _check_keys(base: pd.DataFrame, ft: pd.DataFrame) -> None:
    """No duplicate (model, seed, source, target) rows; every fine-tuned row has its base score."""
    for frame in (base, ft):
        duplicated = frame.duplicated(subset=KEY, keep=False)
        if duplicated.any():
            raise ValueError(f"duplicate rows for the same (model, seed, source, target): {_row_names(frame, duplicated)}")
    targets = ["model", "seed", "target_task", "target_language"]
    known = set(map(tuple, base[targets].to_numpy().tolist()))
    lacking = np.array([tuple(row) not in known for row in ft[targets].to_numpy().tolist()], dtype=bool)
    if lacking.any():
        raise ValueError(f"no base-model score for {_row_names(ft, lacking)}")


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns as arrays, with each row's metric names (`score/<task>/<lang>`, ...) built once, vectorised."""
    suffix = "/" + frame["target_task"] + "/" + frame["target_language"]
    frame = frame.assign(_score="score" + suffix, _acc="acc" + suffix, _acc_norm="acc_norm" + suffix,
                         _delta=names.DELTA + suffix, _has_norm=frame["target_task"].isin(ACC_NORM_TASKS))
    return {column: frame[column].to_numpy() for column in frame.columns}


def _groups(frame: pd.DataFrame, keys: list[str]):
    """(group key, row positions ordered by target cell) per group of `keys`, in sorted key order."""
    frame = frame.sort_values(["target_task", "target_language"], kind="stable").reset_index(drop=True)
    indices = frame.groupby(keys, sort=True).indices
    return _columns(frame), [(key, indices[key]) for key in sorted(indices)]


def _cell_metrics(col: dict, idx: np.ndarray, with_delta: bool) -> dict[str, float]:
    """`score/...`, `acc/...` (where known), `acc_norm/...` (ARC, HellaSwag) and `delta/...` of one run's rows."""
    score = col["score"][idx].astype(float)
    metrics = dict(zip(col["_score"][idx].tolist(), score.tolist()))
    acc = col["acc"][idx].astype(float)
    known = np.isfinite(acc)
    metrics.update(zip(col["_acc"][idx][known].tolist(), acc[known].tolist()))
    norm = col["_has_norm"][idx].astype(bool)
    metrics.update(zip(col["_acc_norm"][idx][norm].tolist(), score[norm].tolist()))
    if with_delta:
        metrics.update(zip(col["_delta"][idx].tolist(), col["delta"][idx].astype(float).tolist()))
    return metrics


def _identity(col: dict, idx: np.ndarray) -> dict:
    first = idx[0]
    return {names.MODEL: col["model"][first], names.MODEL_FAMILY: col["model_family"][first],
            names.MODEL_SIZE_B: float(col["model_size_b"][first]), names.SEED: col["seed"][first], names.BENCHMARK_SUITE: SUITE}


def _content(col: dict, idx: np.ndarray, columns: list[str]) -> list:
    """The rows' target cells and values (ordered by target) as JSON-ready lists for the run key."""
    return list(zip(*(col[c][idx].tolist() for c in ["target_task", "target_language", *columns])))


def _stat_columns(col: dict, idx: np.ndarray) -> list[str]:
    """The `stat:*` columns with a value in these rows."""
    return [c for c in sorted(col) if c.startswith("stat:") and np.isfinite(col[c][idx].astype(float)).any()]


def _statistics_table(col: dict, idx: np.ndarray, stats: list[str]) -> pd.DataFrame | None:
    if not stats:
        return None
    table = {"target_task": col["target_task"][idx], "target_language": col["target_language"][idx]}
    table.update({c[len("stat:"):]: col[c][idx].astype(float) for c in stats})
    return pd.DataFrame(table)


def build_runs(base: pd.DataFrame, ft: pd.DataFrame, cfg: ImportConfig) -> list[ImportedRun]:
    """Baseline runs (one per model and seed) first, then evaluate runs (per model, seed, source cell)."""
    _check_keys(base, ft)
    ft = ft.merge(base[["model", "seed", "target_task", "target_language", "score"]].rename(columns={"score": "base"}),
                  on=["model", "seed", "target_task", "target_language"], how="left")
    ft["delta"] = ft["delta"].where(ft["delta"].notna(), 100.0 * (ft["score"] - ft["base"]))
    runs, base_keys = [], {}
    col, groups = _groups(base, ["model", "seed"])
    for (model, seed), idx in groups:
        stats = _stat_columns(col, idx)
        key = runkeys.run_key("baseline", {"imported": True, "model": model, "seed": seed, "suite": SUITE,
                                           "rows": _content(col, idx, ["acc", "score", *stats])})
        base_keys[(model, seed)] = key
        runs.append(ImportedRun("baseline", model, seed, None, _cell_metrics(col, idx, False), key,
                                {**_identity(col, idx), names.RECIPE: "none"}, _statistics_table(col, idx, stats)))
    col, groups = _groups(ft, ["model", "seed", "source_task", "source_language"])
    for (model, seed, task, language), idx in groups:
        source, baseline, stats = Cell(task, language), base_keys[(model, seed)], _stat_columns(col, idx)
        key = runkeys.run_key("evaluate", {"imported": True, "baseline": baseline, "source": str(source), "recipe": cfg.recipe,
                                           "lora_r": cfg.lora_r, "rows": _content(col, idx, ["acc", "score", "delta", *stats])})
        metrics = _cell_metrics(col, idx, True)
        targets = zip(col["target_task"][idx], col["target_language"][idx], col["delta"][idx].astype(float))
        metrics.update(names.transfer_metrics(source, {Cell(t, lang): d for t, lang, d in targets}))
        tags = {**_identity(col, idx), names.RECIPE: cfg.recipe, names.LORA_R: cfg.lora_r,
                names.SOURCE_TASK: task, names.SOURCE_LANGUAGE: language, names.SOURCE_CELL: f"{task}.{language}",
                names.BASELINE_RUN_ID: baseline}
        runs.append(ImportedRun("evaluate", model, seed, source, metrics, key, tags, _statistics_table(col, idx, stats)))
    return runs


def read_input(cfg: ImportConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The normalised (base, ft) tables of `cfg.path` in `cfg.format` (`auto`: a directory is lm-eval)."""
    if not str(cfg.path).strip():
        raise ValueError("no input: pass --path results.csv (or -P path=...) or a directory of lm-eval results")
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise ValueError(f"import path {str(path)!r} does not exist")
    fmt = cfg.format if cfg.format != "auto" else ("lmeval" if path.is_dir() or path.suffix.lower() == ".json" else "csv")
    if fmt == "lmeval":
        if not path.is_dir() and path.suffix.lower() != ".json":
            raise ValueError(f"format lmeval needs a directory of results_*.json files or one .json file, got {str(path)!r}")
        return read_lmeval_dir(path)
    if path.is_dir():
        raise ValueError(f"format csv needs a file, got the directory {str(path)!r}")
    return read_results_csv(path)


def import_results(cfg: ImportConfig) -> ImportSummary:
    """Validate `cfg.path` completely, then log every run not already FINISHED with the same run key.

    Raises:
        ValueError: any validation error, before any run is created.
    """
    from transfergrid.console import progress

    base, ft = read_input(cfg)
    runs = build_runs(base, ft, cfg)
    origin = file_fingerprint(Path(cfg.path).expanduser())
    uri = writer.resolve_tracking_uri(cfg.tracking_uri)
    experiment_id = writer.ensure_experiment(uri, cfg.experiment)
    done = reader.finished_run_keys(uri, experiment_id, ("baseline", "evaluate"))
    pending = [run for run in runs if run.key not in done]
    logger.info("%s: %d rows -> %d runs; skipped %d already imported",
                origin, len(base) + len(ft), len(runs), len(runs) - len(pending))
    run_ids = {run.key: done[run.key] for run in runs if run.key in done}
    for run in progress(pending, desc="import runs", unit="run", disable=not pending):
        tags = {**run.tags, names.RUN_KEY: run.key, names.IMPORTED_FROM: origin}
        if run.kind == "evaluate":
            tags[names.BASELINE_RUN_ID] = run_ids[run.tags[names.BASELINE_RUN_ID]]  # baseline key -> its run id
        name = f"{run.kind} {run.model} seed={run.seed}" + (f" {run.source}" if run.source else "") + " (imported)"
        artifacts = {STATISTICS_ARTIFACT: run.statistics} if run.statistics is not None else None
        run_ids[run.key] = writer.log_run(uri, experiment_id, kind=run.kind, tags=tags, metrics=run.metrics, run_name=name,
                                          artifacts=artifacts)
    return ImportSummary(created=len(pending), skipped=len(runs) - len(pending), rows=len(base) + len(ft),
                         run_ids=[run_ids[run.key] for run in runs])
