"""``tf1_ema._build`` (fast shadows and updates) against TF1's own ``apply()``.

Every model is built twice, in two fresh graphs: once with
``tf.compat.v1.train.ExponentialMovingAverage.apply`` and once with
tf1_ema's class configured the same way, whose reference route fails the
test (the fast path must be taken). The two graphs must agree on everything that
reaches a user: variable names and order, collections, the variable store,
each shadow's ops (attributes, devices, colocation) and Python attributes,
names given to later ops, initial values in every initialization order,
values after updates (bit for bit) and checkpoints in both directions.
"""

import contextlib
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

import tf1_ema
import tf1_ema.ema
from tensorflow.python.ops import resource_variable_ops  # pylint: disable=g-direct-tensorflow-import
from tf1_ema import _build, _tf_internal
from harness import VARIABLE_COLLECTIONS, assert_bits_equal, behaviour, fresh_graph
from harness import collections as all_collections
from tf1_ema import _update_op

v1 = tf.compat.v1


# ---------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------


def _forbidden_fallback(primary, *args):
    raise AssertionError("fast path not taken for %s" % primary.name)


def stock_apply(ema, var_list):
    return ema.apply(var_list)


def fast_apply(ema, var_list, allow_fallback=False):
    """``var_list`` applied by tf1_ema's class (fast path) configured as TF1's ``ema``, into ``ema``'s averages.

    Unless ``allow_fallback``, building any shadow by the reference route fails the test.
    """
    ours = getattr(ema, "_tf1_ema_twin", None)
    if ours is None:
        ours = ema._tf1_ema_twin = tf1_ema.ExponentialMovingAverage(
            ema._decay, ema._num_updates, ema._zero_debias, ema.name
        )
        ours._averages = ema._averages  # the models read shadows through TF1's object
    with contextlib.ExitStack() as stack:
        if not allow_fallback:
            # TF1's route for a variable's shadow starts with TF1's cond.
            stack.enter_context(mock.patch.object(_build, "_tf1_initialized_value", _forbidden_fallback))
        return ours.apply(var_list)


@pytest.fixture(params=["tf2-graph", "tf1", "tf2-graph-no-library", "tf1-no-library"])
def build_mode(request, monkeypatch):
    """Each test runs in TF2 graph mode (resource variables, cond_v2) and in TF1 mode.

    In the ``-no-library`` modes the op library is unavailable (no compiler):
    updates use TF's ops instead of the fused one.
    """
    if request.param.endswith("-no-library"):
        monkeypatch.setattr(_update_op, "load_library", lambda: None)
    with behaviour(request.param):
        yield request.param


def build(model, apply):
    """Runs ``model(apply)`` in a fresh graph (graph seed 7); returns (graph, whatever the model returns)."""
    with fresh_graph() as graph:
        return graph, model(apply)


def twin(model):
    """The model built with TF1's apply and with the fast one: ((g_ref, r_ref), (g_fast, r_fast))."""
    return build(model, stock_apply), build(model, fast_apply)


def collections(graph):
    """The collections TF1's EMA writes to, names in order (not all keys: the fast graph has no cond contexts)."""
    return all_collections(graph, VARIABLE_COLLECTIONS)


def store_keys(graph):
    """The names in ``get_variable``'s store (TF internals: the store has no public reader)."""
    from tensorflow.python.ops import variable_scope  # pylint: disable=g-import-not-at-top

    with graph.as_default():
        return sorted(variable_scope._get_default_variable_store()._vars)  # pylint: disable=protected-access


def shadows_of(graph):
    """Every variable in GLOBAL_VARIABLES that TF1 would call a shadow or a debias variable."""
    return [v for v in graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES) if v.trainable is False]


def node(op, skip_inputs=()):
    """An op as comparable data: type, inputs (by name), device, attributes."""
    node_def = op.node_def
    inputs = [i for n, i in enumerate(node_def.input) if n not in skip_inputs]
    return (node_def.op, inputs, node_def.device, sorted((k, v.SerializeToString()) for k, v in node_def.attr.items()))


def variable_ops(var):
    """The ops ``Variable.__init__`` creates for ``var``, as comparable data (the assigned value aside)."""
    ops = {"handle": node(var.op), "initializer": node(var.initializer, skip_inputs=(1,))}
    initial_value = var._initial_value  # pylint: disable=protected-access  # the property needs a default graph
    if initial_value.op.type in ("Const", "Fill"):  # zeros: of tensors' shadows and debias variables
        ops["zeros"] = [node(op) for op in [initial_value.op] + [i.op for i in initial_value.op.inputs]]
    if isinstance(var, resource_variable_ops.ResourceVariable):
        ops["read"] = node(var._graph_element.op)  # pylint: disable=protected-access
        ops["is_initialized"] = node(var._is_initialized_op.op)  # pylint: disable=protected-access
    else:
        ops["snapshot"] = node(var._snapshot.op)  # pylint: disable=protected-access
    return ops


