"""The fused EMA update (``tf1_ema._update_op``) against TF1's own ops, bit for bit.

The custom op is compiled once per test session into a temporary cache (the
``library`` fixture); tests of the graph fallback switch it off. Every value
check compares raw bits (the suite's bit rule, ``harness.assert_bits_equal``),
so a changed rounding, a flushed denormal or a lost negative zero fails. The single exception is
pinned by its own test: stock TensorFlow gives a bfloat16 NaN the sign bit of
the float32 NaN only in the scalar tail of its vectorized loops, so bfloat16
NaNs are compared by position.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from harness import assert_bits_equal
from limits import TIMEOUT
from tf1_ema import _build, _update_op

v1 = tf.compat.v1

DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
SHAPES = ((), (0,), (1,), (7,), (27,), (5, 7), (1031,), (4, 0, 3))


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def library(tmp_path_factory):
    """The op library, built once per session into a temporary cache directory (skips without a compiler)."""
    if _update_op._compiler() is None:
        pytest.skip("no C++ compiler: only the graph fallback can be tested")
    cache = tmp_path_factory.mktemp("tf1_ema_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_update_op.CACHE_ENV, str(cache))
        mp.setenv(_update_op.FAST_ENV, "1")
        path = _update_op.build()
        lib = _update_op.load_library()
    assert lib is not None
    return {"module": lib, "path": path, "cache": cache}


@pytest.fixture
def fast(library, monkeypatch):
    """The custom op enabled, with the session's cache directory."""
    monkeypatch.setenv(_update_op.CACHE_ENV, str(library["cache"]))
    monkeypatch.setenv(_update_op.FAST_ENV, "1")
    return library


@pytest.fixture
def no_library(monkeypatch, tmp_path):
    """A process that has not tried to build the library yet and has no compiler."""
    monkeypatch.setattr(_update_op, "_library", None)
    monkeypatch.setattr(_update_op, "_failure", None)
    monkeypatch.setattr(_update_op, "_notice_printed", False)
    monkeypatch.setattr(_update_op, "_compiler", lambda: None)
    monkeypatch.setenv(_update_op.FAST_ENV, "1")
    monkeypatch.setenv(_update_op.CACHE_ENV, str(tmp_path / "empty-cache"))  # no library built ahead of time


def special_values(np_dtype) -> np.ndarray:
    """Zeros of both signs, infinities, NaNs, the largest and smallest normal and subnormal numbers."""
    info = ml_dtypes.finfo(np_dtype)
    sub = float(info.smallest_subnormal)
    tiny = float(info.smallest_normal)
    big = float(info.max)
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, big, -big, tiny, -tiny, sub, -sub, 3 * sub, tiny / 2, 1.0]
    return np.array(vals, np.float64).astype(np_dtype)


def random_data(rng, dtype, shape, special_fraction=0.25) -> np.ndarray:
    """Normal draws over many magnitudes, with a fraction replaced by ``special_values``."""
    np_dtype = dtype.as_numpy_dtype
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(n) * np.exp(rng.uniform(-12, 12, n))).astype(np_dtype)
    k = int(n * special_fraction)
    x[rng.integers(0, max(n, 1), k)] = rng.choice(special_values(np_dtype), k)
    return x.reshape(shape)


def assert_same_bits(ours, stock):
    """Asserts equal bits under the suite's bit rule; bfloat16 NaNs only need to be NaN in the same places."""
    assert_bits_equal(np.asarray(stock), np.asarray(ours), nans_by_position=("bfloat16",))


def op_types(graph, prefix="fused_update"):
    """The op types under name scope ``prefix``."""
    return sorted(op.type for op in graph.get_operations() if op.name.startswith(prefix))


def fused_ops(graph) -> int:
    """How many resource-variable custom ops (by handle or by name) the graph holds."""
    return sum(t in ("Tf1EmaUpdate", "Tf1EmaUpdateByName") for t in op_types(graph, ""))


