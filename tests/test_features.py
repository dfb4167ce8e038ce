"""The opt-in features beyond TF1: float32 shadows, schedules, half-life, per-variable rules.

Each feature is held to the NumPy oracle (``tf1_ema._math``) in the same way
``test_ema_oracle.py`` holds the TF1 path: one graph, one session, bit for bit
except where TensorFlow's ``pow`` meets NumPy's (the zero-debias divisor).
Left at their defaults, the new arguments must change nothing in the graph;
the first section pins that. Distribution is in ``test_distribute.py``.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies as S
from harness import STOCK, assert_bits_equal, fresh_graph, normalized_graph_def, reference_graph
from tf1_ema import ExponentialMovingAverage, _math

v1 = tf.compat.v1

NEW_ARGS = ("shadow_dtype", "half_life", "step", "start_step", "update_every", "inv_gamma", "power", "min_decay", "rules")


def build_graph(ema_class, dtypes=("float32", "float16", "float64"), **kwargs):
    """A graph with one variable per dtype, a tensor, and two apply() calls; returns it normalized."""
    with fresh_graph() as g:
        step = v1.train.get_or_create_global_step()
        variables = [v1.Variable(np.ones(2, _math.as_dtype(d)), name="w_" + d) for d in dtypes]
        ref = v1.Variable(1.0, use_resource=False, name="ref")
        tensor = tf.identity(variables[0] * 2, name="t")
        ema = ema_class(0.99, num_updates=step, zero_debias=True, **kwargs)
        ema.apply(variables + [ref, tensor])
        ema.apply(variables[:1])
        ema.variables_to_restore()
    return normalized_graph_def(g)


# ---------------------------------------------------------------------------
# Defaults change nothing
# ---------------------------------------------------------------------------


def test_explicit_default_arguments_build_the_reference_graph():
    """Every new keyword at its default (None) builds the graph of no keywords; TF1_EMA_FAST=0 TF1's, op for op."""
    with_defaults = lambda *a, **k: ExponentialMovingAverage(*a, **k, **{n: None for n in NEW_ARGS})  # noqa: E731
    assert build_graph(with_defaults) == build_graph(ExponentialMovingAverage)
    with reference_graph():
        assert build_graph(with_defaults) == build_graph(STOCK)


def test_float32_shadow_dtype_leaves_float32_and_float64_variables_alone():
    """shadow_dtype=tf.float32 changes nothing in a graph without float16/bfloat16 variables."""
    dtypes = ("float32", "float64")
    ours = build_graph(ExponentialMovingAverage, dtypes, shadow_dtype=tf.float32)
    assert ours == build_graph(ExponentialMovingAverage, dtypes)
    with reference_graph():
        ours = build_graph(ExponentialMovingAverage, dtypes, shadow_dtype=tf.float32)
        assert ours == build_graph(STOCK, dtypes)


def test_new_arguments_are_keyword_only():
    """The four TF1 arguments stay positional; a fifth positional argument is a TypeError."""
    with pytest.raises(TypeError):
        ExponentialMovingAverage(0.9, None, False, "ema", tf.float32)


# ---------------------------------------------------------------------------
# The oracle of the schedules (no TensorFlow involved)
# ---------------------------------------------------------------------------


def test_schedule_phase_and_steps_per_update_on_a_small_timeline():
    """start_step=3, update_every=2: copy until 3, then update on even steps standing for 1, 2, 2... steps."""
    phases = [_math.schedule_phase(s, start_step=3, update_every=2) for s in range(9)]
    assert phases == ["copy"] * 3 + ["update" if s % 2 == 0 else "hold" for s in range(3, 9)]
    assert [_math.steps_per_update(s, 3, 2) for s in (4, 6, 8)] == [2, 2, 2]
    assert _math.steps_per_update(3, 3, 4) == 1  # the first update after copies stands for one step
    assert _math.steps_per_update(4, None, 4) == 4  # the initial value counts as a copy at step -1