def python_attributes(var):
    """The variable object's attributes, tensors and ops by name, graph-specific keys left out.

    The initial value is the conditional's output, which is named differently
    on purpose; its dtype and shape are compared (its value elsewhere).
    """
    out = {}
    for key, value in vars(var).items():
        if key in ("_graph_key",):
            continue
        if key == "_initial_value":
            value = (value.dtype, value.shape)
        elif isinstance(value, (tf.Tensor, tf.Operation)):
            value = (type(value).__name__, value.name)
        out[key] = repr(value)
    return out


def assert_same_graph_state(ref, fast, variable_attributes=True):
    """The two graphs agree on collections, store, and every shadow's ops and attributes."""
    (g_ref, _), (g_fast, _) = ref, fast
    assert collections(g_fast) == collections(g_ref)
    assert store_keys(g_fast) == store_keys(g_ref)
    for a, b in zip(shadows_of(g_ref), shadows_of(g_fast)):
        assert type(b) is type(a)
        assert (b.name, b.dtype, b.shape, b.trainable, b.device) == (a.name, a.dtype, a.shape, a.trainable, a.device)
        assert b.op.colocation_groups() == a.op.colocation_groups()
        assert variable_ops(b) == variable_ops(a)
        if variable_attributes:
            assert python_attributes(b) == python_attributes(a)


def run(graph, fetch_fn):
    with graph.as_default(), v1.Session(graph=graph) as sess:
        return fetch_fn(sess)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def variable(name, shape=(2, 3), dtype=tf.float32, seed=1, **kwargs):
    return v1.get_variable(
        name, shape=shape, dtype=dtype, initializer=v1.random_normal_initializer(seed=seed), **kwargs
    )


def plain_model(apply):
    w = variable("w")
    b = variable("b", shape=(3,), seed=2)
    ema = v1.train.ExponentialMovingAverage(0.9)
    op = apply(ema, [w, b])
    return {"primaries": [w, b], "ema": ema, "op": op}


def _scopes(apply):
    with v1.variable_scope("net"):
        w = variable("w")
        with v1.variable_scope("inner"):
            w_1 = variable("w_1", seed=3)
    w2 = variable("net_1/w", shape=(4,), seed=4)  # named like a uniquified scope
    with v1.name_scope("ns"):
        with v1.variable_scope("outer"):
            ema = v1.train.ExponentialMovingAverage(0.8, name="ema.x")
            op = apply(ema, [w, w_1, w2])
    return {"primaries": [w, w_1, w2], "ema": ema, "op": op}


def _two_emas_same_name(apply):
    w = variable("w")
    b = variable("b_1", shape=(3,), seed=2)
    ema1 = v1.train.ExponentialMovingAverage(0.9)
    ema2 = v1.train.ExponentialMovingAverage(0.5)
    op1 = apply(ema1, [w, b])
    op2 = apply(ema2, [b, w])
    return {"primaries": [w, b], "ema": ema2, "op": v1.group(op1, op2), "emas": [ema1, ema2]}


def _apply_twice(apply):
    w = variable("w")
    b = variable("b", shape=(3,), seed=2)
    c = variable("c", shape=(), seed=3)
    ema = v1.train.ExponentialMovingAverage(0.9)
    op1 = apply(ema, [w, b, w])  # w twice: one shadow, two (racing) updates, as in TF1
    op2 = apply(ema, [c, b])
    return {"primaries": [w, b, c], "ema": ema, "ops": [apply(ema, [b, c]), op2]}


def _names_already_taken(apply):
    w = variable("w")
    w_1 = variable("w_1", seed=2)
    with v1.name_scope("w/ExponentialMovingAverage"):
        tf.identity(1.0, name="x")  # the name scope is taken, the variable scope is not
    v1.get_variable("x/ExponentialMovingAverage_1", shape=(2,))  # a taken name, not a taken scope
    x = variable("x", shape=(2,), seed=3)
    ema = v1.train.ExponentialMovingAverage(0.9)
    op = apply(ema, [w, w_1, x])
    return {"primaries": [w, w_1, x], "ema": ema, "op": op}


def _mixed_dtypes(apply):
    primaries = [
        variable("h", dtype=tf.float16),
        variable("bf", dtype=tf.bfloat16, seed=2),
        variable("d", dtype=tf.float64, seed=3),
        variable("f", shape=(5, 1, 2), seed=4),
    ]
    step = v1.train.get_or_create_global_step()
    ema = v1.train.ExponentialMovingAverage(0.99, num_updates=step)
    op = apply(ema, primaries)
    return {"primaries": primaries, "ema": ema, "op": op, "step": step}


