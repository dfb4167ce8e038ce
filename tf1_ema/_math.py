"""NumPy oracle of TF1's exponential moving average.

Pure functions, no TensorFlow import. They state the update rules of
``tf.compat.v1.train.ExponentialMovingAverage`` in the order and precision in
which TF1 evaluates them, so that the TensorFlow implementation in
``tf1_ema.ema`` can be tested against them:

    decay_t        = min(decay, (1 + n) / (10 + n))         # float32, when num_updates is given
    one_minus_decay = cast(1 - decay_t in float32, dtype)   # once, then cast
    shadow        <- shadow - (shadow - value) * one_minus_decay

and, for zero-debiased tensors:

    biased        <- biased - (biased - value) * one_minus_decay
    local_step    <- local_step + 1
    shadow        <- biased / (1 - (1 - one_minus_decay) ** local_step)

Every intermediate is rounded to the variable's dtype as TensorFlow rounds it:
NumPy's float16 and ml_dtypes' bfloat16 round after each operation, as
TensorFlow's kernels do.

Beyond TF1, the opt-in schedules of ``tf1_ema.ExponentialMovingAverage``
(keyword-only arguments; see ``scheduled_decay`` and ``schedule_phase``) turn
the decay of one update, at step s, into

    decay_t = min(decay, (1 + n) / (10 + n))                       # TF1 warm-up, if num_updates
    decay_t = min(decay_t, 1 - (1 + s' / inv_gamma) ** -power)     # power warm-up, s' = max(s - start_step, 0)
    decay_t = max(decay_t, min_decay)                              # floor, if min_decay
    decay_t = decay_t ** k,  k = min(update_every, s - start_step + 1)   # if update_every

where the update is skipped (the shadow held) unless s % update_every == 0,
and the shadow copies the value (shadow = value) while s < start_step.

Example:
    >>> float(effective_decay(0.99, num_updates=0))
    0.10000000149011612
"""

from __future__ import annotations

from typing import Optional

import numpy as np

try:  # ml_dtypes ships with TensorFlow and gives NumPy a bfloat16.
    from ml_dtypes import bfloat16
except ImportError:  # pragma: no cover - only without TensorFlow installed
    bfloat16 = None

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def as_dtype(dtype) -> np.dtype:
    """Returns the NumPy dtype for a name such as ``"bfloat16"``.

    Args:
      dtype: a NumPy dtype, type, or one of ``FLOAT_DTYPES``.

    Returns:
      The ``np.dtype``.

    Raises:
      TypeError: if the dtype is not one of half, bfloat16, float or double.
    """
    if isinstance(dtype, str) and dtype == "bfloat16":
        if bfloat16 is None:
            raise TypeError("bfloat16 needs the ml_dtypes package (installed with TensorFlow)")
        return np.dtype(bfloat16)
    dt = np.dtype(dtype)
    if dt.name not in FLOAT_DTYPES:
        raise TypeError("The variables must be half, float, or double: got %s" % dt.name)
    return dt


def flush_subnormal(x: np.ndarray) -> np.ndarray:
    """Replaces subnormal float32/float64/bfloat16 values by zeros of the same sign.

    TensorFlow's CPU kernels run with flush-to-zero and denormals-are-zero
    set, so a result (or input) below the smallest normal number is zero
    there. float16 is computed in float32, where its subnormals are normal
    numbers, so float16 is left alone.

    >>> float(flush_subnormal(np.float32(1e-39)))
    0.0
    """
    x = np.asarray(x)
    if x.dtype.name not in ("float32", "float64", "bfloat16"):
        return x
    tiny = np.finfo(np.float64 if x.dtype.name == "float64" else np.float32).tiny
    wide = x.astype(np.float64)
    subnormal = (wide != 0) & (np.abs(wide) < tiny)
    if not subnormal.any():
        return x
    return np.where(subnormal, np.copysign(np.zeros_like(x), x), x).astype(x.dtype)


def effective_decay(decay: float, num_updates: Optional[float] = None) -> np.float32:
    """The decay TF1 uses for one update: min(decay, (1 + n) / (10 + n)).

    Both the decay and the warm-up ratio are float32, as in TF1, where the
    decay is converted to a float32 tensor and ``num_updates`` is cast to
    float32 before the ratio is formed.

    Args:
      decay: the decay given to the constructor.
      num_updates: the step counter, or None for no warm-up.

    Returns:
      The decay as ``np.float32``.

    Example:
      >>> float(effective_decay(0.99, num_updates=1000))
      0.9900000095367432
    """
    d = np.float32(decay)
    if num_updates is None:
        return d
    n = np.float32(num_updates)
    ratio = (np.float32(1.0) + n) / (np.float32(10.0) + n)
    return np.minimum(d, ratio)


