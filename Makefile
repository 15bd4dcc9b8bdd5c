# 記事QA — `make run` serves the chat page, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 7860

LLAMA_VERSION := 0.3.36
# llama.cpp is compiled once with one CPU backend per instruction-set level (GGML_BACKEND_DL +
# GGML_CPU_ALL_VARIANTS); at run time ggml loads the best one this CPU has (rag.generation.load_cpu_backend),
# so one build runs on any x86-64 CPU of the pool. The variants (names from ggml/src/CMakeLists.txt):
#   x64      any x86-64 CPU (fallback)
#   haswell  AVX2 FMA F16C BMI2 (e.g. AMD Zen 2/3, Intel since 2013)
#   icelake  + AVX-512 F/CD/VL/DQ/BW, VBMI, VNNI (Intel Ice Lake / Sapphire Rapids, AMD Zen 4)
# Not sapphirerapids (AMX): ggml chooses variants by cpuid alone, and a VM whose cpuid lists AMX
# while its kernel refuses the tile data crashes in decode (a "native" build did). Not the other
# AVX-512 / AVX-VNNI levels: each variant costs a full compile of the CPU backend.
# patches/llama-cpp-python.patch adds GGML_CPU_VARIANT_LIST to build only these (upstream builds all 14)
# and stops llama-cpp-python from forcing llama.cpp's `common` library (with its HTTP client), which
# nothing in the package links, and makes `import llama_cpp` load the CPU variant (nothing else does). LLAVA_BUILD=OFF: the multimodal library is not used either.
# The wheel is kept outside the repo in a folder named by a hash of these flags and the patch, so a
# rebuild happens once per machine and again only when they change (pip's cache ignores CMAKE_ARGS).
LLAMA_CPU_VARIANTS := x64;haswell;icelake
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON \
	-DGGML_CPU_VARIANT_LIST=$(LLAMA_CPU_VARIANTS) -DCMAKE_INSTALL_BINDIR=llama_cpp/lib -DLLAVA_BUILD=OFF
LLAMA_PATCH := patches/llama-cpp-python.patch
LLAMA_KEY := $(shell (echo '$(LLAMA_CMAKE_ARGS)'; cat $(LLAMA_PATCH)) | sha256sum | cut -c1-10)
LLAMA_WHEELS := $(HOME)/.cache/kiji-qa/llama-cpp-python-$(LLAMA_VERSION)-cpu-variants-$(LLAMA_KEY)

.PHONY: install models index run test test-fast lint bench bench-baseline clean-index browser fonts

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	@echo "Building llama-cpp-python $(LLAMA_VERSION), CPU variants $(LLAMA_CPU_VARIANTS) (~7 minutes on 2 cores, once per machine)..."
	rm -rf $(LLAMA_WHEELS)/src && mkdir -p $(LLAMA_WHEELS)/src
	$(BIN)/pip download --no-deps --no-binary :all: -d $(LLAMA_WHEELS)/src llama-cpp-python==$(LLAMA_VERSION)
	tar -xzf $(LLAMA_WHEELS)/src/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C $(LLAMA_WHEELS)/src
	patch -p1 -d $(LLAMA_WHEELS)/src/llama_cpp_python-$(LLAMA_VERSION) < $(LLAMA_PATCH)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps --no-cache-dir -w $(LLAMA_WHEELS) \
		$(LLAMA_WHEELS)/src/llama_cpp_python-$(LLAMA_VERSION)
	rm -rf $(LLAMA_WHEELS)/src
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install --find-links $(LLAMA_WHEELS) -e '.[test,ray]'
	# the same version may already be installed from another build: this one replaces it
	$(BIN)/pip install --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
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

# An embedded Japanese TrueType font for the PDF tests (tests/test_office.py); the CID fonts need none.
fonts:
	@if [ -f /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ]; then :; else \
		echo "Installing fonts-ipafont-gothic (Debian package) for the PDF tests..."; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-ipafont-gothic; \
	fi

test: install browser fonts
	$(BIN)/rag models qwen2.5-coder-1.5b
	$(BIN)/python -m pytest

test-fast: install fonts
	$(BIN)/python -m pytest -m "not integration"

lint: install
	$(BIN)/ruff check .

# The AVX2-only build of before (one CPU backend: -DGGML_AVX2=ON ...), in a small venv of its own, for
# `make bench` to compare against: `make bench-baseline` once (a separate ~6-minute build).
BASELINE_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
BASELINE_WHEELS := $(HOME)/.cache/kiji-qa/llama-cpp-python-$(LLAMA_VERSION)-avx2
BASELINE_VENV := $(HOME)/.cache/kiji-qa/venv-llama-avx2
BENCH_COMPARE ?= $(wildcard $(BASELINE_VENV)/bin/python)

bench-baseline:
	test -f $(BASELINE_WHEELS)/.built || { CMAKE_ARGS="$(BASELINE_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps \
		--no-cache-dir -w $(BASELINE_WHEELS) llama-cpp-python==$(LLAMA_VERSION) && touch $(BASELINE_WHEELS)/.built; }
	test -x $(BASELINE_VENV)/bin/python || $(PYTHON) -m venv $(BASELINE_VENV)
	$(BASELINE_VENV)/bin/pip install --find-links $(BASELINE_WHEELS) llama-cpp-python==$(LLAMA_VERSION)

bench: index
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/speed.py $(addprefix --compare ,$(BENCH_COMPARE))

clean-index:
	rm -rf index