def run_against_stock_formula(sess, dtype, shapes, use_resource=True, one_minus_decays=(0.1, 0.5, 1e-4), steps=2):
    """Runs plain_updates and TF1's own assign_sub update side by side; asserts equal bits after every step."""
    rng = np.random.default_rng(len(shapes) * 100 + DTYPES.index(dtype))
    values = [v1.get_variable("value%d" % i, shape=s, dtype=dtype, use_resource=use_resource) for i, s in enumerate(shapes)]
    stock = [v1.get_variable("stock%d" % i, shape=s, dtype=dtype, use_resource=use_resource) for i, s in enumerate(shapes)]
    ours = [v1.get_variable("ours%d" % i, shape=s, dtype=dtype, use_resource=use_resource) for i, s in enumerate(shapes)]
    omd = v1.placeholder(tf.float32, [])
    # TF1 parity: this is moving_averages.assign_moving_average's update_fn.
    k = omd if dtype == tf.float32 else tf.cast(omd, dtype)
    stock_op = tf.group(*[v1.assign_sub(s, (s - v) * k) for s, v in zip(stock, values)])
    ours_op = _build.plain_updates(ours, values, omd)
    feeds = [v1.placeholder(dtype, s) for s in shapes]
    set_values = [v1.assign(v, f) for v, f in zip(values, feeds)]
    set_shadows = [v1.assign(v, f) for v, f in zip(stock + ours, feeds + feeds)]
    for o in one_minus_decays:
        sess.run(set_shadows, {f: random_data(rng, dtype, s) for f, s in zip(feeds, shapes)})
        for _ in range(steps):
            sess.run(set_values, {f: random_data(rng, dtype, s) for f, s in zip(feeds, shapes)})
            sess.run(stock_op, {omd: o})
            sess.run(ours_op, {omd: o})
            for a, b in zip(sess.run(ours), sess.run(stock)):
                assert_same_bits(a, b)


# ---------------------------------------------------------------------------
# Bits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_bits_equal_tf1_assign_sub_for_every_dtype_and_shape(fast, session, dtype, shape):
    """Each dtype and shape, with NaN, inf, -0 and subnormals, updates to TF1's bits."""
    run_against_stock_formula(session, dtype, [shape])
    assert fused_ops(session.graph) == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_bits_equal_tf1_for_awkward_one_minus_decays(fast, session, dtype):
    """0, 1, subnormal, huge and rounding-tie values of 1 - decay are cast as TF's Cast kernel casts them."""
    ties = np.array([0x3DCC8000, 0x3F008000, 0x38801000, 0x33800001], np.uint32).view(np.float32)
    awkward = [0.0, 1.0, 1e-45, 1e-30, 3e38, -0.5, float(np.float32(1) - np.float32(0.999))] + ties.tolist()
    run_against_stock_formula(session, dtype, [(257,)], one_minus_decays=awkward, steps=1)


def test_many_tensors_of_mixed_sizes_in_one_op(fast, session):
    """Hundreds of tensors whose boundaries fall inside the threads' shards update to TF1's bits."""
    sizes = np.random.default_rng(1).integers(0, 3000, 300)
    run_against_stock_formula(session, tf.float32, [(int(n),) for n in sizes], one_minus_decays=(0.25,), steps=1)
    assert fused_ops(session.graph) == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_ref_variables_use_the_ref_op_with_tf1_bits(fast, session, dtype):
    """Ref-variable shadows (use_resource=False) go to Tf1EmaUpdateRef and update to TF1's bits."""
    run_against_stock_formula(session, dtype, [(), (33,)], use_resource=False)
    assert "Tf1EmaUpdateRef" in op_types(session.graph)


@pytest.mark.parametrize("num_updates", [None, 3], ids=["no_step", "step"])
def test_bits_equal_the_stock_ema_class_for_mixed_dtypes(fast, session, num_updates):
    """Against tf.compat.v1.train.ExponentialMovingAverage itself: all dtypes, variable and tensor values, one op."""
    rng = np.random.default_rng(7)
    shapes = [(), (9,), (3, 5)]
    variables = [
        v1.get_variable("w_%s_%d" % (d.name, i), initializer=random_data(rng, d, s, 0.1), use_resource=True)
        for d in DTYPES for i, s in enumerate(shapes)
    ]
    tensors = [tf.identity(v) * 2 for v in variables[:4]]
    decay = v1.placeholder(tf.float32, [])
    step = tf.constant(num_updates, tf.int64) if num_updates is not None else None
    ema = v1.train.ExponentialMovingAverage(decay, num_updates=step)
    stock_op = ema.apply(variables + tensors)
    stock = [ema.average(v) for v in variables + tensors]
    ours = [
        v1.get_variable("ours%d" % i, shape=s.shape, dtype=s.dtype.base_dtype, use_resource=True)
        for i, s in enumerate(stock)
    ]
    decay_t = decay
    if num_updates is not None:
        n = tf.cast(step, tf.float32)
        decay_t = tf.minimum(decay, (1.0 + n) / (10.0 + n))
    ours_op = _build.plain_updates(ours, variables + tensors, 1.0 - decay_t)
    assert fused_ops(session.graph) == 1
    session.run(v1.global_variables_initializer())
    session.run([o.assign(s) for o, s in zip(ours, stock)])
    for d in (0.9, 0.999, 0.0, 1.0, 0.3):
        session.run([v.assign(random_data(rng, v.dtype.base_dtype, v.shape, 0.1)) for v in variables])
        session.run(stock_op, {decay: d})
        session.run(ours_op, {decay: d})
        for a, b in zip(session.run(ours), session.run(stock)):
            assert_same_bits(a, b)


