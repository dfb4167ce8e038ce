"""The shadows and the updates of ``ExponentialMovingAverage``: one builder each.

``create_shadows`` is the only code that makes shadows and ``_update_pair``
the only recipe that updates one (plain, debiased, scheduled, copied, wider),
for every route: TF1 graphs, eager mode, functions and distribution
strategies (``public_update``, also behind ``assign_moving_average``), the
fast TF1 graph (``build_updates``) and the fused op's leftovers
(``plain_updates``). Naming, scoping, colocation, debias variables and
``1 - decay`` are written once; what varies is behind one switch, ``fast``:
the initial-value conditional, the constructor of a variable's shadow
(``get_variable`` or the same ops built directly), and the op set the recipe
is written in (``_PublicOps``: TF1's graph op for op; ``_FastOps``:
the same kernels without wrapper overhead), plus the fused op of
``tf1_ema._update_op`` for plain pairs.

Why a fast variant at all: TF1's ``apply()`` spends most of its time, and
much of the first ``global_variables_initializer()`` run, on machinery around
two ideas:

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
* a variable's shadow is named by the variable scope TF1's slot creator
  opens (uniquification is TF1's own code) and registered in the variable
  store under TF1's key; its ops are the ones ``Variable.__init__`` creates
  (names, attributes, devices, colocation), wrapped in the same Python
  class, without that constructor's overhead (``_new_resource_variable``,
  ``_new_ref_variable``). Measured against ``get_variable`` itself on a quiet
  machine, 2000 variables: build 0.16 against 0.28 of stock, first step
  0.25 against 0.31 (over the 0.3 allowed), and for ref variables (TF1 mode,
  what ``tf1-ema run`` gives) 0.25 against 0.79, because ``get_variable``
  wraps a ref shadow's conditional in a second v1 cond and scans every
  global variable per shadow. Tensors' shadows and debias variables, which
  start at zero, are made by ``get_variable``. Variable scopes close their
  sub-scopes by bisection instead of a scan per shadow
  (``_tf_internal.FastSubscopeClosing``), which keeps ``apply()`` linear;
* ``one_minus_decay`` is computed once per decay and dtype, and each update
  is the kernels TF1 runs on the same inputs (``Sub``, ``Mul``,
  ``AssignSub``; TF1's debiasing ops), so every bit matches; debias variables
  get TF1's free names from a set of taken names, not from rescanning the
  graph's variables twice per shadow.

``scope_blocker`` and ``fast_path_blocker`` say when this is exact; everything
else (eager, functions, a distribution strategy, a reusing or customized
variable scope, a variable creator scope, partitioned, sharded or subclassed
variables, shapes not fully defined, a ref variable under v2 control flow)
is built with ``fast`` off. Differences that reach no variable,
value, name of a variable or checkpoint:

* the initial-value conditional is the ``If`` (or ``RefSwitch``/``Merge``)
  above, not TF1's ``If`` with two functions per
  variable (v2 control flow) or v1 ``cond`` with a ``CondContext``: the graph
  has at most two library functions per dtype instead of two per variable, no
  ``cond_context`` entries, and under v1 control flow TF1's guard rewrite is
  applied to the variable's initial value only, not to the branch reading
  the variable itself (a rewrite that changes no value but adds a second
  conditional per variable);
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

The TensorFlow internals this needs (variable kinds and objects, the variable
store, variable-scope counts, attribute scopes, op creation without generated
wrappers) are named helpers
of ``tf1_ema._tf_internal``; where one is missing, ``scope_blocker`` and
``update_blocker`` say so and everything is built with ``fast`` off.
tests/test_build.py checks what is built here against TF1, variable
attribute by attribute and op by op.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

from tf1_ema import _tf_internal
from tf1_ema import _update_op

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
    """A ``RefVariable`` as ``get_variable`` makes a shadow from the tensor ``initial_value``, minus its guard walk.

    As ``_new_resource_variable``, for ``RefVariable._init_from_args``. What
    is also left out is ``Variable.__init__``'s rewrite of the initial value,
    which would wrap our ``RefSwitch``/``Merge`` in a second v1 cond per
    shadow and scan every global variable for each (TF1 mode's first step,
    0.79 of stock, instead of 0.25); ``_initialized_value`` guards the
    variable's own initial value instead, which is all the rewrite changes
    values of.
    """
    t = _type_attr(dtype)
    with tf.init_scope(), graph.name_scope(name) as scope:  # TF1 parity: Variable.__init__ lifts into init_scope
        ref = _op(graph, "VariableV2", [], [_tf_internal.ref_dtype(dtype)], name=scope,
                  shape=_attr(shape=initial_value.shape.as_proto()), dtype=t, container=_attr(s=b""),
                  shared_name=_attr(s=b""))  # fmt: skip
        ref = ref.outputs[0]
        initializer_op = _ref_op(graph, "Assign", [ref, initial_value], [ref.dtype], T=t, validate_shape=_attr(b=True))
        with graph.colocate_with(ref.op):
            snapshot = _identity(graph, ref, "read")
    return _tf_internal.ref_variable_from_ops(graph, name, ref, initial_value, initializer_op, snapshot)


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
        # values (an If stops that walk, and a ref shadow is built without
        # it). The walk's rewrite of the branch that reads `var` itself
        # changes no value, so only this one is kept.
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


def _tf1_initialized_value(var):
    """TF1's own ``cond``: var's current value if it is initialized, else its initial value."""
    with tf.device(var.device):
        # TF1 parity: a variable that was initialized and changed before
        # apply() hands its *current* value to the shadow's initializer.
        return _v1.cond(_v1.is_variable_initialized(var), var.read_value, lambda: var.initial_value)


def _slot_variable(primary, initial_value, validate_shape: bool, shape=None, dtype=None):
    """The shadow as TF1's slot creator makes it: ``get_variable("")`` in the current variable scope."""
    scope = _v1.get_variable_scope()
    # TF1 parity: a partitioner in the user's scope must not split the shadow.
    partitioner = scope.partitioner
    scope.set_partitioner(None)
    try:
        slot = _v1.get_variable(
            "",
            initializer=initial_value,
            trainable=False,
            use_resource=_tf_internal.use_resource_like(primary),
            shape=shape if callable(initial_value) else None,
            dtype=dtype,
            validate_shape=validate_shape,
        )
    finally:
        scope.set_partitioner(partitioner)
    _tf_internal.copy_slice_info(primary, slot)
    return _tf_internal.copy_xla_sharding(primary, slot)


