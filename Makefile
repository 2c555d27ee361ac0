# Everything a fresh machine needs is Python 3.11+ and make: the venv is built on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-sqlite lint format bench clean lock docs

$(STAMP): requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "compliancebot needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/compliancebot demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check bot ledger rules scanners integrations tests bench
	$(BIN)/mypy
	$(BIN)/mypy tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format bot ledger rules scanners integrations tests bench

bench: $(STAMP)
	$(BIN)/python bench/scan.py --scale 1000

# docs/resources.md is generated from scanners/aws/specs.py (a test fails when it is stale).
docs: $(STAMP)
	$(BIN)/python -m scanners.aws.docs

# Re-pin after changing dependencies in pyproject.toml (needs uv: pip install uv).
# requirements-dev.lock (dev + demo extras) is what `make` installs here; requirements.lock is the
# runtime subset at the same versions, and the only one the Docker image installs.
lock:
	uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes -o requirements-dev.lock
	uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -c requirements-dev.lock -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