def test_bfloat16_nan_sign_differs_from_stock_only_in_its_scalar_tail(fast, session):
    """Stock bfloat16 NaNs are 0x7fc0 in vectorized lanes and keep the sign in the scalar tail; ours are all 0x7fc0."""
    n = 67  # the tail is the last n % packet-size elements
    shadow_stock = v1.get_variable("s", initializer=np.full(n, -np.inf, ml_dtypes.bfloat16), use_resource=True)
    shadow_ours = v1.get_variable("o", initializer=np.full(n, -np.inf, ml_dtypes.bfloat16), use_resource=True)
    value = v1.get_variable("v", initializer=np.full(n, -np.inf, ml_dtypes.bfloat16), use_resource=True)
    k = tf.cast(tf.constant(0.5), tf.bfloat16)
    stock_op = v1.assign_sub(shadow_stock, (shadow_stock - value) * k)  # -inf - -inf: the default NaN, negative
    ours_op = _build.plain_updates([shadow_ours], [value], 0.5)
    session.run(v1.global_variables_initializer())
    session.run([stock_op, ours_op])
    stock, ours = (x.view(np.uint16) for x in session.run([shadow_stock, shadow_ours]))
    assert set(ours.tolist()) == {0x7FC0}
    assert stock[0] == 0x7FC0 and stock[-1] == 0xFFC0


# ---------------------------------------------------------------------------
# Semantics of the op
# ---------------------------------------------------------------------------


def test_a_shadow_held_by_a_pending_read_gets_a_new_buffer(fast, session):
    """A read of the shadow fetched in the same step keeps the old value, as TF's copy-before-update guarantees."""
    shadow = v1.get_variable("shadow", initializer=np.full(1000, 4.0, np.float32), use_resource=True)
    value = v1.get_variable("value", initializer=np.zeros(1000, np.float32), use_resource=True)
    before = tf.identity(shadow.read_value())
    with tf.control_dependencies([before]):
        update = _build.plain_updates([shadow], [value], 0.25)
    session.run(v1.global_variables_initializer())
    old, _ = session.run([before, update])
    np.testing.assert_array_equal(old, 4.0)
    np.testing.assert_array_equal(session.run(shadow), 3.0)


def test_uninitialized_shadow_raises_failed_precondition(fast, session):
    """Updating a shadow that was never initialized fails like ReadVariableOp does, with FailedPreconditionError."""
    shadow = v1.get_variable("shadow", shape=[3], use_resource=True)
    value = v1.get_variable("value", shape=[3], use_resource=True)
    update = _build.plain_updates([shadow], [value], 0.5)
    session.run(value.initializer)
    with pytest.raises(tf.errors.FailedPreconditionError, match="shadow"):
        session.run(update)


def test_the_raw_op_refuses_a_repeated_shadow(fast, session):
    """The kernel rejects the same shadow twice (it would update it twice at once)."""
    shadow = v1.get_variable("shadow", shape=[3], use_resource=True)
    update = fast["module"].tf1_ema_update(
        shadows=[shadow.handle, shadow.handle], variables=[], tensors=[tf.ones(3), tf.ones(3)], one_minus_decay=0.5
    )
    session.run(shadow.initializer)
    with pytest.raises(tf.errors.InvalidArgumentError, match="twice"):
        session.run(update)


def test_a_repeated_shadow_takes_the_graph_path(fast, session):
    """plain_updates sends a shadow listed twice to graph ops, and the other shadows to the custom op."""
    a = v1.get_variable("a", shape=[3], use_resource=True)
    b = v1.get_variable("b", shape=[3], use_resource=True)
    _build.plain_updates([a, b, a], [tf.ones(3)] * 3, 0.5)
    assert fused_ops(session.graph) == 1
    assert op_types(session.graph).count("AssignSubVariableOp") == 2


def test_graph_mode_names_the_variables_and_adds_no_per_variable_op(fast, session):
    """In a TF1 graph the op names shadows and variable values by container and shared name: no per-variable op."""
    shadows = [v1.get_variable("s%d" % i, shape=[3], use_resource=True) for i in range(3)]
    with v1.container("box"):
        values = [v1.get_variable("v%d" % i, shape=[3], use_resource=True) for i in range(3)]
    update = _build.plain_updates(shadows, values, 0.5)
    assert op_types(session.graph) == ["Const", "NoOp", "Tf1EmaUpdateByName"]
    op = session.graph.get_operation_by_name("fused_update/Tf1EmaUpdateByName")
    assert [n.decode() for n in op.get_attr("shared_names")] == ["s0", "s1", "s2", "v0", "v1", "v2"]
    assert [c.decode() for c in op.get_attr("containers")] == [""] * 3 + ["box"] * 3
    session.run(v1.global_variables_initializer())
    expected = [s - (s - v) * 0.5 for s, v in zip(session.run(shadows), session.run(values))]
    session.run(update)
    for got, want in zip(session.run(shadows), expected):
        assert_same_bits(got, want)


