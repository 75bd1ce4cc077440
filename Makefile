# LSTM Rosetta: `make bench` and `make test` are all a new user needs.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: test bench bench-quick bench-busy bench-levers bench-grid baselines diff rosetta clean

# The venv is rebuilt whenever the pinned requirements or the project metadata change.
$(VENV): requirements.txt pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e . || $(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(VENV)

test: $(VENV)
	$(PY) -m pytest

bench: $(VENV)
	$(PY) -m benchmarks.run --out results
	$(PY) -m benchmarks.report results
	@echo "Report: results/REPORT.md"

# The 11 implementations at H=128, 23 compared steps and 5 rounds of 2 + 5 steps, no sweep: bound by
# the frameworks' start-up in 71 fresh processes, about 4 minutes (make bench: about 15 minutes).
bench-quick: $(VENV)
	$(PY) -m benchmarks.run --quick --out bench-quick
	$(PY) -m benchmarks.report bench-quick
	@echo "Report: bench-quick/REPORT.md"

# `rosetta train` beside 0, 1 and 2 busy processes at the old and new start-up defaults (~15 min on
# 2 shared cores): results/busy.csv and busy.md.
bench-busy: $(VENV)
	$(PY) -m benchmarks.busy --out results --reps 3

# Each speed lever before and after, and every implementation at 1 and 2 threads (~7 min on 2
# idle cores), into results/ next to `make bench`'s files (run that first: the report needs them).
bench-levers: $(VENV)
	$(PY) -m benchmarks.levers --out results --repeats 3
	$(PY) -m benchmarks.report results
	@echo "Report: results/REPORT.md"

# The workloads users run (benchmarks/grid.py): training throughput over batch size, hidden size,
# sequence length and threads, generation latency per character, start-up; 3 interleaved fresh
# processes per figure, each shape budgeted by time (at most 30 min on 2 quiet cores): results/GRID.md.
bench-grid: $(VENV)
	$(PY) -m benchmarks.grid --out results
	@echo "Report: results/GRID.md"

# What a character LSTM on tinyshakespeare is worth per character and per minute, scored under both
# protocols (carried state; nanoGPT's blocks) on the validation text's halves (about 2 hours on 2 quiet
# cores, estimated: the grid ~35 min, the 9M-character 2 x 512 with 3 seeds ~36, the headline with 3
# seeds ~11, every implementation in the headline's 2.3 minutes ~29; the block protocol's scoring, up to
# a few million characters a figure, is most of the rest; resumable: run it again after a stop).
# Some stages: python -m benchmarks.baselines --only headline,long (README: Baselines).
baselines: $(VENV)
	$(PY) -m benchmarks.baselines --out results
	@echo "Report: results/BASELINES.md"

# The three model.py files line by line, and each beside its own fast.py, as one static page (and its picture,
# taken by headless Chromium when one is installed: apt-get install chromium).
rosetta: $(VENV)
	$(PY) -m common.rosetta

# The three lesson files (model.py) diffed pair by pair: a differing line is a framework difference.
diff:
	-diff -u numpy_impl/model.py torch_impl/model.py
	-diff -u numpy_impl/model.py keras_impl/model.py
	-diff -u torch_impl/model.py keras_impl/model.py
	@for a in numpy torch keras; do for b in numpy torch keras; do \
	  if [ "$$a" \< "$$b" ]; then printf '%s vs %s: %s changed lines\n' $$a $$b \
	  "$$(diff $${a}_impl/model.py $${b}_impl/model.py | grep -c '^[<>]')"; fi; done; done

clean:
	rm -rf $(VENV) bench-quick .pytest_cache
