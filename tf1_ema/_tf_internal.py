"""The few TensorFlow internals that parity with TF1 forces on us, in one place.

Each helper here says which public behaviour of the reference it reproduces
and why no public symbol does the job. If a TensorFlow release moves one of
these, the failure is confined to this module; where the declared TensorFlow
versions differ (2.16 has no ``ResourceVariable._xla_sharding`` or
``_variable_read``), the helper answers for both. tests/test_tf_internal.py
exercises every helper, and runs on the oldest and the newest TensorFlow that
pyproject.toml declares (``make test-oldest``, ``make test``).

What it holds:

- slot creation parity: ``use_resource_like``, ``shared_name``,
  ``update_replica_id``, ``copy_slice_info``, ``copy_xla_sharding``,
  ``xla_sharding``, ``mark_read``, ``check_same_graph``;
- the reference: ``stock_assign_moving_average`` (``tf1-ema run --reference``);
- portable serialization: ``install_graph_def_rewriter`` (a hook on
  ``Graph._as_graph_def``);
- the fast graph of ``tf1_ema._build`` and ``tf1_ema._update_op``:
  ``fast_build_blocker`` and ``Unsupported`` (the fallback: a TensorFlow
  missing any internal below builds everything TF1's way), variable scopes
  (``variable_scope_store``, ``FastSubscopeClosing``), context checks
  (``op_callbacks_active``, ``has_variable_creator``), op creation
  (``create_op``, ``graph_container``), initial values
  (``guard_uninitialized``), variable kinds (``is_ref_variable``,
  ``is_plain_variable``, ``is_uncached_resource_variable``,
  ``caching_device``, ``variable_ref``, ``save_slice_info``), and a
  variable's shadow built without ``get_variable``'s overhead
  (``resource_variable_from_ops``, ``ref_variable_from_ops``, ``attr_scope``,
  ``ref_dtype``, ``shadow_sync_agg_trainable``, ``stored_variables``,
  ``is_resource_variable_instance``); see ``tf1_ema._build`` for the
  measurements that keep it.

No other module of tf1_ema imports ``tensorflow.python`` or reads a private
attribute of a TensorFlow object, except ``tf1_ema.v1``, whose
``tensorflow.python`` namespace is handed to user code on purpose.
"""

from __future__ import annotations

import bisect
import threading
import weakref

import tensorflow as tf

# TF1 parity: a shadow is a ref variable exactly when its variable is one, and a
# resource variable when its variable "acts as" one (distributed variables do).
# The public `tf.__internal__` export answers the second question; the first
# needs the RefVariable class, which has no public name.
from tensorflow.python.ops import ref_variable as _ref_variable
from tensorflow.python.distribute import distribute_lib as _distribute_lib


class Unsupported(RuntimeError):
    """This TensorFlow lacks an internal a helper here needs (the fast path: use the reference path)."""


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


def stock_assign_moving_average():
    """TensorFlow's own ``assign_moving_average`` (``tf1-ema run --reference`` hands it to user code).

    TensorFlow 2 exports no public ``assign_moving_average``; the stock one
    lives only in the private ``tensorflow.python.training.moving_averages``.

    Raises:
      Unsupported: this TensorFlow has no such function there.
    """
    import importlib  # pylint: disable=g-import-not-at-top

    try:
        return importlib.import_module("tensorflow.python.training.moving_averages").assign_moving_average
    except (ImportError, AttributeError) as exc:
        raise Unsupported("TensorFlow's own assign_moving_average is not where TF 2.16-2.21 keep it: %s" % exc)


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


# ---------------------------------------------------------------------------
# Fast graph construction (tf1_ema._build, tf1_ema._update_op).
#
# TF1 parity: the fast path builds exactly the ops, variables and variable-store
# entries that TF1's slot creator and ``assign_moving_average`` build, without
# their per-op Python overhead. That needs TensorFlow's graph and variable
# internals. Each helper below names one of them. If this TensorFlow lacks one,
# ``fast_build_blocker()`` says so, ``_build.scope_blocker``/``update_blocker``
# return that reason, and every shadow and update is built the reference way
# (as with TF1_EMA_FAST=0); a helper called anyway raises ``Unsupported``.
# ---------------------------------------------------------------------------