def _create_shadow(graph, primary, ema_name: str, colocate: bool, initial_value, fast: bool, shape=None, dtype=None):
    """Creates the shadow ``<primary>/<ema_name>`` (made unique as TF1's slot scopes make it).

    TF1's slot creator: ``get_variable("")`` in a variable scope named after
    the primary, colocated with it. ``initial_value`` is a tensor or, with
    ``shape`` and ``dtype``, an initializer. ``fast`` says that no
    distribution strategy is active, so the colocation is the graph's own;
    with it a variable's shadow is ``_new_resource_variable`` or
    ``_new_ref_variable`` (recorded in the variable store as ``get_variable``
    records it), unless its name is taken, where ``get_variable`` raises
    TF1's error.
    """
    prefix = _tf_internal.shared_name(primary) if isinstance(primary, tf.Variable) else primary.op.name
    with _v1.variable_scope(None, default_name=prefix + "/" + ema_name):
        if not colocate:
            colocation = contextlib.nullcontext()
        elif fast:  # no strategy here: the default strategy's colocate_vars_with, without its overhead
            colocation = graph.colocate_with(primary.op)
        else:
            colocation = tf.distribute.get_strategy().extended.colocate_vars_with(primary)
        with colocation:
            full_name = _v1.get_variable_scope().name + "/"
            store = _tf_internal.stored_variables() if fast else None
            if fast and isinstance(primary, tf.Variable) and full_name not in store:
                new_variable = _new_ref_variable if _tf_internal.is_ref_variable(primary) else _new_resource_variable
                with graph.name_scope(None):
                    shadow = new_variable(graph, full_name, initial_value, initial_value.dtype.base_dtype)
                store[full_name] = shadow
                return shadow
            validate_shape = shape is not None or initial_value.get_shape().is_fully_defined()
            return _slot_variable(primary, initial_value, validate_shape, shape, dtype)


