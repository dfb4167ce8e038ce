"""Our TensorFlow EMA against the NumPy oracle, over one parametrized grid.

Every case of the grid (decay kind × num_updates × zero_debias × dtype × shape ×
Variable/Tensor) is built into ONE graph and run through the same sequence of
updates in ONE session; each parametrized test then checks one case's shadows,
step by step, against ``tf1_ema._math.ema_sequence``.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings

import strategies as S
from harness import assert_bits_equal
from tf1_ema import _math
from tf1_ema import ExponentialMovingAverage

v1 = tf.compat.v1

STEPS = 20
DECAY_KINDS = ("float", "variable", "tensor")
NUM_UPDATES = ("none", "step")
ZERO_DEBIAS = (False, True)
KINDS = ("variable", "tensor")

# The step counter at each update: 0, 7, 14, ...: the warm-up ratio (1 + n) / (10 + n)
# climbs from 0.1 to 0.93 and crosses the case's decay (drawn from [0.5, 0.95]).
STEP_COUNTERS = [7 * i for i in range(STEPS)]


def _case_id(case):
    """``tensor-float16-vector-decay_variable-step-debias``."""
    decay_kind, num_updates, zero_debias, dtype, shape, kind = case
    return "-".join(
        [
            kind,
            dtype,
            S.SHAPE_IDS[shape],
            "decay_" + decay_kind,
            "step" if num_updates == "step" else "no_step",
            "debias" if zero_debias else "biased",
        ]
    )


CASES = list(itertools.product(DECAY_KINDS, NUM_UPDATES, ZERO_DEBIAS, S.FLOAT_DTYPES, S.SHAPES, KINDS))
CASE_IDS = [_case_id(c) for c in CASES]


def tolerance(dtype: str, debiased: bool, decay: float) -> float:
    """Relative tolerance for one case: exact, except for the ulp where TF's pow meets np.power.

    The plain update is a chain of correctly rounded IEEE operations, so TF and
    NumPy agree bit for bit (float16 and bfloat16 included). The debias divisor
    1 - decay ** t goes through ``pow``, whose last bit is library-dependent; an
    ulp of decay ** t becomes a relative error of up to decay / (1 - decay) ulps
    in the divisor and so in the shadow. Two such ulps are allowed.
    """
    if not debiased:
        return 0.0
    return 2 * S.eps(dtype) * max(1.0, decay / (1.0 - decay))


@pytest.fixture(scope="module")
def grid():
    """Runs every case through STEPS updates in one graph; returns {case: (initial, values, decay, shadows)}."""
    rng = np.random.default_rng(20240611)
    specs = {}
    with tf.Graph().as_default() as g:
        step = v1.Variable(0, dtype=tf.int64, name="step", trainable=False)
        step_in = v1.placeholder(tf.int64, [], name="step_in")
        assigns = [v1.assign(step, step_in)]
        update_ops = []
        for i, case in enumerate(CASES):
            decay_kind, num_updates, zero_debias, dtype, shape, kind = case
            tf_dtype = tf.as_dtype(_math.as_dtype(dtype))
            decay_value = float(rng.uniform(0.5, 0.95))
            decay = {
                "float": decay_value,
                "variable": v1.Variable(decay_value, name="decay%d" % i, trainable=False),
                "tensor": tf.constant(decay_value, tf.float32, name="decay%d" % i),
            }[decay_kind]
            values = S.random_sequence(1000 + i, dtype, shape, STEPS)
            feed = v1.placeholder(tf_dtype, shape, name="value%d" % i)
            if kind == "variable":
                initial = S.random_sequence(5000 + i, dtype, shape, 1)[0]
                var = v1.Variable(initial, name="var%d" % i)
                assigns.append(v1.assign(var, feed))
                averaged = var
            else:
                initial = np.zeros(shape, _math.as_dtype(dtype))
                averaged = feed
            ema = ExponentialMovingAverage(
                decay, num_updates=step if num_updates == "step" else None, zero_debias=zero_debias
            )
            update_ops.append(ema.apply([averaged]))
            specs[case] = dict(feed=feed, kind=kind, shadow=ema.average(averaged), initial=initial, values=values,
                               decay=decay_value)
        update = tf.group(*update_ops)
        shadows = {case: spec["shadow"] for case, spec in specs.items()}
        observed = {case: [] for case in CASES}
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            for t in range(STEPS):
                feed_dict = {spec["feed"]: spec["values"][t] for spec in specs.values()}
                feed_dict[step_in] = STEP_COUNTERS[t]
                sess.run(assigns, feed_dict)
                tensors = {spec["feed"]: spec["values"][t] for spec in specs.values() if spec["kind"] == "tensor"}
                sess.run(update, tensors)
                for case, value in sess.run(shadows).items():
                    observed[case].append(value)
    return {
        case: (spec["initial"], spec["values"], spec["decay"], np.stack(observed[case]))
        for case, spec in specs.items()
    }


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_shadows_follow_the_oracle(grid, case):
    """After each of 20 random updates the shadow equals ema_sequence's, to the dtype's tolerance."""
    decay_kind, num_updates, zero_debias, dtype, shape, kind = case
    initial, values, decay, shadows = grid[case]
    debiased = zero_debias and kind == "tensor"  # TF1 never debiases a Variable's shadow.
    expected = _math.ema_sequence(
        initial, list(values), decay, num_updates=STEP_COUNTERS if num_updates == "step" else None,
        zero_debias=debiased,
    )
    assert shadows.dtype == expected.dtype
    assert shadows.shape == (STEPS,) + shape
    rtol = tolerance(dtype, debiased, decay)
    if rtol == 0.0:
        assert_bits_equal(expected, shadows)
    else:
        np.testing.assert_allclose(shadows.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=0)


# ---------------------------------------------------------------------------
# Corners of the grid that need their own graph
# ---------------------------------------------------------------------------


def test_float64_variable_sees_the_float32_one_minus_decay(session):
    """A float64 shadow moving from 0 towards 1 by decay 0.99 lands on 0.009999990463256836, not 0.01."""
    var = v1.Variable(np.float64(0.0), name="w")
    ema = ExponentialMovingAverage(0.99)
    update = ema.apply([var])
    session.run(v1.global_variables_initializer())
    session.run(v1.assign(var, 1.0))
    session.run(update)
    got = session.run(ema.average(var))
    assert got == _math.one_minus_decay(0.99, "float64") == np.float64(np.float32(1) - np.float32(0.99))
    assert got != 1.0 - 0.99


@pytest.mark.parametrize(
    "num_updates",
    [0, 1, 89, 16_777_207, 16_777_208, 16_777_216, 2**31 - 1],
    ids=["n0", "n1", "n89", "n2to24minus9", "n2to24minus8", "n2to24", "int32max"],
)
def test_warmup_ratio_is_float32_like_the_oracle_for_large_step_counters(session, num_updates):
    """With decay=1 the first update from 0 towards 1 exposes 1 - min(1, (1+n)/(10+n)) in float32, even past 2**24."""
    var = v1.Variable(np.float32(0.0), name="w")
    step = v1.Variable(num_updates, dtype=tf.int64, name="step", trainable=False)
    ema = ExponentialMovingAverage(1.0, num_updates=step)
    update = ema.apply([var])
    session.run(v1.global_variables_initializer())
    session.run(v1.assign(var, 1.0))
    session.run(update)
    expected = _math.ema_sequence(np.float32(0.0), [np.float32(1.0)], 1.0, num_updates=[num_updates])
    assert_bits_equal(expected[0], session.run(ema.average(var)))


def test_float16_debias_counter_saturates_at_2048_like_the_oracle(session):
    """A float16 local_step stops at 2048 in TF too, and the debiased shadow keeps matching the oracle."""
    tensor = v1.placeholder(tf.float16, [2], name="t")
    ema = ExponentialMovingAverage(0.999, zero_debias=True)
    update = ema.apply([tensor])
    local_step = [v for v in v1.global_variables() if v.op.name.endswith("local_step")][0]
    values = S.random_sequence(7, "float16", (2,), 2100, scale=1.0)
    expected = _math.ema_sequence(np.zeros(2, np.float16), list(values), 0.999, zero_debias=True)
    session.run(v1.global_variables_initializer())
    got = []
    for value in values:
        session.run(update, {tensor: value})
        got.append(session.run(ema.average(tensor)))
    assert session.run(local_step) == np.float16(2048)
    assert_bits_equal(expected, np.stack(got))


@settings(max_examples=25, deadline=None)
@given(S.ema_problems(max_steps=8))
def test_random_problems_follow_the_oracle(problem):
    """For random dtype, shape, decay, step counters and values, a Variable's shadow equals the oracle's exactly."""
    dtype, shape = problem["dtype"], problem["shape"]
    with tf.Graph().as_default() as g:
        var = v1.Variable(problem["initial"], name="w")
        value = v1.placeholder(var.dtype, shape)
        step_in = v1.placeholder(tf.int64, [])
        step = v1.Variable(0, dtype=tf.int64, trainable=False, name="step")
        with_step = problem["num_updates"] is not None
        ema = ExponentialMovingAverage(problem["decay"], num_updates=step if with_step else None)
        update = ema.apply([var])
        assign = [v1.assign(var, value), v1.assign(step, step_in)]
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            got = []
            for i, x in enumerate(problem["values"]):
                sess.run(assign, {value: x, step_in: problem["num_updates"][i] if with_step else 0})
                sess.run(update)
                got.append(sess.run(ema.average(var)))
    expected = _math.ema_sequence(problem["initial"], problem["values"], problem["decay"], problem["num_updates"])
    assert_bits_equal(expected, np.stack(got))


# A value whose update by decay 0.5 from zero lands in the dtype's subnormal range.
SUBNORMAL_INPUTS = {"float32": 2e-38, "float64": 3e-308, "bfloat16": 2e-38, "float16": 6e-5}


def _first_update(session, dtype, value):
    """Our shadow after one decay-0.5 update of a zero variable towards ``value``."""
    var = v1.Variable(np.zeros((), _math.as_dtype(dtype)), name="w")
    ema = ExponentialMovingAverage(0.5)
    update = ema.apply([var])
    session.run(v1.global_variables_initializer())
    session.run(v1.assign(var, np.asarray(value, _math.as_dtype(dtype))))
    session.run(update)
    return session.run(ema.average(var))


def test_float16_subnormal_results_follow_the_oracle(session):
    """float16 results below 2 ** -14 stay subnormal in TF (computed in float32, then rounded), as in the oracle."""
    value = np.float16(SUBNORMAL_INPUTS["float16"])
    expected = _math.ema_sequence(np.float16(0), [value], 0.5)[0]
    assert 0 < expected < np.finfo(np.float16).tiny
    assert_bits_equal(expected, _first_update(session, "float16", value))


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_subnormal_results_follow_the_oracle(session, dtype):
    """A result in the subnormal range is flushed to zero by TF, as in the oracle."""
    value = _math.as_dtype(dtype).type(SUBNORMAL_INPUTS[dtype])
    expected = _math.ema_sequence(np.zeros((), _math.as_dtype(dtype)), [value], 0.5)[0]
    assert_bits_equal(expected, _first_update(session, dtype, value))