def _tensors(apply):
    w = variable("w")
    d = variable("d", dtype=tf.float64, seed=2)
    big = variable("big", shape=(40, 30), seed=3)  # 1200 elements: tf.zeros uses Fill, not Const
    tensors = [tf.identity(w * 2.0, name="t"), tf.square(d, name="sq"), tf.identity(big, name="tb")]
    ema = v1.train.ExponentialMovingAverage(0.9)
    op = apply(ema, tensors + [w])
    return {"primaries": tensors + [w], "ema": ema, "op": op}


def _zero_debias(apply):
    w = variable("w")
    h = variable("h", dtype=tf.float16, seed=2)
    big = variable("big", shape=(40, 30), seed=3)
    tensors = [tf.identity(w * 2.0, name="t"), tf.identity(h, name="th"), tf.identity(big, name="tb")]
    with v1.variable_scope("scope"):
        ema = v1.train.ExponentialMovingAverage(0.9, zero_debias=True)
        op1 = apply(ema, tensors + [w])
        ema2 = v1.train.ExponentialMovingAverage(0.7, zero_debias=True)
        op2 = apply(ema2, tensors[:1])  # shadow t/ExponentialMovingAverage_1, with biased/local_step of its own
    return {"primaries": tensors + [w], "ema": ema, "op": v1.group(op1, op2)}


def _dependent_initial_values(apply):
    w = variable("w")
    r = variable("r", seed=2, use_resource=True)  # a resource variable also in TF1 mode
    # Under TF1 behaviour an initial value reading another variable is guarded
    # against it being uninitialized, in the shadow's initializer too; with
    # resource variables TF offers no such guard, so there it is a constant.
    source = tf.ones(w.shape) if v1.resource_variables_enabled() else w.initialized_value()
    u = v1.Variable(source * 2.0, name="u")
    ema = v1.train.ExponentialMovingAverage(0.9)
    op = apply(ema, [w, r, u])
    return {"primaries": [w, r, u], "ema": ema, "op": op}


MODELS = {
    "dependent-initial-values": _dependent_initial_values,
    "plain": plain_model,
    "scopes": _scopes,
    "two-emas-same-name": _two_emas_same_name,
    "apply-twice": _apply_twice,
    "names-taken": _names_already_taken,
    "mixed-dtypes": _mixed_dtypes,
    "tensors": _tensors,
    "zero-debias": _zero_debias,
}


def _train(sess, result, steps=4):
    """A few "training" assignments and EMA updates; returns every shadow's value after each."""
    primaries = [p for p in result["primaries"] if isinstance(p, tf.Variable)]
    bump = v1.group(*[p.assign(p * 1.25 + tf.cast(0.5, p.dtype)) for p in primaries])
    step = result.get("step")
    inc = v1.assign_add(step, 1) if step is not None else tf.no_op()
    sess.run(v1.global_variables_initializer())
    emas = result.get("emas", [result["ema"]])
    shadows = [ema.average(p) for ema in emas for p in result["primaries"] if ema.average(p) is not None]
    values = [sess.run(shadows)]
    for _ in range(steps):
        sess.run(bump)
        for op in result.get("ops", [result.get("op")]):
            sess.run(op)
        sess.run(inc)
        values.append(sess.run(shadows))
    return [x for row in values for x in row]


# ---------------------------------------------------------------------------
# Names, collections, variables
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_graph_state_equals_tf1(build_mode, name):
    """Shadow names and order, collections, variable store, shadow ops and attributes equal TF1's."""
    assert_same_graph_state(*twin(MODELS[name]))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_values_bit_for_bit(build_mode, name):
    """Initial values and values after several updates equal TF1's bit for bit."""
    (g_ref, r_ref), (g_fast, r_fast) = twin(MODELS[name])
    assert_bits_equal(run(g_ref, lambda s: _train(s, r_ref)), run(g_fast, lambda s: _train(s, r_fast)))


def test_update_op_and_average_names_equal_tf1(build_mode):
    """The grouped update op keeps TF1's name, and average()/average_name() agree before and after apply."""

    def model(apply):
        result = _two_emas_same_name(apply)
        late = variable("late", seed=9)
        ema = result["emas"][0]
        result["names"] = [result["op"].name] + [e.average_name(p) for e in result["emas"] for p in result["primaries"]]
        result["names"].append(ema.average_name(late))
        return result

    (_, r_ref), (_, r_fast) = twin(model)
    assert r_fast["names"] == r_ref["names"]


