# Two commands on a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv in the repo (idempotent: a stamp file skips the install
# until pyproject.toml changes). .venv gets the newest TensorFlow that
# pyproject.toml allows; `make test-oldest` runs the same suite in .venv-oldest
# on the oldest TensorFlow minor it declares. `make test-quick` is the inner loop.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tf1_ema-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE = 1

# The oldest TensorFlow minor in pyproject.toml's range (tensorflow>=2.16) and the
# tf-keras that goes with it; pip picks the NumPy they need (1.x for TF 2.16).
OLDEST_VENV := .venv-oldest
OLDEST_BIN  := $(OLDEST_VENV)/bin
OLDEST_PINS := 'tensorflow==2.16.*' 'tf-keras==2.16.*'
OLDEST_STAMP := $(OLDEST_VENV)/.tf1_ema-installed

# The whole suite, tests and notebooks (nbval, in the tf1-ema kernel).
SUITE := -p no:cacheprovider \
	--nbval --nbval-kernel-name tf1-ema \
	--nbval-sanitize-with tf1_ema/nbval_sanitize.cfg \
	tests notebooks

# Runs pytest in the venv $(1) with that venv's kernelspec first on Jupyter's
# search path, so nbval's `tf1-ema` kernel is this venv's interpreter even when
# another copy is registered for the user.
pytest_in = JUPYTER_PATH=$(abspath $(1))/share/jupyter$${JUPYTER_PATH:+:$$JUPYTER_PATH} \
	PATH=$(abspath $(1))/bin:$$PATH $(1)/bin/python -m pytest

# Creates venv $(1) if needed and installs the package editable with its
# test and notebook extras, plus the extra requirements $(2); registers the
# kernel in the venv and compiles the op library for its TensorFlow.
define install_into
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "tf1_ema needs Python 3.10 or newer, found " + sys.version.split()[0])'
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -e '.[test,notebook]' $(2)
	$(1)/bin/tf1-ema kernel install --sys-prefix
	-$(1)/bin/python -m tf1_ema._update_op  # compile the fast EMA ops now, not at the first apply()
	touch $(1)/.tf1_ema-installed
endef

.PHONY: bootstrap bootstrap-oldest demo test test-quick test-oldest bench clean

bootstrap: $(STAMP)

$(STAMP): pyproject.toml
	$(call install_into,$(VENV),)

bootstrap-oldest: $(OLDEST_STAMP)

$(OLDEST_STAMP): pyproject.toml Makefile
	$(call install_into,$(OLDEST_VENV),$(OLDEST_PINS))

demo: bootstrap
	$(BIN)/tf1-ema run examples/walkthrough.py

test: bootstrap
	$(call pytest_in,$(VENV)) $(SUITE)

# The inner loop, under two minutes: the tests marked `quick` (see tests/conftest.py).
test-quick: bootstrap
	$(call pytest_in,$(VENV)) -p no:cacheprovider -m quick tests

test-oldest: bootstrap-oldest
	$(call pytest_in,$(OLDEST_VENV)) $(SUITE)

bench: bootstrap
	$(BIN)/python benchmarks/bench_ema.py --quick

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache .hypothesis
