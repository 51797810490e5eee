# The two commands a new user needs: `make serve` and `make test`. Both set themselves up on first use.
PYTHON ?= python3
VENV := .venv
MILVUS_VENV := .venv-milvus
PIP_FLAGS := --disable-pip-version-check -q -c .ci/constraints.txt

.PHONY: bootstrap serve test bench

bootstrap: $(VENV)/.installed $(MILVUS_VENV)/.installed

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
