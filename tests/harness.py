"""The one differential harness (ours against TF1's) and the one bit-comparison rule.

A *program* is a function that builds (and may run) a TF1 graph with an EMA
class ``cls`` and an ``assign_moving_average`` ``amv``: ``program(cls, amv)``.
``differential(program)`` builds it in fresh graphs (graph seed 7), once per
*build*:

- ``REFERENCE``: ``tf.compat.v1.train.ExponentialMovingAverage``;
- ``OURS``: ``tf1_ema.ExponentialMovingAverage`` as built by default;
- ``OURS_REFERENCE_GRAPH``: ours with ``TF1_EMA_FAST=0``, which must build
  TF1's graph op for op;

and returns, per build, what came out (a value or the exception's type and
message), the graph, and its normalized GraphDef. ``assert_same_as_tf1``
asserts that all three agree: outcomes under ``assert_bits_equal``, GraphDefs of
the reference and of ``OURS_REFERENCE_GRAPH`` as text.

``assert_bits_equal(ref, ours)`` (from ``bit_rule.py``, NumPy only, re-exported
here) is the bit rule of the whole suite: same nest; every number the same dtype,
shape and raw bytes; every other leaf equal; failures name the leaf's path.

For programs of one argument (``program(cls, ...)``, the fast-path modules'
style) ``twin`` gives ``(stock_result, fast_result)``; ``build_each`` runs a
program without catching its errors (the grid fixtures). ``graph_state``,
``collections``, ``names`` and ``normalized_graph_def`` turn a graph into
comparable data. The ``graph_mode`` fixture (import it) runs a test in TF2 graph
mode and in TF1 mode (``behaviour``); the plain ``graph`` and ``session``
fixtures are conftest's.
"""

import contextlib
import dataclasses
import re
from typing import Callable, Iterable

import pytest
import tensorflow as tf

import tf1_ema
from bit_rule import assert_bits_equal, bits_record, from_bits_record  # noqa: F401 - re-exported

v1 = tf.compat.v1

# The two EMA classes and the two assign_moving_average functions.
STOCK = v1.train.ExponentialMovingAverage
FAST = tf1_ema.ExponentialMovingAverage
STOCK_AMV = tf.__internal__.train.assign_moving_average
FAST_AMV = tf1_ema.assign_moving_average

# The builds a differential program runs in, by label.
REFERENCE = "reference"
OURS = "ours"
OURS_REFERENCE_GRAPH = "ours with TF1_EMA_FAST=0"
IMPLEMENTATIONS = {OURS: (FAST, FAST_AMV), REFERENCE: (STOCK, STOCK_AMV)}

GRAPH_SEED = 7

# TF1 behaviours a graph can be built in (the ``graph_mode`` fixture).
GRAPH_MODES = ("tf2-graph", "tf1")


# ---------------------------------------------------------------------------
# Fresh graphs and builds
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_graph(seed=GRAPH_SEED):
    """A new ``tf.Graph`` as the default graph, with graph-level seed ``seed`` (None: none)."""
    with tf.Graph().as_default() as g:
        if seed is not None:
            v1.set_random_seed(seed)
        yield g


def in_fresh_graph(program: Callable, *args, **kwargs):
    """``program(*args, **kwargs)`` in a fresh default graph with graph seed 7."""
    with fresh_graph():
        return program(*args, **kwargs)


def twin(program: Callable, *args, **kwargs):
    """``program(cls, ...)`` built with TF1's class and with tf1_ema's: ``(stock_result, fast_result)``."""
    return tuple(in_fresh_graph(program, cls, *args, **kwargs) for cls in (STOCK, FAST))