def test_later_op_names_equal_tf1(build_mode):
    """Ops created after apply() get the names they get after TF1's apply() (same names consumed)."""

    def model(apply):
        result = _scopes(apply)
        names = []
        with v1.name_scope("ns"):
            names += [tf.identity(1.0, name=n).name for n in ("cond", "VarIsInitializedOp", "IsVariableInitialized")]
        for n in ("ns/outer/net/w/ema.x", "outer/net/w/ema.x/Read", "ema.x", "cond", "Cast", "outer/net/w/ema.x"):
            try:
                names.append(tf.identity(1.0, name=n).name)
            except ValueError as e:
                names.append(str(e))
        with v1.variable_scope("outer"):
            names.append(v1.get_variable("net/w/ema.x_1", shape=[1]).name)
        result["names"] = names
        return result

    (_, r_ref), (_, r_fast) = twin(model)
    assert r_fast["names"] == r_ref["names"]


def test_duplicate_node_name_raises_like_tf1(build_mode):
    """An op already named like the shadow makes both raise TF1's duplicate-name ValueError."""

    def model(apply):
        w = variable("w")
        tf.identity(1.0, name="w/ExponentialMovingAverage")
        try:
            apply(v1.train.ExponentialMovingAverage(0.9), [w])
        except ValueError as e:
            return str(e).splitlines()[0]
        return "no error"

    (_, r_ref), (_, r_fast) = twin(model)
    assert r_fast == r_ref
    assert "Duplicate node name" in r_ref


def test_reentered_scope_raises_like_tf1(build_mode):
    """A shadow name freed by a closed parent scope but taken in the store raises TF1's ValueError."""

    def model(apply):
        with v1.variable_scope("tower"):
            w = variable("w")
            apply(v1.train.ExponentialMovingAverage(0.9), [w])
        with v1.variable_scope("tower"):
            try:
                apply(v1.train.ExponentialMovingAverage(0.9), [w])
            except ValueError as e:
                return str(e).splitlines()[0]
        return "no error"

    (_, r_ref), (_, r_fast) = twin(model)
    assert r_fast == r_ref
    assert "already exists" in r_ref


def test_reuse_finds_fast_shadows_like_tf1(build_mode):
    """get_variable(reuse=True) and a second tower's apply() in a reusing scope find the fast-path shadow."""

    def model(apply):
        with v1.variable_scope("tower"):
            w = variable("w")
            ema = v1.train.ExponentialMovingAverage(0.9)
            apply(ema, [w])
        with v1.variable_scope("tower", reuse=True):
            ema2 = v1.train.ExponentialMovingAverage(0.9)
            ema2.apply([w])  # TF1's code, in a reusing scope
        with v1.variable_scope("tower/tower/w/ExponentialMovingAverage", reuse=True):
            found = v1.get_variable("")
        return [ema.average(w) is ema2.average(w), found is ema.average(w), found.name]

    (_, r_ref), (_, r_fast) = twin(model)
    assert r_fast == r_ref == [True, True, "tower/tower/w/ExponentialMovingAverage:0"]


def test_bad_dtype_raises_after_earlier_shadows_like_tf1(build_mode):
    """An integer variable raises TF1's TypeError, after the shadows of the variables before it exist."""

    def model(apply):
        w = variable("w")
        n = v1.get_variable("n", shape=[2], dtype=tf.int32, initializer=v1.zeros_initializer())
        b = variable("b", seed=2)
        try:
            apply(v1.train.ExponentialMovingAverage(0.9), [w, n, b])
        except TypeError as e:
            return str(e), [v.name for v in v1.global_variables()]
        return None

    (_, r_ref), (_, r_fast) = twin(model)
    assert r_fast == r_ref
    assert "w/ExponentialMovingAverage:0" in r_ref[1] and "b/ExponentialMovingAverage:0" not in r_ref[1]


def test_colocation_and_devices_equal_tf1(build_mode):
    """Shadows of variables pinned to a device, or created under a device scope, land where TF1 puts them."""

    def model(apply):
        with tf.device("/device:CPU:0"):
            w = variable("w")
        b = variable("b", seed=2)
        with tf.device("/job:localhost/replica:0/task:0/device:CPU:0"):
            op = apply(v1.train.ExponentialMovingAverage(0.9), [w, b, tf.identity(b, name="t")])
        return {"op": op}

    ref, fast = twin(model)
    assert_same_graph_state(ref, fast)
    assert ref[1]["op"].device == fast[1]["op"].device


# ---------------------------------------------------------------------------
# Initialization orders
# ---------------------------------------------------------------------------


def _initialized_then_assigned(apply):
    """Variable initialized and assigned in a session that exists before apply()."""
    w = variable("w")
    b = variable("b", seed=2)
    sess = v1.Session()
    sess.run(v1.variables_initializer([w, b]))
    sess.run(w.assign(tf.fill(w.shape, 7.0)))
    ema = v1.train.ExponentialMovingAverage(0.9)
    op = apply(ema, [w, b])
    shadows = [ema.average(w), ema.average(b)]
    before = sess.run(v1.report_uninitialized_variables())
    sess.run(v1.variables_initializer(shadows))
    values = sess.run(shadows)
    sess.run(op)
    values += sess.run(shadows)
    sess.close()
    return list(before), values


