"""The authors' released results file, in its exact 26-column header, through `import_results` and `analysis`.

Rows made here carry the float residue of the real file: Δ at 0 ± 1e-15 and at -1 ± 1e-15, where
recomputing 100 x (score - base) from the seed means would move the win and harm rates.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.released import RELEASED_HEADER
from transfergrid import analysis_run
from transfergrid.config import AnalysisConfig, ImportConfig
from transfergrid.importer import import_results
from transfergrid.tracking import names, reader

MODELS = [("Llama-3.2-1B-Instruct", 1.0), ("Qwen2.5-0.5B-Instruct", 0.5)]
TASKS = ["arc_challenge", "global_mmlu"]
LANGS = ["de", "fr", "hi"]
# Δ values (pp) cycled over the rows: exact and residue ties at 0 and at -1, and clear wins/losses.
DELTAS = [1.8e-15, -1.8e-15, 0.0, -1.0 + 4e-16, -1.0 - 4e-16, -1.0, 2.5, -0.5, 3.25, -2.0, 1e-15, -1.0 + 1.1e-15, 0.75]
REGIMES = ["MT-ML", "MT-CL", "CT-ML", "CT-CL", "All transfer"]


def released_rows() -> pd.DataFrame:
    """2 models x 6 sources x 6 targets in the released header; seed means of 3 seeds, scores in [0, 1]."""
    rng = np.random.default_rng(7)
    cells = list(itertools.product(TASKS, LANGS))
    base = {(m, c): rng.uniform(0.3, 0.6) for m, _ in MODELS for c in cells}
    rows = []
    for i, ((model, size), source, target) in enumerate(itertools.product(MODELS, cells, cells)):
        delta = DELTAS[i % len(DELTAS)]
        b = base[(model, target)]
        # the seed means of the scores: a residue tie has equal means, a -1 pp one a mean 0.01 lower
        score_norm = b if abs(delta) < 1e-9 else b - 0.01 if abs(delta + 1) < 1e-9 else b + delta / 100
        same_task, same_lang = source[0] == target[0], source[1] == target[1]
        rows.append({
            "model_name": model, "model_size": size, "fine_tuned_dataset": source[0], "fine_tuned_language": source[1],
            "eval_dataset": target[0], "eval_language": target[1],
            "regime": ("MT" if same_task else "CT") + "-" + ("ML" if same_lang else "CL"),
            "score_mean": score_norm - 0.02, "score_std": 0.011 + i * 1e-4, "score_base_mean": b - 0.02, "score_base_std": 0.004,
            "score_norm_mean": score_norm, "score_norm_std": 0.012 + i * 1e-4, "score_norm_base_mean": b,
            "score_norm_base_std": 0.005 + 1e-4 * TASKS.index(target[0]),
            "delta_score_mean": delta, "delta_score_std": 0.3, "delta_score_norm_mean": delta,
            "delta_score_norm_std": 0.5 + i * 1e-3, "n_seeds": 3, "score_se": 0.011 / np.sqrt(3), "score_base_se": 0.004 / np.sqrt(3),
            "score_norm_se": (0.012 + i * 1e-4) / np.sqrt(3), "score_norm_base_se": 0.005 / np.sqrt(3),
            "delta_score_se": 0.3 / np.sqrt(3), "delta_score_norm_se": (0.5 + i * 1e-3) / np.sqrt(3),
        })
    return pd.DataFrame(rows)[RELEASED_HEADER]


def direct_table(frame: pd.DataFrame, delta: pd.Series, tolerance: float = 1e-9) -> pd.DataFrame:
    """The regime table straight from the file with pandas: the paper's figures and the tie-aware ones."""
    out = []
    for regime in REGIMES:
        d = delta[frame["regime"] != "MT-ML"] if regime == "All transfer" else delta[frame["regime"] == regime]
        out.append({"regime": regime, "n": d.size, "mean_delta": d.mean(), "median_delta": d.median(),
                    "win_rate": 100 * (d > 0).mean(), "harm_rate": 100 * (d <= -1.0).mean(),
                    "ties": (d.abs() < tolerance).sum(), "harm_boundary_ties": ((d + 1).abs() < tolerance).sum(),
                    "win_rate_tie_aware": 100 * (d >= tolerance).mean(), "harm_rate_tie_aware": 100 * (d <= -1 + tolerance).mean()})
    return pd.DataFrame(out).set_index("regime")


