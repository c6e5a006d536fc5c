# README's two commands: `make run` (the main job) and `make test` (mypy over mummi_like, then the test suite).
# Both create .venv on first use: torch is pinned first so that no later
# requirement can pull a multi-GB CUDA build, then the project is installed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
RUN_DIR := runs/$(shell date +%Y%m%d-%H%M%S)

DEMO := pipelines/mummi_pipelines/drug_discovery/configs/demo.yaml

.PHONY: venv run examples test bench bench-campaign clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps molsets==0.3.1 && $(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,campaign,chemprop]'
	rm -f $(VENV)/.installed-*
	touch $@

# The reference drug-discovery campaign at demo size (about 15 minutes on 2 cores), then its report: the report
# is written even when some task failed, and make still exits with the campaign's status.
run: venv
	OMP_NUM_THREADS=1 $(BIN)/mummi-like run $(DEMO) --dir $(RUN_DIR)/drug-discovery; status=$$?; \
	$(BIN)/mummi-like report $(RUN_DIR)/drug-discovery; exit $$status

examples: venv
	$(BIN)/mummi-like run examples/sweep/campaign.yaml --dir $(RUN_DIR)/sweep
	$(BIN)/mummi-like run examples/dag/campaign.yaml --dir $(RUN_DIR)/dag
	$(BIN)/mummi-like run examples/multiscale/campaign.yaml --dir $(RUN_DIR)/multiscale

test: venv
	$(BIN)/mypy mummi_like
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: venv
	OMP_NUM_THREADS=1 $(BIN)/python bench/overhead.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/utilization.py --report runs/bench-utilization-report
	OMP_NUM_THREADS=1 $(BIN)/python bench/streaming.py

# The reference campaign's science figures (bench/README.md): active learning replayed against the shipped
# reference docking table, redocking of progesterone, and the coordinator under 100,000 queued tasks.
bench-campaign: venv
	OMP_NUM_THREADS=1 $(BIN)/python bench/effective_performance.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/redocking.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/load.py

clean-venv:
	rm -rf $(VENV)