def test_power_warmup_closed_forms():
    """1 - (1 + s / inv_gamma) ** -power: 0 at step 0, 7/8 at step 7 for power 1, clipped to [min, max]."""
    assert _math.power_warmup_decay(0, 1.0, 2 / 3) == 0.0
    assert _math.power_warmup_decay(7, 1.0, 1.0) == np.float32(0.875)
    assert _math.power_warmup_decay(14, 2.0, 1.0) == np.float32(0.875)
    assert _math.power_warmup_decay(10**9, 1.0, 1.0, max_decay=0.999) == np.float32(0.999)
    assert _math.power_warmup_decay(0, 1.0, 1.0, min_decay=0.25) == np.float32(0.25)
    assert _math.power_warmup_decay(-5, 1.0, 1.0) == 0.0  # steps before the start count as 0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.floats(0.1, 1e4),
    st.floats(0.1, 2.0),
    S.decays(0.0, 0.5),
    S.decays(0.5, 1.0),
)
def test_power_warmup_stays_in_its_clip_and_never_decreases(s1, s2, inv_gamma, power, min_decay, max_decay):
    """power_warmup_decay lies in [min_decay, max_decay] (in float32) and is non-decreasing in the step."""
    lo, hi = sorted((s1, s2))
    d_lo = _math.power_warmup_decay(lo, inv_gamma, power, min_decay, max_decay)
    d_hi = _math.power_warmup_decay(hi, inv_gamma, power, min_decay, max_decay)
    assert np.float32(min_decay) <= d_lo <= d_hi <= np.float32(max_decay)


def test_compensated_decay_closed_forms():
    """decay ** k in float64 rounded once: k=1 is the float32 decay, 0.5 ** 3 = 0.125."""
    assert _math.compensated_decay(0.9, 1) == np.float32(0.9)
    assert _math.compensated_decay(0.5, 3) == np.float32(0.125)
    assert _math.compensated_decay(0.999, 1000) == np.float32(np.float64(np.float32(0.999)) ** 1000)


@settings(max_examples=100, deadline=None)
@given(S.decays(0.5, 0.999), st.integers(1, 8), st.integers(1, 6), st.data())
def test_update_every_k_with_decay_to_the_k_equals_k_single_steps(decay, k, periods, data):
    """For a value that changes only every k steps, one update with decay ** k = k updates with decay (float32 rounding)."""
    values = [data.draw(S.values("float32")) for _ in range(periods)]
    every_step = _math.ema_sequence(np.float32(0.0), [v for v in values for _ in range(k)], decay)[k - 1 :: k]
    steps = list(range(k, k * periods + 1, k))
    compensated = _math.ema_sequence(np.float32(0.0), values, decay, steps=steps, update_every=k)
    scale = max(1.0, float(np.max(np.abs(values))))
    np.testing.assert_allclose(compensated, every_step, rtol=0, atol=64 * k * periods * S.eps("float32") * scale)


def test_scheduled_decay_composes_in_the_documented_order():
    """TF1 warm-up, then power warm-up capped by it, then the floor, then decay ** k."""
    # TF1 warm-up at n=0 caps at 0.1; the power warm-up at s'=7 (0.875) is capped to 0.1; k=2 squares it.
    got = _math.scheduled_decay(0.99, 10, 0, start_step=3, update_every=2, inv_gamma=1.0, power=1.0)
    assert got == _math.compensated_decay(np.float32(0.1), 2)
    # The floor lifts the warmed-up decay, before compensation.
    got = _math.scheduled_decay(0.99, 0, inv_gamma=1.0, power=1.0, min_decay=0.5)
    assert got == np.float32(0.5)
    assert _math.scheduled_decay(0.99, 0, 0, min_decay=0.5) == np.float32(0.5)


def test_copy_phase_in_the_oracle_is_an_exact_copy():
    """Before start_step the oracle's shadow is the value itself, even where shadow - (shadow - value) would round."""
    values = [np.float32(1e-10), np.float32(3.0)]
    got = _math.ema_sequence(np.float32(1.0), values, 0.0, steps=[0, 1], start_step=5)
    assert_bits_equal(np.asarray(values), got)
    assert _math.ema_sequence(np.float32(1.0), values[:1], 0.0)[0] != values[0]  # why copy is not decay 0


# ---------------------------------------------------------------------------
# Our EMA against the oracle: one graph, every schedule × every kind of shadow
# ---------------------------------------------------------------------------

STEPS = 24