@pytest.mark.slow
def test_released_header_imports_and_the_regime_table_uses_its_delta(tracking_uri, tmp_path):
    frame = released_rows()
    csv = tmp_path / "transfer_results.csv"
    frame.to_csv(csv, index=False, float_format="%.17g")
    assert csv.read_text().splitlines()[0] == ",".join(RELEASED_HEADER)
    summary = import_results(ImportConfig(path=str(csv)))
    assert summary.created == 2 + 2 * 6 and summary.rows == len(frame) + 2 * 6
    run_id = analysis_run.run_analysis(AnalysisConfig())
    out = reader.download_artifacts(tracking_uri, run_id, "tables", tmp_path / "out")
    got = pd.read_csv(out / "regime_summary.csv").set_index("regime")
    file = pd.read_csv(csv)
    want = direct_table(file, file["delta_score_norm_mean"])
    np.testing.assert_allclose(got.loc[REGIMES, want.columns].to_numpy(float), want.to_numpy(float), rtol=0, atol=1e-12)
    # the fixture tells the two apart: Δ recomputed from the seed means moves the rates at 0 and -1
    recomputed = direct_table(file, 100 * (file["score_norm_mean"] - file["score_norm_base_mean"]))
    assert (recomputed[["win_rate", "harm_rate"]] != want[["win_rate", "harm_rate"]]).any().any()
    # the tie-aware rates count the residue ties: 4 of every 13 rows sit within 1e-9 of 0, 4 of -1
    assert got.loc["All transfer", "ties"] > 0 and got.loc["All transfer", "harm_boundary_ties"] > 0
    assert got.loc["All transfer", "win_rate_tie_aware"] < got.loc["All transfer", "win_rate"]
    html = (reader.download_artifacts(tracking_uri, run_id, "report.html", tmp_path / "page")).read_text()
    assert f"{int(got.loc['All transfer', 'ties'])} ties at 0" in html
    # the typology section uses the paper's lang2vec distances, URIEL+ for genetic/geographic and a second table
    typology = pd.read_csv(out / "typology.csv").set_index("distance")
    assert typology.loc["syntactic", "source"] == "lang2vec 1.1.2 syntax_knn"
    assert typology.loc["genetic", "source"].startswith("URIEL+")
    assert set(pd.read_csv(out / "typology_second.csv")["source"]) == {"URIEL+ 1.3.2"}
    assert "(lang2vec 1.1.2 syntax_knn)" in html and "(URIEL+ 1.3.2)" in html


