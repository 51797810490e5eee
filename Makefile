# The two commands a new user needs: `make serve` and `make test`. Both set themselves up on first use.
PYTHON ?= python3
VENV := .venv
MILVUS_VENV := .venv-milvus
PIP_FLAGS := --disable-pip-version-check -q -c .ci/constraints.txt

.PHONY: bootstrap system-packages serve test bench

bootstrap: system-packages $(VENV)/.installed $(MILVUS_VENV)/.installed

# espeak-ng speaks the sentences the audio tests transcribe. Installed with apt when we are root
# on Debian; otherwise say what is missing rather than fail later in the middle of the tests.
system-packages:
	@command -v espeak-ng >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng; \
	  else echo "the tests need espeak-ng: sudo apt-get install espeak-ng" >&2; exit 1; fi; }

# The application and its test tools. torch is pinned to the CPU build by the constraints file.
$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

# A real Milvus server for the tests (PyPI `milvus`, an embedded standalone build). Its pins clash
# with pymilvus 3, so it gets its own environment and only ever runs as a separate process.
$(MILVUS_VENV)/.installed:
	$(PYTHON) -m venv $(MILVUS_VENV)
	$(MILVUS_VENV)/bin/pip install --disable-pip-version-check -q milvus==2.3.5
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/prism serve

test: bootstrap
	$(VENV)/bin/python -m pytest

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/ingest.py
	$(VENV)/bin/python bench/query.py
	$(VENV)/bin/python bench/audio.py
	$(VENV)/bin/python bench/images.py