def one_minus_decay(decay: float, dtype="float32") -> np.generic:
    """``1 - decay`` computed in float32 and only then cast to ``dtype``.

    Args:
      decay: the (effective) decay; it is rounded to float32 first.
      dtype: the variable's dtype.

    Returns:
      A scalar of ``dtype``.
    """
    # TF1 parity: the subtraction happens on the float32 decay tensor; the
    # result is cast afterwards, so a float64 variable sees the float32 bits.
    return as_dtype(dtype).type(np.float32(1.0) - np.float32(decay))


def ema_step(shadow: np.ndarray, value: np.ndarray, one_minus_decay_: np.generic) -> np.ndarray:
    """One update: shadow - (shadow - value) * one_minus_decay, in the shadow's dtype.

    This is TF1's ``assign_sub`` form; ``decay * shadow + (1 - decay) * value``
    is mathematically equal but rounds differently.

    Args:
      shadow: the current average.
      value: the new value of the variable.
      one_minus_decay_: from ``one_minus_decay``, already in the shadow's dtype.

    Returns:
      The new shadow, same dtype as ``shadow``.
    """
    shadow = flush_subnormal(np.asarray(shadow))
    dt = shadow.dtype
    value = flush_subnormal(np.asarray(value, dtype=dt))
    k = flush_subnormal(np.asarray(one_minus_decay_, dtype=dt))
    diff = flush_subnormal((shadow - value).astype(dt))
    return flush_subnormal((shadow - flush_subnormal((diff * k).astype(dt))).astype(dt))


def debias_factor(one_minus_decay_: np.generic, local_step: np.generic, dtype="float32") -> np.generic:
    """The zero-debias divisor: 1 - (1 - one_minus_decay) ** local_step, in ``dtype``.

    Args:
      one_minus_decay_: ``1 - decay`` in ``dtype``.
      local_step: the number of updates so far, counting this one.
      dtype: the shadow's dtype (TF1 keeps ``local_step`` in it too).

    Returns:
      A scalar of ``dtype``.
    """
    t = as_dtype(dtype).type
    decay = t(t(1.0) - t(one_minus_decay_))
    # TF's pow agrees with the exact power rounded once to the dtype; NumPy's
    # float32 power is off by an ulp for about a third of inputs, so the power
    # is taken in float64 (in float64 itself for float64, as TF does).
    power = t(np.power(np.float64(decay), np.float64(t(local_step))))
    return flush_subnormal(np.asarray(t(t(1.0) - flush_subnormal(np.asarray(power))[()])))[()]


def debias_step(biased: np.ndarray, local_step: np.generic, value: np.ndarray, one_minus_decay_: np.generic):
    """One zero-debiased update.

    Args:
      biased: the biased accumulator (starts at zero).
      local_step: the number of updates before this one, in the shadow's dtype.
      value: the new value.
      one_minus_decay_: ``1 - decay`` in the shadow's dtype.

    Returns:
      ``(shadow, biased, local_step)`` after the update, where
      shadow = biased / (1 - (1 - one_minus_decay) ** local_step).
    """
    biased = ema_step(biased, value, one_minus_decay_)
    dt = biased.dtype
    local_step = dt.type(dt.type(local_step) + dt.type(1))
    shadow = flush_subnormal((biased / debias_factor(one_minus_decay_, local_step, dt)).astype(dt))
    return shadow, biased, local_step


# ---------------------------------------------------------------------------
# Opt-in schedules (beyond TF1)
# ---------------------------------------------------------------------------

# Precision: TensorFlow's float32 pow and NumPy's differ in the last bit for
# about a third of inputs (Eigen's vectorised pow against libm's powf). The two
# schedule terms that need a pow are therefore evaluated in float64 and rounded
# once to float32; the float64 results may still differ in their last bit, but
# that never survived the rounding in 10**6 samples, and the rounding also makes
# the term more accurate than a float32 pow would.


