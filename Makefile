# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.installed-serve

.PHONY: serve test test-slow lint typecheck unit browser-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP) $(SERVE_STAMP)

# Serving needs the package alone, not the dev extra (mypy, ruff, Playwright, OpenTelemetry).
$(SERVE_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e .
	@touch $(SERVE_STAMP)

# `make serve PORT=8001` (or ASP_PORT=8001 make serve) picks the port.
serve: $(SERVE_STAMP)
	$(BIN)/asp serve --dev $(if $(PORT),--port $(PORT))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser tests drive Debian's Chromium with Playwright (no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root, or: sudo apt-get install chromium" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Most tests wait on real servers' timers rather than compute, so three workers share two cores
# well; a file stays on one worker (--dist loadfile), with its module's server fixture. The files
# are handed out in collection order (--no-loadscope-reorder), which puts tests/conftest.py's
# LONGEST_FILES first, so that no long file starts last.
PYTEST_WORKERS ?= 3

# The scale-out tests need Redis and PostgreSQL: the machine's own, else private ones (tests/services.sh).
unit: $(STAMP) browser-deps
	@tests/services.sh start
	@status=0; $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder || status=$$?; \
		tests/services.sh stop; exit $$status

test: lint typecheck unit

# Tests that wait out spec-default timeouts (a check of a server on a 60 s idle timeout).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
