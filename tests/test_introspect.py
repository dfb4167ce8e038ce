"""Tests for tf1_ema.introspect: describe() and lag_tensors()."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import inspect
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tf1_ema import _math
from tf1_ema.ema import ExponentialMovingAverage
from tf1_ema.introspect import describe, half_life_of, lag_tensors, window_of

v1 = tf.compat.v1

HAS_SCHEDULES = "rules" in inspect.signature(ExponentialMovingAverage).parameters
needs_schedules = pytest.mark.skipif(not HAS_SCHEDULES, reason="this ExponentialMovingAverage has no schedules/rules")


# ---------------------------------------------------------------------------
# describe()
# ---------------------------------------------------------------------------


def test_constant_decay_is_described_by_the_oracle(graph):
    """Without num_updates the effective decay is the float32 decay, and window and half-life are the oracle's."""
    ema = ExponentialMovingAverage(0.99)
    ema.apply([v1.Variable([1.0], name="w")])
    d = describe(ema)
    assert d.effective_decay == float(np.float32(0.99))
    assert d.window == _math.window(np.float32(0.99))
    assert d.half_life == _math.half_life(np.float32(0.99))
    assert (d.averages, d.phase, d.notes, d.decays[0].variables) == (1, "update", (), 1)


def test_num_updates_tensor_is_read_with_the_session(graph):
    """A num_updates variable is read through sess; the decay is the oracle's warm-up min(decay, (1+n)/(10+n))."""
    step = v1.train.get_or_create_global_step()
    ema = ExponentialMovingAverage(0.999, step)
    ema.apply([v1.Variable([1.0], name="w")])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(step.assign(5))
        d = describe(ema, sess)
    assert d.num_updates == 5.0
    assert d.effective_decay == float(_math.effective_decay(0.999, 5))
    assert d.window == pytest.approx(1 / (1 - 0.4))
    assert "num_updates      5" in str(d)


def test_without_a_session_tensor_values_are_unknown_with_a_note(graph):
    """A graph num_updates without sess leaves the effective decay unknown and says how to fix it."""
    ema = ExponentialMovingAverage(0.999, v1.train.get_or_create_global_step())
    d = describe(ema)
    assert (d.effective_decay, d.window, d.half_life, d.num_updates) == (None, None, None, None)
    assert d.notes == ("unknown without a session: num_updates; pass sess= (or step=)",)
    assert "now unknown" in str(d) and "pass sess=" in str(d)


def test_step_argument_and_python_counters_need_no_session(graph):
    """step= (or a Python num_updates) gives the decay at that step without any session."""
    ema = ExponentialMovingAverage(0.999, v1.train.get_or_create_global_step())
    assert describe(ema, step=10**6).effective_decay == float(np.float32(0.999))
    assert describe(ExponentialMovingAverage(0.999, 0)).effective_decay == float(np.float32(0.1))
    assert describe(ExponentialMovingAverage(0.999), step=0).num_updates is None


def test_decay_tensor_is_read(graph):
    """A decay held in a variable is read through the session."""
    decay = v1.Variable(0.75, name="decay")
    ema = ExponentialMovingAverage(decay)
    with v1.Session() as sess:
        sess.run(decay.initializer)
        assert describe(ema, sess).decays[0].decay == 0.75
    assert describe(ema).decays[0].decay is None


def test_eager_counters_are_read_directly():
    """In eager mode a num_updates variable is read without a session."""
    ema = ExponentialMovingAverage(0.999, tf.Variable(8))
    ema.apply([tf.Variable([1.0])])
    d = describe(ema)
    assert d.effective_decay == float(_math.effective_decay(0.999, 8))
    assert d.debias == ()


def test_decay_at_the_ends_of_its_range():
    """Decay 1 has an infinite window and half-life, decay 0 a window of 1 and half-life 0, others NaN."""
    d = describe(ExponentialMovingAverage(1.0))
    assert (d.window, d.half_life) == (math.inf, math.inf)
    d = describe(ExponentialMovingAverage(0.0))
    assert (d.window, d.half_life) == (1.0, 0.0)
    assert math.isnan(window_of(1.5)) and math.isnan(half_life_of(-0.5))
    assert window_of(None) is None and half_life_of(None) is None
    assert "window inf, half-life inf" in str(describe(ExponentialMovingAverage(1.0)))


