"""Tests for tf1_ema.swap: copying and swapping the averages in, and the averaged() guard."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import threading

import numpy as np
import pytest
import tensorflow as tf

from harness import assert_bits_equal
from tf1_ema import swap
from tf1_ema.ema import ExponentialMovingAverage

v1 = tf.compat.v1

DTYPES = ["float16", "bfloat16", "float32", "float64"]
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def np_dtype(name):
    return tf.as_dtype(name).as_numpy_dtype


def awkward_values(dtype, seed):
    """Random bit patterns of ``dtype`` plus -0.0, a subnormal-sized value and infinities."""
    dt = np.dtype(np_dtype(dtype))
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, np.iinfo(UINT[dt.itemsize]).max, size=12, dtype=UINT[dt.itemsize], endpoint=True)
    values = raw.view(dt).copy()
    values[:4] = np.array([-0.0, np.inf, -np.inf, 1e-40], dtype=np.float64).astype(dt)
    return values


def variable(value, name, use_resource=True, dtype=None):
    return v1.Variable(value, name=name, dtype=dtype, use_resource=use_resource)


def init(sess, variables):
    """Initializes primaries before shadows: TF1's ref-variable shadows read them (parity quirk)."""
    sess.run([v.initializer for v in variables])
    sess.run(v1.global_variables_initializer())


def trained_graph(use_resource=True):
    """Two variables, an EMA of them, and a train op that moves them and then updates the EMA."""
    w = variable([1.0, 2.0], "w", use_resource)
    b = variable([0.5], "b", use_resource)
    ema = ExponentialMovingAverage(0.5)
    step = tf.group(w.assign_add([1.0, 1.0]), b.assign_add([2.0]))
    with tf.control_dependencies([step]):
        train = ema.apply([w, b])
    return w, b, ema, train


def mixed_shadow(ema, var):
    """Gives ``var`` a float32 shadow, as a float32-shadow EMA would, with a value float16 cannot hold."""
    value = np.full(var.shape, np.float32(1.0) + np.float32(2.0**-20), np.float32)
    shadow = v1.Variable(value, name=var.op.name + "/Fp32Average")
    ema._averages[var.ref()] = shadow
    return shadow


# ---------------------------------------------------------------------------
# swap_op and copy_averages_op
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_swap_op_exchanges_bits_exactly(graph, dtype, use_resource):
    """swap_op exchanges variable and shadow bit for bit (NaN payloads, -0.0, inf), and a second run undoes it."""
    raw, avg = awkward_values(dtype, 1), awkward_values(dtype, 2)
    w = variable(raw, "w", use_resource)
    ema = ExponentialMovingAverage(0.9)
    ema.apply([w])
    shadow = ema.average(w)
    set_shadow = v1.assign(shadow, tf.constant(avg))
    op = swap.swap_op(ema)
    with v1.Session() as sess:
        init(sess, [w])
        sess.run(set_shadow)
        sess.run(op)
        got_w, got_s = sess.run([w, shadow])
        assert_bits_equal(avg, got_w)
        assert_bits_equal(raw, got_s)
        sess.run(op)
        got_w, got_s = sess.run([w, shadow])
        assert_bits_equal(raw, got_w)
        assert_bits_equal(avg, got_s)


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_copy_averages_op_copies_and_keeps_shadows(graph, use_resource):
    """copy_averages_op sets every variable to its shadow and leaves the shadows unchanged."""
    w, b, ema, train = trained_graph(use_resource)
    op = swap.copy_averages_op(ema)
    with v1.Session() as sess:
        init(sess, [w, b])
        sess.run(train)
        shadows = sess.run([ema.average(w), ema.average(b)])
        sess.run(op)
        got = sess.run([w, b, ema.average(w), ema.average(b)])
    for value, expected in zip(got, shadows + shadows):
        assert_bits_equal(expected, value)


