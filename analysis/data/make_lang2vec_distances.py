"""Compute the paper's typological distances into `language_distances_lang2vec.csv`.

The paper's typology analysis ("Typological correlation"): cosine distance between the lang2vec
`syntax_knn`, `phonology_knn` and `inventory_knn` vectors of its 11 languages (ISO 639-3 codes
ara, ben, deu, eng, spa, fra, hin, ind, ita, por, cmn). lang2vec ships its URIEL data inside the
package, so this runs offline once installed; it needs `pkg_resources` (setuptools < 80):

    python -m venv /tmp/l2v && /tmp/l2v/bin/pip install lang2vec==1.1.2 'setuptools<80' pandas
    PYTHONPATH=src:. /tmp/l2v/bin/python analysis/data/make_lang2vec_distances.py

lang2vec is needed only to regenerate the CSV; the analysis reads the CSV (`analysis.typology`).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.paper import ISO3

FEATURES = {"syntactic": "syntax_knn", "phonological": "phonology_knn", "inventory": "inventory_knn"}
OUT = Path(__file__).parent / "language_distances_lang2vec.csv"


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - a.b / (|a| |b|), as `scipy.spatial.distance.cosine`."""
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    import lang2vec.lang2vec as l2v

    languages = sorted(ISO3)
    codes = [ISO3[lang] for lang in languages]
    source = f"lang2vec {version('lang2vec')}"
    rows = []
    for name, feature_set in FEATURES.items():
        vectors = l2v.get_features(codes, feature_set)
        missing = [c for c in codes if any(v == "--" for v in vectors[c])]
        if missing:  # the knn sets are imputed: no missing values expected
            raise SystemExit(f"{feature_set}: missing values for {missing}")
        matrix = {c: np.asarray(vectors[c], dtype=float) for c in codes}
        for a, code_a in zip(languages, codes):
            for b, code_b in zip(languages, codes):
                if a != b:
                    rows.append({"distance": name, "lang_a": a, "lang_b": b,
                                 "value": cosine_distance(matrix[code_a], matrix[code_b]), "source": f"{source} {feature_set}"})
    table = pd.DataFrame(rows)
    header = [
        f"# Typological distances of the paper's 11 languages: {source}, cosine distance between the",
        "# syntax_knn, phonology_knn and inventory_knn vectors (lang2vec.get_features with ISO 639-3 codes);",
        "# written by analysis/data/make_lang2vec_distances.py. lang_a/lang_b are ISO 639-1 codes: "
        + ", ".join(f"{k}={v}" for k, v in sorted(ISO3.items())) + ".",
        "# Ordered off-diagonal pairs: 110 per distance.",
    ]
    OUT.write_text("\n".join(header) + "\n" + table.to_csv(index=False, float_format="%.12g"))
    print(f"wrote {OUT}: {len(table)} rows")


if __name__ == "__main__":
    main()