# name -> (constructor kwargs, oracle kwargs); "STEP", "NU" and "VAR" stand for the step counter (0, 1, 2...),
# a num_updates counter (0, 7, 14...) and a float32 variable holding the decay.
SCHEDULES = {
    "start": (dict(step="STEP", start_step=5), dict(start_step=5)),
    "every": (dict(step="STEP", update_every=3), dict(update_every=3)),
    "start_every": (dict(step="STEP", start_step=4, update_every=3), dict(start_step=4, update_every=3)),
    "power": (dict(step="STEP", inv_gamma=1.0, power=2 / 3), dict(inv_gamma=1.0, power=2 / 3)),
    "power_floor_tf1": (
        dict(step="STEP", num_updates="NU", inv_gamma=2.0, power=0.75, min_decay=0.3),
        dict(num_updates="NU", inv_gamma=2.0, power=0.75, min_decay=0.3),
    ),
    "half_life": (dict(half_life=4.0), dict()),
    "all": (
        dict(step="STEP", num_updates="NU", start_step=3, update_every=4, inv_gamma=1.0, power=2 / 3, min_decay=0.1),
        dict(num_updates="NU", start_step=3, update_every=4, inv_gamma=1.0, power=2 / 3, min_decay=0.1),
    ),
    "num_updates_as_step": (
        dict(num_updates="STEP", start_step=2, update_every=2),
        dict(num_updates="STEP", start_step=2, update_every=2),
    ),
    "rule_decay": (dict(step="STEP", update_every=2, rules=[(".*", 0.7)]), dict(update_every=2, decay=0.7)),
    "variable_decay": (dict(step="STEP", update_every=2, inv_gamma=1.0, power=1.0, decay="VAR"), dict(update_every=2, inv_gamma=1.0, power=1.0)),
}

# name -> (variable dtype, shadow_dtype, variable or tensor, zero_debias)
KINDS = {
    "float32_variable": ("float32", None, "variable", False),
    "float64_variable": ("float64", None, "variable", False),
    "float16_variable_float32_shadow": ("float16", tf.float32, "variable", False),
    "bfloat16_variable_float32_shadow": ("bfloat16", tf.float32, "variable", False),
    "float16_variable_float64_shadow": ("float16", tf.float64, "variable", False),
    "float32_tensor_debiased": ("float32", None, "tensor", True),
    "float16_tensor_debiased_float32_shadow": ("float16", tf.float32, "tensor", True),
}

DECAY = 0.9
STEP_VALUES = list(range(STEPS))
NU_VALUES = [7 * s for s in range(STEPS)]
GRID = [(s, k) for s in SCHEDULES for k in KINDS]


@pytest.fixture(scope="module")
def schedule_grid():
    """Runs every (schedule, kind) case through STEPS updates in one graph; returns {case: (initial, values, shadows)}."""
    specs = {}
    with tf.Graph().as_default() as g:
        step = v1.Variable(0, dtype=tf.int64, name="step", trainable=False)
        nu = v1.Variable(0, dtype=tf.int64, name="nu", trainable=False)
        decay_var = v1.Variable(DECAY, name="decay_var", trainable=False)
        step_in = v1.placeholder(tf.int64, [])
        counters = [v1.assign(step, step_in), v1.assign(nu, 7 * step_in)]
        assigns, updates = [], []
        for i, (schedule, kind) in enumerate(GRID):
            kwargs, _ = SCHEDULES[schedule]
            dtype, shadow_dtype, source, zero_debias = KINDS[kind]
            values = S.random_sequence(100 + i, dtype, (3,), STEPS)
            feed = v1.placeholder(tf.as_dtype(values.dtype), (3,))
            if source == "variable":
                initial = S.random_sequence(900 + i, dtype, (3,), 1)[0]
                var = v1.Variable(initial, name="var%d" % i)
                assigns.append(v1.assign(var, feed))
                averaged = var
            else:
                initial = np.zeros(3, values.dtype)
                var = v1.Variable(initial, name="var%d" % i)
                assigns.append(v1.assign(var, feed))
                averaged = tf.identity(var, name="tensor%d" % i)
            kwargs = {k: {"STEP": step, "NU": nu, "VAR": decay_var}.get(v, v) if isinstance(v, str) else v
                      for k, v in kwargs.items()}
            decay = kwargs.pop("decay", None if "half_life" in kwargs else DECAY)
            ema = ExponentialMovingAverage(decay, zero_debias=zero_debias, shadow_dtype=shadow_dtype, **kwargs)
            updates.append(ema.apply([averaged]))
            specs[(schedule, kind)] = dict(feed=feed, shadow=ema.average(averaged), initial=initial, values=values)
        update = tf.group(*updates)
        observed = {case: [] for case in GRID}
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            for t in range(STEPS):
                sess.run(counters, {step_in: STEP_VALUES[t]})
                sess.run(assigns, {spec["feed"]: spec["values"][t] for spec in specs.values()})
                sess.run(update)
                for case, value in sess.run({c: s["shadow"] for c, s in specs.items()}).items():
                    observed[case].append(value)
    return {case: (spec["initial"], spec["values"], np.stack(observed[case])) for case, spec in specs.items()}


