"""The harness the fast-path test modules share (``test_fast_path*.py``).

Each program is built twice, in fresh graphs, with TF1's class (``STOCK``) and
tf1_ema's (``FAST``), in TF2 graph mode and in TF1 mode (ref variables, v1
control flow); the helpers compare what a user can observe bit for bit and
check that the fused op was taken where it should be.

The builds, the ``graph_mode`` fixture, graph state and the bit rule are the
suite's one harness (``harness.py``, ``bit_rule.py``), re-exported here; this
module adds only what is particular to the fused op.
"""

import pytest
import tensorflow as tf

from harness import (  # noqa: F401 - re-exported: the fast-path modules import these from here
    FAST,
    GRAPH_MODES as MODES,
    STOCK,
    assert_bits_equal,
    behaviour,
    bump,
    graph_mode,
    graph_state,
    in_fresh_graph,
    names,
    twin,
)
from tf1_ema import _update_op

v1 = tf.compat.v1

FUSED_TYPE = {"tf2-graph": "Tf1EmaUpdateByName", "tf1": "Tf1EmaUpdateRef"}


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


def fused_ops(graph=None):
    """The types of the fused update ops in ``graph`` (default: the default graph), sorted."""
    graph = graph or v1.get_default_graph()
    return sorted(op.type for op in graph.get_operations() if op.type.startswith("Tf1EmaUpdate"))


def assert_fast_path(stock, fast, *types):
    """The stock graph has no fused op; the fast one has exactly ``types`` (none where the op is off)."""
    assert stock["fused"] == []
    assert fast["fused"] == (sorted(types) if fused_update_expected() else [])
