"""Fast construction of the shadows and the update op of ``ExponentialMovingAverage.apply``.

TF1's ``apply()`` spends most of its time, and much of the first
``global_variables_initializer()`` run, on machinery around two ideas:

    shadow initial value = var's value if var is initialized else var.initial_value
    shadow              -= (shadow - var) * one_minus_decay

Per variable it builds a ``cond_v2`` (two FuncGraphs, lowered back to about
ten nodes that Grappler optimizes again in the first session run), goes
through ``variable_scope``/``get_variable``/``Variable.__init__``, and for the
update through ``merge_call`` and ``strategy.extended.update``, with a
``1 - decay``, a cast and an unused read-after-write per variable. This module
builds the same variables and the same values with less:

* the conditional is two stock nodes, ``VarIsInitializedOp`` and an ``If``
  that is not lowered and whose one-op branch functions are shared by every
  shadow of a dtype (a session instantiates them once); a ref variable cannot
  enter a function unread, so its conditional is a v1 ``RefSwitch``/``Merge``.
  Either way the variable is read only if it is initialized when the
  shadow's initializer runs, exactly as with TF1's ``cond``. Only stock ops,
  so a graph written from the session loads where TensorFlow alone is
  installed. Fewer nodes matter most in the first
  ``global_variables_initializer()`` run, where Grappler optimizes the whole
  initializer graph node by node;
* the shadow's name comes from the public ``variable_scope`` TF1 opens, so
  variable-scope and name-scope uniquification are TF1's own code; the
  variable is registered in the variable store under TF1's key, so
  ``get_variable(..., reuse=True)`` finds it as in TF1; its ops are the ones
  ``Variable.__init__`` creates (names, attributes, devices, colocation),
  wrapped in the same Python class, without that constructor's overhead;
* ``one_minus_decay`` is computed once per decay and dtype, and each update
  is the kernels TF1 runs on the same inputs (``Sub``, ``Mul``,
  ``AssignSub``; TF1's debiasing ops), so every bit matches; debias variables
  get TF1's free names from a set of taken names, not from rescanning the
  graph's variables twice per shadow.

``scope_blocker`` and ``fast_path_blocker`` say when this is exact; everything
else (eager, functions, a distribution strategy, a reusing or customized
variable scope, a variable creator scope, partitioned, sharded or subclassed
variables, shapes not fully defined, a ref variable under v2 control flow)
goes to the caller's reference path. Differences that reach no variable,
value, name of a variable or checkpoint:

* the initial-value conditional is the ``If`` (or ``RefSwitch``/``Merge``)
  above, not TF1's ``If`` with two functions per
  variable (v2 control flow) or v1 ``cond`` with a ``CondContext``: the graph
  has at most two library functions per dtype instead of two per variable, no
  ``cond_context`` entries, and under v1
  control flow TF1's guard rewrite is applied to the variable's initial value
  only, not to the branch reading the variable itself (a rewrite that changes
  no value but adds a second conditional per variable);
* the update shares ``one_minus_decay`` (and, debiasing, the constant 1)
  and leaves out TF1's unread read-after-write, so ops inside each
  ``AssignMovingAvg`` scope have other names (the scopes and the grouped op
  keep TF1's);
* names consumed are TF1's at the level where later user code can meet them
  (``cond``, ``VarIsInitializedOp``, the shadow scopes), not inside the
  conditional, so only an op created later under a name such as
  ``cond_3/Identity`` could be named differently.

Costs that remain per variable, and why: the shadow's own ops (a handle, its
initializer, its read), the conditional, and TF's Grappler, which
every first ``session.run`` spends time on per node; see
benchmarks/bench_first_step.py.

The TensorFlow internals this needs (variable classes, the variable store,
attribute scopes, op creation without generated wrappers) are named helpers
of ``tf1_ema._tf_internal``; where one is missing, ``scope_blocker`` and
``update_blocker`` say so and everything is built the reference way.
tests/test_build.py checks what is built here against TF1, variable
attribute by attribute and op by op.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import tensorflow as tf

from tf1_ema import _tf_internal

_v1 = tf.compat.v1

VARIABLE_OP_TYPES = ("Variable", "VariableV2", "VarHandleOp")

# TF internals: each is a named helper of tf1_ema._tf_internal, with its
# fallback there; used for speed, never for a behaviour TF1 lacks, and pinned
# by tests/test_build.py against what TF1 itself builds.

@functools.lru_cache(maxsize=None)
def _type_attr(dtype) -> _v1.AttrValue:
    """A ``type`` attribute value (cached: one proto per dtype is copied into each NodeDef)."""
    return _v1.AttrValue(type=tf.as_dtype(dtype).as_datatype_enum)


def _attr(**value) -> _v1.AttrValue:
    """An attribute value: ``_attr(b=True)``, ``_attr(s=b"x")``, ``_attr(types=[...])``, ``_attr(shapes=[...])``."""
    if "types" in value:
        types = [tf.as_dtype(t).as_datatype_enum for t in value["types"]]
        return _v1.AttrValue(list=_v1.AttrValue.ListValue(type=types))
    if "shapes" in value:
        shapes = [tf.TensorShape(x).as_proto() for x in value["shapes"]]
        return _v1.AttrValue(list=_v1.AttrValue.ListValue(shape=shapes))
    return _v1.AttrValue(**value)


def _op(graph, op_type: str, inputs: Sequence, out_dtypes: Sequence, name: Optional[str] = None, **attrs):
    """Creates an op the way its generated wrapper would, without ``op_def_library``.

    The wrapper's generic argument handling costs more than creating the op;
    the few op types built here take no ref inputs, so nothing else differs
    (name scopes, control dependencies, devices and colocation are the
    graph's, and the C API adds default attributes).
    """
    return _tf_internal.create_op(graph, op_type, inputs, out_dtypes, name=name, attrs=attrs)


def _ref_op(graph, op_type: str, inputs: Sequence, out_dtypes: Sequence, name: Optional[str] = None, **attrs):
    """``_op`` for an op whose first input is a ref: colocated with it and typed as a ref, as the wrapper does."""
    ref = inputs[0]
    input_types = [ref.dtype] + [t.dtype.base_dtype for t in inputs[1:]]
    with graph.colocate_with(ref.op):
        return _tf_internal.create_op(
            graph, op_type, inputs, out_dtypes, input_types=input_types, name=name, attrs=attrs
        )


def _identity(graph, tensor, name: str):
    """``tf.identity(tensor, name)``; a ref tensor is read (dereferenced)."""
    dtype = tensor.dtype.base_dtype
    return _tf_internal.create_op(
        graph, "Identity", [tensor], [dtype], input_types=[dtype], name=name, attrs={"T": _type_attr(dtype)}
    ).outputs[0]


def _read_op(graph, handle, dtype):
    """``ReadVariableOp(handle)``."""
    return _op(graph, "ReadVariableOp", [handle], [dtype], dtype=_type_attr(dtype)).outputs[0]


@functools.lru_cache(maxsize=None)
def _zeros_value(shape: Tuple[int, ...], dtype) -> _v1.AttrValue:
    """The ``value`` attribute of ``tf.zeros(shape, dtype)``'s ``Const``."""
    return _v1.AttrValue(tensor=tf.make_tensor_proto(0, dtype=dtype, shape=shape))


def _zeros_initializer(graph, shape, dtype):
    """get_variable's zeros initializer bound to ``shape`` and ``dtype``, as a no-argument callable.

    It makes the ops ``tf.zeros(shape, dtype)`` makes; below TF's 1000-element
    threshold that is one ``Const``, built here from a cached value.
    """
    shape, t = tuple(shape.as_list()), _type_attr(dtype)
    if tf.TensorShape(shape).num_elements() >= 1000 or _tf_internal.op_callbacks_active():
        return functools.partial(_v1.zeros_initializer(), list(shape), dtype=dtype, partition_info=None)

    def zeros():
        with graph.name_scope("zeros") as name:
            value = _op(graph, "Const", [], [dtype], name=name, value=_zeros_value(shape, dtype), dtype=t)
        tensor = value.outputs[0]
        _tf_internal.mark_zeros_tensor(tensor)  # TF1 parity: tf.zeros tags it
        return tensor

    return zeros


def _class_attr_scope(graph, name: str):
    """The ``_class`` attribute scope ``Variable.__init__`` opens around its initial value."""
    attr = _v1.AttrValue(list=_v1.AttrValue.ListValue(s=[("loc:@%s" % name).encode()]))
    return _tf_internal.attr_scope(graph, {"_class": attr})


def _call_initializer(graph, initial_value, dtype):
    """Calls a callable initial value as ``Variable.__init__`` does (a tensor passes through)."""
    with graph.name_scope("Initializer"), graph.device(None):
        if callable(initial_value):
            initial_value = initial_value()
        return tf.convert_to_tensor(initial_value, name="initial_value", dtype=dtype)


def _new_resource_variable(graph, name: str, initial_value, dtype):
    """A ``ResourceVariable`` exactly as ``Variable.__init__(initial_value, name=name)`` makes it.

    ``name`` is the ``name`` argument (``"a/b/"`` is taken as is, ``"a/b"``
    made unique), ``initial_value`` a tensor or a callable. The ops, their
    names, devices and colocation are those of ``ResourceVariable.
    _init_from_args``; only its Python overhead is skipped, and its guard
    against uninitialized dependencies, which the callers apply where it can
    change a value (see ``_initialized_value``).
    """
    container = _tf_internal.graph_container(graph)
    t = _type_attr(dtype)
    # TF1 parity: Variable.__init__ lifts into init_scope, which also restores
    # the device scope that an enclosing colocate_with cleared.
    with tf.init_scope(), graph.name_scope(name) as name:
        handle_name = name[:-1]
        with _class_attr_scope(graph, handle_name):
            initial_value = _call_initializer(graph, initial_value, dtype)
            shape = initial_value.shape
            handle = _op(
                graph,
                "VarHandleOp",
                [],
                [tf.resource],
                name=name,
                dtype=t,
                shape=_attr(shape=shape.as_proto()),
                shared_name=_attr(s=handle_name.encode()),
                debug_name=_attr(s=name.encode()),
                container=_attr(s=container.encode()),
            ).outputs[0]
        with graph.name_scope("IsInitialized"):
            is_initialized = _op(graph, "VarIsInitializedOp", [handle], [tf.bool]).outputs[0]
        no_colocation = graph.colocate_with(None, ignore_existing=True)
        with graph.name_scope("Assign") as assign_name, no_colocation, graph.device(handle.device):
            initializer = _op(graph, "AssignVariableOp", [handle, initial_value], [], name=assign_name, dtype=t)
        with graph.name_scope("Read"), graph.device(handle.device):
            read = _read_op(graph, handle, dtype)
    return _tf_internal.resource_variable_from_ops(
        graph, name, handle_name, handle, read, initial_value, initializer, is_initialized, shape, dtype
    )


def _new_ref_variable(graph, name: str, initial_value, dtype):
    """A ``RefVariable`` exactly as ``Variable.__init__(initial_value, name=name)`` makes it.

    As ``_new_resource_variable``, for ``RefVariable._init_from_args``.
    """
    shadow_name = name
    t = _type_attr(dtype)

    def variable_op():
        return _op(
            graph,
            "VariableV2",
            [],
            [_tf_internal.ref_dtype(dtype)],
            name=name,
            shape=_attr(shape=initial_value.shape.as_proto()),
            dtype=t,
            container=_attr(s=b""),
            shared_name=_attr(s=b""),
        ).outputs[0]

    with tf.init_scope(), graph.name_scope(name) as name:  # TF1 parity: as in _new_resource_variable
        if callable(initial_value):
            with _class_attr_scope(graph, name[:-1]):
                initial_value = _call_initializer(graph, initial_value, dtype)
                ref = variable_op()
        else:
            ref = variable_op()
        initializer_op = _ref_op(graph, "Assign", [ref, initial_value], [ref.dtype], T=t, validate_shape=_attr(b=True))
        with graph.colocate_with(ref.op):
            snapshot = _identity(graph, ref, "read")
    return _tf_internal.ref_variable_from_ops(graph, shadow_name, ref, initial_value, initializer_op, snapshot)


def _is_plain_variable(v) -> bool:
    """A resource or ref variable of the base classes, not a subclass or a wrapper."""
    return _tf_internal.is_plain_variable(v)


def _xla_sharded(v) -> bool:
    """True if ``v`` carries an XLA sharding that TF1 copies to the shadow."""
    if _tf_internal.xla_sharding(v) is not None:
        return True
    return "_XlaSharding" in v.op.node_def.attr


# ---------------------------------------------------------------------------
# When the fast path is exact
# ---------------------------------------------------------------------------


def scope_blocker(graph=None) -> Optional[str]:
    """Why shadows cannot be built fast in the current context, or None if they can.

    Must be called where the shadows are created, i.e. inside ``tf.init_scope()``.
    """
    if tf.executing_eagerly():
        return "eager execution"
    unsupported = _tf_internal.fast_build_blocker()
    if unsupported:
        return unsupported
    graph = graph or _v1.get_default_graph()
    if graph.building_function:
        return "building a function"
    if tf.distribute.has_strategy():
        return "inside a distribution strategy"
    if _tf_internal.has_variable_creator(graph):
        return "inside a variable creator scope"
    if _tf_internal.op_callbacks_active():
        return "op callbacks are active"
    scope = _v1.get_variable_scope()
    if scope.reuse:
        return "the variable scope reuses variables"
    for what in ("custom_getter", "regularizer", "constraint", "caching_device"):
        if getattr(scope, what) is not None:
            return "the variable scope has a %s" % what
    return None


def fast_path_blocker(primary, graph=None) -> Optional[str]:
    """Why ``primary``'s shadow cannot be built fast, or None if it can.

    Covers the primary alone; ``scope_blocker`` covers the context.
    """
    graph = graph or _v1.get_default_graph()
    if isinstance(primary, tf.Variable):
        if not _is_plain_variable(primary):
            return "a %s, not a plain resource or ref variable" % type(primary).__name__
        if primary.graph is not graph:
            return "the variable is in another graph"
        if _tf_internal.save_slice_info(primary):
            return "a partitioned variable"
        if _xla_sharded(primary):
            return "an XLA-sharded variable"
        if primary.initial_value is None:
            return "a variable without an initial value"
        if _tf_internal.is_ref_variable(primary) and _v1.control_flow_v2_enabled():
            # TF1 parity: there the reference's initial value reads the variable
            # unguarded; only TF1's own code reproduces that.
            return "a ref variable under control flow v2"
    elif isinstance(primary, tf.Tensor):
        if primary.graph is not graph:
            return "the tensor is in another graph"
    else:
        return "neither a variable nor a tensor"
    if not primary.get_shape().is_fully_defined():
        return "a shape that is not fully defined"
    return None


# ---------------------------------------------------------------------------
# Shadows
# ---------------------------------------------------------------------------


_READ_IF_INITIALIZED: Dict[Any, Tuple[Any, Any]] = {}  # dtype -> (then, else) concrete functions
_BRANCH_ATTRS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # graph -> {dtype: (then, else) attrs}


def _read_if_initialized_branches(graph, dtype):
    """The two branch functions of the ``If`` that starts a resource variable's shadow, as attributes.

    ``then(handle, initial_value)`` reads the variable, ``else`` returns the
    initial value. They are traced once per dtype and process, added once to
    each graph, and shared by every ``If``, so a session instantiates them
    once however many shadows there are.
    """
    in_graph = _BRANCH_ATTRS.setdefault(graph, {})
    if dtype not in in_graph:
        if dtype not in _READ_IF_INITIALIZED:
            spec = (tf.TensorSpec(None, tf.resource), tf.TensorSpec(None, dtype))
            read = tf.function(lambda handle, initial_value: tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype))
            keep = tf.function(lambda handle, initial_value: initial_value)
            _READ_IF_INITIALIZED[dtype] = (read.get_concrete_function(*spec), keep.get_concrete_function(*spec))
        attrs = []
        for function in _READ_IF_INITIALIZED[dtype]:
            function.add_to_graph(graph)
            attrs.append(_v1.AttrValue(func=_v1.NameAttrList(name=function.name)))
        in_graph[dtype] = tuple(attrs)
    return in_graph[dtype]