def power_warmup_decay(step, inv_gamma: float, power: float, min_decay: float = 0.0, max_decay: float = 1.0) -> np.float32:
    """The power warm-up: clip(1 - (1 + step / inv_gamma) ** -power, min_decay, max_decay).

    ``1 - (1 + step / inv_gamma) ** -power`` is computed in float64 and rounded
    once to float32; the clip is then taken in float32 as
    max(min(term, max_decay), min_decay). ``step`` counts from the start of
    averaging and is clamped at 0.

    Args:
      step: steps since averaging started (``s - start_step``).
      inv_gamma: > 0; the larger, the slower the warm-up.
      power: > 0; 2/3 suits runs of ~10**5 steps, 3/4 shorter ones.
      min_decay: the floor of the result.
      max_decay: the cap of the result, i.e. the decay without warm-up.

    Returns:
      The decay as ``np.float32``.

    Example:
      >>> float(power_warmup_decay(0, 1.0, 2 / 3))
      0.0
      >>> float(power_warmup_decay(7, 1.0, 1.0, max_decay=0.999))
      0.875
    """
    s = np.maximum(np.float64(step), np.float64(0.0))
    term = np.float32(np.float64(1.0) - np.power(np.float64(1.0) + s / np.float64(inv_gamma), -np.float64(power)))
    return np.maximum(np.minimum(term, np.float32(max_decay)), np.float32(min_decay))


def compensated_decay(decay: float, k) -> np.float32:
    """The decay of one update that stands for k steps: decay ** k.

    ``decay`` is the float32 decay of one step; the power is taken in float64
    and rounded once to float32.

    Args:
      decay: the per-step decay.
      k: the number of steps the update stands for (>= 1).

    Returns:
      The decay as ``np.float32``.

    Example:
      >>> float(compensated_decay(0.5, 3))
      0.125
    """
    return np.float32(np.power(np.float64(np.float32(decay)), np.float64(k)))


def steps_per_update(step: int, start_step: Optional[int] = None, update_every: int = 1) -> int:
    """The k of ``compensated_decay``: min(update_every, step - start_step + 1), at least 1.

    An update at step s stands for the steps since the previous one: update_every
    steps, except for the first update after the start, which stands for the
    steps since the last copy at start_step - 1 (the shadow's initial value
    counts as a copy at step -1 when there is no start_step).

    >>> steps_per_update(8, update_every=4), steps_per_update(5, start_step=4, update_every=4)
    (4, 2)
    """
    start = 0 if start_step is None else int(start_step)
    return int(min(max(int(step) - start + 1, 1), int(update_every)))


COPY, HOLD, UPDATE = "copy", "hold", "update"


def schedule_phase(step: int, start_step: Optional[int] = None, update_every: Optional[int] = None) -> str:
    """What one run of the update op does at ``step``: ``"copy"``, ``"hold"`` or ``"update"``.

    copy   if step < start_step               (shadow = value)
    hold   elif step % update_every != 0      (shadow unchanged)
    update otherwise                          (the usual moving-average step)

    >>> [schedule_phase(s, start_step=2, update_every=2) for s in range(5)]
    ['copy', 'copy', 'update', 'hold', 'update']
    """
    if start_step is not None and int(step) < int(start_step):
        return COPY
    if update_every is not None and int(step) % int(update_every) != 0:
        return HOLD
    return UPDATE


def scheduled_decay(
    decay: float,
    step=None,
    num_updates=None,
    *,
    start_step: Optional[int] = None,
    update_every: Optional[int] = None,
    inv_gamma: Optional[float] = None,
    power: Optional[float] = None,
    min_decay: Optional[float] = None,
) -> np.float32:
    """The decay of one update at ``step``, all schedules applied in this order:

        decay_t = min(decay, (1 + n) / (10 + n))                       # if num_updates (TF1)
        decay_t = power_warmup_decay(s - start_step, inv_gamma, power,
                                     min_decay, max_decay=decay_t)     # if inv_gamma, power
        decay_t = max(decay_t, min_decay)                              # else if min_decay
        decay_t = compensated_decay(decay_t, steps_per_update(s, start_step, update_every))
                                                                       # if update_every

    All in float32 (the pows as ``power_warmup_decay`` and
    ``compensated_decay`` state). Only meaningful in the ``"update"`` phase of
    ``schedule_phase``.

    Args:
      decay: the decay, as given to the constructor (or by a rule).
      step: the step counter s (needed by the power warm-up and update_every).
      num_updates: TF1's counter n for its warm-up, or None.
      start_step: the first step that averages, or None (0).
      update_every: the update period in steps, or None.
      inv_gamma: the power warm-up's scale, or None for no power warm-up.
      power: the power warm-up's exponent, or None.
      min_decay: the floor of the warmed-up decay, or None.

    Returns:
      The decay as ``np.float32``.

    Example:
      >>> float(scheduled_decay(0.999, step=7, inv_gamma=1.0, power=1.0))
      0.875
    """
    d = effective_decay(decay, num_updates)
    if inv_gamma is not None or power is not None:
        start = 0 if start_step is None else int(start_step)
        floor = 0.0 if min_decay is None else min_decay
        d = power_warmup_decay(int(step) - start, inv_gamma, power, floor, d)
    elif min_decay is not None:
        d = np.maximum(d, np.float32(min_decay))
    if update_every is not None:
        d = compensated_decay(d, steps_per_update(step, start_step, update_every))
    return d


