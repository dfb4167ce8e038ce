"""Shared fixtures, limits and markers for the tf1_ema tests.

TensorFlow is imported lazily, inside the fixtures, so that test modules which
never touch it (the oracle's, the CLI parser's) stay fast. Eager execution stays
on globally: graph-mode tests enter their own ``tf.Graph`` through the fixtures
below, and the eager tests run as TF2 code runs.
"""

import os

# Set before any test module imports TensorFlow: quiet C++ logs, Keras 2 as in TF1.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest

from limits import TIMEOUT  # every wait of the suite; see tests/limits.py

#: The `quick` selection (``make test-quick``, ``pytest -m quick``), in one
#: place: test module -> the node-id fragments that select its quick tests
#: (an empty tuple selects the whole module). The NumPy oracle, the CLI, our
#: EMA against the oracle, and a subset of the ours-vs-TF1 parity grid.
QUICK = {
    "test_math.py": (),
    "test_cli.py": (),
    "test_ema_oracle.py": (),
    "test_tf_internal.py": (),
    "test_ema_parity.py": (
        "test_variables_equal_the_reference[",
        "test_collections_equal_the_reference[",
        "test_average_names_equal_the_reference[",
        "test_model_runs_bit_for_bit_like_the_reference[",
        "test_shadow_names_follow_the_variable_and_are_uniquified",
        "test_biased_and_local_step_names_including_the_1_suffix",
        "test_errors_match_the_reference[",
        "test_assign_moving_average_bit_for_bit[",
    ),
}


def pytest_configure(config):
    """Registers the markers the suite uses and gives nbval's kernel start-up the suite's limit."""
    config.addinivalue_line("markers", "slow: takes more than ~10 s; still run by `make test` and CI")
    config.addinivalue_line("markers", "quick: the inner-loop subset run by `make test-quick` (see QUICK)")
    # nbval waits 60 s for a kernel to start unless told otherwise.
    if getattr(config.option, "nbval_kernel_startup_timeout", None) == 60:
        config.option.nbval_kernel_startup_timeout = TIMEOUT


def pytest_collection_modifyitems(config, items):
    """Marks the tests that QUICK selects as `quick`; slow tests are never quick."""
    for item in items:
        fragments = QUICK.get(item.path.name)
        if fragments is None or item.get_closest_marker("slow"):
            continue
        if not fragments or any(f in item.nodeid for f in fragments):
            item.add_marker(pytest.mark.quick)


@pytest.fixture
def graph():
    """A fresh ``tf.Graph``, made the default graph for the test's duration."""
    import tensorflow as tf

    with tf.Graph().as_default() as g:
        yield g


@pytest.fixture
def session(graph):
    """A ``tf.compat.v1.Session`` on the fresh graph of the ``graph`` fixture."""
    import tensorflow as tf

    with tf.compat.v1.Session(graph=graph) as sess:
        yield sess