def _shadow_and_value():
    """A resource shadow ``s`` = [4, 8] and its value ``v`` = [0, 0], as the replacement tests use them."""
    shadow = v1.get_variable("s", initializer=[4.0, 8.0], use_resource=True)
    value = v1.get_variable("v", initializer=[0.0, 0.0], use_resource=True)
    return shadow, value


def test_variables_deleted_and_created_again_are_found_again(fast, session):
    """A deleted variable fails the op with TensorFlow's error; created again under its name, it is found again."""
    shadow, value = _shadow_and_value()
    update = _build.plain_updates([shadow], [value], 0.5)
    session.run(v1.global_variables_initializer())
    session.run(update)
    assert session.run(shadow).tolist() == [2.0, 4.0]
    for variable in (shadow, value):
        session.run(tf.raw_ops.DestroyResourceOp(resource=variable.handle))
        with pytest.raises(tf.errors.FailedPreconditionError, match="Could not find variable"):
            session.run(update)
    session.run(v1.global_variables_initializer())  # new variables under the same names
    session.run(value.assign([2.0, 2.0]))
    session.run(update)
    assert session.run(shadow).tolist() == [3.0, 5.0]


def test_a_variable_replaced_between_runs_is_the_one_updated(fast, session):
    """A variable deleted and created again between two successful runs is looked up again, not taken from a cache."""
    shadow, value = _shadow_and_value()
    update = _build.plain_updates([shadow], [value], 0.5)
    session.run(v1.global_variables_initializer())
    session.run(update)
    destroy = [tf.raw_ops.DestroyResourceOp(resource=v.handle) for v in (shadow, value)]
    for round_ in range(3):
        session.run(destroy)
        session.run(v1.global_variables_initializer())
        session.run(value.assign([2.0 * round_, 2.0]))
        session.run(update)
        assert session.run(shadow).tolist() == [2.0 + round_, 5.0]


def test_a_variable_replaced_while_another_op_holds_it_is_the_one_updated(fast, session):
    """A value variable replaced while a slow op of another run still holds the deleted one is looked up anew."""
    big = [v1.get_variable(n, initializer=tf.zeros([1 << 24]), use_resource=True) for n in ("big_s", "big_v")]
    held = v1.get_variable("held", initializer=[0.0, 0.0], use_resource=True)
    shadow, value = _shadow_and_value()
    # The slow op holds the variable behind `value` while it updates 16 Mi elements, so
    # a cache that trusted a variable still alive would find the deleted one here.
    hold = fast["module"].tf1_ema_update(shadows=[big[0].handle, held.handle], variables=[big[1].handle, value.handle],
                                         tensors=[], one_minus_decay=0.5)  # fmt: skip
    update = _build.plain_updates([shadow], [value], 0.5)
    new_value = v1.placeholder(tf.float32, [2])
    replace = [tf.raw_ops.DestroyResourceOp(resource=value.handle), value.initializer, value.assign(new_value)]
    session.run(v1.global_variables_initializer())

    def replace_and_update(x):
        for op in replace:
            session.run(op, {new_value: x})
        before = session.run(shadow)
        session.run(update)
        return before

    def hold_once(started):
        started.set()
        try:
            session.run(hold)
        except tf.errors.FailedPreconditionError:
            pass  # it started late, when `value` was deleted: this round tests less, not wrongly

    for _ in range(2):  # every run once first: a run that builds its executor would outlast the hold
        replace_and_update([0.0, 0.0])
        start = time.perf_counter()
        session.run(hold)
        took = time.perf_counter() - start
    for round_ in range(3):
        started = threading.Event()
        holder = threading.Thread(target=hold_once, args=(started,))
        holder.start()
        started.wait()
        time.sleep(took / 4)
        x = np.float32([2.0, 2.0 * round_ + 1.0])
        before = replace_and_update(x)
        assert_same_bits(session.run(shadow), before - (before - x) * np.float32(0.5))
        holder.join()


