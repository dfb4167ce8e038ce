"""What code translated from Python 2 calls at run time: ``/``, ``/=`` and ``print``.

``tf1_ema.legacy.py2to3`` rewrites ``a / b`` as ``_tf1_ema_py2.div(a, b)``, ``a /= b`` as
``a = _tf1_ema_py2.idiv(a, b)``, every ``print`` as ``_tf1_ema_py2.print(...)`` and calls
of ``round``/``file``/``str`` as ``_tf1_ema_py2.round``/``file``/``str``, and formatting with
a string literal as ``_tf1_ema_py2.mod``/``format``. The
runner and the kernel put ``RUNTIME`` into the globals of translated code (and only
there) under ``HELPER_NAME``; nothing here is installed process-wide, so Python 3 code in
the same process keeps Python 3's meaning.

Python 2 semantics reproduced:

* ``/`` floored when both operands were integers (``int``, ``bool``, ``long``, NumPy
  integer scalars and integer arrays, and integer TensorFlow tensors: TF1's ``Tensor.__div__``
  floored them) -- ``7 / 2`` is 3, ``-7 / 2`` is -4 -- and divided truly otherwise. Another
  object with a Python 2 ``__div__``/``__rdiv__`` is asked through it.
* ``print`` showed a byte string (Python 2's ``str``) as its text, ``Hello``, and inside
  containers (NumPy arrays of them, a string tensor's value, included) as ``'Hello'``; a float printed on its own with 12 significant digits
  (``0.333333333333``); a set as ``set([1, 2])``; and ``print x,`` left a pending space
  that only the next print on the same stream wrote.

* ``str(x)``, ``"..." % x`` and ``"...".format(x)`` gave the same text as ``print``.
* ``round(x)`` returned a float and rounded halves away from zero; ``file`` was ``open``.

The text rules are ``era_repr`` formatters tagged ``"py2"``: they apply to translated
code's ``print`` and, in the kernel, to the displayed value of a translated cell.
"""

from __future__ import annotations

import decimal
import math
import numbers
import operator
import sys
import types
from typing import Any, Dict, Optional, TextIO

import numpy

from tf1_ema.legacy import era_repr
from tf1_ema.legacy.py2to3 import HELPER_NAME

__all__ = [
    "HELPER_NAME",
    "TAG",
    "RUNTIME",
    "old_div",
    "old_idiv",
    "py2_print",
    "py2_str",
    "py2_mod",
    "py2_format",
    "py2_round",
    "py2_text",
]
#: The era_repr tag of Python 2's text rules, in ``print`` and in a displayed value.
TAG = "py2"
# Python 2's IPython displayed sets as {1, 2}; only `print` showed set([1, 2]).
_PRINT_TAG = "py2-print"
_TAGS = frozenset([TAG, _PRINT_TAG])


def _tensor_dtype(value: Any) -> Any:
    """The TensorFlow DType of a tensor or variable, else None (no TensorFlow import)."""
    dtype = getattr(value, "dtype", None)
    return dtype if type(dtype).__module__.startswith("tensorflow") else None


def _integral(value: Any) -> bool:
    """Whether Python 2 (and TF1's ``Tensor.__div__``) treated ``value`` as an integer for ``/``."""
    if isinstance(value, numbers.Integral):  # int, bool, NumPy integer scalars
        return True
    dtype = _tensor_dtype(value)
    if dtype is not None:
        return bool(getattr(dtype, "is_integer", False))
    if type(value).__module__ != "numpy":
        return False
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return kind in ("i", "u", "b")


def old_div(a: Any, b: Any) -> Any:
    """Python 2's ``a / b``: floor division for two integers, true division otherwise.

    Args:
        a: the dividend.
        b: the divisor.

    Returns:
        ``a // b`` when both are integers (or integer NumPy values), else what ``__div__``
        or ``a / b`` gives.

    >>> old_div(7, 2), old_div(-7, 2), old_div(7.0, 2)
    (3, -4, 3.5)
    """
    __tracebackhide__ = True  # IPython shows the user's line, not this helper's
    if _integral(a) and _integral(b):
        # TF1 parity: Tensor.__div__ floored integer tensors (floor_div) ...
        return a // b
    if _tensor_dtype(a) is not None or _tensor_dtype(b) is not None:
        # ... and divided others truly (real_div); today's __div__ would log a deprecation.
        return a / b
    method = getattr(type(a), "__div__", None)
    if method is not None:
        result = method(a, b)
        if result is not NotImplemented:
            return result
    method = getattr(type(b), "__rdiv__", None)
    if method is not None:
        result = method(b, a)
        if result is not NotImplemented:
            return result
    return a / b


