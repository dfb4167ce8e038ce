"""Hypothesis strategies and seeded NumPy data shared by the tf1_ema tests.

Everything here is TensorFlow-free: dtypes are named by the strings of
``tf1_ema._math.FLOAT_DTYPES`` and turned into NumPy dtypes (bfloat16 through
ml_dtypes) with ``tf1_ema._math.as_dtype``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tf1_ema import _math

FLOAT_DTYPES = _math.FLOAT_DTYPES  # ("float16", "bfloat16", "float32", "float64")

# Magnitudes that keep `shadow - value` finite in every dtype (float16 overflows at 65504).
VALUE_LIMIT = {"float16": 1e3, "bfloat16": 1e6, "float32": 1e6, "float64": 1e6}

# The decays people actually use, plus the ends of the range.
COMMON_DECAYS = (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0)

SHAPES = ((), (3,), (2, 3))
SHAPE_IDS = {(): "scalar", (3,): "vector", (2, 3): "matrix"}

dtypes = st.sampled_from(FLOAT_DTYPES)
"""One of the four float dtype names."""

shapes = st.sampled_from(SHAPES)
"""A scalar, vector or matrix shape."""

num_updates = st.integers(min_value=0, max_value=2**31 - 1)
"""A step counter value, as an int32 global step can hold it."""

half_lives = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
"""A half-life in steps, positive and finite."""


def decays(min_value: float = 0.0, max_value: float = 1.0) -> st.SearchStrategy[float]:
    """A decay in [min_value, max_value], biased towards the usual 0.9, 0.99, ... values."""
    common = [d for d in COMMON_DECAYS if min_value <= d <= max_value]
    anywhere = st.floats(min_value=min_value, max_value=max_value, allow_nan=False)
    return st.one_of(st.sampled_from(common), anywhere) if common else anywhere


def values(dtype: str, shape=(), min_magnitude: float = 2.0**-10) -> st.SearchStrategy[np.ndarray]:
    """A finite array of ``dtype`` and ``shape``: zeros or magnitudes in [min_magnitude, VALUE_LIMIT[dtype]].

    Tiny magnitudes are left out on purpose: TensorFlow's CPU kernels run with
    flush-to-zero, so a float32/float64/bfloat16 result that would be subnormal
    is 0 in TF but not in NumPy (see test_ema_oracle's subnormal tests).
    """
    limit = VALUE_LIMIT[dtype]
    width = 64 if dtype == "float64" else 16 if dtype == "float16" else 32

    def floats(lo, hi):
        return st.floats(lo, hi, width=width, allow_subnormal=False)

    elements = st.one_of(st.just(0.0), floats(min_magnitude, limit), floats(-limit, -min_magnitude))
    if dtype == "bfloat16":  # hypothesis has no bfloat16: draw float32 and round.
        arrays = hnp.arrays(np.float32, shape, elements=elements)
        return arrays.map(lambda a: np.asarray(a).astype(_math.as_dtype(dtype)))
    return hnp.arrays(_math.as_dtype(dtype), shape, elements=elements).map(np.asarray)


def value_sequences(dtype: str, shape=(), min_size: int = 1, max_size: int = 20) -> st.SearchStrategy[list]:
    """A list of arrays from ``values(dtype, shape)``: the variable's value at each update."""
    return st.lists(values(dtype, shape), min_size=min_size, max_size=max_size)


@st.composite
def ema_problems(draw, dtypes=dtypes, shapes=shapes, max_steps: int = 20):
    """A whole update problem: dtype, shape, decay, initial shadow, values and step counters."""
    dtype = draw(dtypes)
    shape = draw(shapes)
    seq = draw(value_sequences(dtype, shape, max_size=max_steps))
    first_step = draw(st.integers(0, 10_000))
    steps = draw(st.one_of(st.none(), st.just([first_step + i for i in range(len(seq))])))
    return {
        "dtype": dtype,
        "shape": shape,
        "decay": draw(decays()),
        "initial": draw(values(dtype, shape)),
        "values": seq,
        "num_updates": steps,
    }


def random_sequence(seed: int, dtype: str, shape=(), length: int = 20, scale: float = 10.0) -> np.ndarray:
    """``length`` seeded normal draws of ``shape``, rounded to ``dtype``: shape ``(length,) + shape``."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((length,) + tuple(shape)) * scale).astype(_math.as_dtype(dtype))


def eps(dtype: str) -> float:
    """Machine epsilon of a dtype name, bfloat16 included (2 ** -7)."""
    import ml_dtypes

    return float(ml_dtypes.finfo(_math.as_dtype(dtype)).eps)
