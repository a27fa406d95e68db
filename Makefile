# Two commands for a newcomer: `make reproduce` and `make test` (each sets up .venv first if needed;
# `make test` also installs chromium for the live demo's browser test).
VENV := .venv
PROFILE ?= full

.PHONY: setup test reproduce bench clean

setup:
	@bash scripts/setup_env.sh

test:
	@bash scripts/setup_env.sh --with-browser
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

reproduce: setup
	$(VENV)/bin/afsuite reproduce --profile $(PROFILE)

bench: setup
	$(VENV)/bin/afsuite bench stream --config tiny --seconds 60 --json results/bench/stream_tiny.json
	$(VENV)/bin/afsuite bench stream --config paper --seconds 10 --json results/bench/stream_paper.json
	$(VENV)/bin/afsuite bench latency --config tiny --profile full --threads 1 --json results/bench/latency_tiny.json
	$(VENV)/bin/afsuite bench latency --config paper --profile compare --threads 1 --json results/bench/latency_paper.json
	$(VENV)/bin/afsuite bench metrics --threads 1 --out results/bench/metrics_timing.json

clean:
	rm -rf $(VENV) .pytest_cache