def _initialized_value(graph, var, ema_name: str):
    """var's value if it is initialized, else its initial value, as TF1's ``cond`` computes it.

    A resource variable is read by an ``If`` on ``VarIsInitializedOp`` whose
    two tiny branch functions are shared (see ``_read_if_initialized_branches``);
    it is not lowered, so it stays two nodes. A ref variable cannot enter a
    function without being read, so its read is gated by ``RefSwitch``/
    ``Merge``, as in TF1's v1 ``cond``. Either way the variable is read only
    when it is initialized.

    TF1 parity: the names consumed in the current name scope are TF1's
    (``VarIsInitializedOp``/``IsVariableInitialized`` and ``cond``).
    """
    initial_value = var.initial_value
    if not _v1.control_flow_v2_enabled():
        # TF1 parity: Variable.__init__ walks TF1's v1 Merge into the initial
        # value and reads other ref variables there through their initialized
        # values (a v2 If stops that walk). The walk's rewrite of the branch
        # that reads `var` itself changes no value, so only this one is kept.
        guard_prefix = _tf_internal.shared_name(var) + "/" + ema_name + "/"
        initial_value = _tf_internal.guard_uninitialized(guard_prefix, initial_value)
    dtype = var.dtype.base_dtype
    t = _type_attr(dtype)
    is_ref = _tf_internal.is_ref_variable(var)
    if is_ref:
        ref = _tf_internal.variable_ref(var)
        with graph.device(var.device):
            initialized = _ref_op(graph, "IsVariableInitialized", [ref], [tf.bool], dtype=t).outputs[0]
            with graph.name_scope("cond"):
                ref_switch = _ref_op(graph, "RefSwitch", [ref, initialized], [ref.dtype, ref.dtype], T=t)
                value_if_initialized = _identity(graph, ref_switch.outputs[1], "read")
                switch = _op(graph, "Switch", [initial_value, initialized], [dtype, dtype], T=t)
                inputs = [switch.outputs[0], value_if_initialized]
                merge = _op(graph, "Merge", inputs, [dtype, tf.int32], T=t, N=_attr(i=2))
                return merge.outputs[0]
    then_branch, else_branch = _read_if_initialized_branches(graph, dtype)
    # Colocated with the variable: the branch reads it where it lives.
    with graph.colocate_with(var.op):
        initialized = _op(graph, "VarIsInitializedOp", [var.handle], [tf.bool]).outputs[0]
        if_op = _op(
            graph,
            "If",
            [initialized, var.handle, initial_value],
            [dtype],
            name="cond",
            Tcond=_type_attr(tf.bool),
            Tin=_attr(types=[tf.resource, dtype]),
            Tout=_attr(types=[dtype]),
            then_branch=then_branch,
            else_branch=else_branch,
            output_shapes=_attr(shapes=[var.get_shape()]),
        )
    return if_op.outputs[0]