def test_initialized_then_assigned_before_apply(build_mode):
    """A variable initialized and changed before apply() hands its current value to the shadow, as in TF1."""
    (_, (before_ref, ref)), (_, (before_fast, fast)) = twin(_initialized_then_assigned)
    assert before_fast == before_ref
    assert_bits_equal(ref, fast)
    np.testing.assert_array_equal(fast[0], np.full((2, 3), 7.0, np.float32))


def _initialization_orders(apply):
    w = variable("w")
    b = variable("b", seed=2)
    c = variable("c", seed=3)
    ema = v1.train.ExponentialMovingAverage(0.9)
    apply(ema, [w, b, c])
    shadows = [ema.average(p) for p in (w, b, c)]
    out = []
    with v1.Session() as sess:
        # Mixed: w initialized and changed, b initialized, c not at all; only two shadows initialized.
        sess.run(v1.variables_initializer([w, b]))
        sess.run(w.assign_add(tf.ones_like(w)))
        sess.run(v1.variables_initializer(shadows[:2]))
        out += sess.run(shadows[:2])
        out.append(sorted(sess.run(v1.report_uninitialized_variables())))
        # The shadow of c, while c is still uninitialized: c's initial value.
        sess.run(shadows[2].initializer)
        out.append(sess.run(shadows[2]))
        # Shadow initial values evaluated directly.
        out += sess.run([s.initial_value for s in shadows])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        out += sess.run(shadows)
    return out


def test_initialization_orders_equal_tf1(build_mode):
    """Partial, per-shadow and global initialization give TF1's values and leave TF1's variables uninitialized."""
    (_, ref), (_, fast) = twin(_initialization_orders)
    assert fast[2] == ref[2]
    assert_bits_equal(ref[:2] + ref[3:], fast[:2] + fast[3:])


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def _checkpoint_model(apply):
    result = _mixed_dtypes(apply)
    result["saver"] = v1.train.Saver()
    return result


@pytest.mark.parametrize("direction", ["tf1-to-fast", "fast-to-tf1"])
def test_checkpoint_round_trip(build_mode, tmp_path, direction):
    """A checkpoint written by one graph restores every variable of the other, bit for bit."""
    (g_ref, r_ref), (g_fast, r_fast) = twin(_checkpoint_model)
    (g_src, r_src), (g_dst, r_dst) = ((g_ref, r_ref), (g_fast, r_fast))
    if direction == "fast-to-tf1":
        (g_src, r_src), (g_dst, r_dst) = (g_dst, r_dst), (g_src, r_src)
    path = str(tmp_path / "ckpt")

    def save(sess):
        _train(sess, r_src, steps=2)
        r_src["saver"].save(sess, path)
        return sess.run(g_src.get_collection(v1.GraphKeys.GLOBAL_VARIABLES))

    def restore(sess):
        r_dst["saver"].restore(sess, path)
        return sess.run(g_dst.get_collection(v1.GraphKeys.GLOBAL_VARIABLES))

    saved = run(g_src, save)
    assert_bits_equal(run(g_dst, restore), saved)


def test_variables_to_restore_equals_tf1(build_mode):
    """variables_to_restore() maps the same checkpoint names to the same variables."""

    def model(apply):
        result = _tensors(apply)
        return sorted((k, v.name) for k, v in result["ema"].variables_to_restore().items())

    (_, r_ref), (_, r_fast) = twin(model)
    assert r_fast == r_ref


# ---------------------------------------------------------------------------
# When the fast path steps aside
# ---------------------------------------------------------------------------


def _fallback_calls(setup):
    """The primaries whose shadows create_shadows starts from TF1's cond (fast off) inside ``setup``."""
    calls = []

    def tf1_initialized_value(var):
        calls.append(var.name)
        return var.initial_value

    with tf.Graph().as_default():
        w = variable("w")
        with setup(), mock.patch.object(_build, "_tf1_initialized_value", tf1_initialized_value):
            with tf.init_scope():
                try:
                    _build.create_shadows([w], "ExponentialMovingAverage")
                except ValueError:
                    pass  # a reusing scope: get_variable finds no shadow to reuse, as in TF1
    return calls


@pytest.mark.parametrize(
    "setup",
    [
        lambda: v1.variable_scope("s", reuse=True),
        lambda: v1.variable_scope("s", reuse=v1.AUTO_REUSE),
        lambda: v1.variable_scope("s", custom_getter=lambda getter, *a, **k: getter(*a, **k)),
        lambda: v1.variable_scope("s", regularizer=lambda x: tf.reduce_sum(x)),
        lambda: v1.variable_scope("s", caching_device="/cpu:0"),
        lambda: tf.variable_creator_scope(lambda next_creator, **kwargs: next_creator(**kwargs)),
    ],
    ids=["reuse", "auto-reuse", "custom-getter", "regularizer", "caching-device", "variable-creator"],
)
def test_customized_scopes_fall_back(setup):
    """A reusing or customized variable scope, or a variable creator, sends every primary to TF1's route."""
    assert _fallback_calls(setup) == ["w:0"]