@pytest.mark.slow
def test_std_and_se_columns_arrive_with_the_runs(tracking_uri, tmp_path):
    frame = released_rows()
    csv = tmp_path / "transfer_results.csv"
    frame.to_csv(csv, index=False, float_format="%.17g")
    run_ids = import_results(ImportConfig(path=str(csv))).run_ids
    stats = reader.load_cell_statistics(tracking_uri, run_ids, tmp_path / "stats")
    from mlflow.tracking import MlflowClient

    tags = {run_id: MlflowClient(tracking_uri).get_run(run_id).data.tags for run_id in run_ids}
    stats["kind"] = stats["run_id"].map(lambda r: tags[r][names.KIND])
    stats["source"] = stats["run_id"].map(lambda r: f"{tags[r].get(names.SOURCE_TASK)}.{tags[r].get(names.SOURCE_LANGUAGE)}")
    stats["model_name"] = stats["run_id"].map(lambda r: tags[r][names.MODEL].split("/")[-1])
    ft = stats[stats["kind"] == "evaluate"].merge(
        frame.assign(source=frame["fine_tuned_dataset"] + "." + frame["fine_tuned_language"]),
        left_on=["model_name", "source", "target_task", "target_language"],
        right_on=["model_name", "source", "eval_dataset", "eval_language"], suffixes=("", "_file"))
    assert len(ft) == len(frame)
    for column in ("score_std", "score_se", "score_norm_std", "score_norm_se", "delta_score_std", "delta_score_se",
                   "delta_score_norm_std", "delta_score_norm_se", "n_seeds"):
        np.testing.assert_allclose(ft[column], ft[f"{column}_file"], rtol=0, atol=1e-15)
    own = stats.loc[stats["kind"] == "baseline", ["model_name", "target_task", "target_language", "score_norm_std", "score_se"]]
    released = frame.drop_duplicates(["model_name", "eval_dataset", "eval_language"])[
        ["model_name", "eval_dataset", "eval_language", "score_norm_base_std", "score_base_se"]]
    base = own.merge(released, left_on=["model_name", "target_task", "target_language"],
                     right_on=["model_name", "eval_dataset", "eval_language"])
    assert len(base) == 2 * 6  # a baseline run's statistics are the file's base columns
    np.testing.assert_allclose(base["score_norm_std"], base["score_norm_base_std"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(base["score_se"], base["score_base_se"], rtol=0, atol=1e-15)
    assert import_results(ImportConfig(path=str(csv))).created == 0  # a re-import creates nothing


def test_both_spellings_of_the_base_columns_are_read(tmp_path):
    from transfergrid.importer import read_results_csv

    frame = released_rows()
    released = tmp_path / "released.csv"
    frame.to_csv(released, index=False)
    guessed = tmp_path / "guessed.csv"
    frame.rename(columns=lambda c: c.replace("score_norm_base", "base_score_norm").replace("score_base", "base_score")).to_csv(
        guessed, index=False)
    (base_a, ft_a), (base_b, ft_b) = read_results_csv(released), read_results_csv(guessed)
    pd.testing.assert_frame_equal(base_a.drop(columns=["_where"]).reset_index(drop=True),
                                  base_b.drop(columns=["_where"]).reset_index(drop=True), check_like=True)
    pd.testing.assert_frame_equal(ft_a.drop(columns=["_where"]).reset_index(drop=True),
                                  ft_b.drop(columns=["_where"]).reset_index(drop=True), check_like=True)
    both = tmp_path / "both.csv"
    frame.assign(base_score_norm_mean=frame["score_norm_base_mean"]).to_csv(both, index=False)
    with pytest.raises(ValueError, match="given twice"):
        read_results_csv(both)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda f, p: f.assign(score_norm_mean=f["score_norm_mean"].where(f.index != 5, 1.7)).to_csv(p, index=False),
         r"score_norm_mean outside \[0, 1\].*transfer_results.csv line 7.*1.7"),
        (lambda f, p: f.assign(score_base_mean=f["score_base_mean"].where(f.index != 2, -0.1)).to_csv(p, index=False),
         r"score_base_mean outside \[0, 1\].*line 4"),
        (lambda f, p: f.head(0).to_csv(p, index=False), r"transfer_results.csv: the table has a header but no rows"),
        (lambda f, p: p.write_text(""), r"transfer_results.csv: the file is empty"),
        (lambda f, p: f.assign(other=1).to_csv(p, index=False), r"unknown columns \['other'\].*score_norm_base_mean"),
    ],
    ids=["score-above-1", "base-below-0", "header-only", "empty-file", "unknown-column"],
)
def test_impossible_or_empty_tables_are_errors_naming_file_and_rows(tracking_uri, tmp_path, write, message):
    csv = tmp_path / "transfer_results.csv"
    write(released_rows(), csv)
    with pytest.raises(ValueError, match=message):
        import_results(ImportConfig(path=str(csv)))
    assert not (tmp_path / "mlflow.db").exists()  # nothing written


