# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= all
STAMP  := $(VENV)/.installed
# CONFIG=my.yaml: run / report that config (default: the demo, config/config.yaml).
CONFIG ?=
CONFIG_ARGS = $(if $(CONFIG),--configfile $(CONFIG))

export HF_HUB_OFFLINE = 1

.PHONY: run test report lint clean dry-run

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip -c constraints.txt -qq
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]' -qq
	touch $(STAMP)

run: $(STAMP)  ## the built-in demo (or CONFIG=my.yaml), end to end
	$(BIN)/snakemake all --cores $(CORES) --resources gpu=1 $(CONFIG_ARGS)

test: $(STAMP)  ## unit + workflow tests, offline
	$(BIN)/python -m pytest -q

dry-run: $(STAMP)
	$(BIN)/snakemake -n all $(CONFIG_ARGS)

# The run's folder is results/<run>/ (gantrace.runs: its `run:` or the config file's name).
report: $(STAMP)  ## results/<run>/report.html of the demo (or CONFIG=my.yaml)
	dir=$$($(BIN)/python -m gantrace.runs $(or $(CONFIG),config/config.yaml)) && \
	$(BIN)/snakemake all --report $$dir/report.html $(CONFIG_ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check src tests workflow/scripts benchmarks
	$(BIN)/ruff format --check src tests workflow/scripts benchmarks

clean:
	rm -rf results .snakemake