def _shadow_of_variable(graph, var, ema_name: str, dtype, fast: bool):
    """``var``'s shadow, starting from var's current value if initialized, else its initial value.

    With ``dtype`` (wider than the variable's) the shadow is created in it,
    from the cast value. ``fast`` picks the stock two-node conditional of
    ``_initialized_value`` over TF1's ``cond``; the values are the same.
    """
    value = _initialized_value(graph, var, ema_name) if fast else _tf1_initialized_value(var)
    if dtype is not None and dtype != var.dtype.base_dtype:
        with graph.device(var.device):
            value = tf.cast(value, dtype)
    return _create_shadow(graph, var, ema_name, True, value, fast)


def _shadow_of_tensor(graph, tensor, ema_name: str, dtype, fast: bool):
    """A zero-initialized shadow of ``tensor`` (in ``dtype``, default the tensor's), colocated with it when it reads a variable op."""
    dtype = tensor.dtype.base_dtype if dtype is None else tf.as_dtype(dtype)
    shape = tensor.get_shape()
    colocate = tensor.op.type in VARIABLE_OP_TYPES
    if not shape.is_fully_defined():
        zeros = tf.zeros(tf.shape(tensor), dtype=dtype)
        return _create_shadow(graph, tensor, ema_name, colocate, zeros, fast=False)
    return _create_shadow(graph, tensor, ema_name, colocate, _v1.zeros_initializer(), fast, shape=shape, dtype=dtype)


def create_shadows(var_list: Iterable, ema_name: str, dtypes: Optional[Sequence] = None, fast: bool = True) -> Dict[Any, Any]:
    """Creates the shadows of ``var_list`` as ``ExponentialMovingAverage.apply`` does: the one shadow builder.

    Each variable gets a non-trainable shadow ``<var>/<ema_name>`` (made unique
    by TF1's variable-scope rules) in ``GLOBAL_VARIABLES``, colocated with it,
    of its kind (resource or ref), starting from its value if it is
    initialized when the shadow's initializer runs, else from its initial
    value. Each tensor gets a zero-initialized shadow. Shadows are created in
    ``var_list`` order. With ``fast`` (and where ``scope_blocker`` and
    ``fast_path_blocker`` allow) the initial-value conditional and the
    variable's ops are built by the fast pieces above; otherwise by TF1's
    public route. Names, scopes and values are the same either way. Call
    inside ``tf.init_scope()``, as apply() does.

    Args:
      var_list: variables and tensors, none already averaged.
      ema_name: the ExponentialMovingAverage's name.
      dtypes: optional shadow dtype per primary (None: the primary's).
      fast: whether the fast pieces may be used (False: TF1_EMA_FAST=0).

    Returns:
      ``{primary.ref(): shadow}``; MOVING_AVERAGE_VARIABLES is the caller's.
    """
    var_list = list(var_list)
    dtypes = [None] * len(var_list) if dtypes is None else list(dtypes)
    graph = _v1.get_default_graph()
    fast = fast and scope_blocker(graph) is None
    shadows = {}
    with _tf_internal.FastSubscopeClosing() if fast else contextlib.nullcontext():
        for primary, dtype in zip(var_list, dtypes):
            if primary.ref() in shadows:
                continue
            fast_here = fast and fast_path_blocker(primary, graph) is None
            if isinstance(primary, tf.Variable):
                shadow = _shadow_of_variable(graph, primary, ema_name, dtype, fast_here)
            else:
                shadow = _shadow_of_tensor(graph, primary, ema_name, dtype, fast_here)
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


class Pair(NamedTuple):
    """One shadow's update, as ``build_updates`` takes it.

    Attributes:
      shadow: the shadow variable.
      value: its primary (a variable or tensor) or the primary's new value.
      decay: a float or scalar float tensor (unused for a copy).
      debias: whether TF1's zero-debiasing applies (``<shadow>/biased``, ``<shadow>/local_step``).
      gates: the schedule's ``tf1_ema.options.Gates``, or None.
      copy: whether the shadow is set to the value (a ``"copy"`` rule).
      widen: whether the shadow is wider than the value (``shadow_dtype``): the value is cast to it.
    """

    shadow: Any
    value: Any
    decay: Any
    debias: bool = False
    gates: Any = None
    copy: bool = False
    widen: bool = False

    @property
    def beyond_tf1(self) -> bool:
        """Whether an opt-in feature shapes this update (a schedule, a copy or a wider shadow)."""
        return self.gates is not None or self.copy or self.widen