def ema_sequence(
    initial: np.ndarray,
    values,
    decay: float,
    num_updates=None,
    zero_debias: bool = False,
    *,
    steps=None,
    start_step: Optional[int] = None,
    update_every: Optional[int] = None,
    inv_gamma: Optional[float] = None,
    power: Optional[float] = None,
    min_decay: Optional[float] = None,
) -> np.ndarray:
    """The shadow after each update of a sequence of values.

    The shadow's dtype is ``initial``'s; each value is cast to it first, so a
    float32 ``initial`` with float16 values is the float32 shadow of a float16
    variable. With the keyword-only schedule arguments, each update follows
    ``schedule_phase`` and ``scheduled_decay``: in the ``"copy"`` phase the
    shadow becomes the value and a zero-debiased shadow's ``biased`` and
    ``local_step`` stay as they are; in ``"hold"`` nothing changes.

    Args:
      initial: the shadow's initial value (the variable's value at ``apply()``;
        zeros for a tensor).
      values: the variable's value at each update.
      decay: the constructor's decay.
      num_updates: None, or one step-counter value per update.
      zero_debias: whether the shadow is zero-debiased (tensors only in TF1).
      steps: one step value per update for the schedules; default
        ``num_updates``.
      start_step, update_every, inv_gamma, power, min_decay: the schedule,
        as in ``scheduled_decay``.

    Returns:
      An array of shape ``(len(values),) + initial.shape`` with the shadows.
    """
    shadow = np.asarray(initial)
    dt = shadow.dtype
    biased = np.zeros_like(shadow)
    local_step = dt.type(0)
    if steps is None:
        steps = num_updates
    schedule = dict(start_step=start_step, update_every=update_every, inv_gamma=inv_gamma, power=power, min_decay=min_decay)
    scheduled = any(v is not None for v in schedule.values())
    out = []
    for i, value in enumerate(values):
        n = None if num_updates is None else num_updates[i]
        if scheduled:
            phase = schedule_phase(steps[i], start_step, update_every)
            decay_t = scheduled_decay(decay, steps[i], n, **schedule)
        else:
            phase, decay_t = UPDATE, effective_decay(decay, n)
        if phase == COPY:
            shadow = np.asarray(value).astype(dt)
        elif phase == UPDATE:
            omd = one_minus_decay(decay_t, dt)
            if zero_debias:
                shadow, biased, local_step = debias_step(biased, local_step, value, omd)
            else:
                shadow = ema_step(shadow, value, omd)
        out.append(shadow)
    return np.stack(out) if out else np.zeros((0,) + shadow.shape, dt)


def window(decay: float) -> float:
    """The effective averaging window 1 / (1 - decay), in steps.

    >>> round(window(0.99), 6)
    100.0
    """
    return 1.0 / (1.0 - float(decay))


def half_life(decay: float) -> float:
    """Steps after which a value's weight has halved: ln(0.5) / ln(decay).

    >>> round(half_life(0.5), 6)
    1.0
    """
    return float(np.log(0.5) / np.log(float(decay)))


def decay_from_half_life(steps: float) -> float:
    """The decay whose half-life is ``steps``: 0.5 ** (1 / steps).

    >>> decay_from_half_life(1.0)
    0.5
    """
    if not steps > 0:
        raise ValueError("half-life must be > 0 steps, got %r" % (steps,))
    return float(0.5 ** (1.0 / float(steps)))
