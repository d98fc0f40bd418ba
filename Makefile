# Everything a fresh machine needs is installed from requirements.lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOME_DIR ?= data

.PHONY: install demo test test-fast lint bench clean

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (these
# machines set it), Python would otherwise compile every imported module of
# Dagster, polars and Splink again in each process (import dagster: 1.1 s).
$(STAMP): requirements.lock pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "uv==0.13.9"
	$(BIN)/uv pip install -q --compile-bytecode -p $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q -p $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q connectors linkage orchestration simulation tessera warehouse
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/tessera demo --home $(HOME_DIR)
	$(BIN)/tessera advance --home $(HOME_DIR) --days 2

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/tessera bench --persons 100000 --json

clean:
	rm -rf $(VENV) $(HOME_DIR)
