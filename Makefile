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

# docker when its daemon answers, else podman (a docker command without a daemon is common next to podman).
image:
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; \
	elif command -v podman >/dev/null; then engine=podman; \
	elif command -v docker >/dev/null; then echo "make image: docker's daemon does not answer (docker info) and podman is not installed" >&2; exit 1; \
	else echo "make image: neither docker nor podman is installed" >&2; exit 1; fi; \
	echo "make image: building with $$engine"; \
	$$engine build -t servetune:$$(grep -m1 '^version' pyproject.toml | cut -d'"' -f2) .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
