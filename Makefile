# The two commands of the README: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest databases browser test-web bench mutate lock clean soak

# Package folders as prerequisites: adding a module re-runs the strict editable install (link tree).
PACKAGE_DIRS := $(shell find src devices plans callbacks sim profile_collection -type d -not -name __pycache__)

$(STAMP): requirements.lock pyproject.toml setup.py $(PACKAGE_DIRS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		--config-settings editable_mode=strict -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/teststand demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd $(VENV) && bin/lint-imports ../pyproject.toml

# mypy runs from inside .venv so that the source folder teststand/ (which lacks the mapped
# subpackages) does not shadow the installed link tree.
typecheck: $(STAMP)
	cd $(VENV) && bin/mypy --config-file ../pyproject.toml --cache-dir .mypy_cache -p teststand

# Two workers (pytest-xdist), one per core; a test file stays on one worker (its module fixtures).
# The IOC-restart test runs in a process of its own: on a worker that had run the storage tests'
# in-process Tiled apps it hung in 2 of 4 fresh-clone runs (cause not found yet; passes alone).
OWN_PROCESS := tests/ioc/test_restart.py

# The short stand soak (benchmarks/test_soak_short.py, about 5 minutes of wall time, mostly its
# processes waiting) starts first, in a process of its own beside the two workers: run after
# them it would add its 5 minutes to the suite's. Its output is in build/soak-short.log.
SOAK_LOG := build/soak-short.log

pytest: $(STAMP) databases browser
	@mkdir -p build
	@$(BIN)/pytest benchmarks/test_soak_short.py -q -p no:cacheprovider > $(SOAK_LOG) 2>&1 & soak=$$!; \
	$(BIN)/pytest -n 2 --dist loadfile $(addprefix --ignore=,$(OWN_PROCESS)); suite=$$?; \
	$(BIN)/pytest $(OWN_PROCESS); own=$$?; \
	echo "waiting for the short stand soak (pid $$soak, log $(SOAK_LOG))"; \
	wait $$soak; soaked=$$?; tail -n 40 $(SOAK_LOG); \
	test $$suite -eq 0 && test $$own -eq 0 && test $$soaked -eq 0

# Debian packages the tests need, installed when missing (apt-get, as root, as on CI): InfluxDB 1.x
# and VictoriaMetrics for the monitor's tests, PostgreSQL (initdb, pg_ctl) for the PostgreSQL
# catalog test. The full-disk journal test needs none: it mounts its tmpfs in an unprivileged user
# and mount namespace (util-linux unshare).
databases:
	@command -v influxd >/dev/null && command -v victoria-metrics >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		influxdb victoria-metrics >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		postgresql >/dev/null; }

# Debian's Chromium and its WebDriver for the web page's tests (Selenium drives it headless),
# installed when missing (apt-get, as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		chromium chromium-driver >/dev/null; }

# Only the web page's browser tests.
test-web: $(STAMP) browser
	$(BIN)/pytest tests/web

# The stand soak, short, alone (every fault once, about 5 minutes; also part of `make test`).
# The long one: `.venv/bin/python benchmarks/soak.py [--duration 7200]` (README, "The stand soak").
soak: $(STAMP) databases
	$(BIN)/pytest benchmarks/test_soak_short.py -q

# Mutation testing of the safety-critical modules (slow; not part of `make test`): scores and
# survivors in benchmarks/mutation.json, one worker. `make mutate GROUP=caen` (or GROUP="caen plans")
# runs some groups and merges their results into that file.
GROUP ?=
mutate: $(STAMP)
	$(BIN)/python benchmarks/mutation.py $(GROUP)

bench: $(STAMP) databases
	$(BIN)/python benchmarks/transport.py
	$(BIN)/python benchmarks/plans.py
	$(BIN)/python benchmarks/monitor.py

# Regenerate the hash-pinned lock file after changing dependencies (needs `uv` on PATH).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) build dist *.egg-info