try:  # pylint: disable=g-import-not-at-top
    from tensorflow.python.framework import ops as _ops
    from tensorflow.python.framework import op_callbacks as _op_callbacks
    from tensorflow.python.ops import resource_variable_ops as _rv
    from tensorflow.python.ops import variable_scope as _vs
    from tensorflow.python.ops import variables as _variables

    _FAST_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - only on a TensorFlow that moved these modules
    _ops = _op_callbacks = _rv = _vs = _variables = None
    _FAST_IMPORT_ERROR = "TensorFlow internals moved (%s)" % exc

# Every internal the helpers below touch on a class or module, checked once.
_FAST_REQUIREMENTS = (
    ("ops.Graph._create_op_internal", lambda: _ops.Graph._create_op_internal),
    ("ops.Graph._attr_scope", lambda: _ops.Graph._attr_scope),
    ("ops.Graph._container", lambda: _ops.Graph()._container),
    ("ops.Graph._graph_key", lambda: _ops.Graph()._graph_key),
    ("ops.Graph._variable_creator_stack", lambda: _ops.Graph()._variable_creator_stack),
    ("op_callbacks.should_invoke_op_callbacks", lambda: _op_callbacks.should_invoke_op_callbacks),
    ("variable_scope._get_default_variable_store", lambda: _vs._get_default_variable_store),
    ("variable_scope.get_variable_scope_store", lambda: _vs.get_variable_scope_store),
    ("_VariableStore._vars", lambda: _vs._VariableStore()._vars),
    (
        "_VariableScopeStore.close_variable_subscopes",
        lambda: _vs._VariableScopeStore.close_variable_subscopes,
    ),
    ("_VariableScopeStore.variable_scopes_count", lambda: _vs._VariableScopeStore().variable_scopes_count),
    (
        "variables._try_guard_against_uninitialized_dependencies",
        lambda: _variables._try_guard_against_uninitialized_dependencies,
    ),
    (
        "variables.validate_synchronization_aggregation_trainable",
        lambda: _variables.validate_synchronization_aggregation_trainable,
    ),
    ("resource_variable_ops.BaseResourceVariable.__init__", lambda: _rv.BaseResourceVariable.__init__),
    ("RefVariable._ref", lambda: _ref_variable.RefVariable._ref),
    ("DType._as_ref", lambda: tf.float32._as_ref),
)
_fast_blocker_state: dict = {}


def fast_build_blocker():
    """Why this TensorFlow cannot take the fast construction path, or None if it can.

    Checks, once per process, that every internal the helpers of this section
    use exists. ``tf1_ema._build`` reports a non-None answer as its blocker,
    so a TensorFlow that moved one of them builds everything the reference
    (TF1_EMA_FAST=0) way instead of failing.
    """
    if "reason" not in _fast_blocker_state:
        reason = _FAST_IMPORT_ERROR
        if reason is None:
            for what, probe in _FAST_REQUIREMENTS:
                try:
                    probe()
                except Exception:  # pylint: disable=broad-except
                    reason = "this TensorFlow has no %s" % what
                    break
        _fast_blocker_state["reason"] = reason
    return _fast_blocker_state["reason"]


def _require_fast() -> None:
    """Raises ``Unsupported`` where ``fast_build_blocker()`` is not None."""
    reason = fast_build_blocker()
    if reason is not None:
        raise Unsupported(reason + "; build with TF1_EMA_FAST=0 (the reference path)")


def op_callbacks_active() -> bool:
    """True while op callbacks (tfdbg) are installed: they must see every op TF1 would build.

    Without TensorFlow's op-callback module this answers True, which keeps
    the fast path off.
    """
    if _op_callbacks is None:
        return True
    return bool(_op_callbacks.should_invoke_op_callbacks())


def has_variable_creator(graph) -> bool:
    """True inside ``tf.variable_creator_scope``: a creator must see TF1's own variable calls.

    The graph's creator stack has no public reader; without it this answers
    True, which keeps the fast path off.
    """
    stack = getattr(graph, "_variable_creator_stack", None)
    if stack is None:
        return True
    return bool(stack)


