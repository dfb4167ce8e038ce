"""The NumPy oracle ``tf1_ema._math`` alone: closed forms, properties, doctests."""

import doctest
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from limits import TIMEOUT
import strategies as S
from bit_rule import assert_bits_equal
from tf1_ema import _math

PROPERTY = settings(max_examples=50, deadline=None)

# The first step counter at which TF1's float32 warm-up ratio (1 + n) / (10 + n)
# decreases: float32 cannot count past 2 ** 24 one by one.
FIRST_NON_MONOTONE_STEP = 16_777_207


# ---------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------


def test_effective_decay_at_step_zero_is_one_tenth_in_float32():
    """At num_updates=0 the warm-up gives (1 + 0) / (10 + 0) = float32(0.1), whatever the decay above it."""
    got = _math.effective_decay(0.99, num_updates=0)
    assert got.dtype == np.float32
    assert got == np.float32(0.1)


def test_effective_decay_without_num_updates_is_the_float32_decay():
    """Without num_updates the decay is only rounded to float32."""
    got = _math.effective_decay(0.99)
    assert got.dtype == np.float32
    assert got == np.float32(0.99)


@pytest.mark.parametrize(
    "num_updates, expected",
    [(0, 1 / 10), (1, 2 / 11), (8, 9 / 18), (89, 90 / 99), (1000, 0.99)],
    ids=["n0", "n1", "n8", "n89", "n1000-capped"],
)
def test_effective_decay_follows_the_warmup_ratio_until_the_decay_caps_it(num_updates, expected):
    """effective_decay(0.99, n) = min(0.99, (1 + n) / (10 + n)), evaluated in float32."""
    assert _math.effective_decay(0.99, num_updates) == np.float32(expected)


def test_walkthrough_sequence_prints_as_tf1_printed_it():
    """The README walkthrough: w1=3 at step 0 then at step 10000 gives 2.6999998 then 2.7029998 (float32)."""
    shadows = _math.ema_sequence(np.float32(0.0), [3.0, 3.0], 0.99, num_updates=[0, 10_000])
    assert shadows.dtype == np.float32
    assert_bits_equal(np.array([2.6999998, 2.7029998], np.float32), shadows)
    assert [str(s) for s in shadows] == ["2.6999998", "2.7029998"]


def test_one_minus_decay_is_computed_in_float32_then_cast():
    """For a float64 variable, 1 - 0.99 carries float32 rounding (0.009999990463256836), not float64's."""
    got = _math.one_minus_decay(0.99, "float64")
    assert got.dtype == np.float64
    assert got == np.float64(np.float32(1.0) - np.float32(0.99))
    assert got != 1.0 - 0.99


@pytest.mark.parametrize("dtype", S.FLOAT_DTYPES)
def test_one_minus_decay_has_the_variable_dtype(dtype):
    """one_minus_decay returns a scalar of the requested dtype, rounded from the float32 result."""
    got = _math.one_minus_decay(0.9, dtype)
    assert got.dtype == _math.as_dtype(dtype)
    assert got == _math.as_dtype(dtype).type(np.float32(1.0) - np.float32(0.9))


def test_ema_step_uses_the_assign_sub_form_not_the_convex_combination():
    """shadow - (shadow - value) * k rounds differently from (1 - k) * shadow + k * value: 2.55 vs 2.5500002."""
    k = _math.one_minus_decay(0.9, "float32")
    shadow, value = np.float32(2.5), np.float32(3.0)
    got = _math.ema_step(shadow, value, k)
    assert got == np.float32(2.55)
    assert got == shadow - (shadow - value) * k
    assert got != (np.float32(1.0) - k) * shadow + k * value


@pytest.mark.parametrize("dtype", S.FLOAT_DTYPES)
def test_ema_step_rounds_every_operation_to_the_shadow_dtype(dtype):
    """ema_step keeps the shadow's dtype and rounds after the subtraction, the product and the update."""
    t = _math.as_dtype(dtype).type
    shadow = np.array([1.0, -7.1, 300.25], _math.as_dtype(dtype))
    value = np.array([3.0, 0.7, -2.5], _math.as_dtype(dtype))
    k = _math.one_minus_decay(0.9, dtype)
    expected = np.array([t(s - t(t(s - v) * k)) for s, v in zip(shadow, value)], _math.as_dtype(dtype))
    got = _math.ema_step(shadow, value, k)
    assert got.dtype == _math.as_dtype(dtype)
    assert_bits_equal(expected, got)


