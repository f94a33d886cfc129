# Every target but clean-venv depends on `setup`, which builds .venv only when it is missing or pyproject.toml changed.
VENV    := .venv
PY      := $(VENV)/bin/python
HASHLAB := $(VENV)/bin/hashlab
STAMP   := $(VENV)/.installed
TABLE   ?= demo
PROFILE ?=
DATASETS ?=
METHODS ?=
SEEDS   ?=
# where the data sets live (a folder holding cifar10/, flickr25k/, ...): $HASHLAB_DATA, else ../shared/data
DATA    ?= $(or $(HASHLAB_DATA),$(abspath ../shared/data))

.PHONY: setup test demo reproduce report campaign campaign-status bench lint clean-venv

setup: $(STAMP)

# --compile-bytecode: these machines set PYTHONDONTWRITEBYTECODE=1, so without it every process compiles
# torch, Lightning and scipy from source (import lightning 27.6 s -> 11 s with bytecode)
$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@test -x $(PY) || uv venv --quiet $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --compile-bytecode -e '.[test]'
	@touch $(STAMP)

# one worker per core, a test file to a worker (its module fixtures, the SLURM cluster's queue, are then one
# worker's); `pytest tests/test_x.py` alone runs in this process
test: setup
	$(PY) -m pytest -n auto --dist loadfile

# writes under runs/ only (ignored by git): the committed reports/demo is the reference a test compares it with
demo: setup
	$(HASHLAB) reproduce --table demo --reports-dir runs/reports
	$(HASHLAB) data digits --out runs/demo-images
	$(HASHLAB) index build --images runs/demo-images --out runs/demo-index --features crow --bits 32 --image-size 64
	$(HASHLAB) search --index runs/demo-index runs/demo-images/3/0003.png runs/demo-images/7/0007.png -k 8 --rerank cosine --grid runs/demo-search

reproduce: setup
	$(HASHLAB) reproduce --table $(TABLE) --data-root $(DATA) $(if $(PROFILE),--profile $(PROFILE)) $(if $(DATASETS),--datasets $(DATASETS)) $(if $(METHODS),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS))

report: setup
	$(HASHLAB) report --table $(TABLE) --data-root $(DATA) $(if $(PROFILE),--profile $(PROFILE))

# the table campaign (experiments/campaign.yaml): pending cells one at a time, niced, resumable; records and
# codes land under reports/<table>/records/ as cells finish (COMMIT=1: each one git-committed as it lands)
campaign: setup
	$(HASHLAB) campaign --data-root $(DATA) $(if $(COMMIT),--commit)

campaign-status: setup
	$(HASHLAB) campaign --status --data-root $(DATA)

bench: setup
	$(PY) benchmarks/run_all.py  # writes benchmarks/results.md

lint: setup
	$(VENV)/bin/ruff check hashlab tests benchmarks

clean-venv:
	rm -rf $(VENV)
