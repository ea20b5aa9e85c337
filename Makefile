# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= all
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE = 1

.PHONY: run test report lint clean dry-run

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip -c constraints.txt -q
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## the built-in demo, end to end
	$(BIN)/snakemake all --cores $(CORES) --resources gpu=1

test: $(STAMP)  ## unit + workflow tests, offline
	$(BIN)/python -m pytest -q

dry-run: $(STAMP)
	$(BIN)/snakemake -n all

report: $(STAMP)
	$(BIN)/snakemake all --report results/report.html

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check src tests workflow/scripts benchmarks
	$(BIN)/ruff format --check src tests workflow/scripts benchmarks

clean:
	rm -rf results .snakemake
