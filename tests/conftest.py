"""Shared fixtures for the tf1_ema tests.

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


def pytest_configure(config):
    """Registers the markers the suite uses."""
    config.addinivalue_line("markers", "slow: takes more than ~10 s; still run by `make test` and CI")


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
