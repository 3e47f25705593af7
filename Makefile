# Two commands for a fresh machine with Python 3.11:
#   make demo   set up, then build the whole asset graph headless on the demo catalog
#   make test   set up, then run the test suite (what CI runs: .ci/run)
# and `make ui` to open the Dagster UI on the same instance (http://127.0.0.1:3000).

PYTHON ?= python3.11
VENV := .venv
export DAGSTER_HOME := $(CURDIR)/.dagster

.PHONY: setup demo ui test

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $@

setup: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster instance concurrency set gpu 1 >/dev/null
	$(VENV)/bin/dagster instance concurrency set io 2 >/dev/null

demo: setup
	$(VENV)/bin/python -m cytoimagenet_assets.build
	@echo
	@echo "Built. Open the UI on this instance with: make ui   (then http://127.0.0.1:3000)"

ui: setup
	$(VENV)/bin/dagster dev -w workspace.yaml --host 127.0.0.1 --port 3000

test:
	bash .ci/run
