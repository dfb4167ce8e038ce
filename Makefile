# Two commands on a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv in the repo (idempotent: a stamp file skips the install
# until pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tf1_ema-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: bootstrap demo test bench clean

bootstrap: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "tf1_ema needs Python 3.10 or newer, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,notebook]'
	$(BIN)/tf1-ema kernel install --sys-prefix
	-$(BIN)/python -m tf1_ema._update_op  # compile the fast EMA ops now, not at the first apply()
	touch $(STAMP)

demo: bootstrap
	$(BIN)/tf1-ema run examples/walkthrough.py

test: bootstrap
	$(BIN)/python -m pytest -p no:cacheprovider \
		--nbval --nbval-kernel-name tf1-ema \
		--nbval-sanitize-with tf1_ema/nbval_sanitize.cfg \
		tests notebooks

bench: bootstrap
	$(BIN)/python benchmarks/bench_ema.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