def test_plain_scope_takes_fast_path():
    """In a plain scope nothing falls back."""
    assert _fallback_calls(contextlib.nullcontext) == []


def test_unusual_primaries_are_blocked():
    """Partitioned parts, unknown shapes, foreign graphs and ref variables under v2 control flow are refused."""
    with tf.Graph().as_default() as other:
        foreign = variable("foreign")
    with tf.Graph().as_default():
        parts = v1.get_variable("p", shape=[4, 2], partitioner=v1.fixed_size_partitioner(2))
        unknown = v1.placeholder(tf.float32, [None, 3])
        ref = variable("r", use_resource=False)
        fine = variable("fine")
        assert _build.fast_path_blocker(list(parts)[0]) == "a partitioned variable"
        assert _build.fast_path_blocker(unknown) == "a shape that is not fully defined"
        assert _build.fast_path_blocker(foreign) == "the variable is in another graph"
        assert _build.fast_path_blocker(fine) is None
        expected = "a ref variable under control flow v2" if v1.control_flow_v2_enabled() else None
        assert _build.fast_path_blocker(ref) == expected
    assert other is not None


def test_strategy_and_eager_are_blocked():
    """A distribution strategy or eager execution blocks both shadows and updates."""
    if tf.executing_eagerly():
        assert _build.scope_blocker() == "eager execution"
        assert _build.update_blocker() == "eager execution"
    with tf.Graph().as_default():
        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            assert _build.scope_blocker() == "inside a distribution strategy"
            assert _build.update_blocker() == "inside a distribution strategy"


def test_fallback_keeps_order_and_names():
    """Primaries the fast path refuses are created by the fallback at their turn, so names and order match TF1."""

    def model(apply):
        w = variable("w")
        p = list(v1.get_variable("p", shape=[4, 2], partitioner=v1.fixed_size_partitioner(2)))
        b = variable("b", seed=2)
        ema = v1.train.ExponentialMovingAverage(0.9)
        if apply is fast_apply:
            op = fast_apply(ema, [w] + p + [b], allow_fallback=True)
        else:
            op = apply(ema, [w] + p + [b])
        return {"primaries": [w] + p + [b], "ema": ema, "op": op}

    ref, fast = twin(model)
    assert collections(fast[0]) == collections(ref[0])
    assert_bits_equal(run(ref[0], lambda s: _train(s, ref[1])), run(fast[0], lambda s: _train(s, fast[1])))


def test_ops_built_without_wrappers_equal_generated_ones():
    """_op builds the same NodeDef (defaults included) as the generated op wrapper."""
    # pylint: disable=protected-access
    with tf.Graph().as_default() as g:
        handle = tf.raw_ops.VarHandleOp(dtype=tf.float16, shape=[2], shared_name="a", name="a")
        zeros = tf.zeros([2], tf.float16)
        a = tf.raw_ops.AssignVariableOp(resource=handle, value=zeros)
        b = _build._op(g, "AssignVariableOp", [handle, zeros], [], dtype=_build._type_attr(tf.float16))
        assert node(b)[1:] == node(a)[1:]
        assert _build._read_op(g, handle, tf.float16).shape == [2]


@pytest.mark.parametrize("zero_debias", [False, True])
def test_ref_tensor_of_a_variable_op_is_colocated_like_tf1(zero_debias):
    """A tensor read straight from a VariableV2 op gets a zero shadow colocated with it, as in TF1."""

    def model(apply):
        w = variable("w", use_resource=False)
        ema = v1.train.ExponentialMovingAverage(0.9, zero_debias=zero_debias)
        op = apply(ema, [w.op.outputs[0]])
        return {"primaries": [w.op.outputs[0]], "ema": ema, "op": op}

    with behaviour("tf1"):
        ref, fast = twin(model)
        assert_same_graph_state(ref, fast)
        assert fast[1]["ema"].average(fast[1]["primaries"][0]).op.colocation_groups() == [b"loc:@w"]
        assert_bits_equal(run(ref[0], lambda s: _train(s, ref[1])), run(fast[0], lambda s: _train(s, fast[1])))


