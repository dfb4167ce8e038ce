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
    shadow = np.asarray(shadow)
    dt = shadow.dtype
    diff = (shadow - np.asarray(value, dtype=dt)).astype(dt)
    return (shadow - (diff * dt.type(one_minus_decay_)).astype(dt)).astype(dt)


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
    return t(t(1.0) - t(np.power(decay, t(local_step))))


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
    shadow = (biased / debias_factor(one_minus_decay_, local_step, dt)).astype(dt)
    return shadow, biased, local_step


def ema_sequence(
    initial: np.ndarray,
    values,
    decay: float,
    num_updates=None,
    zero_debias: bool = False,
) -> np.ndarray:
    """The shadow after each update of a sequence of values.

    Args:
      initial: the shadow's initial value (the variable's value at ``apply()``;
        zeros for a tensor).
      values: the variable's value at each update.
      decay: the constructor's decay.
      num_updates: None, or one step-counter value per update.
      zero_debias: whether the shadow is zero-debiased (tensors only in TF1).

    Returns:
      An array of shape ``(len(values),) + initial.shape`` with the shadows.
    """
    shadow = np.asarray(initial)
    dt = shadow.dtype
    biased = np.zeros_like(shadow)
    local_step = dt.type(0)
    out = []
    for i, value in enumerate(values):
        n = None if num_updates is None else num_updates[i]
        omd = one_minus_decay(effective_decay(decay, n), dt)
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