def old_idiv(a: Any, b: Any) -> Any:
    """Python 2's ``a /= b``: in place where the type allows, floored for integers.

    Args:
        a: the target's current value.
        b: the divisor.

    Returns:
        The value to bind to the target (``a`` itself for NumPy arrays, changed in place).
    """
    __tracebackhide__ = True
    if _integral(a) and _integral(b):
        return operator.ifloordiv(a, b)
    tensors = _tensor_dtype(a) is not None or _tensor_dtype(b) is not None
    if not tensors and (getattr(type(a), "__div__", None) or getattr(type(b), "__rdiv__", None)):
        return old_div(a, b)
    return operator.itruediv(a, b)


def py2_round(number: Any, ndigits: int = 0) -> Any:
    """Python 2's ``round``: a float, with halves rounded away from zero.

    Args:
        number: the value; a real number (NumPy scalars included) gets Python 2's rule,
            anything else Python 3's ``round``.
        ndigits: decimal digits to keep (negative rounds to tens, hundreds ...).

    Returns:
        A float for real numbers: ``round(2.5)`` is 3.0 and ``round(-0.5)`` is -1.0 (Python 3
        gives 2 and 0).
    """
    if not isinstance(number, numbers.Real):
        return round(number, ndigits)
    value = float(number)
    if math.isinf(value) or math.isnan(value):
        return value
    # The exact binary value, rounded half away from zero: round(2.675, 2) is 2.67 in both.
    quantum = decimal.Decimal(1).scaleb(-int(ndigits))
    return float(decimal.Decimal(value).quantize(quantum, rounding=decimal.ROUND_HALF_UP))


class _Py2Float(float):
    """A float whose ``str`` (``%s``, ``{}``) has Python 2's 12 digits; ``%f``, ``%d`` work as on floats."""

    def __str__(self) -> str:
        return _float_text(float(self), "str")

    def __format__(self, spec: str) -> str:
        return str(self) if spec == "" else float.__format__(self, spec)


class _Py2Shown:
    """A value that formats (``%s``, ``%r``, ``{}``, ``{!r}``) with Python 2's text."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return era_repr.render(self.value, "str", _TAGS)

    def __repr__(self) -> str:
        return era_repr.render(self.value, "repr", _TAGS)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _py2_arg(value: Any) -> Any:
    if type(value) is float:
        return _Py2Float(value)
    if type(value) in (bytes, list, tuple, dict, set, frozenset) and era_repr.needs_render(value, _TAGS):
        return _Py2Shown(value)
    return value


def py2_mod(left: Any, right: Any) -> Any:
    """``left % right`` where ``left`` is a string literal: Python 2's text for the arguments.

    Args:
        left: the format string (anything else is plain ``%``).
        right: one argument, a tuple of them, or a mapping.

    Returns:
        The formatted string: ``"%s" % b"Hello"`` is ``Hello`` and ``"%s" % (1.0 / 3)`` is
        ``0.333333333333``, as in Python 2.
    """
    __tracebackhide__ = True
    if not isinstance(left, str):
        return left % right
    if type(right) is tuple:
        right = tuple(_py2_arg(item) for item in right)
    elif type(right) is dict:
        right = {key: _py2_arg(item) for key, item in right.items()}
    else:
        right = _py2_arg(right)
    return left % right


def py2_format(template: Any, *args: Any, **kwargs: Any) -> Any:
    """``template.format(...)`` for a string literal, with Python 2's text for the arguments.

    Args:
        template: the literal.
        *args: positional arguments.
        **kwargs: keyword arguments.

    Returns:
        The formatted string.
    """
    __tracebackhide__ = True
    return template.format(*map(_py2_arg, args), **{key: _py2_arg(item) for key, item in kwargs.items()})


def py2_str(*args: Any, **kwargs: Any) -> str:
    """Python 2's ``str(x)``: a byte string's own text, a float's 12 digits, containers to match.

    Args:
        *args: ``str``'s arguments.
        **kwargs: ``str``'s keyword arguments.

    Returns:
        ``str(x)`` as Python 2 made it, for one argument; Python 3's ``str`` otherwise.
    """
    if len(args) == 1 and not kwargs:
        return era_repr.render(args[0], "str", _TAGS)
    return str(*args, **kwargs)


def py2_file(*args: Any, **kwargs: Any) -> Any:
    """Python 2's ``file(name, mode)`` builtin: ``open``."""
    return open(*args, **kwargs)


# Streams whose last print ended with a trailing comma: Python 2's `softspace`.
_SOFTSPACE: Dict[int, TextIO] = {}