def test_named_pairs_past_the_first_group_fail_like_read_variable_op(fast, session):
    """With more named pairs than one group of the kernel holds, an uninitialized shadow in a later group fails the run."""
    values = [v1.get_variable("v%d" % i, initializer=[1.0, 2.0], use_resource=True) for i in range(300)]
    shadows = [v1.get_variable("s%d" % i, initializer=[4.0, 8.0], use_resource=True) for i in range(300)]
    update = _build.plain_updates(shadows, values, 0.5)
    assert "Tf1EmaUpdateByName" in op_types(session.graph)
    session.run([v.initializer for v in values + shadows[:-1]])
    with pytest.raises(tf.errors.FailedPreconditionError, match="variable s299"):
        session.run(update)


def test_the_raw_op_rejects_a_non_float_variable(fast, session):
    """An int32 variable reaching the kernel (no type constraint covers variables) is an error, not a skipped update."""
    shadow = v1.get_variable("shadow", initializer=[4, 8], dtype=tf.int32, use_resource=True)
    value = v1.get_variable("value", initializer=[0, 0], dtype=tf.int32, use_resource=True)
    update = fast["module"].tf1_ema_update(shadows=[shadow.handle], variables=[value.handle], tensors=[],
                                           one_minus_decay=0.5)  # fmt: skip
    session.run(v1.global_variables_initializer())
    with pytest.raises(tf.errors.InvalidArgumentError, match="only half, bfloat16, float and double"):
        session.run(update)
    assert session.run(shadow).tolist() == [4, 8]


def test_fused_update_sends_non_float_variables_to_graph_ops(fast, session):
    """plain_updates never hands an integer shadow to the op: it takes TensorFlow's assign_sub."""
    shadow = v1.get_variable("shadow", initializer=[4, 8], dtype=tf.int32, use_resource=True)
    update = _build.plain_updates([shadow], [tf.constant([0, 2])], tf.constant(0.5))
    assert fused_ops(session.graph) == 0
    assert "Tf1EmaUpdateByName" not in op_types(session.graph)
    del update


def _update_by_handle(module, w, s1, s2):
    return module.tf1_ema_update(shadows=[s1.handle, s2.handle], variables=[w.handle, s1.handle], tensors=[],
                                 one_minus_decay=0.25)  # fmt: skip


def _update_by_name(module, w, s1, s2):
    return module.tf1_ema_update_by_name(tensors=[], one_minus_decay=0.25, N=2, M=2, containers=[""] * 4,
                                         shared_names=["s1", "s2", "w", "s1"])  # fmt: skip


@pytest.mark.parametrize("seed, make_update", [(8, _update_by_handle), (9, _update_by_name)], ids=["by-handle", "by-name"])
def test_the_raw_op_reads_the_old_value_of_a_shadow_that_is_also_a_value(fast, session, seed, make_update):
    """Given a shadow that is also another pair's value (by handle or by name), the kernel computes from its old value, as TF1 reads it."""
    rng = np.random.default_rng(seed)
    w, s1, s2 = (v1.get_variable(n, initializer=random_data(rng, tf.float32, (257,), 0.0), use_resource=True)
                 for n in ("w", "s1", "s2"))  # fmt: skip
    update = make_update(fast["module"], w, s1, s2)
    session.run(v1.global_variables_initializer())
    w0, a, b = session.run([w, s1, s2])
    session.run(update)
    k = np.float32(0.25)
    assert_same_bits(session.run(s1), a - (a - w0) * k)
    assert_same_bits(session.run(s2), b - (b - a) * k)


def test_inside_tf_function_the_update_is_stock_ops(fast):
    """Inside a tf.function (whose body is written apart from the graph) the update takes TensorFlow's ops, TF1's bits."""
    rng = np.random.default_rng(5)
    init, value = random_data(rng, tf.float32, (100,)), random_data(rng, tf.float32, (100,))
    ours, stock, var = tf.Variable(init), tf.Variable(init), tf.Variable(value)

    @tf.function
    def step():
        _build.plain_updates([ours], [var], 0.3)
        stock.assign_sub((stock - var) * 0.3)

    step()
    assert_same_bits(ours.numpy(), stock.numpy())
    graph = step.get_concrete_function().graph
    assert not {t for t in op_types(graph, "") if t.startswith("Tf1Ema")}


def test_eager_update_equals_the_tf1_formula(fast):
    """In eager mode the op updates variables to the same bits as TF1's formula."""
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        init, value = random_data(rng, dtype, (41,)), random_data(rng, dtype, (41,))
        ours, stock = tf.Variable(init), tf.Variable(init)
        _build.plain_updates([ours], [tf.constant(value)], 0.125)
        stock.assign_sub((stock - value) * tf.cast(0.125, dtype))
        assert_same_bits(ours.numpy(), stock.numpy())


