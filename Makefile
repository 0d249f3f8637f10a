# `make demo` and `make test` each build .venv from nothing; everything else builds on that.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck proto proto-check bench bench-load fuzz dev clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# The viewer's browser tests drive the system's Chromium (Debian's chromium package).
	command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		chromium chromium-driver; } || echo "install chromium (Debian: apt-get install chromium)"
	touch $(STAMP)

demo: install
	$(BIN)/earpiece demo

dev: install
	$(BIN)/earpiece dev

proto: install
	$(BIN)/python protos/generate.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/pytest

bench: install
	$(BIN)/python -m benchmarks

# Outside `make test`: N = 10, 15, 20, 25, 50, 100 sessions through one gateway process, real-time
# pacing, simulator and clients in their own processes (benchmarks/load/); a few minutes.
# QUICK=1: N = 5, 10 for 10 s each. ARGS: e.g. ARGS='--sessions 20 40 --seconds 20'.
bench-load: install
	$(BIN)/python -m benchmarks.load $(if $(QUICK),--quick) $(ARGS)

# Outside `make test`: 50,000 fuzzed API calls beside a well-behaved canary session; prints the
# UNKNOWN/INTERNAL statuses, silent stream deaths and canary events lost (goal 0 each).
fuzz: install
	$(BIN)/python -m tests.hostile.fuzz_api --cases $(or $(CASES),50000)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