def stored_variables() -> dict:
    """The default ``_VariableStore``'s ``{name: variable}`` dict (mutable) that ``get_variable`` consults.

    TF1 parity: a shadow built fast is recorded there under the name TF1's
    ``get_variable`` would record it, so a later ``get_variable`` of that
    name raises "already exists" as in TF1.
    """
    _require_fast()
    return _vs._get_default_variable_store()._vars  # pylint: disable=protected-access


def variable_scope_store():
    """The thread's ``_VariableScopeStore``: the counts that make variable-scope names unique."""
    _require_fast()
    return _vs.get_variable_scope_store()


class FastSubscopeClosing:
    """While active, TF's variable-scope counts close sub-scopes by bisection instead of a full scan.

    Leaving a ``variable_scope`` zeroes the count of every variable scope
    below it (``_VariableScopeStore.close_variable_subscopes``), scanning all
    the counts of the graph: one scan per shadow makes ``apply()`` quadratic
    in the number of variables. Here the counts' names are kept sorted, so
    the same counts are zeroed with a bisection. The store's two methods are
    shadowed on the (thread-local) store instance and restored on exit.

    Args:
      store: a ``_VariableScopeStore``; default: ``variable_scope_store()``.
    """

    def __init__(self, store=None):
        self._store = variable_scope_store() if store is None else store
        self._counts = None
        self._names: list = []

    def __enter__(self):
        self._store.open_variable_scope = self._open
        self._store.close_variable_subscopes = self._close
        return self

    def __exit__(self, *exc):
        del self._store.open_variable_scope
        del self._store.close_variable_subscopes

    def _sorted_counts(self) -> dict:
        counts = self._store.variable_scopes_count
        if counts is not self._counts or len(counts) != len(self._names):  # replaced by a VariableScope's exit
            self._counts, self._names = counts, sorted(counts)
        return counts

    def _open(self, scope_name: str) -> None:
        counts = self._sorted_counts()
        if scope_name not in counts:
            bisect.insort(self._names, scope_name)
            counts[scope_name] = 0
        counts[scope_name] += 1

    def _close(self, scope_name) -> None:
        if scope_name is None:
            type(self._store).close_variable_subscopes(self._store, None)
            return
        counts, names, prefix = self._sorted_counts(), self._names, scope_name + "/"
        i = bisect.bisect_left(names, prefix)
        while i < len(names) and names[i].startswith(prefix):
            counts[names[i]] = 0
            i += 1


def guard_uninitialized(name: str, value):
    """TF1's rewrite of reads of other variables in an initial value (``Variable.__init__``)."""
    _require_fast()
    return _variables._try_guard_against_uninitialized_dependencies(name, value)  # pylint: disable=protected-access


def shadow_sync_agg_trainable(name: str):
    """The (synchronization, aggregation, trainable) ``get_variable`` gives a shadow named ``name``."""
    _require_fast()
    return _variables.validate_synchronization_aggregation_trainable(
        tf.VariableSynchronization.AUTO, tf.compat.v1.VariableAggregation.NONE, False, name
    )


def create_op(graph, op_type: str, inputs, out_dtypes, name=None, input_types=None, attrs=None):
    """``graph.create_op`` without its deprecation wrapper: the op exactly as a generated wrapper makes it.

    ``Graph._create_op_internal`` is what every generated op wrapper ends in;
    the public ``Graph.create_op`` is deprecated and adds a layer per op.
    Name scopes, control dependencies, devices and colocation are the
    graph's; the C API adds default attributes.
    """
    _require_fast()
    kwargs = {} if input_types is None else {"input_types": input_types}
    # pylint: disable-next=protected-access
    return graph._create_op_internal(op_type, list(inputs), list(out_dtypes), name=name, attrs=attrs, **kwargs)


def attr_scope(graph, attrs: dict):
    """``Graph._attr_scope(attrs)``: the private attribute scope ``Variable.__init__`` opens (``_class``)."""
    _require_fast()
    return graph._attr_scope(attrs)  # pylint: disable=protected-access


def graph_container(graph) -> str:
    """The container ``tf.compat.v1.container`` set on ``graph`` ("" outside one); no public reader."""
    _require_fast()
    return graph._container or ""  # pylint: disable=protected-access


def ref_dtype(dtype):
    """The reference dtype of ``dtype`` (``float32_ref``): a ``VariableV2`` op's output type."""
    _require_fast()
    return tf.as_dtype(dtype)._as_ref  # pylint: disable=protected-access


