# Two commands matter: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint bench install clean deps-system

# Mermaid draws the library's step graphs in the browser; served from this machine (no CDN), fetched
# once from the npm registry (npm checks the tarball's integrity). Without npm the page shows the
# graph's Mermaid text instead.
MERMAID_VERSION = 11.17.2
MERMAID = flows/web/static/vendor/mermaid-$(MERMAID_VERSION).min.js

$(MERMAID):
	@mkdir -p flows/web/static/vendor
	@if command -v npm >/dev/null 2>&1; then \
	  tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent mermaid@$(MERMAID_VERSION) >/dev/null) && \
	  tar -xzf $$tmp/mermaid-$(MERMAID_VERSION).tgz -C $$tmp package/dist/mermaid.min.js package/LICENSE && \
	  cp $$tmp/package/dist/mermaid.min.js $@ && cp $$tmp/package/LICENSE flows/web/static/vendor/mermaid.LICENSE && \
	  rm -rf $$tmp || echo "mermaid: npm pack failed; the library shows graphs as text"; \
	else echo "mermaid: npm missing; the library shows graphs as text"; fi

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The project's bytecode, compiled ahead: the demo and the tests start dozens of processes (sop commands, APIs,
# executors, pagers), and where PYTHONDONTWRITEBYTECODE is set (CI images often set it) Python would compile
# every module of flows/ again in each of them (~0.2-0.3 s of CPU each). Only changed files are compiled again.
BYTECODE = $(BIN)/python -m compileall -q flows notifications >/dev/null

install: $(STAMP) $(MERMAID)

demo: $(STAMP) $(MERMAID)
	@$(BYTECODE)
	$(BIN)/sop validate
	$(BIN)/sop demo

# System packages the tests use: Chromium renders the HTML audit report (tests/audit/test_html.py);
# Alertmanager delivers real webhooks to the API (tests/api/test_alertmanager.py); PostgreSQL's server
# binaries start the private cluster the ledger tests also run on (tests/postgres.py; no system cluster is used).
# Installed only when missing and only as root; otherwise those tests are skipped with a hint.
deps-system:
	@command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq prometheus-alertmanager; \
	    else echo "deps-system: prometheus-alertmanager missing; run 'sudo make deps-system' (Alertmanager tests will be skipped)"; fi; }
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	    else echo "deps-system: chromium missing; run 'sudo make deps-system' (HTML report tests will be skipped)"; fi; }

	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql; \
	    else echo "deps-system: PostgreSQL missing; run 'sudo make deps-system' (the ledger tests run on SQLite only)"; fi; }
	@fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq fonts-wqy-microhei >/dev/null || true; \
	    else echo "deps-system: no CJK font; Chinese names render as boxes in browser screenshots"; fi; }

# The suite mostly waits on real processes (Prefect servers, `sop` commands, PostgreSQL, a browser): two workers,
# one test file each at a time, fewer on a one-core machine; then the tests marked `alone` (they kill processes at
# random moments and wait within bounds) with the machine to themselves, collected from the files that mark any
# (collecting all ~2,300 tests to deselect them costs ~8 s; with no such file, all are collected, as before).
# TEST_WORKERS=0: all in one process.
TEST_WORKERS ?= auto --maxprocesses 2 --dist loadfile
ALONE_FILES = $(shell grep -rl --include='test_*.py' 'mark\.alone' tests)

test: $(STAMP) $(MERMAID) deps-system
	@$(BYTECODE)
ifeq ($(TEST_WORKERS),0)
	$(BIN)/python -m pytest -q
else
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not alone"; others=$$?; \
	  echo "--- the tests marked alone (processes killed at random), with the machine to themselves"; \
	  $(BIN)/python -m pytest -q -m alone $(ALONE_FILES); alone=$$?; \
	  exit $$(( others != 0 ? others : alone ))
endif

lint: $(STAMP)
	$(BIN)/ruff check flows notifications tests bench

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) var .pytest_cache
