"""Project contracts: pins agree, MLproject matches the config defaults, dependencies point one way."""

import ast
import re
from pathlib import Path

import yaml

from transfergrid import config

ROOT = Path(__file__).resolve().parents[1]
ENTRY_CONFIGS = {
    "main": config.MainConfig,
    "baseline": config.BaselineConfig,
    "finetune": config.FinetuneConfig,
    "evaluate": config.EvaluateConfig,
    "analysis": config.AnalysisConfig,
    "import_results": config.ImportConfig,
    "prefetch": config.StudyConfig,
    "grid": config.GridConfig,
    "worker": config.WorkerConfig,
    "status": config.StatusConfig,
    "ablation": config.AblationConfig,
}


def test_conda_pins_equal_pyproject_pins():
    pyproject = set(re.findall(r'^    "([^"]+==[^"]+)",$', (ROOT / "pyproject.toml").read_text(), re.M))
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = {line for line in next(d for d in conda["dependencies"] if isinstance(d, dict))["pip"] if "==" in line}
    assert pyproject and pip == pyproject


def test_mlproject_entry_points_match_configs():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    assert set(project["entry_points"]) == set(ENTRY_CONFIGS)
    for name, entry in project["entry_points"].items():
        defaults = config.to_dict(ENTRY_CONFIGS[name]())
        assert f"python -m entrypoints.{name} " in entry["command"]
        for param, spec in entry["parameters"].items():
            assert f"--{param} {{{param}}}" in entry["command"], (name, param)
            if param == "config":
                continue
            assert param in defaults, f"MLproject {name} declares {param}, which its config lacks"
            default = defaults[param]
            expected = "" if default in ([], None) else str(default)
            assert str(spec["default"]) == expected, f"{name}.{param}: MLproject {spec['default']!r} != {default!r}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_dependencies_point_one_way():
    library = list((ROOT / "src").rglob("*.py")) + list((ROOT / "analysis").rglob("*.py")) + list((ROOT / "tests").rglob("*.py"))
    for path in library:
        assert not any(m == "entrypoints" or m.startswith("entrypoints.") for m in _imports(path) if path.parent.name != "tests"), path
    for path in (ROOT / "analysis").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("mlflow", "torch", "transformers", "peft", "trl")}
        assert not bad, f"{path} imports {bad}"
    writers = [p for p in (ROOT / "src").rglob("*.py") if "log_batch" in p.read_text() or "create_run" in p.read_text()]
    assert [p.name for p in writers] == ["writer.py"]


def test_entry_points_are_thin():
    for name in ENTRY_CONFIGS:
        source = (ROOT / "src" / "transfergrid" / "commands" / f"{name}.py").read_text()
        assert len(source.splitlines()) <= 80, name
        assert "def main(argv" in source
        wrapper = (ROOT / "entrypoints" / f"{name}.py").read_text()  # what the MLproject runs: the same main
        assert f"from transfergrid.commands.{name} import main" in wrapper and len(wrapper.splitlines()) <= 8