def test_header_only_csv_exits_2_on_the_command_line(tracking_uri, tmp_path, capsys):
    from entrypoints import import_results as entry

    csv = tmp_path / "transfer_results.csv"
    released_rows().head(0).to_csv(csv, index=False)
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["--path", str(csv)])
    assert exit_info.value.code == 2 and "no rows" in capsys.readouterr().err


def test_json_files_are_read_as_json_and_invalid_json_names_the_file(tracking_uri, tmp_path):
    folder = tmp_path / "Qwen2.5-0.5B-Instruct" / "base" / "seed17"
    folder.mkdir(parents=True)
    broken = folder / "results_2025.json"
    broken.write_text('{"results": {"arc_de": ')
    for path in (broken, tmp_path):  # the file itself (auto mode reads a .json as JSON) and its directory
        with pytest.raises(ValueError, match=r"results_2025.json: invalid JSON"):
            import_results(ImportConfig(path=str(path)))
    broken.write_text(pd.Series({"arc_de": 1}).to_json())
    with pytest.raises(ValueError, match=r"results_2025.json: no 'results'"):
        import_results(ImportConfig(path=str(broken)))
    assert not (tmp_path / "mlflow.db").exists()
    broken.write_text('{"results": {"arc_de": {"acc,none": 0.3, "acc_norm,none": 0.35}}, "model_name": "Qwen/Qwen2.5-0.5B-Instruct"}')
    assert import_results(ImportConfig(path=str(broken))).created == 1  # one baseline run (base, seed 17)


def test_per_seed_stderr_columns_are_kept_per_run(tmp_path):
    """The per-seed long form keeps working, and its per-seed `*_stderr` columns travel with the runs too."""
    from transfergrid.importer import build_runs, read_results_csv

    frame = released_rows()
    per_seed = pd.concat([frame.assign(seed=seed) for seed in (17, 42)])
    per_seed = pd.DataFrame({
        "model_name": per_seed["model_name"], "model_size": per_seed["model_size"], "seed": per_seed["seed"],
        "fine_tuned_dataset": per_seed["fine_tuned_dataset"], "fine_tuned_language": per_seed["fine_tuned_language"],
        "eval_dataset": per_seed["eval_dataset"], "eval_language": per_seed["eval_language"],
        "score_norm": per_seed["score_norm_mean"], "base_score_norm": per_seed["score_norm_base_mean"],
        "delta_score_norm": per_seed["delta_score_norm_mean"], "score_norm_stderr": per_seed["score_norm_std"],
        "base_score_norm_stderr": per_seed["score_norm_base_std"]})
    csv = tmp_path / "per_seed.csv"
    per_seed.to_csv(csv, index=False)
    runs = build_runs(*read_results_csv(csv), ImportConfig(path=str(csv)))
    assert len(runs) == 2 * (2 + 2 * 6)
    run = next(r for r in runs if r.kind == "evaluate" and r.seed == "42" and str(r.source) == "global_mmlu.fr"
               and r.model.endswith("Qwen2.5-0.5B-Instruct"))
    want = frame[(frame["model_name"] == "Qwen2.5-0.5B-Instruct") & (frame["fine_tuned_dataset"] == "global_mmlu")
                 & (frame["fine_tuned_language"] == "fr")]
    got = run.statistics.merge(want, left_on=["target_task", "target_language"], right_on=["eval_dataset", "eval_language"])
    assert len(got) == 6 and np.array_equal(got["score_norm_stderr"], got["score_norm_std"])
    assert run.metrics["delta/arc_challenge/hi"] == want.set_index("eval_language").query("eval_dataset == 'arc_challenge'").loc[
        "hi", "delta_score_norm_mean"]
    baseline = next(r for r in runs if r.kind == "baseline" and r.seed == "17")
    assert set(baseline.statistics.columns) == {"target_task", "target_language", "score_norm_stderr"}
