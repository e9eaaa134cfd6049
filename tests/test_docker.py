"""The team deployment in docker/: compose file structure, credentials from the environment, localhost ports.

`docker compose config` validates the file where the compose v2 plugin exists, else Debian's
`docker-compose` 1.29 (which `.ci/run` installs; both validate against the compose specification;
neither needs the engine). The structure is also checked here with compose's own interpolation rules
(`${VAR:?error}`, `${VAR:-default}`, `$$`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def interpolate(value, env: dict):
    """Compose variable interpolation over a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(substitute, value)


def load(env: dict) -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env)


def test_compose_needs_the_password_from_the_environment():
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        load({})
    text = COMPOSE.read_text()
    assert not re.findall(r"://[^:\s/]+:(?!\$+\{)[^@\s]+@", text), "a literal password in a URL"
    assert re.findall(r"POSTGRES_PASSWORD: (.*)", text) == ["${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"] * 2


def test_compose_stack_tracking_server_on_postgresql_queue_and_workers():
    config = load({"POSTGRES_PASSWORD": "dummy-pw", "WORKERS": "3"})
    services = config["services"]
    assert set(services) == {"postgres", "mlflow", "worker"}
    server = " ".join(services["mlflow"]["command"])
    assert "mlflow server" in server and "--backend-store-uri \"postgresql+psycopg2://" in server
    assert "--artifacts-destination /mlartifacts --serve-artifacts" in server
    assert "$" + "{POSTGRES_PASSWORD}" in server  # expanded inside the container, from its environment
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == "3"
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert worker["environment"]["TRANSFERGRID_STORAGE"] == "postgresql://transfergrid:dummy-pw@postgres:5432/optuna"
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker["command"][0] == "entrypoints.worker"
    assert load({"POSTGRES_PASSWORD": "x"})["services"]["worker"]["deploy"]["replicas"] == "2"  # default
    for name, service in services.items():  # every published port is bound to localhost
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert (ROOT / "docker" / "initdb" / "10-optuna.sql").read_text().count("CREATE DATABASE optuna") == 1


def test_dockerfile_installs_the_pinned_project():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "pip install torch==2.13.0" in text and "pyproject.toml" in text and "COPY entrypoints" in text
    assert 'CMD ["entrypoints.worker"]' in text


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) where installed, else Debian's `docker-compose` 1.29 (.ci/run installs it)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed")
def test_docker_compose_config_validates():
    compose = _compose_command()
    env = {"POSTGRES_PASSWORD": "dummy-pw", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    done = subprocess.run([*compose, "-f", str(COMPOSE), "config", "--quiet"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    missing = subprocess.run([*compose, "-f", str(COMPOSE), "config", "--quiet"], env={"PATH": env["PATH"]},
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
