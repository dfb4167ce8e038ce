"""Evaluate with the moving averages: copy them in, swap them in exactly, swap back safely.

Three levels, from raw op to safe habit:

* ``copy_averages_op(ema)`` builds an op that does var <- shadow (cast to the
  variable's dtype when they differ). The raw values are lost; use it for an
  export or an evaluation-only graph.
* ``swap_op(ema)`` builds an op that exchanges the bits of each variable and
  its shadow. Running it twice restores both exactly. It reads both values
  before it writes either (the ``var += s; s = var - s; var -= s`` trick
  would round and lose bits).
* ``averaged(ema, sess)`` is a context manager for a live session::

      with averaged(ema, sess):
          evaluate()          # the variables hold their moving averages here

  It swaps on entry and swaps back on exit, also when ``evaluate()`` raises.
  While it is active, ``sess.run`` refuses any fetch that would write a
  swapped variable or its shadow (the EMA update, a train op that depends on
  it, an optimizer step, an initializer): such a run would average the
  averages, or train the averages, and the swap back would then scramble the
  two. The graph built by ``apply()`` is never touched: the check looks at
  the graph from the outside and wraps ``sess.run`` only for the duration.

None of this changes what ``apply()`` builds; with none of it used, the graph
is TF1's.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

_v1 = tf.compat.v1

# Op types that write the variable whose handle (resource) or ref they take.
# A whitelist on purpose: an op we do not know (a function call, an If or a
# While whose body reads the variable) is treated as a reader, so the guard can
# miss an exotic write but never blocks an ordinary evaluation.
_WRITER_PREFIXES = (
    "Assign",  # Assign, AssignAdd, AssignSub, AssignVariableOp, Assign{Add,Sub}VariableOp
    "ResourceApply",
    "ResourceSparseApply",
    "ResourceScatter",
    "ResourceStridedSliceAssign",
    "ResourceCountUpTo",
    "Apply",  # ref-variable optimizers: ApplyGradientDescent, ApplyAdam, ...
    "SparseApply",
    "Scatter",  # ref-variable ScatterUpdate, ScatterAdd, ScatterNdUpdate, ...
    "StridedSliceAssign",
    "CountUpTo",
    "Tf1EmaUpdate",  # tf1_ema's fused update (Tf1EmaUpdate, Tf1EmaUpdateRef): shadows and the variables it reads
)
# tf1_ema's fused update in a TF1 graph names the variables it reads and
# writes in attributes, with no handle inputs (see tf1_ema._update_op).
_BY_NAME_WRITER = "Tf1EmaUpdateByName"
# Ops with a "Scatter" name that build a new tensor instead of writing one.
_NOT_WRITERS = frozenset({"ScatterNd", "ScatterNdNonAliasingAdd"})


def _is_writer(op: tf.Operation) -> bool:
    """Whether ``op`` writes a variable it receives as a handle or a ref."""
    return op.type not in _NOT_WRITERS and op.type.startswith(_WRITER_PREFIXES)


def _carries_variable(tensor: tf.Tensor) -> bool:
    """Whether ``tensor`` is a resource handle or a ref, i.e. gives write access to a variable."""
    return tensor.dtype == tf.resource or tensor.dtype != tensor.dtype.base_dtype


def _op_name(var) -> str:
    """``"w"`` for the variable ``w:0``."""
    return var.op.name


# ---------------------------------------------------------------------------
# Choosing the (variable, shadow) pairs
# ---------------------------------------------------------------------------


def _pairs(ema, var_list: Optional[Sequence] = None, graph: Optional[tf.Graph] = None) -> List[Tuple[Any, Any]]:
    """The ``(variable, shadow)`` pairs to copy or swap, validated.

    Args:
      ema: the ExponentialMovingAverage.
      var_list: variables that have a shadow in ``ema``; default all of them
        (averages of tensors are skipped: a tensor cannot hold a value).
      graph: if given, the pairs must live in it.

    Returns:
      A list of ``(variable, shadow)``, in ``var_list`` order without duplicates.

    Raises:
      RuntimeError: if ``ema.apply()`` has not created any shadow yet.
      TypeError: if ``var_list`` holds a tensor or anything but a variable.
      ValueError: if a variable has no shadow in ``ema``, if ``var_list`` is
        empty, or if a variable is not in ``graph``.
    """
    if not ema.averages:
        raise RuntimeError(
            "ExponentialMovingAverage %r has no moving averages yet: call ema.apply(var_list) "
            "first, then swap or copy the averages." % ema.name
        )
    if var_list is None:
        pairs = [
            (ref.deref(), shadow)
            for ref, shadow in ema.averages.items()
            if isinstance(ref.deref(), tf.Variable)
        ]
        if graph is not None:
            pairs = [(v, s) for v, s in pairs if v.graph is graph]
        if not pairs:
            raise RuntimeError(
                "ExponentialMovingAverage %r averages no variable%s (averages of tensors cannot be "
                "copied or swapped): call ema.apply(var_list) with variables first."
                % (ema.name, " of this session's graph" if graph is not None else "")
            )
        return pairs
    var_list = list(var_list)
    if not var_list:
        raise ValueError("var_list is empty; pass None for every averaged variable.")
    pairs, seen = [], set()
    for var in var_list:
        if not isinstance(var, tf.Variable):
            raise TypeError(
                "Only variables can receive their moving average; got %r. Averages of tensors "
                "are read with ema.average(tensor)." % (var,)
            )
        shadow = ema.average(var)
        if shadow is None:
            averaged = sorted(_op_name(r.deref()) for r in ema.averages)
            raise ValueError(
                "Variable %r has no moving average in ExponentialMovingAverage %r; it averages %s. "
                "Include it in ema.apply(...) or leave it out of var_list."
                % (_op_name(var), ema.name, averaged)
            )
        if graph is not None and var.graph is not graph:
            raise ValueError("Variable %r is not in the session's graph." % _op_name(var))
        if var.ref() not in seen:
            seen.add(var.ref())
            pairs.append((var, shadow))
    return pairs


def _dtype_mismatches(pairs) -> List[Tuple[Any, Any]]:
    return [(v, s) for v, s in pairs if v.dtype.base_dtype != s.dtype.base_dtype]


# ---------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _outside_user_context(graph: tf.Graph, name: str):
    """Builds ops in ``graph`` at the top name scope with no control dependencies.

    The ops built by this module must not inherit an enclosing
    ``tf.control_dependencies([train_op])`` (running the swap would train) nor
    nest under the caller's name scope.
    """
    with graph.as_default(), graph.control_dependencies(None), graph.name_scope(None):
        with graph.name_scope(name) as scope:
            yield scope


def _snapshot(var) -> tf.Tensor:
    """The value of ``var`` as a tensor that a later write to ``var`` cannot change.

    A resource read is a snapshot already: a later assign to the variable
    allocates a new buffer while the read is alive. A ref variable's read is
    an alias of its buffer, and ``Assign`` copies into that buffer in place,
    so the read would change under our feet (a naive swap of two ref
    variables leaves both holding the same value); ``DeepCopy`` makes it a
    real copy.
    """
    value = var.read_value()
    if var.op.outputs[0].dtype != tf.resource:
        value = tf.raw_ops.DeepCopy(x=value)
    return value


def _assign(var, value) -> tf.Operation:
    if var.op.outputs[0].dtype == tf.resource:
        return var.assign(value, read_value=False)
    return _v1.assign(var, value).op


def _build_copy(pairs, scope: str) -> tf.Operation:
    updates = []
    for var, shadow in pairs:
        value = shadow.read_value()
        if value.dtype != var.dtype.base_dtype:
            value = tf.cast(value, var.dtype.base_dtype)
        updates.append(_assign(var, value))
    return tf.group(*updates, name=scope)


def _build_swap(pairs, scope: str) -> tf.Operation:
    updates = []
    for var, shadow in pairs:
        var_value, shadow_value = _snapshot(var), _snapshot(shadow)
        # Both reads happen before either write, so nothing is lost.
        with tf.control_dependencies([var_value, shadow_value]):
            updates += [_assign(var, shadow_value), _assign(shadow, var_value)]
    return tf.group(*updates, name=scope)


def _graph_of(pairs) -> tf.Graph:
    if tf.executing_eagerly():
        raise RuntimeError("tf1_ema.swap builds graph ops; call it while building a tf.Graph.")
    return pairs[0][0].graph


def copy_averages_op(ema, var_list: Optional[Sequence] = None, name: Optional[str] = None) -> tf.Operation:
    """An op that copies the moving averages into their variables: var <- shadow.

    The raw values are overwritten; to get them back, use ``swap_op`` or
    ``averaged`` instead. When a shadow's dtype differs from its variable's
    (a float32 shadow of a float16 variable), the value is cast to the
    variable's dtype, rounding to nearest.

    Args:
      ema: an ExponentialMovingAverage on which ``apply()`` has been called.
      var_list: averaged variables to copy into; default all of them.
      name: the op's name; default ``"<ema name>_copy_averages"``.

    Returns:
      One grouped op.

    Raises:
      RuntimeError: before ``ema.apply()``, or in eager mode.
      TypeError, ValueError: for a bad ``var_list`` (see ``swap_op``).
    """
    pairs = _pairs(ema, var_list)
    graph = _graph_of(pairs)
    with _outside_user_context(graph, name or ema.name + "_copy_averages") as scope:
        return _build_copy(pairs, scope)


def swap_op(ema, var_list: Optional[Sequence] = None, name: Optional[str] = None) -> tf.Operation:
    """An op that exchanges each variable with its moving average, bit for bit.

    Running it once puts the averages in the variables and the raw values in
    the shadows; running it again undoes it exactly. Both values are read
    (as copies) before either is written.

    Nothing guards the swapped state here: an EMA update run in between
    would pull the shadows, which then hold the raw values, towards the
    averages. ``averaged()`` is the guarded way to use it.

    Args:
      ema: an ExponentialMovingAverage on which ``apply()`` has been called.
      var_list: averaged variables to swap; default all of them.
      name: the op's name; default ``"<ema name>_swap"``.

    Returns:
      One grouped op.

    Raises:
      RuntimeError: before ``ema.apply()``, or in eager mode.
      TypeError: for a tensor in ``var_list``, or when a shadow's dtype
        differs from its variable's: the exchange would round the average to
        the variable's dtype and lose its extra bits (use ``averaged()``,
        which keeps the raw value aside, or ``copy_averages_op``).
      ValueError: for a variable without a shadow, or an empty ``var_list``.
    """
    pairs = _pairs(ema, var_list)
    mixed = _dtype_mismatches(pairs)
    if mixed:
        raise TypeError(
            "Cannot swap %s exactly: its shadow is %s and the variable %s, so the exchange would "
            "round the average and lose its extra bits. Use averaged(ema, sess), which keeps the "
            "raw value aside instead, or copy_averages_op(ema)."
            % (
                ", ".join(repr(_op_name(v)) for v, _ in mixed),
                mixed[0][1].dtype.base_dtype.name,
                mixed[0][0].dtype.base_dtype.name,
            )
        )
    graph = _graph_of(pairs)
    with _outside_user_context(graph, name or ema.name + "_swap") as scope:
        return _build_swap(pairs, scope)


# ---------------------------------------------------------------------------
# The plan averaged() runs: an exact swap, plus a host-side stash for shadows
# whose dtype differs from their variable's
# ---------------------------------------------------------------------------


class _Plan:
    """The ops ``averaged()`` runs for one EMA, graph and variable list, built once."""

    def __init__(self, ema, pairs, graph: tf.Graph) -> None:
        self.ema_name = ema.name
        self.pairs = pairs
        self.graph = graph
        self.watched = {}  # variable or shadow ref -> (variable, shadow)
        for var, shadow in pairs:
            self.watched[var.ref()] = (var, shadow)
            self.watched[shadow.ref()] = (var, shadow)
        exact = [p for p in pairs if p[0].dtype.base_dtype == p[1].dtype.base_dtype]
        mixed = _dtype_mismatches(pairs)
        self.swap = self.copy = self.restore = None
        self.stash_reads, self.feeds = [], []
        with _outside_user_context(graph, ema.name + "_averaged"):
            if exact:
                with graph.name_scope("swap") as scope:
                    self.swap = _build_swap(exact, scope)
            if mixed:
                # A shadow of another dtype cannot hold its variable's bits, so
                # the raw value goes to the host (fetched bit for bit) and comes
                # back through a placeholder; the shadow is never written.
                with graph.name_scope("stash"):
                    self.stash_reads = [var.read_value() for var, _ in mixed]
                with graph.name_scope("copy") as scope:
                    self.copy = _build_copy(mixed, scope)
                with graph.name_scope("restore") as scope:
                    self.feeds = [_v1.placeholder(var.dtype.base_dtype, var.shape) for var, _ in mixed]
                    self.restore = tf.group(
                        *[_assign(var, ph) for (var, _), ph in zip(mixed, self.feeds)], name=scope
                    )

    def enter(self, run) -> List[np.ndarray]:
        """Swaps the averages in; returns the stashed raw values."""
        fetches = [self.swap] if self.swap is not None else []
        stash = []
        if self.stash_reads:
            stash = run(fetches + self.stash_reads)[len(fetches) :]
            # The fetched arrays may share memory with the variable's buffer.
            stash = [np.array(value, copy=True) for value in stash]
            run(self.copy)
        elif fetches:
            run(fetches)
        return stash

    def exit(self, run, stash) -> None:
        """Swaps the raw values back."""
        fetches = [op for op in (self.swap, self.restore) if op is not None]
        run(fetches, feed_dict=dict(zip(self.feeds, stash)))


_plans: "weakref.WeakKeyDictionary[Any, Dict[Any, _Plan]]" = weakref.WeakKeyDictionary()
_lock = threading.RLock()


def _plan(ema, var_list, graph: tf.Graph) -> _Plan:
    """The cached plan of ``(ema, graph, var_list)``, built on first use."""
    pairs = _pairs(ema, var_list, graph)
    key = (id(graph), tuple(v.ref() for v, _ in pairs))
    with _lock:
        cache = _plans.setdefault(ema, {})
        plan = cache.get(key)
        if plan is None:
            if graph.finalized:
                raise RuntimeError(
                    "The graph is finalized, so averaged() cannot add its swap ops now. Call "
                    "tf1_ema.swap.prepare_averaged(ema, var_list) before the graph is finalized "
                    "(e.g. before creating a MonitoredSession)."
                )
            plan = cache[key] = _Plan(ema, pairs, graph)
        return plan


def prepare_averaged(ema, var_list: Optional[Sequence] = None, graph: Optional[tf.Graph] = None) -> None:
    """Builds the ops ``averaged(ema, sess, var_list)`` will run, ahead of time.

    Needed only when the graph is finalized before ``averaged()`` is first
    used (a ``MonitoredSession`` finalizes it).

    Args:
      ema: an ExponentialMovingAverage on which ``apply()`` has been called.
      var_list: as for ``averaged()``.
      graph: the graph the session will run; default the variables' graph.

    Raises:
      RuntimeError, TypeError, ValueError: as ``averaged()`` would.
    """
    pairs = _pairs(ema, var_list, graph)
    _plan(ema, var_list, graph if graph is not None else pairs[0][0].graph)


# ---------------------------------------------------------------------------
# The guard: while swapped, a session refuses runs that write what is swapped
# ---------------------------------------------------------------------------


def _writers(plan: _Plan) -> Dict[str, Tuple[tf.Operation, Any, Any]]:
    """Every op in the graph that writes a swapped variable or shadow.

    Returns:
      ``{op name: (op, written variable or shadow, its (variable, shadow) pair)}``.
    """
    by_name = {}  # (container, shared name) -> the fused ops naming that variable
    for op in plan.graph.get_operations():
        if op.type == _BY_NAME_WRITER:
            default = op.get_attr("container")  # for the empty entries
            for container, name in zip(op.get_attr("containers"), op.get_attr("shared_names")):
                by_name.setdefault((container or default, name), []).append(op)
    writers = {}
    for var, shadow in plan.pairs:
        # The shadow first: an EMA update reads the variable but writes the shadow.
        for target in (shadow, var):
            if target.op.type == "VarHandleOp":
                key = (target.op.get_attr("container"), target.op.get_attr("shared_name"))
                for op in by_name.get(key, ()):
                    writers.setdefault(op.name, (op, target, (var, shadow)))
            pending, seen = [target.op.outputs[0]], set()
            while pending:
                tensor = pending.pop()
                for consumer in tensor.consumers():
                    if consumer.name in seen:
                        continue
                    seen.add(consumer.name)
                    if _is_writer(consumer):
                        writers.setdefault(consumer.name, (consumer, target, (var, shadow)))
                    # Follow the handle/ref through Identity, Switch, Enter...
                    pending += [t for t in consumer.outputs if _carries_variable(t)]
    return writers


def _graph_elements(graph: tf.Graph, fetches) -> List[Any]:
    """The tensors and ops named by a ``Session.run`` fetch or feed structure (best effort)."""
    elements = []
    for item in tf.nest.flatten(fetches, expand_composites=True):
        try:
            elements.append(graph.as_graph_element(item, allow_tensor=True, allow_operation=True))
        except (TypeError, ValueError, KeyError):
            pass  # Session.run reports what it cannot fetch.
    return elements


class _Guard:
    """Wraps one session's ``run`` while any ``averaged()`` is active in it."""

    def __init__(self, sess) -> None:
        self.sess = sess
        self.active: List[_Plan] = []
        self.original_run = None
        self.wrapper = None
        self.had_instance_run = False
        self.cache: Dict[Any, Optional[str]] = {}
        self.cache_version = None
        self.writers: Dict[str, Tuple[tf.Operation, Any, Any]] = {}

    # -- claiming -----------------------------------------------------------

    def claim(self, plan: _Plan) -> None:
        for other in self.active:
            overlap = [r for r in plan.watched if r in other.watched]
            if overlap:
                var, _ = other.watched[overlap[0]]
                if other.ema_name == plan.ema_name:
                    reason = "averaged() is already active for it in this session (nested or concurrent use)"
                else:
                    reason = "an enclosing averaged() of ExponentialMovingAverage %r holds it" % other.ema_name
                raise RuntimeError(
                    "Variable %r already holds a moving average: %s. Swapping again would put the raw "
                    "values back in; leave the first `with averaged(...)` block first."
                    % (_op_name(var), reason)
                )
        self.active.append(plan)
        self.cache.clear()
        if self.wrapper is None:
            self._install()

    def release(self, plan: _Plan) -> None:
        self.active.remove(plan)
        self.cache.clear()
        if not self.active:
            self._uninstall()

    def _install(self) -> None:
        sess = self.sess
        self.had_instance_run = "run" in vars(sess)
        self.original_run = sess.run
        guard = self

        def run(fetches, *args, **kwargs):
            guard.check(fetches, kwargs.get("feed_dict", args[0] if args else None))
            return guard.original_run(fetches, *args, **kwargs)

        run.__doc__ = self.original_run.__doc__
        self.wrapper = run
        sess.run = run

    def _uninstall(self) -> None:
        sess = self.sess
        if vars(sess).get("run") is self.wrapper:  # unless someone wrapped it after us
            if self.had_instance_run:
                sess.run = self.original_run
            else:
                del sess.run
        self.wrapper = None

    # -- checking -----------------------------------------------------------

    def check(self, fetches, feed_dict) -> None:
        """Raises if running ``fetches`` would write a swapped variable or shadow."""
        with _lock:
            self._check(list(self.active), fetches, feed_dict)

    def _check(self, plans, fetches, feed_dict) -> None:
        if not plans:
            return
        graph = plans[0].graph
        if self.cache_version != graph.version:
            self.cache.clear()
            self.writers = {}
            for plan in plans:
                self.writers.update(_writers(plan))
            self.cache_version = graph.version
        targets = _graph_elements(graph, fetches)
        fed = {t.name for t in _graph_elements(graph, list(feed_dict or {})) if isinstance(t, tf.Tensor)}
        key = (tuple(sorted(t.name for t in targets)), tuple(sorted(fed)))
        if key not in self.cache:
            self.cache[key] = self._find_writer(targets, fed)
        writer_name = self.cache[key]
        if writer_name is None:
            return
        op, target, (var, shadow) = self.writers[writer_name]
        plan = next(p for p in plans if var.ref() in p.watched)
        if target is shadow:
            what = (
                "which writes the moving average %r: it would average the averages now held by the "
                "variables" % _op_name(shadow)
            )
        else:
            what = (
                "which writes %r while it holds its moving average: the result would be trained from "
                "the average, and the swap back would move it into the shadow" % _op_name(var)
            )
        names = [t.name for t in targets]
        fetched = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        raise RuntimeError(
            "Refusing to run %s while the moving averages of ExponentialMovingAverage %r are swapped "
            "into the variables (inside `with averaged(...)`): it runs op %r (%s), %s. Run it after "
            "the `with` block." % (fetched or "this fetch", plan.ema_name, op.name, op.type, what)
        )

    def _find_writer(self, targets, fed) -> Optional[str]:
        """The first writer op that running ``targets`` executes, walking inputs and control inputs."""
        pending = []
        for t in targets:
            if isinstance(t, tf.Tensor):
                if t.name not in fed:
                    pending.append(t.op)
            else:
                pending.append(t)
        seen = set()
        while pending:
            op = pending.pop()
            if op.name in seen:
                continue
            seen.add(op.name)
            if op.name in self.writers:
                return op.name
            pending += [t.op for t in op.inputs if t.name not in fed]
            pending += op.control_inputs
        return None