def test_copy_averages_op_casts_a_shadow_of_another_dtype(graph):
    """A float32 shadow of a float16 variable is copied rounded to float16, as tf.cast rounds it."""
    w = variable(np.zeros(1, np.float16), "w")
    ema = ExponentialMovingAverage(0.9)
    ema.apply([w])
    shadow = mixed_shadow(ema, w)
    op = swap.copy_averages_op(ema)
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(op)
        got, avg = sess.run([w, shadow])
    assert_bits_equal(np.float16(avg), got)


def test_swap_op_refuses_a_shadow_of_another_dtype(graph):
    """swap_op raises TypeError naming the variable and both dtypes rather than round the average."""
    w = variable(np.zeros(1, np.float16), "w")
    ema = ExponentialMovingAverage(0.9)
    ema.apply([w])
    mixed_shadow(ema, w)
    with pytest.raises(TypeError, match=r"'w'.*float32.*float16.*averaged"):
        swap.swap_op(ema)


def test_ops_escape_enclosing_control_dependencies_and_name_scope(graph):
    """Ops built inside tf.control_dependencies([train]) and a name scope neither run train nor nest."""
    w, b, ema, train = trained_graph()
    with tf.control_dependencies([train]), tf.name_scope("outer"):
        ops = [swap.swap_op(ema), swap.copy_averages_op(ema), swap.swap_op(ema, name="again")]
    assert [op.name for op in ops] == [
        "ExponentialMovingAverage_swap",
        "ExponentialMovingAverage_copy_averages",
        "again",
    ]
    for op in ops:
        pending, seen = [op], set()
        while pending:
            node = pending.pop()
            if node.name not in seen:
                seen.add(node.name)
                pending += [t.op for t in node.inputs] + list(node.control_inputs)
        assert train.name not in seen


@pytest.mark.parametrize("build", [swap.swap_op, swap.copy_averages_op])
def test_ops_before_apply_raise(graph, build):
    """swap_op and copy_averages_op on an EMA without shadows tell the caller to call apply() first."""
    variable([1.0], "w")
    with pytest.raises(RuntimeError, match=r"apply\(var_list\) first"):
        build(ExponentialMovingAverage(0.9))


def test_ema_of_tensors_only_cannot_be_swapped(graph):
    """An EMA that averages only tensors has nothing to swap and says so."""
    ema = ExponentialMovingAverage(0.9)
    ema.apply([tf.constant([1.0]) * 2.0])
    with pytest.raises(RuntimeError, match="averages no variable"):
        swap.swap_op(ema)


def test_bad_var_lists_raise(graph):
    """A tensor, a variable without a shadow, or an empty list in var_list raise clear errors."""
    w, b, ema, _ = trained_graph()
    other = variable([3.0], "other")
    with pytest.raises(TypeError, match="Only variables"):
        swap.swap_op(ema, [w, tf.constant([1.0])])
    with pytest.raises(ValueError, match=r"'other' has no moving average.*\['b', 'w'\]"):
        swap.copy_averages_op(ema, [other])
    with pytest.raises(ValueError, match="empty"):
        swap.swap_op(ema, [])


def test_duplicates_in_var_list_swap_once(graph):
    """A variable listed twice is swapped once, not swapped and swapped back."""
    w, b, ema, train = trained_graph()
    op = swap.swap_op(ema, [w, w])
    with v1.Session() as sess:
        init(sess, [w, b])
        sess.run(train)
        avg = sess.run(ema.average(w))
        sess.run(op)
        assert_bits_equal(avg, sess.run(w))


def test_ops_in_eager_mode_raise():
    """Outside a graph the module refuses to build ops instead of swapping immediately."""
    w = tf.Variable([1.0])
    ema = ExponentialMovingAverage(0.9)
    ema.apply([w])
    with pytest.raises(RuntimeError, match="graph"):
        swap.swap_op(ema)


