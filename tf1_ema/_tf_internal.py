"""The few TensorFlow internals that parity with TF1 forces on us, in one place.

Each helper here says which public behaviour of the reference it reproduces
and why no public symbol does the job. If a TensorFlow release moves one of
these, the failure is confined to this module; where the declared TensorFlow
versions differ (2.16 has no ``ResourceVariable._xla_sharding`` or
``_variable_read``), the helper answers for both. tests/test_tf_internal.py
exercises every helper, and runs on the oldest and the newest TensorFlow that
pyproject.toml declares (``make test-oldest``, ``make test``).

``tf1_ema._build`` still holds the internals of its fast construction (variable
classes, the variable store, op creation without generated wrappers); they are
the same on TensorFlow 2.16 and 2.21 and pinned by tests/test_build.py.
"""

from __future__ import annotations

import threading

import tensorflow as tf

# TF1 parity: a shadow is a ref variable exactly when its variable is one, and a
# resource variable when its variable "acts as" one (distributed variables do).
# The public `tf.__internal__` export answers the second question; the first
# needs the RefVariable class, which has no public name.
from tensorflow.python.ops import ref_variable as _ref_variable
from tensorflow.python.distribute import distribute_lib as _distribute_lib


def use_resource_like(primary) -> bool | None:
    """The ``use_resource`` argument TF1 passes when it creates a slot for ``primary``.

    Returns True for resource variables (and anything that acts as one), False
    for ref variables, and None (TensorFlow's default) for tensors.
    """
    if tf.__internal__.ops.is_resource_variable(primary):
        return True
    if isinstance(primary, _ref_variable.RefVariable):
        return False
    return None


def shared_name(variable) -> str:
    """The name TF1 builds a variable's slot names from.

    ``Variable._shared_name`` is the variable's op name without the replica
    suffix that distribution strategies add; for plain variables it equals
    ``variable.op.name``.
    """
    name = getattr(variable, "_shared_name", None)
    if name is None:
        name = variable.name[: -len(":0")] if variable.name.endswith(":0") else variable.op.name
    return name


def update_replica_id():
    """The replica being updated inside ``strategy.extended.update``, else None.

    TF1 parity: inside an update call (e.g. from an optimizer's apply step) the
    moving-average update runs directly on the replica's variable instead of
    opening a second, nested update. No public API tells the two apart.
    """
    return _distribute_lib.get_update_replica_id()


def copy_slice_info(primary, slot) -> None:
    """Gives a slot of a partitioned variable's part the matching save-slice info.

    TF1 parity: checkpoints of partitioned variables store each shadow part
    as a slice of one full shadow ``<full_name>/<slot name>``.
    """
    slice_info = getattr(primary, "_save_slice_info", None)
    if not isinstance(primary, tf.Variable) or not slice_info:
        return
    real_slot_name = slot.name[len(primary.op.name + "/") : -2]
    n = slot.shape.ndims
    if n is None or n > 0:
        slot._set_save_slice_info(  # pylint: disable=protected-access
            tf.Variable.SaveSliceInfo(
                slice_info.full_name + "/" + real_slot_name,
                slice_info.full_shape[:n],
                slice_info.var_offset[:n],
                slice_info.var_shape[:n],
            )
        )


def copy_xla_sharding(primary, slot):
    """Copies an XLA sharding annotation from ``primary`` to a same-rank ``slot``.

    TF1 parity: on TPU the shadow is sharded like its variable. A no-op for
    variables without a sharding, i.e. everywhere but TPU programs.
    """
    if primary.shape.rank is None or slot.shape.rank is None or primary.shape.rank != slot.shape.rank:
        return slot
    from tensorflow.python.compiler.xla.experimental import xla_sharding  # pylint: disable=g-import-not-at-top

    return xla_sharding.copy_sharding(primary, slot, use_sharding_op=False)


def xla_sharding(variable):
    """The XLA sharding annotation of a resource variable, or None.

    TF1 parity: a variable's ``value()`` reads it through an ``XlaShardingOp``
    when it has one. Newer TensorFlow (2.21) keeps the annotation in the
    private attribute ``_xla_sharding`` (set by ``_set_xla_sharding``);
    TensorFlow 2.16 has no such attribute (a sharding lives on the op only),
    so there this returns None.
    """
    return getattr(variable, "_xla_sharding", None)