def _create_shadow(graph, primary, ema_name: str, colocate: bool, initial_value, dtype, use_resource: bool, tf1_kwargs):
    """Creates ``primary``'s shadow in the variable scope TF1's slot creator opens for it.

    ``initial_value`` is a tensor or a bound callable; ``tf1_kwargs`` are the
    arguments TF1's slot creator gives ``get_variable("")``.
    """
    prefix = _tf_internal.shared_name(primary) if isinstance(primary, tf.Variable) else primary.op.name
    with _v1.variable_scope(None, default_name=prefix + "/" + ema_name) as scope:
        full_name = scope.name + "/"
        store = _tf_internal.stored_variables()
        if full_name in store:
            # TF1 parity: a scope count that a closed parent scope reset gives
            # a taken name; get_variable raises "already exists" as in TF1.
            return _v1.get_variable("", **tf1_kwargs)
        new_variable = _new_resource_variable if use_resource else _new_ref_variable
        with graph.name_scope(None):
            if colocate:
                with graph.colocate_with(primary.op):
                    shadow = new_variable(graph, full_name, initial_value, dtype)
            else:
                shadow = new_variable(graph, full_name, initial_value, dtype)
        store[full_name] = shadow
    return shadow


def _shadow_of_variable(graph, var, ema_name: str, dtype):
    """``var``'s shadow, starting from var's current value if initialized, else its initial value."""
    value = _initialized_value(graph, var, ema_name)
    if dtype is not None and dtype != var.dtype.base_dtype:
        with graph.device(var.device):
            value = tf.cast(value, dtype)
    use_resource = _tf_internal.is_resource_variable_instance(var)
    tf1_kwargs = dict(initializer=value, trainable=False, use_resource=use_resource, validate_shape=True)
    return _create_shadow(graph, var, ema_name, True, value, value.dtype.base_dtype, use_resource, tf1_kwargs)