# ---------------------------------------------------------------------------
# averaged()
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_averaged_swaps_in_and_back_exactly(graph, use_resource):
    """Inside averaged() the variables hold the shadows; afterwards both are bit-identical to before."""
    w, b, ema, train = trained_graph(use_resource)
    fetch = [w, b, ema.average(w), ema.average(b)]
    with v1.Session() as sess:
        init(sess, [w, b])
        sess.run(train)
        sess.run(train)
        before = sess.run(fetch)
        with swap.averaged(ema, sess) as swapped:
            inside = sess.run(fetch)
        after = sess.run(fetch)
    assert [v.op.name for v in swapped] == ["w", "b"]
    for got, expected in zip(inside, before[2:] + before[:2]):
        assert_bits_equal(expected, got)
    for got, expected in zip(after, before):
        assert_bits_equal(expected, got)


def test_averaged_swaps_back_when_the_block_raises(graph):
    """An exception inside averaged() propagates, and the raw values are back when it does."""
    w, b, ema, train = trained_graph()
    with v1.Session() as sess:
        init(sess, [w, b])
        sess.run(train)
        before = sess.run([w, b])
        with pytest.raises(KeyError, match="boom"):
            with swap.averaged(ema, sess):
                raise KeyError("boom")
        after = sess.run([w, b])
        sess.run(train)  # the guard is gone too
        assert sess not in swap._guards and "run" not in vars(sess)
    for got, expected in zip(after, before):
        assert_bits_equal(expected, got)


def test_averaged_var_list_swaps_only_those(graph):
    """averaged(var_list=[w]) swaps w and leaves b, which the guard then does not protect, alone."""
    w, b, ema, train = trained_graph()
    with v1.Session() as sess:
        init(sess, [w, b])
        sess.run(train)
        raw_b, avg_w = sess.run([b, ema.average(w)])
        with swap.averaged(ema, sess, [w]):
            assert_bits_equal(avg_w, sess.run(w))
            assert_bits_equal(raw_b, sess.run(b))
            sess.run(b.assign_add([1.0]))


def test_averaged_before_apply_raises(graph):
    """averaged() on an EMA without shadows says to call apply() first and leaves run unwrapped."""
    variable([1.0], "w")
    with v1.Session() as sess:
        with pytest.raises(RuntimeError, match=r"apply\(var_list\) first"):
            with swap.averaged(ExponentialMovingAverage(0.9), sess):
                pass
        assert "run" not in vars(sess)


def test_nested_averaged_raises_and_the_outer_one_still_restores(graph):
    """A nested averaged() of the same EMA raises; the outer block keeps the averages in and restores on exit."""
    w, b, ema, train = trained_graph()
    with v1.Session() as sess:
        init(sess, [w, b])
        sess.run(train)
        raw, avg = sess.run([w, ema.average(w)])
        with swap.averaged(ema, sess):
            with pytest.raises(RuntimeError, match="already holds a moving average.*nested"):
                with swap.averaged(ema, sess, [w]):
                    pass
            assert_bits_equal(avg, sess.run(w))
        assert_bits_equal(raw, sess.run(w))
        assert "run" not in vars(sess)


def test_second_thread_cannot_swap_the_same_variables(graph):
    """A concurrent averaged() from another thread on the same session and EMA raises."""
    w, b, ema, train = trained_graph()
    errors = []

    def other():
        try:
            with swap.averaged(ema, sess):
                pass
        except RuntimeError as e:
            errors.append(e)

    with v1.Session() as sess:
        init(sess, [w, b])
        with swap.averaged(ema, sess):
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
    assert len(errors) == 1 and "already holds" in str(errors[0])


def test_overlapping_emas_raise_and_disjoint_ones_nest(graph):
    """Two EMAs of the same variable cannot both be swapped in; EMAs of different variables can."""
    w, b, ema, train = trained_graph()
    slow = ExponentialMovingAverage(0.99, name="Slow")
    slow.apply([w])
    other_var = variable([7.0], "c")
    other = ExponentialMovingAverage(0.9, name="Other")
    other.apply([other_var])
    with v1.Session() as sess:
        init(sess, [w, b, other_var])
        with swap.averaged(ema, sess):
            with pytest.raises(RuntimeError, match="'w'.*'ExponentialMovingAverage'"):
                with swap.averaged(slow, sess):
                    pass
            with swap.averaged(other, sess):
                with pytest.raises(RuntimeError, match="writes the moving average '[wb]/Exp"):
                    sess.run(train)
                with pytest.raises(RuntimeError, match="'c/Other'"):
                    sess.run(other.apply([other_var]))
            with pytest.raises(RuntimeError, match="'[wb]/Exp"):
                sess.run(train)
        assert "run" not in vars(sess)