# ---------------------------------------------------------------------------
# Fallback, switch and cache
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_fast_0_uses_graph_ops_with_tf1_bits(monkeypatch, session, dtype):
    """TF1_EMA_FAST=0 builds TF1's AssignSubVariableOp updates, no custom op, with TF1's bits."""
    monkeypatch.setenv(_update_op.FAST_ENV, "0")
    run_against_stock_formula(session, dtype, [(), (1031,)])
    types = op_types(session.graph)
    assert "Tf1EmaUpdate" not in types and "AssignSubVariableOp" in types


def test_without_a_compiler_one_line_notice_then_graph_ops(no_library, session, capsys):
    """Without a compiler the first update prints one line on stderr, later ones none, and both use graph ops."""
    shadow = v1.get_variable("shadow", shape=[3], use_resource=True)
    _build.plain_updates([shadow], [tf.ones(3)], 0.5, name="first")
    _build.plain_updates([shadow], [tf.ones(3)], 0.5, name="second")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no C++ compiler found" in err and "TF1_EMA_FAST=0" in err
    assert "Tf1EmaUpdate" not in op_types(session.graph, "")


def test_notice_can_be_turned_off(no_library, monkeypatch, session, capsys):
    """With notice_enabled off (tf1-ema run and the kernel, unless --tf-log) the fallback prints nothing."""
    monkeypatch.setattr(_update_op, "notice_enabled", False)
    shadow = v1.get_variable("shadow", shape=[3], use_resource=True)
    _build.plain_updates([shadow], [tf.ones(3)], 0.5)
    assert capsys.readouterr().err == ""
    assert "no C++ compiler found" in _update_op._failure


def test_fast_0_does_not_even_try_to_build(no_library, monkeypatch, session, capsys):
    """With TF1_EMA_FAST=0 nothing is compiled and nothing is printed."""
    monkeypatch.setenv(_update_op.FAST_ENV, "0")
    shadow = v1.get_variable("shadow", shape=[3], use_resource=True)
    _build.plain_updates([shadow], [tf.ones(3)], 0.5)
    assert capsys.readouterr().err == ""
    assert _update_op._failure is None


def test_a_compile_error_is_reported_and_leaves_no_file(fast, monkeypatch, tmp_path):
    """A source that does not compile raises with the compiler's error and leaves no file in the cache."""
    broken = tmp_path / "ema_update.cc"
    broken.write_text('#error "tf1_ema test: broken on purpose"\n')
    monkeypatch.setattr(_update_op, "SOURCE", broken)
    monkeypatch.setenv(_update_op.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="broken on purpose"):
        _update_op.build()
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_cache_key_follows_the_source(fast, monkeypatch, tmp_path):
    """Another source (or TensorFlow, flags, platform) gets another cache file name; the compiler is not part of it."""
    other = tmp_path / "ema_update.cc"
    other.write_bytes(_update_op.SOURCE.read_bytes() + b"\n// changed\n")
    assert _update_op.library_path() == fast["path"]
    monkeypatch.setattr(_update_op, "SOURCE", other)
    assert _update_op.library_path() != fast["path"]
    assert fast["path"].name.startswith("ema_update-tf%s-" % tf.__version__)


def test_a_built_library_is_reused_in_and_across_processes(fast):
    """build() and a fresh process load the cached file without compiling again."""
    stat = fast["path"].stat()
    assert _update_op.build() == fast["path"]
    script = textwrap.dedent(
        """
        import subprocess, sys
        from tf1_ema import _update_op
        run = subprocess.run
        def no_compile(cmd, *args, **kwargs):
            if "-o" in cmd:
                sys.exit("compiled again")
            return run(cmd, *args, **kwargs)
        _update_op.subprocess.run = no_compile
        assert _update_op.load_library() is not None
        print("loaded")
        """
    )
    env = dict(os.environ, **{_update_op.CACHE_ENV: str(fast["cache"]), _update_op.FAST_ENV: "1"})
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loaded" in proc.stdout
    after = fast["path"].stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert not [p for p in fast["cache"].iterdir() if p.name.startswith(".build-")]


CACHE_PROGRAM = """
import json
import numpy as np, tensorflow as tf, tf1_ema
from tf1_ema import _update_op
v1 = tf.compat.v1
v1.disable_eager_execution()
w = v1.Variable(np.arange(4, dtype=np.float32), name="w")
ema = tf1_ema.ExponentialMovingAverage(0.5)
op = ema.apply([w])
types = sorted({o.type for o in v1.get_default_graph().get_operations() if o.type.startswith("Tf1Ema")})
with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(w.assign([2.0, 3.0, 4.0, 5.0]))
    sess.run(op)
    print(json.dumps({"types": types, "shadow": sess.run(ema.average(w)).tolist()}))
"""