def _shadow_of_tensor(graph, tensor, ema_name: str, dtype):
    """A zero-initialized shadow of ``tensor``, colocated with it when it reads a variable op."""
    dtype = tensor.dtype.base_dtype if dtype is None else tf.as_dtype(dtype)
    shape = tensor.get_shape()
    use_resource = _v1.get_variable_scope().use_resource
    if use_resource is None:
        use_resource = _v1.resource_variables_enabled()
    initial_value = _zeros_initializer(graph, shape, dtype)
    colocate = tensor.op.type in VARIABLE_OP_TYPES
    tf1_kwargs = dict(initializer=_v1.zeros_initializer(), shape=shape, dtype=dtype, trainable=False)
    return _create_shadow(graph, tensor, ema_name, colocate, initial_value, dtype, use_resource, tf1_kwargs)


def create_shadows(
    var_list: Iterable,
    ema_name: str,
    fallback: Callable[[Any], Any],
    dtypes: Optional[Sequence] = None,
) -> Dict[Any, Any]:
    """Creates the shadows of ``var_list`` as ``ExponentialMovingAverage.apply`` does.

    Each variable gets a non-trainable shadow ``<var>/<ema_name>`` (made unique
    by TF1's variable-scope rules) in ``GLOBAL_VARIABLES``, colocated with it,
    of its kind (resource or ref), starting from its value if it is
    initialized when the shadow's initializer runs, else from its initial
    value. Each tensor gets a zero-initialized shadow. Shadows are created in
    ``var_list`` order; a primary the fast path cannot build exactly (see
    ``fast_path_blocker``) is handed to ``fallback(primary)`` at its turn.
    Call inside ``tf.init_scope()``, as apply() does.

    Args:
      var_list: variables and tensors, none already averaged.
      ema_name: the ExponentialMovingAverage's name.
      fallback: builds one shadow the reference way.
      dtypes: optional shadow dtype per primary (None: the primary's).

    Returns:
      ``{primary.ref(): shadow}``; MOVING_AVERAGE_VARIABLES is the caller's.
    """
    var_list = list(var_list)
    dtypes = [None] * len(var_list) if dtypes is None else list(dtypes)
    graph = _v1.get_default_graph()
    blocked = scope_blocker(graph)
    shadows = {}
    with _tf_internal.FastSubscopeClosing():
        for primary, dtype in zip(var_list, dtypes):
            if primary.ref() in shadows:
                continue
            if blocked or fast_path_blocker(primary, graph):
                shadow = fallback(primary)
            elif isinstance(primary, tf.Variable):
                shadow = _shadow_of_variable(graph, primary, ema_name, dtype)
            else:
                shadow = _shadow_of_tensor(graph, primary, ema_name, dtype)
            shadows[primary.ref()] = shadow
    return shadows