# -- The two op sets the one update recipe is written in ---------------------


class _PublicOps:
    """TF1's ops through the public API: with these the recipe builds TF1's graph op for op."""

    @staticmethod
    def one(dtype, literal=1):  # pylint: disable=unused-argument
        # TF1 parity: TF1 writes `1` and `1.0` as Python numbers, each use its own
        # constant (and an integer variable fails on `1.0` with TF1's TypeError).
        return literal

    @staticmethod
    def sub(x, y):
        return x - y

    @staticmethod
    def mul(x, y):
        return x * y

    @staticmethod
    def pow(x, y):
        return tf.pow(x, y)

    @staticmethod
    def div(x, y):
        return x / y

    @staticmethod
    def assign_sub(v, delta, name=None):
        return _v1.assign_sub(v, delta, name=name)

    @staticmethod
    def assign_add(v, delta):
        return v.assign_add(delta)

    @staticmethod
    def assign(v, value, name=None):
        return _v1.assign(v, value, name=name)

    @staticmethod
    def value_after(v, update):  # pylint: disable=unused-argument
        return update  # TF1's assigns return the new value


class _FastOps:
    """The same kernels on the same inputs as ``_PublicOps``, created without the wrappers' overhead.

    Differences that reach no value: a constant 1 shared per dtype, reads of
    variables made here (so they obey the caller's control dependencies as
    TF1's do), and no read after a write nobody reads. Graph mode only
    (``update_blocker() is None``).
    """

    def __init__(self, graph):
        self.graph = graph
        self._ones: Dict[Any, tf.Tensor] = {}

    def one(self, dtype, literal=1):  # pylint: disable=unused-argument
        if dtype not in self._ones:
            self._ones[dtype] = tf.constant(1, dtype=dtype)
        return self._ones[dtype]

    def _binary(self, op_type: str, x, y):
        x, y = _read(self.graph, x), _read(self.graph, y)
        dtype = x.dtype.base_dtype
        t = _type_attr(dtype)
        return _tf_internal.create_op(
            self.graph, op_type, [x, y], [dtype], input_types=[dtype, y.dtype.base_dtype], attrs={"T": t}
        ).outputs[0]

    def sub(self, x, y):
        return self._binary("Sub", x, y)

    def mul(self, x, y):
        return self._binary("Mul", x, y)

    def pow(self, x, y):
        return self._binary("Pow", x, y)

    def div(self, x, y):
        return self._binary("RealDiv", x, y)

    def _assign(self, ref_type: str, resource_type: str, v, value, name=None):
        dtype = v.dtype.base_dtype
        if _tf_internal.is_ref_variable(v):
            ref = _tf_internal.variable_ref(v)
            return _ref_op(self.graph, ref_type, [ref, value], [ref.dtype], name=name, T=_type_attr(dtype))
        return _op(self.graph, resource_type, [v.handle, value], [], name=name, dtype=_type_attr(dtype))

    def assign_sub(self, v, delta, name=None):
        return self._assign("AssignSub", "AssignSubVariableOp", v, delta, name)

    def assign_add(self, v, delta):
        return self._assign("AssignAdd", "AssignAddVariableOp", v, delta)

    def assign(self, v, value, name=None):
        return self._assign("Assign", "AssignVariableOp", v, value, name)

    def value_after(self, v, update):
        """The value of ``v`` once ``update`` (its assign op) has run."""
        if update.outputs:  # a ref variable's assign outputs the new value
            return update.outputs[0]
        with self.graph.control_dependencies([update]):
            return _read_op(self.graph, v.handle, v.dtype.base_dtype)


_PUBLIC = _PublicOps()