def _cache_with(fast, tmp_path, truncate_to=None):
    """A fresh cache directory holding a copy of the built library (and its checksum), optionally truncated."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in (fast["path"], _update_op._checksum_path(fast["path"])):
        shutil.copy(path, cache / path.name)
    if truncate_to is not None:
        with open(cache / fast["path"].name, "r+b") as f:
            f.truncate(truncate_to)
    return cache


def _run_cache_program(cache, tmp_path, compiler: bool):
    """CACHE_PROGRAM in a fresh process using ``cache``; with ``compiler=False`` no C++ compiler is on its PATH."""
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env.update({_update_op.CACHE_ENV: str(cache), _update_op.FAST_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    if not compiler:
        bare = tmp_path / "bin-without-compiler"
        bare.mkdir(exist_ok=True)
        env["PATH"] = str(bare)
    proc = subprocess.run([sys.executable, "-c", CACHE_PROGRAM], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT)  # fmt: skip
    return proc


def test_a_library_built_ahead_of_time_is_used_without_a_compiler(fast, tmp_path):
    """A verified library in the cache serves a machine with no C++ compiler (the key does not name one)."""
    proc = _run_cache_program(_cache_with(fast, tmp_path), tmp_path, compiler=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"types": ["Tf1EmaUpdateByName"], "shadow": [1.0, 2.0, 3.0, 4.0]}
    assert "tf1_ema:" not in proc.stderr


def test_a_truncated_cached_library_is_skipped_with_the_notice_without_a_compiler(fast, tmp_path):
    """A truncated library (its checksum no longer matches) is never loaded: one notice line, graph ops, TF1's values."""
    cache = _cache_with(fast, tmp_path, truncate_to=fast["path"].stat().st_size // 3)
    proc = _run_cache_program(cache, tmp_path, compiler=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"types": [], "shadow": [1.0, 2.0, 3.0, 4.0]}
    notices = [line for line in proc.stderr.splitlines() if line.startswith("tf1_ema:")]
    assert len(notices) == 1 and "damaged" in notices[0], proc.stderr[-2000:]


@pytest.mark.slow
def test_a_truncated_cached_library_is_rebuilt_with_a_compiler(fast, tmp_path):
    """With a compiler, a truncated cached library is compiled again, verified and used."""
    cache = _cache_with(fast, tmp_path, truncate_to=4096)
    proc = _run_cache_program(cache, tmp_path, compiler=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"types": ["Tf1EmaUpdateByName"], "shadow": [1.0, 2.0, 3.0, 4.0]}
    assert _update_op.verified(cache / fast["path"].name)


def test_importing_tf1_ema_starts_no_process(fast):
    """`import tf1_ema` (and its EMA and TF1 namespace) starts no subprocess, whether the library is cached or not."""
    script = textwrap.dedent(
        """
        import subprocess, sys
        import tensorflow
        started = []
        original = subprocess.Popen.__init__
        def record(self, args, *rest, **kwargs):
            started.append(args)
            return original(self, args, *rest, **kwargs)
        subprocess.Popen.__init__ = record
        import tf1_ema, tf1_ema.ema
        from tf1_ema import v1
        tf1_ema.ExponentialMovingAverage(0.9)
        print("started", started)
        """
    )
    for cache in (str(fast["cache"]), "/nonexistent/tf1_ema_cache"):
        env = dict(os.environ, **{_update_op.CACHE_ENV: cache, _update_op.FAST_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "started []" in proc.stdout, proc.stdout


def test_the_library_has_no_fused_multiply_add(fast):
    """The compiled update loops contain no FMA instruction, which would change the bits."""
    objdump = _update_op.shutil.which("objdump")
    if objdump is None or _update_op.platform.machine() != "x86_64":
        pytest.skip("needs objdump on x86-64")
    asm = subprocess.run([objdump, "-d", str(fast["path"])], capture_output=True, text=True).stdout
    assert "vfmadd" not in asm and "vfmsub" not in asm and "vfnmadd" not in asm and "vfnmsub" not in asm


# ---------------------------------------------------------------------------
# Graphs saved with the op
# ---------------------------------------------------------------------------

SAVE_META = """
import sys
import numpy as np
import tensorflow as tf
import tf1_ema
v1 = tf.compat.v1
v1.disable_eager_execution()
w = v1.get_variable("w", initializer=np.arange(3, dtype=np.float32), use_resource=True)
ema = tf1_ema.ExponentialMovingAverage(0.5)
op = ema.apply([w])
assert any(o.type.startswith("Tf1EmaUpdate") for o in v1.get_default_graph().get_operations())
v1.add_to_collection("ema_op", op)
with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(w.assign([2.0, 3.0, 4.0]))
    v1.train.Saver().save(sess, sys.argv[1])
"""

RESTORE_META = """
import sys
import tensorflow as tf
v1 = tf.compat.v1
v1.disable_eager_execution()
how = sys.argv[2]
if how == "tf1_ema imported":
    import tf1_ema.ema
    importer = v1.train.import_meta_graph
elif how == "tf1-ema namespace":
    from tf1_ema import v1 as tf1_namespace
    importer = tf1_namespace.namespace().train.import_meta_graph
else:
    importer = v1.train.import_meta_graph
try:
    saver = importer(sys.argv[1] + ".meta")
except Exception as e:
    print("ERROR", type(e).__name__, str(e).splitlines()[0])
    sys.exit(0)
with v1.Session() as sess:
    saver.restore(sess, sys.argv[1])
    sess.run(v1.get_collection("ema_op"))
    shadow = [v for v in v1.global_variables() if v.op.name == "w/ExponentialMovingAverage"][0]
    print("SHADOW", sess.run(shadow).tolist())
"""


def _python(script, *args, env):
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_a_saved_meta_graph_imports_everywhere(fast, tmp_path):
    """A MetaGraph saved from a session running the fused op imports and updates alike with or without tf1_ema."""
    env = dict(os.environ, **{_update_op.CACHE_ENV: str(fast["cache"]), _update_op.FAST_ENV: "1"},
               TF_CPP_MIN_LOG_LEVEL="3")
    prefix = tmp_path / "model"
    _python(SAVE_META, prefix, env=env)
    # The restored shadow went 0,1,2 -> (0+2)/2, (1+3)/2, (2+4)/2 in the imported update.
    # It was written with TensorFlow's ops for the update: bare TensorFlow runs it too.
    for how in ("tf1_ema imported", "tf1-ema namespace", "bare"):
        assert "SHADOW [1.0, 2.0, 3.0]" in _python(RESTORE_META, prefix, how, env=env), how


def test_with_library_loads_the_library_and_imports_again(fast):
    """An importer refused for an unregistered tf1_ema op is retried once the library is loaded; other errors pass."""
    calls = []

    def importer(graph):
        calls.append(graph)
        if len(calls) == 1:
            raise ValueError("NodeDef mentions Op type not registered 'Tf1EmaUpdateByName' in binary")
        return "imported"

    assert _update_op.with_library(importer)("g") == "imported" and calls == ["g", "g"]

    def broken(graph):
        raise ValueError("Op type not registered 'SomethingElse' in binary")

    with pytest.raises(ValueError, match="SomethingElse"):
        _update_op.with_library(broken)("g")


def test_the_tf1_namespace_loads_an_old_saved_model_holding_the_op(fast, tmp_path):
    """tf.saved_model.loader.load in the TF1 namespace is wrapped like import_meta_graph and loads an older tf1_ema's SavedModel."""
    from tf1_ema import v1 as tf1_namespace

    ns = tf1_namespace.namespace()
    assert ns.saved_model.loader.load.__wrapped__ is v1.saved_model.loader.load
    assert ns.saved_model.load.__wrapped__ is v1.saved_model.load
    export_dir = str(tmp_path / "old")
    with tf.Graph().as_default() as graph, v1.Session() as sess:
        w = v1.get_variable("w", initializer=[2.0, 4.0], use_resource=True)
        s = v1.get_variable("s", initializer=[0.0, 0.0], use_resource=True)
        update = _build.plain_updates([s], [w], 0.5)
        _update_op._fused_graphs.discard(graph)  # written as tf1_ema 0.x wrote it: with the op
        sess.run(v1.global_variables_initializer())
        v1.saved_model.simple_save(sess, export_dir, {"w": w.value()}, {"s": s.value()})
    with tf.Graph().as_default() as graph, v1.Session() as sess:
        ns.saved_model.loader.load(sess, [v1.saved_model.tag_constants.SERVING], export_dir)
        assert "Tf1EmaUpdateByName" in {op.type for op in graph.get_operations()}
        sess.run(update.name)
        shadow = [v for v in v1.global_variables() if v.op.name == "s"][0]
        assert sess.run(shadow).tolist() == [1.0, 2.0]


def test_with_library_says_how_to_avoid_the_op_when_it_cannot_be_built(no_library):
    """Without a compiler, importing a graph that needs the op raises a message naming g++ and TF1_EMA_FAST=0."""

    def importer(graph):
        raise ValueError("Op type not registered 'Tf1EmaUpdateRef' in binary")

    with pytest.raises(RuntimeError, match="g\\+\\+.*TF1_EMA_FAST=0"):
        _update_op.with_library(importer)("g")
