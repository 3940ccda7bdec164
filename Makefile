# Two verbs for newcomers: `make demo` and `make test`. Each installs what it needs
# into .venv (made here, from pyproject.toml) the first time.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo test test-mitmproxy12 fuzz lint bench soak docs screenshot clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo/run.py

# the suite on every core (pytest-xdist); JOBS=0 runs it in this process
JOBS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS)

# damaged files at full size (not part of `make test`, which runs a few hundred cases):
# FUZZ_EXAMPLES cases for each of the six kinds of file (cassette, journal, VCR.py YAML,
# VCR.py JSON, HAR, configuration) truncated, bit-flipped, spliced and re-typed
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	REPLAYPROXY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -n $(JOBS) \
	  tests/unit/test_fuzz_files.py

# the same suite on Python 3.12 with mitmproxy 12 (what users of newer Pythons get), in
# its own venv; PYTHON312 names the interpreter (e.g. ~/.pyenv/versions/3.12.1/bin/python)
PYTHON312 ?= python3.12
VENV12    := .venv-mitmproxy12
$(VENV12)/.installed: pyproject.toml
	$(PYTHON312) -m venv $(VENV12)
	$(VENV12)/bin/python -m pip install --quiet --upgrade pip
	$(VENV12)/bin/python -m pip install --quiet -e '.[dev]' 'mitmproxy>=12,<13'
	touch $@

test-mitmproxy12: $(VENV12)/.installed
	$(VENV12)/bin/python -m pytest -n $(JOBS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/python docs/generate_cli.py

# docs/drift-report.png: the HTML drift report of `make demo`, in headless Chromium
# (apt install chromium)
screenshot: demo
	chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
	  --disable-extensions --disable-sync --no-first-run --hide-scrollbars \
	  --window-size=1280,1400 --screenshot=docs/drift-report.png \
	  "file://$(CURDIR)/demo/.work/drift/drift.html"

bench: $(STAMP)
	$(BIN)/python bench/import_time.py
	$(BIN)/python bench/decision_bench.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/engines.py
	$(BIN)/python bench/workers_bench.py
	$(BIN)/python bench/drift_bench.py
	$(BIN)/python bench/limits_bench.py
	$(BIN)/python bench/stream_bench.py

# 32 clients replaying a mixed cassette for 10 minutes (not part of test or bench);
# MINUTES=N for a shorter run
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(MINUTES)

clean:
	rm -rf $(VENV) $(VENV12) build *.egg-info .pytest_cache .mypy_cache .ruff_cache demo/.work bench/.work