def test_guard_blocks_the_update_in_every_fetch_form(graph):
    """While swapped, the EMA update and a train op depending on it raise RuntimeError, however fetched."""
    w, b, ema, train = trained_graph()
    update = ema.apply([w, b])
    with v1.Session() as sess:
        init(sess, [w, b])
        with swap.averaged(ema, sess):
            for fetch in (update, train, update.name, [w, {"k": (train,)}]):
                with pytest.raises(RuntimeError, match=r"averaged\(\.\.\.\).*runs op '.*AssignMovingAvg"):
                    sess.run(fetch)
            with pytest.raises(RuntimeError, match="average the averages.*after the `with` block"):
                sess.run(fetches=update)


def test_guard_blocks_training_and_initializing(graph):
    """While swapped, an optimizer step, an initializer and a restore of a swapped variable raise RuntimeError."""
    w = variable([1.0, 2.0], "w")
    loss = tf.reduce_sum(tf.square(w))
    ema = ExponentialMovingAverage(0.9)
    ema.apply([w])
    sgd = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    saver = v1.train.Saver()
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        with swap.averaged(ema, sess):
            with pytest.raises(RuntimeError, match="writes 'w' while it holds its moving average"):
                sess.run(sgd)
            with pytest.raises(RuntimeError, match="writes"):
                sess.run(v1.global_variables_initializer())
            with pytest.raises(RuntimeError, match="writes"):
                sess.run(saver.saver_def.restore_op_name, {saver.saver_def.filename_tensor_name: "x"})
            sess.run(loss)


def test_guard_allows_evaluation_and_respects_feeds(graph):
    """Reads run normally while swapped, and a dependency on the update cut by a feed is not one."""
    w, b, ema, train = trained_graph()
    after_train = tf.identity(tf.constant(1.0), name="after")
    with tf.control_dependencies([train]):
        gated = tf.identity(w) * 1.0
    evaluation = tf.reduce_sum(w) + tf.reduce_sum(b)
    with v1.Session() as sess:
        init(sess, [w, b])
        with swap.averaged(ema, sess):
            sess.run([evaluation, after_train, w, ema.average(w)])
            sess.run(tf.reduce_sum(gated) * 2.0, feed_dict={gated: [1.0, 1.0]})
            with pytest.raises(RuntimeError):
                sess.run(tf.reduce_sum(gated) * 3.0)


def test_guard_is_per_session(graph):
    """Swapping in one session neither swaps nor guards another session of the same graph."""
    w, b, ema, train = trained_graph()
    with v1.Session() as a, v1.Session() as other:
        init(a, [w, b])
        init(other, [w, b])
        a.run(train)
        with swap.averaged(ema, a):
            other.run(train)
            assert "run" not in vars(other)


def test_averaged_leaves_the_apply_graph_untouched(graph):
    """averaged() only adds ops under '<ema name>_averaged/' and changes no op that apply() built."""
    w, b, ema, train = trained_graph()
    with v1.Session() as sess:
        init(sess, [w, b])
        before = {op.name: op.node_def.SerializeToString(deterministic=True) for op in graph.get_operations()}
        with swap.averaged(ema, sess):
            pass
        version = graph.version
        with swap.averaged(ema, sess):  # cached: no second set of ops
            pass
        assert graph.version == version
    after = {op.name: op.node_def.SerializeToString(deterministic=True) for op in graph.get_operations()}
    assert {n: after[n] for n in before} == before
    assert all(n.startswith("ExponentialMovingAverage_averaged/") for n in set(after) - set(before))