@contextlib.contextmanager
def reference_graph():
    """Our class builds TF1's graph op for op inside (``TF1_EMA_FAST=0``), not its fast graph."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TF1_EMA_FAST", "0")
        yield


@dataclasses.dataclass(frozen=True)
class Build:
    """One way to build a program: a label, the EMA class, assign_moving_average, and a context."""

    label: str
    ema: type
    amv: Callable
    context: Callable = contextlib.nullcontext


BUILDS = {
    REFERENCE: Build(REFERENCE, STOCK, STOCK_AMV),
    OURS: Build(OURS, FAST, FAST_AMV),
    OURS_REFERENCE_GRAPH: Build(OURS_REFERENCE_GRAPH, FAST, FAST_AMV, reference_graph),
}


@dataclasses.dataclass
class Run:
    """What one build of a program left: its outcome, its graph and the graph's normalized GraphDef."""

    outcome: tuple
    graph: tf.Graph
    graph_def: str


def outcome(fn: Callable, *args, **kwargs) -> tuple:
    """``("ok", fn(...))``, or ``("raises", type name, message)`` if it raises."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as e:  # noqa: BLE001 - the exception itself is what we compare
        return ("raises", type(e).__name__, str(e))


def run_build(build: Build, program: Callable) -> Run:
    """``program(build.ema, build.amv)`` in a fresh graph under the build's context."""
    with build.context(), fresh_graph() as g:
        result = outcome(program, build.ema, build.amv)
        return Run(result, g, normalized_graph_def(g))


def build_each(program: Callable, builds: Iterable[str] = (REFERENCE, OURS)) -> dict:
    """``{label: program(cls, amv)}``, each build in its own fresh graph under its context; exceptions propagate."""
    results = {}
    for label in builds:
        build = BUILDS[label]
        with build.context(), fresh_graph():
            results[label] = program(build.ema, build.amv)
    return results


def differential(program: Callable, builds: Iterable[str] = (REFERENCE, OURS, OURS_REFERENCE_GRAPH)) -> dict:
    """``{label: Run}``: ``program(cls, amv)`` built once per build, each in its own fresh graph."""
    return {label: run_build(BUILDS[label], program) for label in builds}


def assert_same_as_tf1(program: Callable, *, graph_def: bool = True):
    """Asserts ``program`` gives (or raises) the same with our class, fast or not, as with TF1's; returns our outcome.

    With ``TF1_EMA_FAST=0`` our class must also leave TF1's GraphDef (unless ``graph_def=False``).
    """
    runs = differential(program)
    ref = runs[REFERENCE]
    assert_bits_equal(ref.outcome, runs[OURS].outcome, path="outcome(ours)")
    assert_bits_equal(ref.outcome, runs[OURS_REFERENCE_GRAPH].outcome, path="outcome(ours, TF1_EMA_FAST=0)")
    if graph_def:
        assert runs[OURS_REFERENCE_GRAPH].graph_def == ref.graph_def, "the graphs differ with TF1_EMA_FAST=0"
    return runs[OURS].outcome


# ---------------------------------------------------------------------------
# What a graph tells: GraphDef, names, collections, graph state
# ---------------------------------------------------------------------------


def normalized_graph_def(graph) -> str:
    """The GraphDef as text: function library sorted, process-wide cond/while uids removed.

    ``tf.cond`` names its branch functions ``cond_true_170`` (``tf.while_loop``
    ``while_body_68``); the number is a process-wide counter, so it differs
    between two otherwise identical graphs.
    """
    graph_def = graph.as_graph_def()
    functions = sorted(str(f) for f in graph_def.library.function)
    graph_def.ClearField("library")
    text = str(graph_def) + "".join(functions)
    return re.sub(r"_(true|false|cond|body)_\d+", r"_\1", text)


def names(variables) -> list:
    """The variables' (or tensors') names, in order."""
    return [v.name for v in variables]


def describe(item):
    """A comparable description of a collection item: its name, else its type."""
    name = getattr(item, "name", None)
    return name if isinstance(name, str) else type(item).__name__


# The collections TF1's EMA writes to, for graphs that may differ elsewhere (the fast graph has no cond contexts).
VARIABLE_COLLECTIONS = (
    v1.GraphKeys.GLOBAL_VARIABLES, v1.GraphKeys.TRAINABLE_VARIABLES, v1.GraphKeys.MOVING_AVERAGE_VARIABLES
)


