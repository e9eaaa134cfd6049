"""Typological correlation: MT-CL Δ per ordered language pair vs language distances (SPEC 1.16)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis._common import require_columns

DATA = Path(__file__).parent / "data"
URIELPLUS_DISTANCES = DATA / "language_distances_paper.csv"  # written by data/make_distances.py
LANG2VEC_DISTANCES = DATA / "language_distances_lang2vec.csv"  # written by data/make_lang2vec_distances.py
PAPER_TYPOLOGY = ("syntactic", "phonological", "inventory")  # the paper's three lang2vec distances
_LONG = ["distance", "lang_a", "lang_b", "value"]


def load_lang2vec_distances(path: str | Path = LANG2VEC_DISTANCES) -> pd.DataFrame:
    """The paper's typological distances: cosine distances of lang2vec 1.1.2 `syntax_knn`, `phonology_knn`,
    `inventory_knn` vectors of its 11 languages, stored with the project (ISO 639-1 codes).

    Returns:
        Columns `distance` (syntactic, phonological, inventory), `lang_a, lang_b, value, source`.
    """
    return pd.read_csv(path, comment="#")


def load_urielplus_distances(path: str | Path = URIELPLUS_DISTANCES) -> pd.DataFrame:
    """The 11 languages' URIEL+ distances stored with the project (long format, ISO 639-1 codes).

    Returns:
        Columns `distance` (syntactic, phonological, inventory, genetic, geographic), `lang_a, lang_b, value`
        (NaN where URIEL+ has no data; see the file's header) and `source` (`URIEL+ <version>`).
    """
    path = Path(path)
    match = re.search(r"urielplus==([\w.]+)", path.read_text().split("\n", 1)[0])
    return pd.read_csv(path, comment="#").assign(source=f"URIEL+ {match.group(1)}" if match else "URIEL+")


def load_paper_distances() -> pd.DataFrame:
    """The `paper` suite's default distances: the paper's lang2vec syntactic, phonological and inventory
    distances, plus URIEL+ genetic and geographic (which the paper does not use), each with its `source`."""
    uriel = load_urielplus_distances()
    return pd.concat([load_lang2vec_distances(), uriel[~uriel["distance"].isin(PAPER_TYPOLOGY)]], ignore_index=True)


def distances_to_long(matrix: pd.DataFrame, *, name: str = "distance") -> pd.DataFrame:
    """A square language x language distance matrix as the long format (off-diagonal pairs).

    Example: the `synthetic` suite's planted `ground_truth()["language_distance"]`.
    """
    long = matrix.rename_axis(index="lang_a", columns="lang_b").stack().rename("value").reset_index()
    long = long[long["lang_a"] != long["lang_b"]]
    return long.assign(distance=name)[_LONG].reset_index(drop=True)


def language_pair_means(frame: pd.DataFrame, *, delta: str = "delta") -> pd.DataFrame:
    """Mean MT-CL Δ over models and tasks per ordered (source language, target language) (SPEC 1.16).

    Returns:
        Columns `source_language, target_language, mean_delta, n` (110 pairs on the paper's grid).
    """
    require_columns(frame, ["regime", "source_language", "target_language", delta], "tidy table")
    rows = frame[frame["regime"] == "MT-CL"]
    return rows.groupby(["source_language", "target_language"], sort=True)[delta].agg(mean_delta="mean", n="size").reset_index()


def typology_correlation(frame: pd.DataFrame, distances: pd.DataFrame, *, delta: str = "delta") -> pd.DataFrame:
    """Spearman ρ (and p), Pearson r (and p) and N between each distance and MT-CL mean Δ per pair (SPEC 1.16).

    Args:
        frame: seed-aggregated tidy rows.
        distances: long format `distance, lang_a, lang_b, value` and optionally `source`
            (`load_paper_distances()`), or a square language x language matrix (one distance named
            `distance`). A pair given in one order only is used for both orders; NaN distances are
            dropped (N counts the pairs left).
        delta: the Δ column (pp).

    Returns:
        One row per (source, distance): `distance, source, n, spearman_rho, spearman_p, pearson_r, pearson_p`
        (`source` empty when the distances name none).

    Raises:
        ValueError: a missing column in either table.
    """
    if not set(_LONG) <= set(distances.columns):
        if distances.shape[0] != distances.shape[1]:
            raise ValueError(f"distances lacks columns {_LONG} and is not a square matrix: {distances.shape}")
        distances = distances_to_long(distances)
    require_columns(distances, _LONG, "distances")
    distances = distances.assign(source=distances["source"].fillna("") if "source" in distances else "")
    pairs = language_pair_means(frame, delta=delta)
    both = pd.concat([distances, distances.rename(columns={"lang_a": "lang_b", "lang_b": "lang_a"})])
    both = both.drop_duplicates(["source", "distance", "lang_a", "lang_b"], keep="first")
    rows = []
    for (source, name), dist in both.groupby(["source", "distance"], sort=False):
        merged = pairs.merge(dist, left_on=["source_language", "target_language"], right_on=["lang_a", "lang_b"])
        merged = merged[np.isfinite(merged["value"].astype(float)) & np.isfinite(merged["mean_delta"])]
        x, y = merged["value"].astype(float), merged["mean_delta"]
        ok = len(merged) >= 3 and x.nunique() > 1 and y.nunique() > 1
        rho, rho_p = stats.spearmanr(x, y) if ok else (np.nan, np.nan)
        r, r_p = stats.pearsonr(x, y) if ok else (np.nan, np.nan)
        rows.append({"distance": name, "source": source, "n": len(merged), "spearman_rho": float(rho), "spearman_p": float(rho_p),
                     "pearson_r": float(r), "pearson_p": float(r_p)})
    return pd.DataFrame(rows, columns=["distance", "source", "n", "spearman_rho", "spearman_p", "pearson_r", "pearson_p"])