def _update_pair(ops, shadow, value, one_minus_decay, name, debias_variables=(), gates=None, copy=False, widen=False,
                 diff=None):  # fmt: skip
    """The update recipe, written once: every shadow of every route is updated by this function.

    Plain (TF1's ``assign_moving_average``)::

        shadow -= (shadow - value) * one_minus_decay

    Debiased (TF1's ``_zero_debias``, with ``debias_variables`` = (biased, local_step))::

        biased     -= (biased - value) * one_minus_decay
        local_step += 1
        shadow      = biased / (1 - (1 - one_minus_decay) ** local_step)

    Beyond TF1 (``widen`` or ``gates``): ``value`` is cast to the shadow's
    dtype, and the new values are computed first and assigned (the same
    roundings as the assign_sub); with ``gates`` each assignment takes effect
    only where ``gates.update_now`` and the shadow becomes ``value`` where
    ``gates.copy_now`` (``_math.ema_sequence``); ``copy`` sets the shadow to
    ``value``.

    Args:
      ops: ``_PUBLIC`` (TF1's graph op for op) or a ``_FastOps``.
      shadow: the shadow variable (a replica's component under a strategy).
      value: the value to average in.
      one_minus_decay: ``1 - decay``, already cast to the shadow's dtype.
      name: the name of the final assign op.
      debias_variables: ``(biased, local_step)`` to debias, else empty.
      gates: the schedule's gates, or None.
      copy: set the shadow to ``value`` instead.
      widen: cast ``value`` to the shadow's dtype first (a copy always does).
      diff: ``shadow - value`` computed earlier (read before other shadows are written), or None.

    Returns:
      The final assign (an op, or the updated value with ``_PUBLIC``).
    """
    if (copy or widen) and value.dtype.base_dtype != shadow.dtype.base_dtype:
        value = tf.cast(value, shadow.dtype.base_dtype)
    if copy:
        return ops.assign(shadow, value, name=name)
    beyond_tf1 = widen or gates is not None
    if not debias_variables:
        # TF1 parity: `v - (v - value) * k` as an assign_sub, not `decay * v + k * value`;
        # the two round differently.
        delta = ops.mul(ops.sub(shadow, value) if diff is None else diff, one_minus_decay)
        if not beyond_tf1:
            return ops.assign_sub(shadow, delta, name=name)
        average = shadow - delta
        if gates is not None:
            average = gates.select(average, shadow, value)
        return ops.assign(shadow, average, name=name)
    biased, local_step = debias_variables
    dtype = shadow.dtype.base_dtype
    delta = ops.mul(ops.sub(biased, value), one_minus_decay)
    if not beyond_tf1:
        biased_now = ops.value_after(biased, ops.assign_sub(biased, delta))
        step = ops.value_after(local_step, ops.assign_add(local_step, ops.one(dtype)))
    else:
        average = biased - delta
        steps = 1
        if gates is not None:
            average = tf.where(gates.update_now, average, biased)
            steps = tf.cast(gates.update_now, local_step.dtype.base_dtype)
        biased_now = ops.value_after(biased, ops.assign(biased, average))
        step = ops.value_after(local_step, ops.assign_add(local_step, steps))
    bias_factor = ops.sub(ops.one(dtype), ops.pow(ops.sub(ops.one(dtype, 1.0), one_minus_decay), step))
    unbiased = ops.div(biased_now, bias_factor)
    if gates is not None:
        # Before the first update bias_factor is 0 and `unbiased` NaN; the gates never select it then.
        unbiased = gates.select(unbiased, shadow, value)
    return ops.assign(shadow, unbiased, name=name)


# -- Variables the update needs -----------------------------------------------


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