# ---------------------------------------------------------------------------
# The update
# ---------------------------------------------------------------------------


def update_blocker() -> Optional[str]:
    """Why updates cannot be built fast here, or None if they can."""
    if tf.executing_eagerly():
        return "eager execution"
    unsupported = _tf_internal.fast_build_blocker()
    if unsupported:
        return unsupported
    if _v1.get_default_graph().building_function:
        return "building a function"
    if tf.distribute.has_strategy():
        return "inside a distribution strategy"
    if _tf_internal.op_callbacks_active():
        return "op callbacks are active"
    return None


def _read(graph, variable):
    """``variable.value()`` in graph mode: a new read of a resource variable, a ref variable's snapshot."""
    plain = _tf_internal.is_uncached_resource_variable(variable)
    if plain and _tf_internal.xla_sharding(variable) is None:
        # TF1 parity: value() reads outside any colocation, like this.
        with graph.colocate_with(None, ignore_existing=True):
            value = _read_op(graph, variable.handle, variable.dtype.base_dtype)
        _tf_internal.mark_read(variable)
        return value
    if isinstance(variable, tf.Variable):
        return variable.value()
    return variable


def _read_after(graph, variable, update):
    """The value of ``variable`` once ``update`` (its assign op or ref output) has run."""
    if isinstance(update, tf.Tensor):  # a ref variable's assign returns the new value
        return update
    with graph.control_dependencies([update]):
        return _read_op(graph, variable.handle, variable.dtype.base_dtype)


