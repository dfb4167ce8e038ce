"""The one bit-comparison rule of the suite: ``assert_bits_equal(ref, ours)``.

Two nests of dicts, lists and tuples must have the same shape; every numeric
leaf (NumPy arrays and scalars, Python numbers, anything NumPy can turn into an
array) the same dtype, shape and raw bytes, so -0.0 differs from 0.0 and NaN
payloads count; every other leaf (strings, None, names) must be equal. A failure
names the path of the leaf (``value['w'][3]``) and the first differing elements
with their bits.

NumPy only, so that modules that never touch TensorFlow (the oracle's) can use
it without importing TensorFlow; ``harness.py`` re-exports it.
"""

from typing import Iterable

import ml_dtypes
import numpy as np

def _is_numeric(x) -> bool:
    """Whether ``x`` is compared by bits: NumPy data, Python numbers, or anything with ``__array__``."""
    if isinstance(x, (str, bytes)):
        return False
    return isinstance(x, (np.ndarray, np.generic, bool, int, float, complex)) or hasattr(x, "__array__")


def _as_unsigned(a: np.ndarray) -> np.ndarray:
    """The raw bits of ``a``, one unsigned integer (or row of bytes) per element."""
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize in (1, 2, 4, 8):
        return a.view(np.dtype("u%d" % a.dtype.itemsize))
    return a.view(np.uint8).reshape(a.shape + (a.dtype.itemsize,))


def _is_nan(a: np.ndarray) -> np.ndarray:
    """NaN positions of a float array (bfloat16 and float16 included); all False for other kinds."""
    try:
        return np.isnan(a.astype(np.float64) if a.dtype.kind == "V" or a.dtype.itemsize == 2 else a)
    except (TypeError, ValueError):
        return np.zeros(a.shape, bool)


def _show(a: np.ndarray, u: np.ndarray, index) -> str:
    """One element as ``value (0xbits)``."""
    bits = u[index]
    hex_bits = "0x" + (bits.tobytes()[::-1].hex() if np.ndim(bits) else format(int(bits), "0%dx" % (2 * a.itemsize)))
    return "%r (%s)" % (a[index].item() if a.dtype.kind in "fiucb" else a[index], hex_bits)


def _compare_arrays(ref, ours, path: str, nans_by_position: bool) -> None:
    """Same dtype, shape and bytes; NaNs only by position where ``nans_by_position``."""
    a, b = np.asarray(ref), np.asarray(ours)
    assert a.dtype != object and b.dtype != object, "%s: not a number (a resource handle?): %r" % (path, type(ref))
    assert a.dtype == b.dtype, "%s: dtype %s (reference) != %s (ours)" % (path, a.dtype, b.dtype)
    assert a.shape == b.shape, "%s: shape %s (reference) != %s (ours)" % (path, a.shape, b.shape)
    ua, ub = _as_unsigned(a), _as_unsigned(b)
    different = ua != ub
    if different.ndim > a.ndim:
        different = different.any(axis=-1)
    note = ""
    if nans_by_position:
        nan_a, nan_b = _is_nan(a), _is_nan(b)
        different = (different & ~(nan_a & nan_b)) | (nan_a != nan_b)
        note = " (NaNs compared by position)"
    if not different.any():
        return
    where = np.argwhere(np.atleast_1d(different))
    lines = []
    for index in where[:5]:
        index = tuple(int(i) for i in index) if a.ndim else ()
        lines.append("  at %s: reference %s, ours %s" % (list(index), _show(a, ua, index), _show(b, ub, index)))
    raise AssertionError(
        "%s: %d of %d %s elements differ in their bits%s\n%s"
        % (path, len(where), max(a.size, 1), a.dtype, note, "\n".join(lines))
    )


def _compare(ref, ours, path: str, nan_dtypes: frozenset) -> None:
    """Recursive step of ``assert_bits_equal``."""
    if isinstance(ref, dict) or isinstance(ours, dict):
        assert isinstance(ref, dict) and isinstance(ours, dict), "%s: %s != %s" % (path, type(ref), type(ours))
        missing, extra = set(ref) - set(ours), set(ours) - set(ref)
        assert not missing and not extra, "%s: keys only in the reference %s, only in ours %s" % (
            path, sorted(map(repr, missing)), sorted(map(repr, extra)))
        for key in sorted(ref, key=repr):
            _compare(ref[key], ours[key], "%s[%r]" % (path, key), nan_dtypes)
    elif isinstance(ref, (list, tuple)) or isinstance(ours, (list, tuple)):
        assert type(ref) is type(ours), "%s: %s (reference) != %s (ours)" % (path, type(ref), type(ours))
        assert len(ref) == len(ours), "%s: length %d (reference) != %d (ours)" % (path, len(ref), len(ours))
        for i, (x, y) in enumerate(zip(ref, ours)):
            _compare(x, y, "%s[%d]" % (path, i), nan_dtypes)
    elif _is_numeric(ref) and _is_numeric(ours):
        by_position = np.asarray(ref).dtype.name in nan_dtypes
        _compare_arrays(ref, ours, path, by_position)
    else:
        assert type(ref) is type(ours) and ref == ours, "%s: %r (reference) != %r (ours)" % (path, ref, ours)


def assert_bits_equal(ref, ours, *, path: str = "value", nans_by_position: Iterable[str] = ()) -> None:
    """Asserts ``ours`` equals ``ref``: same nest, and every number the same dtype, shape and raw bytes.

    ``nans_by_position`` names dtypes (``"bfloat16"``) whose NaNs need only be
    NaN in the same places, payload and sign aside; every other bit still counts.
    """
    _compare(ref, ours, path, frozenset(nans_by_position))


def bits_record(x) -> list:
    """``[dtype name, shape, hex bytes]`` of an array: JSON-ready, for values printed by subprocesses."""
    x = np.asarray(x)
    return [x.dtype.name, list(x.shape), np.ascontiguousarray(x).tobytes().hex()]


def from_bits_record(record) -> np.ndarray:
    """The array a ``bits_record`` describes, bit for bit."""
    dtype, shape, hex_bytes = record
    return np.frombuffer(bytes.fromhex(hex_bytes), dtype=_np_dtype(dtype)).reshape(shape)


def _np_dtype(name: str) -> np.dtype:
    """A NumPy dtype by name, bfloat16 included."""
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)