@pytest.mark.parametrize("schedule,kind", GRID, ids=["%s-%s" % c for c in GRID])
def test_scheduled_shadows_follow_the_oracle(schedule_grid, schedule, kind):
    """After each of 24 updates the shadow equals _math.ema_sequence with the same schedule (bit for bit unless debiased)."""
    initial, values, shadows = schedule_grid[(schedule, kind)]
    dtype, shadow_dtype, source, zero_debias = KINDS[kind]
    oracle = dict(SCHEDULES[schedule][1])
    decay = oracle.pop("decay", DECAY)
    if schedule == "half_life":
        decay = _math.decay_from_half_life(4.0)
    if "num_updates" in oracle:
        oracle["num_updates"] = {"NU": NU_VALUES, "STEP": STEP_VALUES}[oracle["num_updates"]]
    shadow_np_dtype = _math.as_dtype(dtype) if shadow_dtype is None else np.dtype(shadow_dtype.as_numpy_dtype)
    expected = _math.ema_sequence(
        initial.astype(shadow_np_dtype), list(values), decay, zero_debias=zero_debias, steps=STEP_VALUES, **oracle
    )
    assert shadows.dtype == expected.dtype
    if not zero_debias:
        assert_bits_equal(expected, shadows)
    else:
        # The debias divisor goes through pow, whose last bit differs between TF and NumPy.
        rtol = 4 * S.eps(shadow_np_dtype.name) * DECAY / (1 - DECAY)
        np.testing.assert_allclose(shadows.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=0)


def test_schedules_float32_shadows_and_rules_run_in_eager_mode():
    """In eager mode each apply() with schedules, a float32 shadow and a copy rule moves the shadows as the oracle does."""
    var = tf.Variable(np.float16([1.0, -2.0]), name="w")
    stat = tf.Variable([0.5, 0.25], name="bn/moving_mean")
    step = tf.Variable(0, dtype=tf.int64)
    ema = ExponentialMovingAverage(
        0.8, step=step, start_step=2, update_every=2, inv_gamma=1.0, power=1.0, shadow_dtype=tf.float32,
        rules=[("bn/", "copy")],
    )
    values, shadows = [], []
    for s in range(8):
        step.assign(s)
        var.assign(var * 1.5 + 1.0)
        stat.assign(stat * 3.0)
        values.append(var.numpy())
        ema.apply([var, stat])
        shadows.append(ema.average(var).numpy())
        assert_bits_equal(stat.numpy(), ema.average(stat).numpy())
    expected = _math.ema_sequence(
        np.float32([1.0, -2.0]), values, 0.8, steps=list(range(8)), start_step=2, update_every=2, inv_gamma=1.0, power=1.0
    )
    assert_bits_equal(expected, np.stack(shadows))


def test_start_step_copies_bit_for_bit(session):
    """Before start_step the shadow is the variable exactly, where an update with decay 0 would round."""
    var = v1.Variable(1.0)
    step = v1.Variable(0, dtype=tf.int64)
    ema = ExponentialMovingAverage(0.99, step=step, start_step=10)
    update = ema.apply([var])
    session.run(v1.global_variables_initializer())
    session.run(var.assign(1e-10))
    session.run(update)
    assert session.run(ema.average(var)) == np.float32(1e-10)


def test_half_life_halves_a_value_s_weight_in_that_many_updates(session):
    """half_life=10: after 10 updates towards 0 a shadow that started at 1 is 0.5 (float32 rounding)."""
    var = v1.Variable(1.0)
    ema = ExponentialMovingAverage(half_life=10)
    update = ema.apply([var])
    assert ema._decay == 0.5 ** (1 / 10)
    session.run(v1.global_variables_initializer())
    session.run(var.assign(0.0))
    for _ in range(10):
        session.run(update)
    assert session.run(ema.average(var)) == pytest.approx(0.5, rel=1e-5)


