# `make demo` and `make test` work on a fresh machine: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev image clean lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/servetune demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -ra

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

image:
	@engine=$$(command -v docker || command -v podman); \
	if [ -z "$$engine" ]; then echo "make image: neither docker nor podman is installed" >&2; exit 1; fi; \
	$$engine build -t servetune:$$(grep -m1 '^version' pyproject.toml | cut -d'"' -f2) .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