_guards: "weakref.WeakKeyDictionary[Any, _Guard]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def averaged(ema, sess, var_list: Optional[Sequence] = None) -> Iterator[List[Any]]:
    """A context in which the variables hold their moving averages, in session ``sess``.

    On entry the averages are swapped into the variables (bit for bit; a
    variable whose shadow has another dtype gets the average cast to its
    dtype, and its raw value is kept on the host). On exit, also when the
    block raises, the raw values come back bit for bit and the shadows are as
    they were.

    While inside, ``sess.run`` raises ``RuntimeError`` for any fetch that
    would write a swapped variable or its shadow: the EMA update, a train op
    with the EMA update as a dependency, an optimizer step, an initializer or
    a restore. Only ``sess.run`` is guarded (not callables made earlier with
    ``make_callable``, and not writes hidden inside function bodies). Reads
    are allowed, saving included: a checkpoint written inside the block
    holds the averages under the variables' names and the raw values under
    the shadows' names.

    The swap ops are built on first use and cached per EMA, graph and
    ``var_list``; if the graph is finalized by then, call
    ``prepare_averaged`` beforehand.

    Args:
      ema: an ExponentialMovingAverage on which ``apply()`` has been called.
      sess: a ``tf.compat.v1.Session`` (or anything with ``run`` and ``graph``).
      var_list: averaged variables to swap; default all of them.

    Yields:
      The list of variables that now hold their averages.

    Raises:
      RuntimeError: before ``ema.apply()``, when nested (or used from two
        threads) over the same variables in the same session, or when the
        graph is finalized and ``prepare_averaged`` was not called.
      TypeError, ValueError: for a bad ``var_list`` (see ``swap_op``), or a
        session without ``run``/``graph``.
    """
    graph = getattr(sess, "graph", None)
    if not callable(getattr(sess, "run", None)) or not isinstance(graph, tf.Graph):
        raise TypeError("averaged() needs a tf.compat.v1.Session (with .run and .graph); got %r." % (sess,))
    plan = _plan(ema, var_list, graph)
    with _lock:
        guard = _guards.get(sess)
        if guard is None:
            guard = _guards[sess] = _Guard(sess)
        guard.claim(plan)
        run = guard.original_run
    try:
        stash = plan.enter(run)
    except BaseException:
        with _lock:
            guard.release(plan)
            if not guard.active:
                _guards.pop(sess, None)
        raise
    try:
        yield [var for var, _ in plan.pairs]
    finally:
        try:
            plan.exit(run, stash)
        finally:
            with _lock:
                guard.release(plan)
                if not guard.active:
                    # The guard holds the session; a weak-keyed entry must not outlive its use.
                    _guards.pop(sess, None)
