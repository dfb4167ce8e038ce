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

``assert_bits_equal(ref, ours)`` is the bit rule of the whole suite: two nests
of dicts, lists and tuples must have the same shape; every numeric leaf (NumPy
arrays and scalars, Python numbers, anything NumPy can turn into an array) the
same dtype, shape and raw bytes, so -0.0 differs from 0.0 and NaN payloads
count; every other leaf (strings, None, names) must be equal. A failure names
the path of the leaf (``value['w'][3]``) and the first differing elements with
their bits.

The fast-path modules' helpers (``twin``, ``in_fresh_graph``, ``graph_state``,
``names``, ``behaviour``...) live here too, under the same names.
"""

import contextlib
import dataclasses
import re
from typing import Callable, Iterable

import numpy as np
import pytest
import tensorflow as tf

import tf1_ema

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
# The bit rule
# ---------------------------------------------------------------------------


def _is_numeric(x) -> bool:
    """Whether ``x`` is compared by bits: NumPy data, Python numbers, or anything with ``__array__``."""
    if isinstance(x, (str, bytes)):
        return False
    return isinstance(x, (np.ndarray, np.generic, bool, int, float, complex)) or hasattr(x, "__array__")


def _as_unsigned(a: np.ndarray) -> np.ndarray:
    """The raw bits of ``a``, one unsigned integer (or row of bytes) per element."""
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize in (1, 2, 4, 8):
        return a.view(np.dtype("u%d" % a.dtype.itemsize))
    return a.view(np.uint8).reshape(a.shape + (a.dtype.itemsize,))


def _is_nan(a: np.ndarray) -> np.ndarray:
    """NaN positions of a float array (bfloat16 and float16 included); all False for other kinds."""
    try:
        return np.isnan(a.astype(np.float64) if a.dtype.kind == "V" or a.dtype.itemsize == 2 else a)
    except (TypeError, ValueError):
        return np.zeros(a.shape, bool)


def _show(a: np.ndarray, u: np.ndarray, index) -> str:
    """One element as ``value (0xbits)``."""
    bits = u[index]
    hex_bits = "0x" + (bits.tobytes()[::-1].hex() if np.ndim(bits) else format(int(bits), "0%dx" % (2 * a.itemsize)))
    return "%r (%s)" % (a[index].item() if a.dtype.kind in "fiucb" else a[index], hex_bits)


def _compare_arrays(ref, ours, path: str, nans_by_position: bool) -> None:
    """Same dtype, shape and bytes; NaNs only by position where ``nans_by_position``."""
    a, b = np.asarray(ref), np.asarray(ours)
    assert a.dtype != object and b.dtype != object, "%s: not a number (a resource handle?): %r" % (path, type(ref))
    assert a.dtype == b.dtype, "%s: dtype %s (reference) != %s (ours)" % (path, a.dtype, b.dtype)
    assert a.shape == b.shape, "%s: shape %s (reference) != %s (ours)" % (path, a.shape, b.shape)
    ua, ub = _as_unsigned(a), _as_unsigned(b)
    different = ua != ub
    if different.ndim > a.ndim:
        different = different.any(axis=-1)
    note = ""
    if nans_by_position:
        nan_a, nan_b = _is_nan(a), _is_nan(b)
        different = (different & ~(nan_a & nan_b)) | (nan_a != nan_b)
        note = " (NaNs compared by position)"
    if not different.any():
        return
    where = np.argwhere(np.atleast_1d(different))
    lines = []
    for index in where[:5]:
        index = tuple(int(i) for i in index) if a.ndim else ()
        lines.append("  at %s: reference %s, ours %s" % (list(index), _show(a, ua, index), _show(b, ub, index)))
    raise AssertionError(
        "%s: %d of %d %s elements differ in their bits%s\n%s"
        % (path, len(where), max(a.size, 1), a.dtype, note, "\n".join(lines))
    )


def _compare(ref, ours, path: str, nan_dtypes: frozenset) -> None:
    """Recursive step of ``assert_bits_equal``."""
    if isinstance(ref, dict) or isinstance(ours, dict):
        assert isinstance(ref, dict) and isinstance(ours, dict), "%s: %s != %s" % (path, type(ref), type(ours))
        missing, extra = set(ref) - set(ours), set(ours) - set(ref)
        assert not missing and not extra, "%s: keys only in the reference %s, only in ours %s" % (
            path, sorted(map(repr, missing)), sorted(map(repr, extra)))
        for key in sorted(ref, key=repr):
            _compare(ref[key], ours[key], "%s[%r]" % (path, key), nan_dtypes)
    elif isinstance(ref, (list, tuple)) or isinstance(ours, (list, tuple)):
        assert type(ref) is type(ours), "%s: %s (reference) != %s (ours)" % (path, type(ref), type(ours))
        assert len(ref) == len(ours), "%s: length %d (reference) != %d (ours)" % (path, len(ref), len(ours))
        for i, (x, y) in enumerate(zip(ref, ours)):
            _compare(x, y, "%s[%d]" % (path, i), nan_dtypes)
    elif _is_numeric(ref) and _is_numeric(ours):
        by_position = np.asarray(ref).dtype.name in nan_dtypes
        _compare_arrays(ref, ours, path, by_position)
    else:
        assert type(ref) is type(ours) and ref == ours, "%s: %r (reference) != %r (ours)" % (path, ref, ours)


def assert_bits_equal(ref, ours, *, path: str = "value", nans_by_position: Iterable[str] = ()) -> None:
    """Asserts ``ours`` equals ``ref``: same nest, and every number the same dtype, shape and raw bytes.

    ``nans_by_position`` names dtypes (``"bfloat16"``) whose NaNs need only be
    NaN in the same places, payload and sign aside; every other bit still counts.
    """
    _compare(ref, ours, path, frozenset(nans_by_position))


def bits_record(x) -> list:
    """``[dtype name, shape, hex bytes]`` of an array: JSON-ready, for values printed by subprocesses."""
    x = np.asarray(x)
    return [x.dtype.name, list(x.shape), np.ascontiguousarray(x).tobytes().hex()]


def from_bits_record(record) -> np.ndarray:
    """The array a ``bits_record`` describes, bit for bit."""
    dtype, shape, hex_bytes = record
    return np.frombuffer(bytes.fromhex(hex_bytes), dtype=_np_dtype(dtype)).reshape(shape)


def _np_dtype(name: str) -> np.dtype:
    """A NumPy dtype by name, bfloat16 included."""
    return np.dtype(tf.as_dtype(name).as_numpy_dtype) if name == "bfloat16" else np.dtype(name)


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


def collections(graph=None) -> dict:
    """Every collection of ``graph`` (default: the default graph): {key: descriptions in order}."""
    graph = graph or v1.get_default_graph()
    return {key: [describe(x) for x in graph.get_collection(key)] for key in sorted(graph.get_all_collection_keys())}


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


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("Callable", "Iterable")]
