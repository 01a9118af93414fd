# The two commands a newcomer needs: `make run` and `make test`.
# Each creates .venv from the pinned requirements (runtime + development) when it is missing or stale.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: venv test test-fast run bench chaos chaos-quick chaos-failover reset clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

# Browser tests (tests/browser) need Debian's chromium and chromium-driver; without them they are left out, said once.
test: $(STAMP)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests; \
	else \
		echo "browser tests skipped: /usr/bin/chromium or /usr/bin/chromedriver missing (apt-get install -y chromium chromium-driver)"; \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests --ignore=tests/browser; \
	fi

# test-fast: the tests that start no process (no server, worker, browser or stack): a minute or less.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests --ignore=tests/browser

run: $(STAMP)
	$(BIN)/python -m aistats_hooks.launcher

bench: $(STAMP)
	$(BIN)/python -m bench.run

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos

chaos-quick: $(STAMP)
	$(BIN)/python -m bench.chaos --quick

# chaos-failover: the quick chaos run on a primary, a replica and 3 Sentinels; the primary is SIGKILLed
# mid-run. MIN_REPLICAS=0 shows what acknowledging before replication loses.
MIN_REPLICAS ?= 1
chaos-failover: $(STAMP)
	$(BIN)/python -m bench.chaos --quick --failover --min-replicas $(MIN_REPLICAS)

# reset: forget every batch, secret and sandbox state of `make run` (deletes .data only; refuses while it runs).
reset:
	@if [ -f .data/launcher.lock ] && command -v flock >/dev/null && ! flock -n .data/launcher.lock true; then \
		echo "make reset: make run is using .data; stop it first" >&2; exit 1; fi
	rm -rf .data

# clean: reset AND delete the virtualenv (the next make run or make test rebuilds it, about a minute).
clean: reset
	rm -rf $(VENV)