def test_schedule_ops_live_under_the_ema_scope(graph):
    """The schedule's step, gates and k are named <ema name>/schedule/...; shadows keep TF1's names."""
    var = v1.Variable(1.0, name="w")
    step = v1.train.get_or_create_global_step()
    ema = ExponentialMovingAverage(0.9, step=step, start_step=3, update_every=2, name="avg")
    ema.apply([var])
    names = {op.name for op in graph.get_operations()}
    assert {"avg/schedule/step", "avg/schedule/copy_now", "avg/schedule/update_now",
            "avg/schedule/steps_per_update"} <= names
    assert ema.average(var).op.name == "w/avg"


# ---------------------------------------------------------------------------
# Full-precision shadows
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_shadow_stalls_where_float32_shadow_tracks(session, dtype):
    """At decay 0.9999 a float16/bfloat16 shadow at 0.5 never moves towards 1; a float32 one follows the oracle."""
    np_dtype = _math.as_dtype(dtype)
    var = v1.Variable(np.asarray(0.5, np_dtype), name="w")
    narrow = ExponentialMovingAverage(0.9999, name="narrow")
    wide = ExponentialMovingAverage(0.9999, name="wide", shadow_dtype=tf.float32)
    update = tf.group(narrow.apply([var]), wide.apply([var]))
    assert narrow.average(var).dtype == tf.as_dtype(np_dtype) and wide.average(var).dtype == tf.float32
    session.run(v1.global_variables_initializer())
    session.run(var.assign(np.asarray(1.0, np_dtype)))
    steps = 1000
    for _ in range(steps):
        session.run(update)
    narrow_value, wide_value = session.run([narrow.average(var), wide.average(var)])
    # (1 - 0.5) * 1e-4 is below half an ulp of 0.5: every float16/bfloat16 update rounds back to 0.5.
    assert narrow_value == 0.5
    expected = _math.ema_sequence(np.float32(0.5), [np.asarray(1.0, np_dtype)] * steps, 0.9999)[-1]
    assert wide_value == expected
    assert wide_value == pytest.approx(1.0 - 0.5 * 0.9999**steps, rel=1e-4)  # ~0.5476: it tracks


def test_float32_shadow_of_a_float16_debiased_tensor_counts_past_2048(session):
    """biased and local_step take the float32 shadow's dtype, so local_step does not saturate as float16 does."""
    var = v1.Variable(np.float16(3.0))
    tensor = tf.identity(var)
    ema = ExponentialMovingAverage(0.9, zero_debias=True, shadow_dtype=tf.float32)
    update = ema.apply([tensor])
    local_step = {v.op.name: v for v in v1.global_variables()}[ema.average(tensor).op.name + "/local_step"]
    assert local_step.dtype == tf.float32
    session.run(v1.global_variables_initializer())
    session.run(local_step.assign(2047.0))
    session.run(update)
    session.run(update)
    assert session.run(local_step) == 2049.0  # float16: 2047 + 1 = 2048, 2048 + 1 = 2048


def test_float32_shadows_checkpoint_under_tf1_names_and_restore_by_casting(tmp_path):
    """Saver(variables_to_restore()) cannot cast float32 shadows into float16 variables; restoring the shadows and casting can."""
    path = str(tmp_path / "model")
    with tf.Graph().as_default():
        var = v1.Variable(np.float16(0.0), name="w")
        ema = ExponentialMovingAverage(0.5, shadow_dtype=tf.float32)
        update = ema.apply([var])
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(var.assign(np.float16(1.0)))
            sess.run(update)
            v1.train.Saver().save(sess, path)
    with tf.Graph().as_default():
        var = v1.Variable(np.float16(0.0), name="w")
        ema = ExponentialMovingAverage(0.5, shadow_dtype=tf.float32)
        assert ema.variables_to_restore() == {"w/ExponentialMovingAverage": var}
        with v1.Session() as sess:
            with pytest.raises(tf.errors.InvalidArgumentError, match="expected dtype half does not equal original dtype float"):
                v1.train.Saver(ema.variables_to_restore()).restore(sess, path)
        ema.apply([var])  # the documented recipe: restore the shadows by name, then cast them in
        load = var.assign(tf.cast(ema.average(var), var.dtype))
        with v1.Session() as sess:
            v1.train.Saver().restore(sess, path)
            sess.run(load)
            assert sess.run(var) == np.float16(0.5)


# ---------------------------------------------------------------------------
# Per-variable rules
# ---------------------------------------------------------------------------


