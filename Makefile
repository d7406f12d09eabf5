# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_NOW := 2026-11-24T16:30:00Z
DEMO_DIR := demo

.PHONY: run test lint bench venv clean demo screenshot

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: sync the sample Maildir into a fresh database as of a fixed moment, show the ledger,
## and write that morning's digests into the demo outbox (a Maildir: demo/outbox/new/)
run: $(STAMP)
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(BIN)/maildaemon --config examples/demo.toml --now $(DEMO_NOW) sync
	$(BIN)/maildaemon --config examples/demo.toml --now $(DEMO_NOW) tasks
	@echo
	$(BIN)/maildaemon --config examples/demo.toml --now $(DEMO_NOW) digest --send
	@cat examples/tour.txt

## test: the whole suite (creates the virtualenv first; installs Dovecot for the IMAP tests
## when it is missing and this runs as root, see scripts/ensure-dovecot)
test: $(STAMP)
	sh scripts/ensure-dovecot
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check maildaemon tests benchmarks
	$(BIN)/ruff format --check maildaemon tests benchmarks
	$(BIN)/mypy maildaemon

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_ledger.py
	$(BIN)/python benchmarks/bench_imap.py
	$(BIN)/python benchmarks/bench_digest.py

## screenshot: docs/team-digest.png, the demo team digest drawn by headless Chromium
screenshot: run
	BIN=$(BIN) DEMO_NOW=$(DEMO_NOW) sh scripts/screenshot

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info