def mark_read(variable) -> None:
    """Records that a graph read of a resource variable exists, as ``variable.value()`` does.

    TF1 parity: the fused update reads shadows and variables inside one op
    instead of through ``ReadVariableOp``s; the flag keeps the one behaviour
    that depends on it (setting an XLA sharding afterwards warns) TF1's.
    """
    if hasattr(variable, "_variable_read"):
        variable._variable_read = True  # pylint: disable=protected-access


def check_same_graph(*values) -> None:
    """Raises TF1's ValueError ("... must be from the same graph as ...") for tensors of two graphs.

    TF1 parity: ``assign_moving_average`` opens ``name_scope(name,
    "AssignMovingAvg", [variable, value, decay])``, whose graph check rejects
    a pair mixing graphs; the fast path builds no such scope per pair, so it
    runs the same check. The public API has no function for it.
    """
    from tensorflow.python.framework import ops  # pylint: disable=g-import-not-at-top

    ops._get_graph_from_inputs(list(values))  # pylint: disable=protected-access


# ---------------------------------------------------------------------------
# Portable serialization of graphs holding tf1_ema's fused update op
# (owned by the fused-op work; kept apart so that other changes here merge).
# ---------------------------------------------------------------------------

_graph_def_rewriters: list = []
_graph_def_hook_state: dict = {"installed": None}  # None: not tried; True/False: the outcome
_graph_def_hook_lock = threading.Lock()


def install_graph_def_rewriter(rewrite) -> bool:
    """Makes every GraphDef TensorFlow serializes from a Graph pass through ``rewrite`` first.

    TF1 parity (portability): a graph that runs tf1_ema's fused update op must
    still be written with TensorFlow's stock ops only, so that it loads where
    TensorFlow alone is installed. Every TensorFlow writer (``Graph.as_graph_def``,
    ``Session.graph_def``, ``export_meta_graph``, ``Saver.save``'s ``.meta``, the
    SavedModel builders, ``tf.io.write_graph`` of a Graph, TensorBoard) goes
    through the private ``Graph._as_graph_def``, in TF 2.16 as in 2.21; the
    public API offers no hook there. Sessions run the C graph directly, so the
    running graph keeps the fast op.

    Args:
      rewrite: ``rewrite(graph, graph_def)``, changing ``graph_def`` (a
        ``GraphDef`` of ``graph``) in place.

    Returns:
      True when the hook is in place. False when this TensorFlow has no
      ``Graph._as_graph_def`` returning ``(graph_def, version)``; callers must
      then not build the fast op (a graph could not be written portably).
    """
    with _graph_def_hook_lock:
        if _graph_def_hook_state["installed"] is None:
            _graph_def_hook_state["installed"] = _install_graph_def_hook()
        if rewrite not in _graph_def_rewriters:
            _graph_def_rewriters.append(rewrite)
        return _graph_def_hook_state["installed"]


def _install_graph_def_hook() -> bool:
    """Wraps ``Graph._as_graph_def`` once; False when it is not there to wrap."""
    import functools  # pylint: disable=g-import-not-at-top

    from tensorflow.python.framework import ops  # pylint: disable=g-import-not-at-top

    original = getattr(ops.Graph, "_as_graph_def", None)
    if not callable(original):
        return False
    if getattr(original, "_tf1_ema_hook", False):
        return True

    @functools.wraps(original)
    def _as_graph_def(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if _graph_def_rewriters:
            graph_def = result[0] if isinstance(result, tuple) else result
            for rewrite in _graph_def_rewriters:
                rewrite(self, graph_def)
        return result

    _as_graph_def._tf1_ema_hook = True  # pylint: disable=protected-access
    try:
        ops.Graph._as_graph_def = _as_graph_def  # pylint: disable=protected-access
    except (AttributeError, TypeError):
        return False
    # A quick self-check: the hook sees the proto TensorFlow returns.
    seen = []
    _graph_def_rewriters.append(lambda graph, graph_def: seen.append(hasattr(graph_def, "node")))
    try:
        ops.Graph().as_graph_def()
    except Exception:  # pylint: disable=broad-except
        seen.clear()
    finally:
        _graph_def_rewriters.pop()
    if seen != [True]:
        ops.Graph._as_graph_def = original  # pylint: disable=protected-access
        return False
    return True
