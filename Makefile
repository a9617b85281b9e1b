# The README's two commands: `make run` and `make test`. Everything else is here for them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run browser test test-fast bench bundle harden audit clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,heic,bundle,ray]'
	touch $(STAMP)

run: $(STAMP)
	sh scripts/system-deps.sh
	$(BIN)/loupe

browser: $(STAMP)
	$(BIN)/loupe --browser

AXE := tests/axe/node_modules/axe-core/axe.min.js

$(AXE): tests/axe/package.json tests/axe/package-lock.json
	npm ci --prefix tests/axe --no-audit --no-fund --silent

test: $(STAMP)
	sh scripts/system-deps.sh --tests
	$(MAKE) $(AXE)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not window and not browser and not build and not slow"

harden: $(STAMP)
	bash scripts/harden.sh

audit: $(STAMP)
	bash scripts/audit.sh

bench: $(STAMP)
	$(BIN)/python -m bench

bundle: $(STAMP)
	$(BIN)/python build/build.py

clean:
	rm -rf $(VENV) dist pyi-work artifacts .pytest_cache