def _plain_scope(scope, graph) -> bool:
    """True if ``get_variable`` in ``scope`` does nothing beyond creating a variable."""
    if scope.reuse or scope.partitioner is not None or _tf_internal.has_variable_creator(graph):
        return False
    customizations = ("custom_getter", "regularizer", "constraint", "caching_device")
    return all(getattr(scope, what) is None for what in customizations)


class _Debiaser:
    """Creates TF1's ``biased``/``local_step`` pair of a debiased shadow, without rescanning the graph.

    TF1 finds a free name by listing the scope's global variables, twice per
    shadow, which is quadratic in the number of shadows; the set of taken
    names is kept here instead.
    """

    def __init__(self, graph):
        self._graph = graph
        self._taken = {v.op.name for v in graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES)}

    def _unique(self, scope, name: str) -> str:
        """TF1's ``_maybe_get_unique``: ``name``, else ``name_1``, ``name_2``... not a global variable yet."""
        if scope.reuse:
            return name
        taken = self._taken
        if "\\" in scope.name:
            # TF1 parity: TF1 filters by the scope name as a regex; only a
            # backslash in it can make that filter drop a name.
            taken = {v.op.name for v in scope.global_variables()}
        full_name = scope.name + "/" + name
        if full_name not in taken:
            return name
        idx = 1
        while "%s_%d" % (full_name, idx) in taken:
            idx += 1
        return "%s_%d" % (name, idx)

    def _get_variable(self, scope, name: str, shape, dtype):
        """``get_variable(name, shape, dtype, zeros, trainable=False)`` in ``scope``: TF1's variable."""
        full_name = scope.name + "/" + name
        store = _tf_internal.stored_variables()
        if full_name in store or not _plain_scope(scope, self._graph):
            zeros = _v1.zeros_initializer()
            variable = _v1.get_variable(name, shape=shape, dtype=dtype, initializer=zeros, trainable=False)
        else:
            use_resource = scope.use_resource
            if use_resource is None:
                use_resource = _v1.resource_variables_enabled()
            new_variable = _new_resource_variable if use_resource else _new_ref_variable
            initial_value = _zeros_initializer(self._graph, shape, dtype)
            with self._graph.name_scope(None):
                variable = new_variable(self._graph, full_name, initial_value, dtype)
            store[full_name] = variable
        self._taken.add(variable.op.name)
        return variable

    def create(self, shadow, value, one_minus_decay):
        """The (biased, local_step) variables of ``shadow``, named and placed as TF1's ``_zero_debias`` does."""
        with _v1.variable_scope(shadow.name[: -len(":0")], values=[shadow, value, one_minus_decay]) as scope:
            with tf.init_scope(), self._graph.colocate_with(shadow.op):
                dtype = shadow.dtype.base_dtype
                biased = self._get_variable(scope, self._unique(scope, "biased"), shadow.get_shape(), dtype)
                local_step = self._get_variable(scope, self._unique(scope, "local_step"), tf.TensorShape([]), dtype)
        return biased, local_step


