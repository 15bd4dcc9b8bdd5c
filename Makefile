# 記事QA — `make run` serves the chat page, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 7860

LLAMA_VERSION := 0.3.36
# llama.cpp is compiled here. A "native" build enables Intel AMX on CPUs that have it, and AMX
# crashes (SIGSEGV in decode) in VMs whose kernel does not grant the tile state; AVX2/FMA/F16C
# runs on any x86-64 CPU of the last decade. The wheel is kept outside the repo, keyed by these
# flags, so a rebuild happens once per machine (pip's own cache does not know about CMAKE_ARGS).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS := $(HOME)/.cache/kiji-qa/llama-cpp-python-$(LLAMA_VERSION)-avx2

.PHONY: install models index run test test-fast lint bench clean-index browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	@echo "Building llama-cpp-python $(LLAMA_VERSION) (several minutes on 2 cores, once per machine)..."
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps --no-cache-dir -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install --find-links $(LLAMA_WHEELS) -e '.[test]'
	touch $@

install: $(VENV)/.installed

models: install
	$(BIN)/rag models

index: models
	$(BIN)/rag build --if-stale

run: index
	$(BIN)/rag serve --host $(HOST) --port $(PORT)

# The browser test (tests/test_browser.py) drives Debian's Chromium through its chromedriver.
# Installed only when missing, non-interactively; sudo only when not already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
		echo "Installing chromium and chromium-driver (Debian packages) for the browser test..."; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

test: install browser
	$(BIN)/rag models qwen2.5-coder-1.5b
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not integration"

lint: install
	$(BIN)/ruff check .

bench: index
	$(BIN)/python bench/bench.py

clean-index:
	rm -rf index
