"""Figures: each function writes a titled PNG from its table."""

import numpy as np
import pytest

from analysis import figures, matrices, pareto, roles
from analysis.regimes import regime_summary
from analysis.simulate import grid_frame

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    models = {"m1": ("fa", 1.0), "m2": ("fa", 4.0), "m3": ("fb", 8.0)}
    return grid_frame(lambda k: rng.normal(0.5, 1.5, len(k)), models=models)


@pytest.mark.parametrize("name", ["donor_recipient", "task_matrix", "language_matrix", "pareto", "pareto_families",
                                  "regime_bars"])
def test_figure_is_written(frame, tmp_path, name):
    path = tmp_path / "figs" / f"{name}.png"
    make = {
        "donor_recipient": lambda: figures.plot_donor_recipient(roles.language_roles(frame), path),
        "task_matrix": lambda: figures.plot_transfer_matrix(matrices.task_transfer_matrix(frame), path, title="Task"),
        "language_matrix": lambda: figures.plot_transfer_matrix(matrices.language_transfer_matrix(frame), path),
        "pareto": lambda: figures.plot_pareto(pareto.pareto_on_off(frame), path),
        "pareto_families": lambda: figures.plot_pareto_families(pareto.pareto_on_off(frame), path),
        "regime_bars": lambda: figures.plot_regime_bars(regime_summary(frame), path),
    }[name]
    assert make() == path
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5000


def test_figure_input_is_checked(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        figures.plot_pareto(roles.language_roles(grid_frame(lambda k: 0.0 * k["model_size_b"])), tmp_path / "x.png")
