"""Paper-scale benchmark of `import_results` + `analysis` (issue 4, "Done when").

Generates 9 models x 44 sources x 44 targets x 3 seeds (`analysis.simulate`), writes it in the exact
26-column header of the authors' released `results/transfer_results.csv` (17,424 seed-aggregated
rows; `--per-seed` writes the per-seed long table instead, 1,215 runs), imports it through the
`import_results` entry point into a fresh SQLite store in a temporary directory, imports it again
(which must create nothing), runs the `analysis` entry point on it, and compares its
`tables/regime_summary.csv` with a direct pandas computation on the file's `delta_score_norm(_mean)`.
`--load N` keeps N busy-looping processes running meanwhile (the goal's condition: 2 cores while
another process uses one). Appends a results table with a machine description to `benchmarks/RESULTS.md`.

    OMP_NUM_THREADS=1 PYTHONPATH=src:. python benchmarks/analysis_scale.py [--per-seed] [--load 1] [--no-append]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import _common  # puts src/ on the path; machine description

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
REGIMES = ("MT-ML", "MT-CL", "CT-ML", "CT-CL")


def direct_regime_table(csv: Path) -> pd.DataFrame:
    """Regime summary straight from the CSV with pandas: Δ = delta_score_norm(_mean), SPEC 1.7-1.9."""
    frame = pd.read_csv(csv)
    keys = ["model_name", "fine_tuned_dataset", "fine_tuned_language", "eval_dataset", "eval_language"]
    if "seed" in frame.columns:
        frame = frame.groupby(keys, as_index=False)["delta_score_norm"].mean().rename(columns={"delta_score_norm": "d"})
    else:
        frame = frame.rename(columns={"delta_score_norm_mean": "d"})
    same_task = frame["fine_tuned_dataset"] == frame["eval_dataset"]
    same_lang = frame["fine_tuned_language"] == frame["eval_language"]
    frame["regime"] = np.where(same_task, np.where(same_lang, "MT-ML", "MT-CL"), np.where(same_lang, "CT-ML", "CT-CL"))
    groups = [(r, frame.loc[frame["regime"] == r, "d"]) for r in REGIMES]
    groups.append(("All transfer", frame.loc[frame["regime"] != "MT-ML", "d"]))
    return pd.DataFrame([{"regime": r, "n": d.size, "mean_delta": d.mean(), "median_delta": d.median(),
                          "win_rate": 100 * (d > 0).mean(), "harm_rate": 100 * (d <= -1.0).mean()} for r, d in groups])


def _busy() -> None:
    while True:
        pass


def run(aggregated: bool, workdir: Path) -> dict:
    """Generate, import and analyse; returns the measurements."""
    from analysis.released import released_table
    from analysis.simulate import simulate_paper
    from entrypoints import analysis as analysis_entry
    from entrypoints import import_results as import_entry
    from transfergrid.tracking import reader

    csv = workdir / ("transfer_results.csv" if aggregated else "transfer_results_per_seed.csv")
    released_table(simulate_paper().results, per_seed=not aggregated).to_csv(csv, index=False)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    common = ["--tracking_uri", uri, "--experiment", "paper-scale"]
    start = time.perf_counter()
    summary = import_entry.main(["--path", str(csv), *common])
    import_s = time.perf_counter() - start
    start = time.perf_counter()
    again = import_entry.main(["--path", str(csv), *common])
    reimport_s = time.perf_counter() - start
    start = time.perf_counter()
    run_id = analysis_entry.main(common)
    analysis_s = time.perf_counter() - start
    out = reader.download_artifacts(uri, run_id, "tables", workdir / "artifacts")
    tables = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    got = pd.read_csv(out / "regime_summary.csv").set_index("regime")
    want = direct_regime_table(csv).set_index("regime")
    columns = ["n", "mean_delta", "median_delta", "win_rate", "harm_rate"]
    diff = float(np.nanmax(np.abs(got.loc[want.index, columns].to_numpy(float) - want[columns].to_numpy(float))))
    return {"input": f"{csv.name} ({len(pd.read_csv(csv, nrows=0).columns)} columns)", "rows": len(pd.read_csv(csv, usecols=[0])),
            "runs": summary.created, "import_s": import_s,
            "reimport_s": reimport_s, "reimport_created": again.created, "analysis_s": analysis_s,
            "max_abs_diff": diff, "tables": tables}


def report(result: dict) -> str:
    """A markdown section with the measurements and the machine."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"\n## analysis_scale ({when})\n",
        f"Machine: {_common.machine()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"busy processes alongside: {result['load']}; load average at the end: {result['loadavg']}.\n",
        "| input | file rows | runs imported | import (s) | re-import (s, runs created) | analysis (s) "
        "| import + analysis (s) | goal | max abs diff vs pandas | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {result['input']} | {result['rows']} | {result['runs']} | {result['import_s']:.1f} | "
        f"{result['reimport_s']:.1f} ({result['reimport_created']}) | {result['analysis_s']:.1f} | "
        f"{result['import_s'] + result['analysis_s']:.1f} | {result['goal']} | {result['max_abs_diff']:.2e} | <= 1e-9 |",
        f"\nTables the analysis run logged: {', '.join(result['tables'])}.\n",
    ])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-seed", action="store_true", help="import the per-seed long table (1,215 runs) "
                        "instead of the released seed-aggregated file (405 runs)")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes to run alongside (default 0)")
    parser.add_argument("--no-append", action="store_true", help=f"do not append to {RESULTS.name}")
    args = parser.parse_args(argv)
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for process in busy:
        process.start()
    with tempfile.TemporaryDirectory(prefix="transfergrid-bench-") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # the analysis entry point may write scratch files to the working directory
        try:
            result = run(not args.per_seed, Path(tmp))
        finally:
            os.chdir(cwd)
            for process in busy:
                process.terminate()
    result.update(load=args.load, loadavg=" ".join(f"{v:.1f}" for v in os.getloadavg()),
                  goal="analysis < 120" if args.per_seed else "import + analysis < 120")
    text = report(result)
    print(text)
    if not args.no_append:
        with RESULTS.open("a") as handle:
            handle.write(text)
    total = result["analysis_s"] + (result["import_s"] if not args.per_seed else 0)
    return 0 if total < 120 and result["max_abs_diff"] <= 1e-9 and result["reimport_created"] == 0 else 1


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    raise SystemExit(main())