def collections(graph=None, keys=None) -> dict:
    """The collections ``keys`` (default: all) of ``graph`` (default: the default one): {key: names in order}."""
    graph = graph or v1.get_default_graph()
    keys = sorted(graph.get_all_collection_keys()) if keys is None else keys
    return {key: [describe(x) for x in graph.get_collection(key)] for key in keys}


def variable_summary(var) -> dict:
    """Name, dtype, shape, trainability, kind, colocation and device of a variable."""
    return {
        "name": var.name,
        "dtype": var.dtype.name,
        "shape": str(var.shape),
        "trainable": var.trainable,
        "op": var.op.type,
        "colocation": [c.decode() for c in var.op.colocation_groups()],
        "device": var.device,
    }


def graph_state(ema, averaged) -> dict:
    """What a program's graph tells about its variables and ``ema``'s shadows, names only."""
    return {
        "global": names(v1.global_variables()),
        "trainable": names(v1.trainable_variables()),
        "local": names(v1.local_variables()),
        "moving_average": names(v1.moving_average_variables()),
        "restore": sorted((k, v.name) for k, v in ema.variables_to_restore().items()),
        "average_names": [ema.average_name(v) for v in averaged],
        "averages": [ema.average(v).name for v in averaged],
    }


# ---------------------------------------------------------------------------
# TF1 behaviour (ref variables, v1 control flow) and programs
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def behaviour(mode: str):
    """TF2 graph mode as it is (``"tf2-graph"``), or TF1's ref variables and v1 control flow (``"tf1"``)."""
    cf_v2, resource = v1.control_flow_v2_enabled(), v1.resource_variables_enabled()
    if mode.startswith("tf1"):
        v1.disable_control_flow_v2()
        v1.disable_resource_variables()
    try:
        yield
    finally:
        (v1.enable_control_flow_v2 if cf_v2 else v1.disable_control_flow_v2)()
        (v1.enable_resource_variables if resource else v1.disable_resource_variables)()


@pytest.fixture(params=GRAPH_MODES)
def graph_mode(request):
    """Each test runs in TF2 graph mode and in TF1 mode (ref variables, v1 control flow); yields the mode's name."""
    with behaviour(request.param):
        yield request.param


def initialize(sess, feed_dict=None) -> None:
    """Initializes the averaged variables first, then every other global variable, in two runs.

    ``global_variables_initializer()`` cannot be used with ref variables: the
    shadow's initializer is a ``tf.cond`` whose ``If`` op reads the ref variable
    whatever the predicate, so it fails when it runs before the variable's own
    initializer, in both implementations.
    """
    averaged = v1.moving_average_variables()
    sess.run(v1.variables_initializer(averaged), feed_dict)
    first = {v.ref() for v in averaged}
    sess.run(v1.variables_initializer([v for v in v1.global_variables() if v.ref() not in first]), feed_dict)


def bump(variables):
    """One "training step" that moves every variable: p <- p * 1.25 + 0.5."""
    return tf.group(*[v1.assign(p, p * tf.cast(1.25, p.dtype) + tf.cast(0.5, p.dtype)) for p in variables])


__all__ = [
    # the bit rule
    "assert_bits_equal", "bits_record", "from_bits_record",
    # classes, labels, builds
    "STOCK", "FAST", "STOCK_AMV", "FAST_AMV", "REFERENCE", "OURS", "OURS_REFERENCE_GRAPH", "IMPLEMENTATIONS",
    "GRAPH_SEED", "GRAPH_MODES", "Build", "BUILDS", "Run",
    # building
    "fresh_graph", "in_fresh_graph", "twin", "reference_graph", "outcome", "run_build", "build_each", "differential",
    "assert_same_as_tf1", "behaviour", "graph_mode", "initialize", "bump",
    # observing
    "normalized_graph_def", "names", "describe", "collections", "VARIABLE_COLLECTIONS", "variable_summary",
    "graph_state",
]