def model_variables():
    """Variables named like a small model: dense/, dense_1/, bn/ statistics, an embedding, a frozen table."""
    names = ["dense/kernel", "dense/bias", "dense_1/kernel", "bn/gamma", "bn/moving_mean", "bn/moving_variance",
             "embedding", "frozen/table"]
    trainable = {"bn/moving_mean": False, "bn/moving_variance": False}
    return {n: v1.Variable(np.full(2, i + 1.0, np.float32), name=n, trainable=trainable.get(n, True))
            for i, n in enumerate(names)}


RULES = [
    (r"moving_(mean|variance)$", "copy"),
    ("frozen/", "skip"),
    ("dense/", 0.5),
    (lambda v: v.op.name == "embedding", 0.0),
    ("bn/", 0.99),  # bn/moving_* were taken by rule 0 already
]


def test_rules_route_each_variable_to_the_first_match(graph):
    """Regex, scope and predicate targets resolve in order; the first match decides, the rest get the default."""
    variables = model_variables()
    ema = ExponentialMovingAverage(0.9, rules=RULES)
    ema.apply(list(variables.values()))
    got = {n: (ema.policy(v).action, ema.policy(v).decay, ema.policy(v).rule) for n, v in variables.items()}
    assert got == {
        "dense/kernel": ("average", 0.5, 2),
        "dense/bias": ("average", 0.5, 2),
        "dense_1/kernel": ("average", 0.9, None),  # the scope "dense/" is a prefix, not a regex
        "bn/gamma": ("average", 0.99, 4),
        "bn/moving_mean": ("copy", None, 0),
        "bn/moving_variance": ("copy", None, 0),
        "embedding": ("average", 0.0, 3),
        "frozen/table": ("skip", None, 1),
    }


def test_rules_update_every_variable_with_its_own_decay_in_one_grouped_op(session):
    """One apply() returns one NoOp; one run moves each shadow by its rule's decay, copies copy, skips have no shadow."""
    variables = model_variables()
    ema = ExponentialMovingAverage(0.9, rules=RULES)
    update = ema.apply(list(variables.values()))
    assert update.type == "NoOp" and update.name == "ExponentialMovingAverage"
    assert ema.average(variables["frozen/table"]) is None
    session.run(v1.global_variables_initializer())
    initial = session.run(variables)
    session.run([v.assign(v * 3.0 + 0.1) for v in variables.values()])
    new = session.run(variables)
    session.run(update)
    decays = {"dense/kernel": 0.5, "dense/bias": 0.5, "dense_1/kernel": 0.9, "bn/gamma": 0.99, "embedding": 0.0}
    for name, decay in decays.items():
        expected = _math.ema_sequence(initial[name], [new[name]], decay)[-1]
        assert_bits_equal(expected, session.run(ema.average(variables[name])))
    for name in ("bn/moving_mean", "bn/moving_variance"):
        assert_bits_equal(new[name], session.run(ema.average(variables[name])))


def test_copy_rule_is_an_exact_copy(session):
    """A "copy" shadow equals the value bit for bit, where averaging with decay 0 would round (1 - (1 - 1e-10) = 0)."""
    var = v1.Variable(1.0, name="bn/moving_mean")
    copying = ExponentialMovingAverage(0.9, rules=[("bn/", "copy")], name="copying")
    decay_zero = ExponentialMovingAverage(0.0, name="decay_zero")
    update = tf.group(copying.apply([var]), decay_zero.apply([var]))
    session.run(v1.global_variables_initializer())
    session.run(var.assign(1e-10))
    session.run(update)
    assert session.run(copying.average(var)) == np.float32(1e-10)
    assert session.run(decay_zero.average(var)) != np.float32(1e-10)


def test_skip_rule_creates_nothing_and_accepts_any_dtype(graph):
    """A skipped variable gets no shadow, no collection entry, no type check (an int counter can be skipped)."""
    counter = v1.Variable(0, name="counter")
    weight = v1.Variable(1.0, name="weight")
    ema = ExponentialMovingAverage(0.9, rules=[("counter", "skip")])
    ema.apply([counter, weight])
    assert ema.average(counter) is None
    assert [v.op.name for v in v1.moving_average_variables()] == ["weight"]
    assert sorted(v.op.name for v in v1.global_variables()) == ["counter", "weight", "weight/ExponentialMovingAverage"]
    with pytest.raises(TypeError, match="must be half, float, or double"):
        ExponentialMovingAverage(0.9).apply([counter])  # without the rule, TF1's error


