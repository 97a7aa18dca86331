# Two commands matter: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint bench install clean deps-system

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sop validate
	$(BIN)/sop demo

# System packages the tests use: Chromium renders the HTML audit report (tests/audit/test_html.py);
# Alertmanager delivers real webhooks to the API (tests/api/test_alertmanager.py).
# Installed only when missing and only as root; otherwise those tests are skipped with a hint.
deps-system:
	@command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq prometheus-alertmanager; \
	    else echo "deps-system: prometheus-alertmanager missing; run 'sudo make deps-system' (Alertmanager tests will be skipped)"; fi; }
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	    else echo "deps-system: chromium missing; run 'sudo make deps-system' (HTML report tests will be skipped)"; fi; }

test: $(STAMP) deps-system
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check flows notifications tests bench

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) var .pytest_cache