class _Debiaser:
    """Creates TF1's ``biased``/``local_step`` pair of a debiased shadow, without rescanning the graph.

    TF1 finds a free name by listing the scope's global variables, twice per
    shadow, which is quadratic in the number of shadows. With ``fast`` the set
    of taken names is kept here instead, and the variables are constructed
    directly where ``get_variable`` would do nothing more; without it, both
    are done as TF1 does them (eager mode and strategies included).
    """

    def __init__(self, graph, fast: bool):
        self._graph = graph
        self._fast = fast
        self._taken = set()
        if fast:
            self._taken = {v.op.name for v in graph.get_collection(_v1.GraphKeys.GLOBAL_VARIABLES)}

    def _unique(self, scope, name: str) -> str:
        """TF1's ``_maybe_get_unique``: ``name``, else ``name_1``, ``name_2``... not a global variable yet."""
        if scope.reuse:
            return name
        taken = self._taken
        if not self._fast or "\\" in scope.name:
            # TF1 parity: TF1 lists the scope's variables, filtered by the scope
            # name as a regex (only a backslash in it can make that drop a name).
            taken = {v.op.name for v in scope.global_variables()}
        full_name = scope.name + "/" + name
        if full_name not in taken:
            return name
        idx = 1
        while "%s_%d" % (full_name, idx) in taken:
            idx += 1
        return "%s_%d" % (name, idx)

    def _get_variable(self, name: str, shape, dtype):
        """``get_variable(name, shape, dtype, zeros, trainable=False)`` in the current scope: TF1's variable."""
        zeros = _v1.zeros_initializer()
        variable = _v1.get_variable(name, shape=shape, dtype=dtype, initializer=zeros, trainable=False)
        if self._fast:
            self._taken.add(variable.op.name)
        return variable

    def create(self, shadow, value, one_minus_decay, strategy=None):
        """The (biased, local_step) variables of ``shadow``, named and placed as TF1's ``_zero_debias`` does."""
        with _v1.variable_scope(shadow.name[: -len(":0")], values=[shadow, value, one_minus_decay]) as scope:
            if self._fast:
                place = contextlib.ExitStack()
                place.enter_context(tf.init_scope())
                place.enter_context(self._graph.colocate_with(shadow.op))
            else:
                place = (strategy or tf.distribute.get_strategy()).extended.colocate_vars_with(shadow)
            with place:
                # TF1 parity: both take the shadow's dtype, so a float16 local_step stops counting at 2048.
                biased = self._get_variable(self._unique(scope, "biased"), shadow.get_shape(), shadow.dtype)
                local_step = self._get_variable(self._unique(scope, "local_step"), tf.TensorShape([]), shadow.dtype)
        return biased, local_step


# -- Building: TF1's route (any context) and the fast route (TF1 graphs) --------


def _one_minus_decay(decay, dtype, name: Optional[str] = None, cache: Optional[dict] = None):
    """``1 - decay`` in decay's dtype (float32 for a Python float), then cast to ``dtype``.

    TF1 parity: the subtraction happens before the cast, in decay's own dtype.
    With ``cache`` (a dict kept by the caller) each is built once per decay
    and dtype.
    """
    cache = {} if cache is None else cache
    key = decay.ref() if isinstance(decay, tf.Tensor) else decay
    if (key, None) not in cache:
        cache[key, None] = tf.convert_to_tensor(1.0 - decay, name=name)
    if (key, dtype) not in cache:
        base = cache[key, None]
        cache[key, dtype] = base if base.dtype == dtype else tf.cast(base, dtype)
    return cache[key, dtype]


def _here() -> Optional[str]:
    """An op name equal to the current name scope (as TF1's ``name=scope``), or None outside any scope.

    Inside ``strategy.extended.update`` the scope is ``.../update_<i>``, so
    each replica's assign gets its own name.
    """
    scope = tf.get_current_name_scope()
    return scope + "/" if scope else None


def _in_cross_replica_context(update, variable, value):
    """Calls ``update(strategy, variable, value)`` in cross-replica context.

    In replica context the replicas' values are first averaged (MEAN) onto
    ``variable``'s devices with ``merge_call``, as TF1 does.
    """
    replica_context = tf.distribute.get_replica_context()
    if replica_context:

        def merge_fn(strategy, v, value):
            value = strategy.extended.reduce_to(tf.distribute.ReduceOp.MEAN, value, v)
            return update(strategy, v, value)

        return replica_context.merge_call(merge_fn, args=(variable, value))
    return update(tf.distribute.get_strategy(), variable, value)


def _update_each_copy(strategy, var, update_fn, args):
    """Runs ``update_fn(var, *args)`` on every copy of ``var`` (cross-replica context only)."""
    if not tf.distribute.in_cross_replica_context():
        raise RuntimeError("tf1_ema internal error: _update_each_copy needs a cross-replica context")
    if _tf_internal.update_replica_id() is not None:
        return update_fn(var, *args)
    return strategy.extended.update(var, update_fn, args)