def build_updates(shadows: Sequence, values: Sequence, decay, zero_debias: Sequence[bool] = ()) -> List[tf.Operation]:
    """TF1's ``assign_moving_average(shadow, value, decay, zero_debias)`` for many pairs, built fast.

    Each pair gets, in a name scope ``AssignMovingAvg`` (made unique, as TF1
    makes it) under the current one,

        one_minus_decay = cast(1 - decay, shadow.dtype)  # once per decay and dtype
        shadow         -= (shadow - value) * one_minus_decay

    or, where ``zero_debias`` says so, TF1's debiased update through new
    ``<shadow>/biased`` and ``<shadow>/local_step`` variables. The kernels,
    their inputs and their order are TF1's, so every bit matches; reads of
    values are created here, so they obey the caller's control dependencies
    exactly as TF1's do. Requires ``update_blocker() is None``.

    Args:
      shadows: the shadow variables.
      values: the new value of each shadow's primary (variable or tensor).
      decay: the decay (a float or scalar float tensor, as given to TF1's
        function), or a sequence of them, one per pair.
      zero_debias: per pair, whether to debias (default: none).

    Returns:
      One op per pair, in order; group them to get TF1's update op.
    """
    graph = _v1.get_default_graph()
    decays = list(decay) if isinstance(decay, (list, tuple)) else [decay] * len(shadows)
    zero_debias = list(zero_debias) or [False] * len(shadows)
    one_minus_decay = {}  # (decay, dtype) -> tensor
    ones = {}  # dtype -> constant 1, for debiasing
    debiaser = None
    updates = []
    for shadow, value, decay, debias in zip(shadows, values, decays, zero_debias):
        dtype = shadow.dtype.base_dtype
        key = decay.ref() if isinstance(decay, tf.Tensor) else decay
        if (key, None) not in one_minus_decay:
            # TF1 parity: 1 - decay in decay's dtype (float32 for a Python float), only then cast.
            one_minus_decay[key, None] = tf.convert_to_tensor(1.0 - decay)
        if (key, dtype) not in one_minus_decay:
            base = one_minus_decay[key, None]
            one_minus_decay[key, dtype] = base if base.dtype == dtype else tf.cast(base, dtype)
        k = one_minus_decay[key, dtype]
        with graph.name_scope("AssignMovingAvg") as scope:
            if debias:
                debiaser = debiaser or _Debiaser(graph)
                if dtype not in ones:
                    ones[dtype] = tf.constant(1, dtype=dtype)
                updates.append(_debiased_update(graph, debiaser, shadow, value, k, ones[dtype], scope))
                continue
            t = _type_attr(dtype)
            diff = _op(graph, "Sub", [_read(graph, shadow), _read(graph, value)], [dtype], T=t).outputs[0]
            delta = _op(graph, "Mul", [diff, k], [dtype], T=t).outputs[0]
            if _tf_internal.is_ref_variable(shadow):
                ref = _tf_internal.variable_ref(shadow)
                updates.append(_ref_op(graph, "AssignSub", [ref, delta], [ref.dtype], name=scope, T=t))
            else:
                updates.append(_op(graph, "AssignSubVariableOp", [shadow.handle, delta], [], dtype=t))
    return updates