def py2_print(*values: Any, sep: Optional[str] = None, end: Optional[str] = None, file: Optional[TextIO] = None,
              flush: bool = False, softspace: bool = False) -> None:
    """``print`` as a Python 2 program saw it: Python 2's text, and ``print x,``.

    Args:
        *values: what to print; byte strings print as Python 2's ``str``.
        sep: written between values (default one space).
        end: written after the last value (default a newline).
        file: the stream (default ``sys.stdout``, looked up at call time).
        flush: flush the stream afterwards.
        softspace: the statement ended with a comma (``print x,``): write no newline and
            leave a space pending, which the next print to this stream writes first, as
            Python 2 did; a value ending in a newline or tab leaves none.
    """
    __tracebackhide__ = True
    stream = sys.stdout if file is None else file
    if stream is None:
        return
    pending = _SOFTSPACE.pop(id(stream), None) is stream
    texts = [era_repr.render(value, "str", _TAGS) for value in values]
    text = (" " if pending and texts else "") + (" " if sep is None else sep).join(texts)
    if softspace:
        last = text[-1:]
        if not (last.isspace() and last != " "):
            _SOFTSPACE[id(stream)] = stream
    else:
        text += "\n" if end is None else end
    try:
        stream.write(text)
    except TypeError:
        # TF1 parity (Python 2): `print >>f` into a file opened "wb" wrote the str's bytes.
        stream.write(text.encode("utf-8"))
    if flush:
        stream.flush()


def end_softspace(stream: Optional[TextIO] = None) -> None:
    """Ends a line left open by ``print x,``, as Python 2's IPython did after each cell.

    Args:
        stream: the stream (default ``sys.stdout``).
    """
    stream = sys.stdout if stream is None else stream
    if _SOFTSPACE.pop(id(stream), None) is stream:
        stream.write("\n")


def py2_text(value: Any) -> str:
    """The text ``print value`` showed in Python 2 (used by tests and the display hook).

    Args:
        value: any value.

    Returns:
        ``era_repr.render(value, "str")`` with the Python 2 formatters on.
    """
    return era_repr.render(value, "str", _TAGS)


def _bytes_text(value: bytes, mode: str) -> str:
    if mode == "str":
        return value.decode("utf-8", "replace")
    return repr(value)[1:]  # Python 3's bytes repr is Python 2's str repr with a `b`


def _float_text(value: float, mode: str) -> Optional[str]:
    if mode != "str" or type(value) is not float:  # NumPy's floats belong to NumPy's era
        return None
    if math.isinf(value) or math.isnan(value):
        return repr(value)
    # TF1 parity (Python 2.7): str(float) kept 12 significant digits, repr 17.
    text = "%.12g" % value
    if text.lstrip("-").isdigit():
        text += ".0"
    return text


def _set_text(value: Any, mode: str) -> Optional[str]:
    if type(value) not in (set, frozenset):
        return None
    items = ", ".join(era_repr.render(item, "repr", _TAGS) for item in value)
    return "%s([%s])" % (type(value).__name__, items)


def _element_text(value: Any) -> str:
    return repr(value)[1:] if isinstance(value, bytes) else repr(value)


def _bytes_array_text(value: numpy.ndarray, mode: str) -> Optional[str]:
    """A string tensor's value (an object or ``S`` array of bytes) as Python 2 printed it."""
    if value.dtype.kind not in "OS" or (value.dtype.kind == "O" and not any(isinstance(v, bytes) for v in value.flat)):
        return None
    formatter = {"numpystr": _element_text, "object": _element_text}
    if mode == "str":
        return numpy.array2string(value, separator=" ", formatter=formatter)
    body = numpy.array2string(value, separator=", ", prefix="array(", formatter=formatter)
    dtype = "object" if value.dtype.kind == "O" else repr(value.dtype.str)
    return "array(%s, dtype=%s)" % (body, dtype)


era_repr.register("py2-bytes", bytes, _bytes_text, tag=TAG)
era_repr.register("py2-bytes-array", numpy.ndarray, _bytes_array_text, tag=TAG)
era_repr.register("py2-float", float, _float_text, tag=TAG)
era_repr.register("py2-set", (set, frozenset), _set_text, tag=_PRINT_TAG)

#: The object translated code finds as ``_tf1_ema_py2``.
RUNTIME = types.SimpleNamespace(
    div=old_div,
    idiv=old_idiv,
    print=py2_print,
    round=py2_round,
    file=py2_file,
    str=py2_str,
    mod=py2_mod,
    format=py2_format,
)