def public_update(pair: Pair, name: Optional[str] = None):
    """One pair's update the way TF1's ``assign_moving_average`` builds it, in any context.

    Under a ``tf.distribute`` strategy, called in replica context, the
    replicas' values are averaged (MEAN) before the update, and each copy of
    the shadow is updated, as in TF1. Without opt-in features the graph is
    TF1's op for op.

    Returns:
      What TF1's function returns: the updated value (or the strategy's result).
    """
    shadow, value = pair.shadow, pair.value
    beyond_tf1 = pair.beyond_tf1
    inputs = [shadow, value] if pair.copy else [shadow, value, pair.decay]
    with _v1.name_scope(name, "AssignCopy" if pair.copy else "AssignMovingAvg", inputs) as scope:
        k = None if pair.copy else _one_minus_decay(pair.decay, shadow.dtype.base_dtype, name="decay")

        def update_fn(v, value, *debias_variables):
            # TF1 parity: the plain update is named by the outer scope, the debiased one by the current one.
            op_name = _here() if (debias_variables or beyond_tf1) else scope
            return _update_pair(_PUBLIC, v, value, k, op_name, debias_variables, pair.gates, pair.copy, pair.widen)

        def update(strategy, v, value):
            debias_variables = ()
            if pair.debias and not pair.copy:
                debias_variables = _Debiaser(_v1.get_default_graph(), fast=False).create(v, value, k, strategy)
            return _update_each_copy(strategy, v, update_fn, (value,) + tuple(debias_variables))

        return _in_cross_replica_context(update, shadow, value)


def read_before_writes(shadows: Sequence, values: Sequence, written) -> Dict[int, tf.Tensor]:
    """``{i: shadows[i] - values[i]}`` for each pair whose value is a variable in ``written``.

    TF1 parity: with the shadow of a shadow in one update (``ema.apply([w,
    ema.average(w)])`` after ``ema.apply([w])``) TF1's graph reads the old
    shadow. Computing these differences first, and writing shadows only after
    them, reads it too.

    Args:
      shadows: the shadow variables.
      values: their values, variables or tensors.
      written: refs (``v.ref()``) of the shadows the update writes.

    Returns:
      The differences, by pair index.
    """
    return {i: s - v for i, (s, v) in enumerate(zip(shadows, values)) if isinstance(v, tf.Variable) and v.ref() in written}


def plain_updates(shadows: Sequence, values: Sequence, one_minus_decay, name: Optional[str] = None,
                  read_first: Optional[Dict[int, tf.Tensor]] = None) -> tf.Operation:  # fmt: skip
    """Updates every shadow towards its value: shadow -= (shadow - value) * cast(one_minus_decay, dtype).

    Bit for bit TF1's per-variable update. Pairs the fused op can take go to
    it (``tf1_ema._update_op.fused_ops``: one op per kind and device); every
    other pair (a shadow listed twice, a GPU or distributed shadow, no op
    library, ``TF1_EMA_FAST=0``...) gets ``_update_pair``.

    A pair whose value is itself one of the shadows updated here (the shadow
    of a shadow) gets ``_update_pair`` too, with ``shadow - value`` computed
    before any shadow is written; ``read_first`` extends that to shadows
    written by other calls of the same update (see ``read_before_writes``).

    Args:
      shadows: the shadow variables (half, bfloat16, float or double).
      values: tensors or variables, one per shadow, same dtype and shape.
      one_minus_decay: ``1 - decay`` as a float32 scalar (tensor or float).
      name: name of the returned op; default ``"fused_update"``.
      read_first: ``read_before_writes`` of these pairs against every shadow
        the whole update writes, when the caller splits it into several calls
        (and runs them after those differences); default: against ``shadows``.

    Returns:
      One op that runs all the updates (a ``NoOp`` grouping them).

    Raises:
      ValueError: if ``shadows`` and ``values`` differ in length.
    """
    shadows = list(shadows)
    values = list(values)
    if len(shadows) != len(values):
        raise ValueError("plain_updates: %d shadows but %d values" % (len(shadows), len(values)))
    with tf.name_scope(name or "fused_update") as scope:
        one_minus_decay = tf.convert_to_tensor(one_minus_decay, dtype=tf.float32, name="one_minus_decay")
        values = [
            v if isinstance(v, tf.Variable) else tf.convert_to_tensor(v, dtype_hint=s.dtype.base_dtype)
            for s, v in zip(shadows, values)
        ]
        count: Dict = {}
        for s in shadows:
            count[s.ref()] = count.get(s.ref(), 0) + 1
        # TF1 parity: a shadow that is also a value here is read before any shadow is written.
        diffs = read_before_writes(shadows, values, count) if read_first is None else dict(read_first)
        with tf.control_dependencies([d.op for d in diffs.values()]):
            eligible = [i for i, s in enumerate(shadows) if count[s.ref()] == 1 and i not in diffs]
            updates, rest = _update_op.fused_ops(shadows, values, one_minus_decay, eligible)
            rest = sorted(set(rest) | (set(range(len(shadows))) - set(eligible)))
            ops = _FastOps(_v1.get_default_graph()) if update_blocker() is None else _PUBLIC
            casts: Dict = {}
            for i in rest:
                dtype = shadows[i].dtype.base_dtype
                if dtype not in casts:
                    # TF1 parity: `1 - decay` is computed in float32 and only then cast.
                    casts[dtype] = one_minus_decay if dtype == tf.float32 else tf.cast(one_minus_decay, dtype)
                update = _update_pair(ops, shadows[i], values[i], casts[dtype], None, diff=diffs.get(i))
                updates.append(update if isinstance(update, tf.Operation) else update.op)
            return tf.group(*updates, name=scope)