def test_variables_to_restore_follows_the_rules_before_and_after_apply(graph):
    """Skipped variables map from their own names (even before apply()); copied and averaged ones from their shadows."""
    variables = model_variables()
    ema = ExponentialMovingAverage(0.9, rules=RULES)
    expected = {("%s/ExponentialMovingAverage" % n if n != "frozen/table" else n): v for n, v in variables.items()}
    # bn/moving_* are not trainable: TF1 maps them from their own names until apply() collects them.
    before = dict(expected, **{n: variables[n] for n in ("bn/moving_mean", "bn/moving_variance")})
    del before["bn/moving_mean/ExponentialMovingAverage"], before["bn/moving_variance/ExponentialMovingAverage"]
    assert ema.variables_to_restore() == before
    ema.apply(list(variables.values()))
    restore = ema.variables_to_restore()
    assert {k: v for k, v in restore.items() if v.ref() in {x.ref() for x in variables.values()}} == expected


def test_rules_round_trip_through_a_checkpoint(tmp_path):
    """Saved in training, Saver(variables_to_restore()) in evaluation loads averages, copies, and raw skipped values."""
    path = str(tmp_path / "model")
    with tf.Graph().as_default():
        variables = model_variables()
        ema = ExponentialMovingAverage(0.9, rules=RULES)
        update = ema.apply(list(variables.values()))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run([v.assign(v * 2.0) for v in variables.values()])
            sess.run(update)
            trained = sess.run(variables)
            averaged = sess.run({n: ema.average(v) for n, v in variables.items() if ema.average(v) is not None})
            v1.train.Saver().save(sess, path)
    with tf.Graph().as_default():
        variables = model_variables()
        ema = ExponentialMovingAverage(0.9, rules=RULES)
        with v1.Session() as sess:
            v1.train.Saver(ema.variables_to_restore()).restore(sess, path)
            restored = sess.run(variables)
    for name, value in restored.items():
        assert_bits_equal(averaged.get(name, trained[name]), value)
    assert_bits_equal(trained["frozen/table"], restored["frozen/table"])


def test_rule_matching_no_variable_raises_at_apply_naming_it(graph):
    """A rule that decides for no variable (no match, or every match taken earlier) raises before any shadow exists."""
    w = v1.Variable(1.0, name="dense/kernel")
    for rules, culprit in [
        ([("dense/", 0.5), ("conv/", 0.9)], r"rules\[1\] \('conv/', 0\.9\)"),
        ([("kernel", 0.5), ("dense/", "copy")], r"rules\[1\] \('dense/', 'copy'\)"),
    ]:
        with pytest.raises(ValueError, match=culprit + r" matches none of the 1 variables.*Names: dense/kernel"):
            ExponentialMovingAverage(0.9, rules=rules).apply([w])
    assert [v.op.name for v in v1.global_variables()] == ["dense/kernel"]


def test_a_later_apply_of_a_subset_keeps_earlier_matches(graph):
    """Rules are checked against every variable the object has seen, so apply([w]) after apply([w, b]) is fine."""
    w = v1.Variable(1.0, name="w")
    b = v1.Variable(1.0, name="b")
    ema = ExponentialMovingAverage(0.9, rules=[("^w$", 0.5), ("^b$", "copy")])
    ema.apply([w, b])
    ema.apply([w])


def test_rules_accept_a_dict_in_insertion_order(graph):
    """rules={target: action} is the same as the list of its items."""
    mean = v1.Variable(1.0, name="bn/moving_mean")
    gamma = v1.Variable(1.0, name="bn/gamma")
    ema = ExponentialMovingAverage(0.9, rules={"moving_": "copy", "bn/": "skip"})
    ema.apply([mean, gamma])
    assert (ema.policy(mean).action, ema.policy(gamma).action) == ("copy", "skip")


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------

STEP = "STEP"  # replaced by a step variable in the test