def is_ref_variable(v) -> bool:
    """True for a TF1 ref variable (``RefVariable`` or a subclass); the class has no public name."""
    return isinstance(v, _ref_variable.RefVariable)


def is_resource_variable_instance(v) -> bool:
    """True for a ``ResourceVariable`` (or subclass), not for things that only act as one."""
    return _rv is not None and isinstance(v, _rv.ResourceVariable)


def is_plain_variable(v) -> bool:
    """A resource or ref variable of the base classes, not a subclass or a wrapper."""
    if _rv is None:
        return False
    return type(v) in (_rv.ResourceVariable, _ref_variable.RefVariable)


def is_uncached_resource_variable(v) -> bool:
    """A plain ``ResourceVariable`` without a caching device: ``value()`` is one ``ReadVariableOp``."""
    if _rv is None or type(v) is not _rv.ResourceVariable:
        return False
    return caching_device(v) is None


def caching_device(variable):
    """A variable's caching device (TF1 then reads its cached copy, not the variable), else None."""
    return getattr(variable, "_caching_device", None)


def variable_ref(variable):
    """A ref variable's ref tensor (``VariableV2``'s output), which TF1's ``assign*`` ops take."""
    return variable._ref()  # pylint: disable=protected-access


def save_slice_info(variable):
    """The save-slice info of a partitioned variable's part, else None."""
    return getattr(variable, "_save_slice_info", None)


def resource_variable_from_ops(
    graph, name: str, handle_name: str, handle, read, initial_value, initializer, is_initialized, shape, dtype
):
    """A ``ResourceVariable`` around ops built as ``ResourceVariable._init_from_args`` builds them.

    TF1 parity: the Python object is the one ``get_variable`` makes for a
    shadow (non-trainable, AUTO synchronization, no constraint), through
    ``BaseResourceVariable.__init__`` as ``_init_from_args`` calls it; only
    the op construction (done by the caller) is skipped. Adds the variable
    to ``GLOBAL_VARIABLES``.
    """
    _require_fast()
    variable = object.__new__(_rv.ResourceVariable)
    synchronization, aggregation, trainable = shadow_sync_agg_trainable(name)
    handle._parent_trackable = weakref.ref(variable)  # pylint: disable=protected-access
    handle._name = handle_name + ":0"  # pylint: disable=protected-access
    handle._unique_id = handle_name  # pylint: disable=protected-access
    _rv.BaseResourceVariable.__init__(
        variable,
        trainable=trainable,
        shape=shape,
        dtype=dtype,
        handle=handle,
        synchronization=synchronization,
        constraint=None,
        aggregation=aggregation,
        distribute_strategy=None,
        name=name,
        unique_id=handle_name,
        handle_name=handle_name,
        graph_element=read,
        initial_value=initial_value,
        initializer_op=initializer,
        is_initialized_op=is_initialized,
        cached_value=None,
        caching_device=None,
        validate_shape=True,
        in_graph_mode=True,
    )
    graph.add_to_collections([tf.compat.v1.GraphKeys.GLOBAL_VARIABLES], variable)
    return variable


def ref_variable_from_ops(graph, name: str, ref, initial_value, initializer_op, snapshot):
    """A ``RefVariable`` around ops built as ``RefVariable._init_from_args`` builds them.

    TF1 parity: the attributes are those ``_init_from_args`` sets for a
    shadow (non-trainable, no caching device, constraint or slice info). Adds
    the variable to ``GLOBAL_VARIABLES``.
    """
    _require_fast()
    variable = object.__new__(_ref_variable.RefVariable)
    # pylint: disable=protected-access
    variable._in_graph_mode = True
    variable._graph_key = graph._graph_key
    synchronization, aggregation, trainable = shadow_sync_agg_trainable(name)
    variable._synchronization = synchronization
    variable._aggregation = aggregation
    variable._trainable = trainable
    variable._initial_value = initial_value
    variable._variable = ref
    variable._name = ref.name
    variable._initializer_op = initializer_op
    variable._snapshot = snapshot
    graph.add_to_collections([tf.compat.v1.GraphKeys.GLOBAL_VARIABLES], variable)
    variable._caching_device = None
    variable._save_slice_info = None
    variable._constraint = None
    # pylint: enable=protected-access
    return variable