def _debiased_update(graph, debiaser, shadow, value, k, one, scope: str):
    """TF1's ``_zero_debias``: biased -= (biased - value) * k; step += 1; shadow = biased / (1 - (1 - k) ** step).

    ``one`` is a constant 1 of the shadow's dtype, shared: TF1's three
    constants here (``assign_add(1)``, ``1.0 - k``, ``1 - pow``) all hold it.
    """
    biased, local_step = debiaser.create(shadow, value, k)
    is_ref = _tf_internal.is_ref_variable
    if any(is_ref(v) for v in (shadow, biased, local_step)):
        # tf.raw_ops.X is the generated wrapper of op X (gen_*_ops.x), called by keyword.
        raw = tf.raw_ops
        delta = raw.Mul(x=raw.Sub(x=_read(graph, biased), y=_read(graph, value)), y=k)
        if is_ref(biased):
            biased_update = raw.AssignSub(ref=biased, value=delta)
        else:
            biased_update = raw.AssignSubVariableOp(resource=biased.handle, value=delta)
        if is_ref(local_step):
            step_update = raw.AssignAdd(ref=local_step, value=one)
        else:
            step_update = raw.AssignAddVariableOp(resource=local_step.handle, value=one)
        step = _read_after(graph, local_step, step_update)
        bias_factor = raw.Sub(x=one, y=raw.Pow(x=raw.Sub(x=one, y=k), y=step))
        unbiased = raw.RealDiv(x=_read_after(graph, biased, biased_update), y=bias_factor)
        if is_ref(shadow):
            return raw.Assign(ref=shadow, value=unbiased, name=scope).op
        return raw.AssignVariableOp(resource=shadow.handle, value=unbiased, name=scope)
    dtype = shadow.dtype.base_dtype
    t = _type_attr(dtype)

    def binary(op_type, x, y):
        return _op(graph, op_type, [x, y], [dtype], T=t).outputs[0]

    delta = binary("Mul", binary("Sub", _read(graph, biased), _read(graph, value)), k)
    biased_update = _op(graph, "AssignSubVariableOp", [biased.handle, delta], [], dtype=t)
    step_update = _op(graph, "AssignAddVariableOp", [local_step.handle, one], [], dtype=t)
    step = _read_after(graph, local_step, step_update)
    bias_factor = binary("Sub", one, binary("Pow", binary("Sub", one, k), step))
    unbiased = binary("RealDiv", _read_after(graph, biased, biased_update), bias_factor)
    return _op(graph, "AssignVariableOp", [shadow.handle, unbiased], [], name=scope, dtype=t)