BAD_ARGUMENTS = [
    # (args, kwargs, exception, message regex)
    ((), {}, TypeError, "missing 1 required positional argument: .decay."),
    ((0.9,), dict(half_life=10), ValueError, "both set the decay; pass only one"),
    ((), dict(half_life=0), ValueError, "half-life must be > 0 steps"),
    ((), dict(half_life=-3.0), ValueError, "half-life must be > 0 steps"),
    ((), dict(half_life=float("nan")), ValueError, "half-life must be > 0 steps"),
    ((), dict(half_life="10"), TypeError, "expected a Python number of steps"),
    ((0.9,), dict(shadow_dtype=tf.float16), ValueError, "tf.float32 or tf.float64 only"),
    ((0.9,), dict(shadow_dtype="int32"), ValueError, "tf.float32 or tf.float64 only"),
    ((0.9,), dict(shadow_dtype="banana"), ValueError, "tf.float32 or tf.float64 only"),
    ((0.9,), dict(step=STEP, update_every=0), ValueError, "update_every=0: must be >= 1"),
    ((0.9,), dict(step=STEP, update_every=2.5), TypeError, "update_every=2.5: expected a Python int"),
    ((0.9,), dict(step=STEP, start_step=-1), ValueError, "start_step=-1: must be >= 0"),
    ((0.9,), dict(step=STEP, inv_gamma=1.0), ValueError, "the power warm-up needs both"),
    ((0.9,), dict(step=STEP, inv_gamma=0.0, power=1.0), ValueError, "inv_gamma=0.0: must be > 0"),
    ((0.9,), dict(step=STEP, inv_gamma=1.0, power=-1), ValueError, "power=-1: must be > 0"),
    ((0.9,), dict(step=STEP, inv_gamma=1.0, power=1.0, min_decay=0.95), ValueError, "min_decay=0.95 is above decay=0.9"),
    ((0.9,), dict(step=STEP, inv_gamma=1.0, power=1.0, min_decay=1.5), ValueError, r"a decay must lie in \[0, 1\]"),
    ((0.9,), dict(min_decay=0.5), ValueError, "there is no warm-up: pass inv_gamma= and power="),
    ((0.9,), dict(start_step=3), ValueError, "start_step need.* a step counter: pass step="),
    ((0.9,), dict(update_every=2, inv_gamma=1.0, power=1.0), ValueError, "update_every and inv_gamma/power need"),
    ((0.9,), dict(step=STEP), ValueError, "step= is read only by start_step=.*pass the counter as num_updates="),
    ((0.9,), dict(step=1.5, start_step=1), TypeError, "step=1.5: expected an integer tensor"),
    ((0.9,), dict(rules=[("bn/", "average")]), ValueError, r"rules\[0\]: unknown action 'average'"),
    ((0.9,), dict(rules=[("bn/", None)]), TypeError, r"rules\[0\]: unknown action None"),
    ((0.9,), dict(rules=[("bn/", 1.5)]), ValueError, r"rules\[0\] decay=1.5: a decay must lie in \[0, 1\]"),
    ((0.9,), dict(rules=[("bn/(", 0.5)]), ValueError, r"rules\[0\]: 'bn/\(' is not a valid regular expression"),
    ((0.9,), dict(rules=[(3, 0.5)]), TypeError, r"rules\[0\]: the target 3 must be a regex string"),
    ((0.9,), dict(rules=[("bn/", 0.5, "x")]), TypeError, r"rules\[0\]=.*expected a \(target, action\) pair"),
    ((0.9,), dict(rules="bn/"), TypeError, "expected a list of \\(target, action\\) pairs or a dict"),
    ((0.9,), dict(step=STEP, inv_gamma=1.0, power=1.0, min_decay=0.6, rules=[("bn/", 0.5)]), ValueError,
     r"min_decay=0.6 is above the decay of rules\[0\]"),
]


@pytest.mark.parametrize("args,kwargs,error,message", BAD_ARGUMENTS, ids=[m[:40] for *_, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_in_the_constructor_naming_the_fix(graph, args, kwargs, error, message):
    """Each bad argument (or combination) raises in the constructor, with a message naming the problem and the fix."""
    step = v1.train.get_or_create_global_step()
    kwargs = {k: step if v is STEP else v for k, v in kwargs.items()}
    with pytest.raises(error, match=message):
        ExponentialMovingAverage(*args, **kwargs)


def test_wider_shadow_update_keeps_its_op_name():
    """With shadow_dtype, each update is one assign named by its AssignMovingAvg scope (as before the builder was shared)."""
    with tf.Graph().as_default() as g:
        w = tf.compat.v1.get_variable("w", [3], tf.float16)
        ExponentialMovingAverage(0.9, shadow_dtype=tf.float32).apply([w])
        assert g.get_operation_by_name("ExponentialMovingAverage/AssignMovingAvg").type == "AssignVariableOp"
