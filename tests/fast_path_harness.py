"""The harness the fast-path test modules share (``test_fast_path*.py``).

Each program is built twice, in fresh graphs, with TF1's class (``STOCK``) and
tf1_ema's (``FAST``), in TF2 graph mode and in TF1 mode (ref variables, v1
control flow); the helpers compare what a user can observe bit for bit and
check that the fused op was taken where it should be.
"""

import contextlib

import numpy as np
import pytest
import tensorflow as tf

import tf1_ema
from tf1_ema import _update_op

v1 = tf.compat.v1

STOCK = v1.train.ExponentialMovingAverage
FAST = tf1_ema.ExponentialMovingAverage
MODES = ("tf2-graph", "tf1")
FUSED_TYPE = {"tf2-graph": "Tf1EmaUpdateByName", "tf1": "Tf1EmaUpdateRef"}


@contextlib.contextmanager
def behaviour(mode):
    """TF2 graph mode as it is, or TF1's ref variables and v1 control flow (restored afterwards)."""
    cf_v2, resource = v1.control_flow_v2_enabled(), v1.resource_variables_enabled()
    if mode == "tf1":
        v1.disable_control_flow_v2()
        v1.disable_resource_variables()
    try:
        yield
    finally:
        (v1.enable_control_flow_v2 if cf_v2 else v1.disable_control_flow_v2)()
        (v1.enable_resource_variables if resource else v1.disable_resource_variables)()


@pytest.fixture(params=MODES)
def mode(request):
    """Each test runs in TF2 graph mode and in TF1 mode."""
    with behaviour(request.param):
        yield request.param


def modes(xfail=(), condition="fused_update_expected()", reason=""):
    """Parametrizes ``mode_name`` over MODES; the modes in ``xfail`` are strict xfails while ``condition`` holds.

    ``condition`` is evaluated when the test is set up: ``fused_update_expected()``
    for a difference of the fused op, ``fast_graph_expected()`` for one of the
    fast shadows; with ``TF1_EMA_FAST=0`` neither holds and the test must pass.
    """
    mark = pytest.mark.xfail(condition, strict=True, reason=reason)
    return pytest.mark.parametrize("mode_name", [pytest.param(m, marks=mark) if m in xfail else m for m in MODES])


def fast_graph_expected() -> bool:
    """Whether the default apply() builds the fast graph here (TF1_EMA_FAST not 0)."""
    return _update_op.fast_path_enabled()


def fused_update_expected() -> bool:
    """Whether the default apply() uses the fused op here (TF1_EMA_FAST not 0, the op library built)."""
    return _update_op.fast_path_enabled() and _update_op.load_library() is not None


def in_fresh_graph(program, cls, *args, **kwargs):
    """``program(cls, ...)`` in a fresh default graph with graph seed 7."""
    with tf.Graph().as_default():
        v1.set_random_seed(7)
        return program(cls, *args, **kwargs)


def twin(program, *args, **kwargs):
    """``program`` built with TF1's class and with tf1_ema's: ``(stock_result, fast_result)``."""
    return tuple(in_fresh_graph(program, cls, *args, **kwargs) for cls in (STOCK, FAST))


def fused_ops(graph=None):
    """The types of the fused update ops in ``graph`` (default: the default graph), sorted."""
    graph = graph or v1.get_default_graph()
    return sorted(op.type for op in graph.get_operations() if op.type.startswith("Tf1EmaUpdate"))


def assert_fast_path(stock, fast, *types):
    """The stock graph has no fused op; the fast one has exactly ``types`` (none where the op is off)."""
    assert stock["fused"] == []
    assert fast["fused"] == (sorted(types) if fused_update_expected() else [])


def _leaves(x, path="value"):
    """(path, leaf) pairs of a nest of dicts, lists and arrays, in a fixed order."""
    if isinstance(x, dict):
        for k in sorted(x):
            yield from _leaves(x[k], "%s[%r]" % (path, k))
    elif isinstance(x, (list, tuple)):
        yield path, len(x)
        for i, item in enumerate(x):
            yield from _leaves(item, "%s[%d]" % (path, i))
    else:
        yield path, x


def assert_bits_equal(ref, ours):
    """Equal nests; numbers compared dtype, shape and bits; strings and None compared as they are."""
    a, b = list(_leaves(ref)), list(_leaves(ours))
    assert [p for p, _ in a] == [p for p, _ in b]
    for (path, x), (_, y) in zip(a, b):
        if x is None or y is None or isinstance(x, (str, bytes)) or isinstance(y, (str, bytes)):
            assert x == y, path
            continue
        x, y = np.atleast_1d(np.asarray(x)), np.atleast_1d(np.asarray(y))
        assert x.dtype != object, "%s: not a number (a resource handle?)" % path
        assert (x.dtype, x.shape) == (y.dtype, y.shape), path
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8), err_msg=path)


def names(variables):
    """The variables' names, in order."""
    return [v.name for v in variables]


def graph_state(ema, averaged):
    """What a program's graph tells about its variables, names only."""
    return {
        "global": names(v1.global_variables()),
        "trainable": names(v1.trainable_variables()),
        "local": names(v1.local_variables()),
        "moving_average": names(v1.moving_average_variables()),
        "restore": sorted((k, v.name) for k, v in ema.variables_to_restore().items()),
        "average_names": [ema.average_name(v) for v in averaged],
        "averages": [ema.average(v).name for v in averaged],
    }


def bump(variables):
    """One "training step" that moves every variable: p <- p * 1.25 + 0.5."""
    return tf.group(*[v1.assign(p, p * tf.cast(1.25, p.dtype) + tf.cast(0.5, p.dtype)) for p in variables])