def test_averaged_with_a_shadow_of_another_dtype_keeps_the_raw_value_on_the_host(graph):
    """A float16 variable with a float32 shadow gets the rounded average, then its exact raw value back."""
    raw = awkward_values("float16", 3)[4:]
    w = variable(raw, "w")
    b = variable([0.5], "b")
    ema = ExponentialMovingAverage(0.9)
    ema.apply([w, b])
    shadow = v1.Variable(np.linspace(-1, 1, raw.size, dtype=np.float32) / 3, name="w/Fp32Average")
    ema._averages[w.ref()] = shadow
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        avg = sess.run(shadow)
        with swap.averaged(ema, sess):
            assert_bits_equal(avg.astype(np.float16), sess.run(w))
            with pytest.raises(RuntimeError, match="'w'"):
                sess.run(w.assign(tf.zeros_like(w)))
        assert_bits_equal(raw, sess.run(w))
        assert_bits_equal(avg, sess.run(shadow))


def test_finalized_graph_needs_prepare_averaged(graph):
    """With the graph finalized, averaged() points to prepare_averaged(), which makes it work."""
    w, b, ema, train = trained_graph()
    other = ExponentialMovingAverage(0.9, name="Other")
    other.apply([w])
    swap.prepare_averaged(ema)
    init_ops = [[w.initializer, b.initializer], v1.global_variables_initializer()]
    graph.finalize()
    with v1.Session() as sess:
        for op in init_ops:
            sess.run(op)
        with pytest.raises(RuntimeError, match="prepare_averaged"):
            with swap.averaged(other, sess):
                pass
        with swap.averaged(ema, sess):
            sess.run(w)


def test_averaged_rejects_what_is_not_a_session_of_the_graph(graph):
    """averaged() needs a session, and one whose graph holds the variables."""
    w, b, ema, train = trained_graph()
    with pytest.raises(TypeError, match="Session"):
        with swap.averaged(ema, object()):
            pass
    with tf.Graph().as_default():
        variable([1.0], "w")
        with v1.Session() as other_sess:
            with pytest.raises(RuntimeError, match="session's graph"):
                with swap.averaged(ema, other_sess):
                    pass
            with pytest.raises(ValueError, match="session's graph"):
                with swap.averaged(ema, other_sess, [w]):
                    pass


HAS_SHADOW_DTYPE = "shadow_dtype" in __import__("inspect").signature(ExponentialMovingAverage).parameters


@pytest.mark.skipif(not HAS_SHADOW_DTYPE, reason="this ExponentialMovingAverage has no shadow_dtype")
def test_float32_shadows_from_shadow_dtype(graph):
    """With shadow_dtype=float32, swap_op refuses, copy rounds, and averaged() restores bfloat16 bits exactly."""
    raw = awkward_values("bfloat16", 5)[4:]
    w = variable(raw, "w")
    ema = ExponentialMovingAverage(0.5, shadow_dtype=tf.float32)
    with tf.control_dependencies([w.assign(w * 0.5 + 1.0)]):
        train = ema.apply([w])
    assert ema.average(w).dtype.base_dtype == tf.float32
    with pytest.raises(TypeError, match="float32.*bfloat16"):
        swap.swap_op(ema)
    copy = swap.copy_averages_op(ema)
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(train)
        sess.run(w.assign(raw))
        avg = sess.run(ema.average(w))
        with swap.averaged(ema, sess):
            assert_bits_equal(avg.astype(np_dtype("bfloat16")), sess.run(w))
            with pytest.raises(RuntimeError, match="writes the moving average 'w/ExponentialMovingAverage'"):
                sess.run(train)
        assert_bits_equal(raw, sess.run(w))
        assert_bits_equal(avg, sess.run(ema.average(w)))
        sess.run(copy)
        assert_bits_equal(avg.astype(np_dtype("bfloat16")), sess.run(w))