def test_debias_factor_is_one_minus_decay_to_the_local_step():
    """debias_factor(k, t) = 1 - (1 - k) ** t in the given dtype: 0.19 after two steps of decay 0.9 (float64)."""
    k = np.float64(0.1)
    assert _math.debias_factor(k, 1, "float64") == 1.0 - 0.9
    assert _math.debias_factor(k, 2, "float64") == pytest.approx(0.19, rel=1e-15)
    assert _math.debias_factor(_math.one_minus_decay(0.9, "float16"), 3, "float16").dtype == np.float16


def test_debias_step_first_update_recovers_the_value():
    """After one debiased update from zero, biased = value * k, local_step = 1, shadow = biased / (1 - (1 - k))."""
    k = _math.one_minus_decay(0.9, "float32")
    value = np.array([4.0, -2.0], np.float32)
    shadow, biased, step = _math.debias_step(np.zeros(2, np.float32), np.float32(0), value, k)
    assert_bits_equal(value * k, biased)
    assert step == np.float32(1) and step.dtype == np.float32
    assert_bits_equal(biased / (np.float32(1) - (np.float32(1) - k)), shadow)
    np.testing.assert_allclose(shadow, value, rtol=1e-6)


def test_float16_local_step_stops_counting_at_2048():
    """TF1 keeps local_step in the shadow's dtype, so a float16 counter saturates at 2048 (2048 + 1 rounds down)."""
    step = np.float16(0)
    for _ in range(2100):
        _, _, step = _math.debias_step(np.zeros((), np.float16), step, np.float16(1), np.float16(0.5))
    assert step == np.float16(2048)


def test_ema_sequence_of_no_values_is_empty_with_the_shadow_shape():
    """ema_sequence over zero updates returns shape (0,) + initial.shape in the initial dtype."""
    got = _math.ema_sequence(np.zeros((2, 3), np.float16), [], 0.9)
    assert got.shape == (0, 2, 3)
    assert got.dtype == np.float16


def test_as_dtype_names_bfloat16_and_rejects_non_floats():
    """as_dtype('bfloat16') is ml_dtypes' bfloat16; int32 raises TypeError with TF1's wording."""
    assert _math.as_dtype("bfloat16").name == "bfloat16"
    assert _math.as_dtype(np.float64) == np.dtype(np.float64)
    with pytest.raises(TypeError, match="The variables must be half, float, or double: got int32"):
        _math.as_dtype("int32")


def test_window_and_half_life_closed_forms():
    """window(0.99) = 100 steps, half_life(0.5) = 1 step, decay_from_half_life(1) = 0.5."""
    assert _math.window(0.99) == pytest.approx(100.0, rel=1e-12)
    assert _math.window(0.0) == 1.0
    assert _math.half_life(0.5) == pytest.approx(1.0, rel=1e-15)
    assert _math.half_life(0.25) == pytest.approx(0.5, rel=1e-15)
    assert _math.decay_from_half_life(1.0) == 0.5
    assert _math.decay_from_half_life(2.0) == pytest.approx(math.sqrt(0.5), rel=1e-15)


def test_effective_decay_decreases_once_float32_cannot_count_steps():
    """TF1 parity: the float32 warm-up ratio drops by an ulp at n = 16777207 + 1, just below 2 ** 24."""
    before = _math.effective_decay(1.0, FIRST_NON_MONOTONE_STEP)
    after = _math.effective_decay(1.0, FIRST_NON_MONOTONE_STEP + 1)
    assert after < before
    assert after == np.nextafter(before, np.float32(0))


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@PROPERTY
@given(S.ema_problems(), st.booleans())
def test_a_constant_is_a_fixed_point(problem, with_num_updates):
    """A shadow equal to the variable stays exactly equal under any decay and step counter."""
    constant = problem["initial"]
    steps = problem["num_updates"] if with_num_updates else None
    shadows = _math.ema_sequence(constant, [constant] * len(problem["values"]), problem["decay"], steps)
    for shadow in shadows:
        assert_bits_equal(constant, shadow)


@PROPERTY
@given(S.ema_problems())
def test_decay_one_freezes_the_shadow(problem):
    """With decay=1 and no num_updates, one_minus_decay is 0 and the shadow never moves."""
    shadows = _math.ema_sequence(problem["initial"], problem["values"], 1.0)
    for shadow in shadows:
        assert_bits_equal(problem["initial"], shadow)


