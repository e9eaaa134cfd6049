"""Compute the URIEL+ distances of the paper's 11 languages into `language_distances_paper.csv` (SPEC 1.16).

    /work/main/.venv/bin/pip install urielplus==1.3.2     # offline after install; not a runtime dependency
    PYTHONPATH=src:. python analysis/data/make_distances.py

urielplus is needed only to regenerate the CSV; the analysis reads the CSV (`analysis.typology`).
URIELPlus() with its defaults; `new_distance(kind, iso3_codes)` returns a matrix in the order of the
codes, -1 where URIEL+ cannot compute a distance (written here as an empty value). Its database
integration is not called (it would switch to Glottocodes, STACK.md).
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.paper import ISO3

KINDS = ("syntactic", "phonological", "inventory", "genetic", "geographic")
OUT = Path(__file__).parent / "language_distances_paper.csv"


def main() -> None:
    from urielplus import urielplus

    logging.getLogger().setLevel(logging.WARNING)  # urielplus logs every call at INFO
    uriel = urielplus.URIELPlus()
    languages = sorted(ISO3)
    codes = [ISO3[lang] for lang in languages]
    rows, missing = [], {}
    for kind in KINDS:
        matrix = np.asarray(uriel.new_distance(kind, codes), dtype=float)
        for i, a in enumerate(languages):
            for j, b in enumerate(languages):
                if i == j:
                    continue
                value = matrix[i, j]
                if value < 0:  # -1: no shared features for this pair
                    missing.setdefault(kind, []).append(f"{a}-{b}")
                rows.append({"distance": kind, "lang_a": a, "lang_b": b, "value": value if value >= 0 else np.nan})
    table = pd.DataFrame(rows)
    header = [
        f"# URIEL+ distances of the paper's 11 languages (SPEC 1.3, 1.16): urielplus=={version('urielplus')},",
        "# URIELPlus() defaults, new_distance(kind, ISO 639-3 codes); written by analysis/data/make_distances.py.",
        "# lang_a/lang_b are ISO 639-1 codes: " + ", ".join(f"{k}={v}" for k, v in sorted(ISO3.items())) + ".",
        "# Ordered off-diagonal pairs (110 per distance). Empty value = URIEL+ could not compute it (-1):",
    ]
    for kind in KINDS:
        pairs = missing.get(kind, [])
        header.append(f"#   {kind}: {len(pairs)} missing" + (f" ({' '.join(pairs)})" if pairs else ""))
    OUT.write_text("\n".join(header) + "\n" + table.to_csv(index=False, float_format="%.6g"))
    print(f"wrote {OUT}: {len(table)} rows; missing {sum(len(v) for v in missing.values())}")


if __name__ == "__main__":
    main()