def test_wider_shadow_dtype_starts_from_the_cast_value(build_mode):
    """With dtypes=, a float16 variable's float32 shadow starts from the cast current or initial value."""
    from tensorflow.python.training import slot_creator  # TF1's own slot code, the reference here

    def shadows(fast):
        with tf.Graph().as_default() as g:
            h = variable("h", dtype=tf.float16)
            with tf.init_scope():
                if fast:
                    with mock.patch.object(_build, "_tf1_initialized_value", _forbidden_fallback):
                        shadow = _build.create_shadows([h], "ema", dtypes=[tf.float32])[h.ref()]
                else:
                    with tf.device(h.device):
                        value = v1.cond(v1.is_variable_initialized(h), h.read_value, lambda: h.initial_value)
                        value = tf.cast(value, tf.float32)
                    shadow = slot_creator.create_slot(h, value, "ema", copy_xla_sharding=True)
            with v1.Session() as sess:
                sess.run(h.initializer)
                sess.run(h.assign(h * 3.0))
                sess.run(shadow.initializer)
                value = sess.run(shadow)
            return (shadow.name, shadow.dtype, type(shadow), collections(g)), value

    (meta_ref, ref), (meta_fast, fast) = shadows(False), shadows(True)
    assert meta_fast == meta_ref
    assert_bits_equal([ref], [fast])


def test_build_updates_equals_assign_moving_average(build_mode):
    """build_updates with per-pair Python, float32 and float64 decays equals TF1's assign_moving_average."""
    reference = tf.__internal__.train.assign_moving_average

    def model(fast):
        shadows = [variable("s%d" % i, dtype=dt, seed=i) for i, dt in enumerate((tf.float32, tf.float16, tf.float64))]
        values = [variable("v%d" % i, dtype=s.dtype.base_dtype, seed=10 + i) for i, s in enumerate(shadows)]
        decays = [0.999, tf.constant(0.9, tf.float32), tf.constant(0.75, tf.float64)]
        if fast:
            ops = _build.build_updates([_build.Pair(s, v, d) for s, v, d in zip(shadows, values, decays)])
        else:
            ops = [reference(s, v, d, zero_debias=False) for s, v, d in zip(shadows, values, decays)]
        return {"op": v1.group(*ops), "shadows": shadows}

    def values(graph, result):
        def fetch(sess):
            sess.run(v1.global_variables_initializer())
            out = []
            for _ in range(3):
                sess.run(result["op"])
                out += sess.run(result["shadows"])
            return out

        return run(graph, fetch)

    ref, fast = build(lambda apply: model(False), None), build(lambda apply: model(True), None)
    assert_bits_equal(values(*ref), values(*fast))


def test_replica_device_setter_places_like_tf1(build_mode):
    """Under replica_device_setter (round robin over PS tasks) shadows and debias variables land on TF1's devices."""

    def model(apply):
        with v1.device(v1.train.replica_device_setter(ps_tasks=3)):
            primaries = [variable("v%d" % i, seed=i) for i in range(4)]
            tensors = [tf.identity(p, name="t%d" % i) for i, p in enumerate(primaries[:2])]
            ema = v1.train.ExponentialMovingAverage(0.9, zero_debias=True)
            apply(ema, primaries + tensors)
            late = variable("late", seed=9)  # the round robin continues where TF1 left it
        return {"devices": [v.device for v in v1.global_variables()] + [late.device]}

    ref, fast = twin(model)
    assert_same_graph_state(ref, fast)
    assert fast[1]["devices"] == ref[1]["devices"]
    assert len(set(ref[1]["devices"])) == 3


def test_shadow_initial_value_is_a_stock_conditional(build_mode):
    """A shadow starts from TF's own conditional (If, or Merge for ref variables), with or without the op library."""
    graph = tf.Graph()
    with graph.as_default():
        w = v1.get_variable("w", shape=[3])
        fast_apply(v1.train.ExponentialMovingAverage(0.9), [w])
        shadow = [v for v in v1.global_variables() if v.op.name == "w/ExponentialMovingAverage"][0]
        op_type = shadow._initial_value.op.type  # pylint: disable=protected-access
    assert op_type == ("Merge" if build_mode.startswith("tf1") else "If")


def test_fast_subscope_closing_zeroes_what_tf_zeroes():
    """Opening and closing variable scopes with the bisecting store leaves the counts TF's own scan leaves."""
    from tensorflow.python.ops import variable_scope as vs

    rng = np.random.default_rng(11)
    parts = ["a", "a_1", "b", "a/b", "ab", "a/b/c", "b/a", "a-"]
    names = sorted({"/".join(rng.choice(parts, size=rng.integers(1, 4))) for _ in range(60)})
    tf_store, our_store = vs._VariableScopeStore(), vs._VariableScopeStore()
    with _tf_internal.FastSubscopeClosing(our_store):
        for step in range(400):
            name = names[rng.integers(len(names))]
            action = rng.integers(4)
            for store in (tf_store, our_store):
                if step % 50 == 0:
                    store.variable_scopes_count = dict(store.variable_scopes_count)  # as a VariableScope exit does
                elif action < 2:
                    store.open_variable_scope(name)
                else:
                    store.close_variable_subscopes(name)
            assert our_store.variable_scopes_count == tf_store.variable_scopes_count
    assert "open_variable_scope" not in vars(our_store)  # the store's own methods are back