@PROPERTY
@given(S.ema_problems())
def test_ema_sequence_is_repeated_ema_step(problem):
    """ema_sequence without debiasing chains ema_step with the per-step effective decay."""
    shadows = _math.ema_sequence(problem["initial"], problem["values"], problem["decay"], problem["num_updates"])
    shadow = problem["initial"]
    dtype = problem["initial"].dtype
    for i, value in enumerate(problem["values"]):
        n = None if problem["num_updates"] is None else problem["num_updates"][i]
        shadow = _math.ema_step(shadow, value, _math.one_minus_decay(_math.effective_decay(problem["decay"], n), dtype))
        assert_bits_equal(shadow, shadows[i])
    assert shadows.dtype == dtype
    assert shadows.shape == (len(problem["values"]),) + problem["initial"].shape


@PROPERTY
@given(S.decays(), S.num_updates)
def test_effective_decay_never_exceeds_the_decay(decay, n):
    """min(decay, ratio) is at most float32(decay) for every step counter."""
    assert _math.effective_decay(decay, n) <= np.float32(decay)
    assert _math.effective_decay(decay, n).dtype == np.float32


@PROPERTY
@given(S.decays(), st.integers(0, FIRST_NON_MONOTONE_STEP), st.integers(0, FIRST_NON_MONOTONE_STEP))
def test_effective_decay_never_decreases_with_n(decay, n1, n2):
    """For step counters float32 represents exactly, a later step never has a smaller effective decay."""
    n1, n2 = sorted((n1, n2))
    assert _math.effective_decay(decay, n1) <= _math.effective_decay(decay, n2)


@PROPERTY
@given(S.decays(max_value=0.9999), S.num_updates, S.num_updates)
def test_effective_decay_never_decreases_with_n_for_usual_decays(decay, n1, n2):
    """For decay <= 0.9999 the cap is reached long before 2 ** 24, so monotonicity holds for every int32 step."""
    n1, n2 = sorted((n1, n2))
    assert _math.effective_decay(decay, n1) <= _math.effective_decay(decay, n2)


@PROPERTY
@given(
    st.sampled_from(["float32", "float64"]),
    S.shapes,
    S.decays(max_value=0.99),
    st.integers(1, 30),
    st.data(),
)
def test_debiasing_recovers_a_constant(dtype, shape, decay, length, data):
    """Zero-debiased averages of a constant, started from zero, equal the constant up to rounding."""
    constant = data.draw(S.values(dtype, shape))
    shadows = _math.ema_sequence(np.zeros_like(constant), [constant] * length, decay, zero_debias=True)
    rtol = 1000 * S.eps(dtype)
    for shadow in shadows:
        np.testing.assert_allclose(shadow, constant, rtol=rtol, atol=0)


@PROPERTY
@given(S.half_lives)
def test_half_life_of_decay_from_half_life_round_trips(steps):
    """half_life(decay_from_half_life(h)) == h up to float64 rounding."""
    decay = _math.decay_from_half_life(steps)
    assume(0.0 < decay < 1.0)
    assert _math.half_life(decay) == pytest.approx(steps, rel=1e-6)


@PROPERTY
@given(st.floats(min_value=1e-6, max_value=1.0 - 1e-9, exclude_max=False))
def test_decay_from_half_life_of_half_life_round_trips(decay):
    """decay_from_half_life(half_life(d)) == d, and d ** half_life(d) == 0.5."""
    steps = _math.half_life(decay)
    assert _math.decay_from_half_life(steps) == pytest.approx(decay, rel=1e-9)
    assert decay**steps == pytest.approx(0.5, rel=1e-9)


@PROPERTY
@given(S.decays(max_value=1.0 - 1e-9))
def test_window_round_trips_to_the_decay(decay):
    """1 - 1 / window(d) == d: the window is the reciprocal of one_minus_decay."""
    assert 1.0 - 1.0 / _math.window(decay) == pytest.approx(decay, abs=1e-9)


@PROPERTY
@given(st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.integers(max_value=0)))
def test_decay_from_half_life_rejects_non_positive_half_lives(steps):
    """A half-life <= 0 steps (or NaN) has no decay: ValueError naming the value."""
    with pytest.raises(ValueError, match="half-life must be > 0 steps"):
        _math.decay_from_half_life(steps)


# ---------------------------------------------------------------------------
# The module as shipped
# ---------------------------------------------------------------------------


def test_module_doctests_pass():
    """Every example in _math's docstrings runs and prints what it shows."""
    result = doctest.testmod(_math, verbose=False)
    assert result.attempted >= 5
    assert result.failed == 0


def test_importing_the_oracle_does_not_import_tensorflow():
    """`import tf1_ema._math` leaves tensorflow out of sys.modules, so oracle tests stay fast."""
    code = "import sys, tf1_ema._math; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