def test_debias_factor_reproduces_the_zero_debiased_shadow(graph):
    """For a debiased tensor, biased / factor equals the shadow bit for bit, after local_step updates."""
    x = v1.placeholder(tf.float32, [3])
    ema = ExponentialMovingAverage(0.9, zero_debias=True)
    update = ema.apply([x])
    shadow = ema.average(x)
    biased = [v for v in v1.global_variables() if v.op.name == shadow.op.name + "/biased"][0]
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        assert describe(ema, sess).debias[0].factor == 0.0
        for i in range(4):
            sess.run(update, {x: np.array([1.0, -2.0, 3.5]) * (i + 1)})
        d = describe(ema, sess)
        got_biased, got_shadow = sess.run([biased, shadow])
    (entry,) = d.debias
    assert (entry.shadow, entry.local_step) == (shadow.op.name, 4.0)
    assert entry.factor == float(_math.debias_factor(_math.one_minus_decay(0.9), 4))
    # The oracle's float32 pow can differ from TensorFlow's by one ulp (0.9f ** 4 does).
    np.testing.assert_allclose(got_biased / np.float32(entry.factor), got_shadow, rtol=3e-7)
    assert "debias factor    %s after 4 updates: %s" % (f"{entry.factor:.6g}", shadow.op.name) in str(d)


def test_as_dict_is_json_ready_and_text_has_a_line_per_fact(graph):
    """as_dict() survives json.dumps with every field; str() starts with the name and the number of averages."""
    ema = ExponentialMovingAverage(0.5, 3, name="Avg")
    ema.apply([v1.Variable([1.0], name="w"), v1.Variable([2.0], name="b")])
    d = describe(ema)
    data = json.loads(json.dumps(d.as_dict()))
    assert data["name"] == "Avg" and data["num_updates"] == 3.0 and data["averages"] == 2
    assert data["effective_decay"] == data["decays"][0]["effective_decay"] == float(np.float32(4 / 13))
    lines = str(d).splitlines()
    assert lines[0] == "ExponentialMovingAverage 'Avg': 2 averages"
    assert lines[1] == "  num_updates      3   (TF1 warm-up: min(decay, (1 + n) / (10 + n)))"
    assert lines[2] == "  decay            0.5 -> now %.6g: window %.6g, half-life %.6g updates; 2 variables" % (
        d.effective_decay, d.window, d.half_life)


@needs_schedules
def test_schedules_and_rules_are_described(graph):
    """With a schedule, the step, phase and scheduled decay are the oracle's; rules get their own lines."""
    step = v1.train.get_or_create_global_step()
    w, b, c = (v1.Variable([1.0], name=n) for n in "wbc")
    ema = ExponentialMovingAverage(0.999, step=step, start_step=2, update_every=4,
                                   rules=[("^b$", 0.5), ("^c$", "copy")])
    ema.apply([w, b, c])
    schedule = dict(start_step=2, update_every=4)
    d = describe(ema, step=8)
    assert (d.step, d.phase, d.copies) == (8.0, "update", 1)
    assert d.effective_decay == float(_math.scheduled_decay(0.999, 8, None, **schedule))
    assert d.decays[1].effective_decay == float(_math.scheduled_decay(0.5, 8, None, **schedule))
    assert [x.variables for x in d.decays] == [1, 1]
    assert describe(ema, step=1).phase == "copy" and describe(ema, step=9).phase == "hold"
    assert "rules[0] '^b$'" in str(d) and "1 shadow track" in str(d)


# ---------------------------------------------------------------------------
# lag_tensors()
# ---------------------------------------------------------------------------