def build_updates(pairs: Sequence[Pair], fast: bool = True) -> List:
    """The update ops of ``pairs``, as TF1's ``apply()`` builds them: the one update builder.

    Every pair is updated by ``_update_pair``. Where ``fast`` and
    ``update_blocker()`` allow it and the pair has no opt-in feature, it is
    built with ``_FastOps`` and ``1 - decay`` is computed once per decay and
    dtype; plain pairs with a float32 decay go to ``plain_updates`` (the fused
    op), one call per decay. Every other pair is built by ``public_update``: TF1's graph,
    strategies and functions included. All values are TF1's bit for bit.

    Args:
      pairs: the updates, in order.
      fast: whether the fast route may be used (False: TF1_EMA_FAST=0).

    Returns:
      The update ops; group them to get TF1's update op.

    Raises:
      ValueError: TF1's error for a pair whose shadow, value and decay are
        not in one graph, once the pairs before it are built.
    """
    graph = _v1.get_default_graph()
    fast = fast and update_blocker() is None
    updates = []
    plain: Dict[Any, Tuple[Any, List, List]] = {}  # decay key -> (decay, shadows, values)
    one_by_one = []
    mixed_graphs = None
    for pair in pairs:
        shadow = pair.shadow
        if not fast or pair.beyond_tf1 or (pair.debias and not shadow.shape.is_fully_defined()):
            # TF1 parity: a debiased shadow of unknown shape fails in get_variable, with TF1's error.
            updates.append(public_update(pair))
            continue
        try:
            _tf_internal.check_same_graph(shadow, pair.value, pair.decay)
        except ValueError as e:
            mixed_graphs = e
            break
        if pair.debias or getattr(pair.decay, "dtype", tf.float32) != tf.float32:
            # The fused op takes 1 - decay in float32; TF1 subtracts in decay's dtype.
            one_by_one.append(pair)
        else:
            key = pair.decay.ref() if isinstance(pair.decay, tf.Tensor) else pair.decay
            plain.setdefault(key, (pair.decay, [], []))
            plain[key][1].append(shadow)
            plain[key][2].append(pair.value)
    # TF1 parity: a shadow that is also a value of this update (the shadow
    # of a shadow) is read before any shadow is written, across decays too.
    written = {s.ref() for _, shadows, _ in plain.values() for s in shadows}
    read_first = {key: read_before_writes(shadows, values, written) for key, (_, shadows, values) in plain.items()}
    with tf.control_dependencies([d.op for first in read_first.values() for d in first.values()]):
        for key, (decay, shadows, values) in plain.items():
            # TF1 parity: 1 - decay in float32, cast to each shadow's dtype per pair.
            updates.append(plain_updates(shadows, values, 1.0 - decay, name="AssignMovingAvg", read_first=read_first[key]))
    if one_by_one:
        ops = _FastOps(graph)
        debiaser = _Debiaser(graph, fast=True)
        one_minus_decay = {}  # (decay, dtype or None) -> tensor
        for pair in one_by_one:
            k = _one_minus_decay(pair.decay, pair.shadow.dtype.base_dtype, cache=one_minus_decay)
            with graph.name_scope("AssignMovingAvg") as scope:
                debias_variables = debiaser.create(pair.shadow, pair.value, k) if pair.debias else ()
                updates.append(_update_pair(ops, pair.shadow, pair.value, k, scope, debias_variables))
    if mixed_graphs is not None:
        raise mixed_graphs
    return updates