def test_variables_initialized_from_shadows_like_tf1(build_mode):
    """Variables whose initial values read a shadow (TF's guard rewrites those) start from TF1's values."""
    if not build_mode.startswith("tf1"):
        pytest.skip("initialized_value() needs ref variables")

    def model(apply):
        w = v1.get_variable("w", initializer=np.arange(3, dtype=np.float32))
        ema = v1.train.ExponentialMovingAverage(0.5)
        apply(ema, [w])
        shadow = ema.average(w)
        u = v1.Variable(shadow.initialized_value() * 2, name="u")
        r = v1.get_variable("r", initializer=shadow.initial_value + 1.0)
        slow = v1.train.ExponentialMovingAverage(0.9, name="slow")
        apply(slow, [shadow])  # an average of an average
        return [u, r, slow.average(shadow)]

    (g_ref, ref), (g_fast, fast) = twin(model)
    values = []
    for graph, tensors in ((g_ref, ref), (g_fast, fast)):
        with v1.Session(graph=graph) as sess:
            sess.run(v1.variables_initializer(v1.global_variables()))
            values.append(sess.run(tensors))
    assert_bits_equal(values[0], values[1])


# ---------------------------------------------------------------------------
# One builder for every route
# ---------------------------------------------------------------------------


def _route(name):
    """Builds one route's EMA (in the current context); returns how many shadows and pair updates it builds."""
    ema_cls = tf1_ema.ExponentialMovingAverage
    if name == "assign_moving_average":
        shadow = variable("s")
        tf1_ema.assign_moving_average(shadow, variable("w"), 0.9, zero_debias=True)
        return 0, 1
    if name == "eager":
        w = tf.Variable([1.0, 2.0])
        ema_cls(0.9).apply([w])
        return 1, 1
    if name == "function":
        w = tf.Variable([1.0, 2.0])
        ema = ema_cls(0.9)
        tf.function(lambda: ema.apply([w]) and None)()
        return 1, 2  # a function whose first trace creates variables is traced twice
    with fresh_graph():
        w, x = variable("w"), tf.constant([1.0, 2.0])
        if name == "strategy":
            with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
                ema_cls(0.9, zero_debias=True).apply([variable("v"), x])
        elif name == "schedule":
            ema_cls(0.9, step=v1.train.get_or_create_global_step(), update_every=2).apply([w])
            return 1, 1
        elif name == "copy-rule":
            ema_cls(0.9, rules=[("w", "copy")]).apply([w, variable("b")])
        else:  # a TF1 graph, fast or with TF1_EMA_FAST=0
            ema_cls(0.9, zero_debias=True).apply([w, x])
    return 2, 2


@pytest.mark.parametrize(
    "route", ["graph", "graph-FAST=0", "schedule", "copy-rule", "strategy", "eager", "function", "assign_moving_average"]
)
def test_every_route_builds_with_the_one_shadow_builder_and_update_recipe(route, monkeypatch):
    """Every route makes its shadows with create_shadows and updates each pair once with _update_pair."""
    shadows, updates = [], []
    create_shadows, update_pair = _build.create_shadows, _build._update_pair  # pylint: disable=protected-access

    def counting_create_shadows(var_list, *args, **kwargs):
        var_list = list(var_list)
        shadows.extend(var_list)
        return create_shadows(var_list, *args, **kwargs)

    monkeypatch.setattr(_build, "create_shadows", counting_create_shadows)
    monkeypatch.setattr(_build, "_update_pair", lambda *a, **k: updates.append(a[1]) or update_pair(*a, **k))
    monkeypatch.setattr(_update_op, "load_library", lambda: None)  # no fused op: every pair meets the recipe
    if route.endswith("FAST=0"):
        monkeypatch.setenv(_update_op.FAST_ENV, "0")
    expected = _route(route)
    assert (len(shadows), len(updates)) == expected


def test_apply_in_a_function_of_a_tf1_graph_starts_shadows_from_tf1s_cond():
    """A tf.function traced in a TF1 graph gets TF1's shadow conditional, as every function does."""
    calls = []
    tf1_initialized_value = _build._tf1_initialized_value  # pylint: disable=protected-access

    def recording(var):
        calls.append(var.name)
        return tf1_initialized_value(var)

    with fresh_graph(), mock.patch.object(_build, "_tf1_initialized_value", recording):
        w = variable("w")
        ema = tf1_ema.ExponentialMovingAverage(0.9)
        tf.function(lambda: ema.apply([w]) and None).get_concrete_function()
    assert calls == ["w:0"]
