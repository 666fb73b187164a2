# One entry point for chores. Every target installs what it needs, so on a
# fresh machine `make demo` and `make test` are all the set-up there is.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv system-deps tools test unit lint typecheck generate verify demo demo-down bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the integration tests run for real (Prometheus).
system-deps:
	bash hack/install-system-deps

tools:
	bash hack/build-tools

lint: venv
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/ruff format --check operator tests bench hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest -m "not integration" tests

test: venv system-deps tools
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest tests

# Regenerates every generated artefact: the CRD from the models, then the chart's
# copies, the values table and manifests/install.yaml from the chart.
generate: venv tools
	$(PY) -m specops crd > crds/serving.specops.dev_speculativedeployments.yaml
	bash hack/gen-manifests

bench: venv tools
	$(PY) -m specops bench all --output out/bench

demo: venv system-deps tools
	$(PY) -m specops.demo up

demo-down: venv
	$(PY) -m specops.demo down

clean:
	rm -rf $(VENV) out