def test_lag_is_the_relative_distance_of_the_average(graph):
    """Each lag tensor equals ||shadow - var|| / ||var|| computed in NumPy."""
    w = v1.Variable([[3.0, 4.0], [0.0, 1.0]], name="w")
    b = v1.Variable([2.0], name="b", dtype=tf.float64)
    ema = ExponentialMovingAverage(0.5)
    ema.apply([w, b])
    move = tf.group(w.assign_add(tf.ones([2, 2])), b.assign([-2.0]))
    lags = lag_tensors(ema)
    assert list(lags) == ["w", "b"] and lags["b"].dtype == tf.float64
    assert lags["w"].name == "ExponentialMovingAverage_lag/w:0"
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        assert sess.run(lags) == {"w": 0.0, "b": 0.0}
        sess.run(move)
        got = sess.run(lags)
        values = sess.run([w, ema.average(w), b, ema.average(b)])
    for name, (var, avg) in {"w": values[:2], "b": values[2:]}.items():
        expected = np.linalg.norm(avg - var) / np.linalg.norm(var)
        assert got[name] == pytest.approx(expected, rel=1e-6)


def test_lag_of_a_zero_variable_is_zero_or_infinite(graph):
    """With ||var|| = 0 the lag is 0 when the shadow is zero too and +inf otherwise."""
    w = v1.Variable([0.0, 0.0], name="w")
    ema = ExponentialMovingAverage(0.5)
    ema.apply([w])
    lag = lag_tensors(ema)["w"]
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        assert sess.run(lag) == 0.0
        sess.run(ema.average(w).assign([1.0, 0.0]))
        assert sess.run(lag) == np.inf


def test_lag_of_float16_does_not_overflow_and_accepts_a_wider_shadow(graph):
    """float16 values near 60000 give a finite lag; a float32 shadow of a float16 variable works too."""
    w = v1.Variable(np.full([4], 60000, np.float16), name="w")
    ema = ExponentialMovingAverage(0.5)
    ema.apply([w])
    lag = lag_tensors(ema)["w"]
    ema._averages[w.ref()] = v1.Variable(np.full([4], 30000, np.float32), name="w/Fp32Average")
    mixed = lag_tensors(ema)["w"]
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(ema.average(w).initializer)
        assert sess.run(lag) == 0.0
        assert sess.run(mixed) == pytest.approx(0.5)


def test_lag_var_list_tensors_and_bad_inputs(graph):
    """var_list may name a tensor; an unaveraged entry raises ValueError and an EMA without shadows RuntimeError."""
    w = v1.Variable([1.0], name="w")
    x = tf.constant([2.0]) * 1.0
    with pytest.raises(RuntimeError, match=r"apply\(var_list\) first"):
        lag_tensors(ExponentialMovingAverage(0.5))
    ema = ExponentialMovingAverage(0.5)
    ema.apply([w, x])
    assert list(lag_tensors(ema)) == ["w"]
    assert list(lag_tensors(ema, [x])) == [x.op.name]
    with pytest.raises(ValueError, match=r"'other' has no moving average.*\['mul', 'w'\]"):
        lag_tensors(ema, [v1.Variable([1.0], name="other")])


def test_lag_tensors_ignore_an_enclosing_control_dependency(graph):
    """Built inside tf.control_dependencies([train]), a lag tensor does not run train."""
    w = v1.Variable([1.0], name="w")
    ema = ExponentialMovingAverage(0.5)
    train = ema.apply([w])
    with tf.control_dependencies([train]):
        lag = lag_tensors(ema)["w"]
    pending, seen = [lag.op], set()
    while pending:
        op = pending.pop()
        if op.name not in seen:
            seen.add(op.name)
            pending += [t.op for t in op.inputs] + list(op.control_inputs)
    assert train.name not in seen


def test_lag_in_eager_mode_is_a_value():
    """In eager mode lag_tensors returns the lags now."""
    w = tf.Variable([3.0, 4.0])
    ema = ExponentialMovingAverage(0.5)
    ema.apply([w])
    w.assign([0.0, 0.0])
    assert float(lag_tensors(ema)[w.name[:-2]]) == np.inf
