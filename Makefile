# Local virtual environment, set up on first use.
#   make run [ARGS="hydra overrides"]   default simulation
#   make test [PYTEST_ARGS=...]          test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned so that pip can use a local CPU wheel where
# one exists; elsewhere it comes from PyPI (set TORCH_SPEC to choose another build).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: run test install clean

$(STAMP): pyproject.toml
	@echo "make: creating the virtual environment $(VENV)/ (a few seconds)"
	$(PYTHON) -m venv $(VENV)
	@echo "make: installing $(TORCH_SPEC) (about 1-2 minutes: a download of some hundreds of MB unless a local wheel exists)"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	@echo "make: installing lpm_graph and its dependencies (torch_geometric, hydra, pandas, pyarrow, matplotlib, plotly, pytest; about a minute)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)
	@echo "make: $(VENV)/ is ready; lpm-graph is $(BIN)/lpm-graph"

install: $(STAMP)

run: $(STAMP)
	$(BIN)/lpm-graph $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
