"""NumPy 1.13's ``str`` and ``repr`` of arrays and scalars, on today's NumPy.

Before 1.14, NumPy printed every float element by formatting its float64 value with up to
``precision`` (8) decimals, so float32 arrays showed more digits than today's shortest
round-trip output, and arrays carried a leading sign column::

    np.float32([1/3, 2/3, 1])   NumPy 1.13: [ 0.33333334  0.66666669  1.        ]
    np.float32([1e-5, 1.0])     NumPy 1.13: [  9.99999975e-06   1.00000000e+00]

Scalars were printed by C ``printf``: ``%.6g`` (str) and ``%.8g`` (repr) for float32,
``%.12g`` / ``%.17g`` for float64, ``%.5g`` for float16, ``%.12Lg`` / ``%.20Lg`` for
longdouble, with ``.0`` appended when only digits remained.

This module is our own rendition of that behaviour, checked against NumPy 1.13.3 itself by
``tests/golden/numpy113_print.json`` and the property tests in ``tests/test_np113print.py``.
It reads the live print options (``np.set_printoptions``: precision, threshold, edgeitems,
linewidth, suppress, nanstr, infstr, formatter) as NumPy 1.13 did. It imports NumPy only.

Public functions:
    array2string, array_str, array_repr: the three array printers, 1.13 signatures.
    scalar_str, scalar_repr: a NumPy scalar as 1.13 printed it, or None for other objects.
    format_str, format_repr: plain ndarrays and scalars; None for anything else.
    era_formatter, ERA_TYPES: the same as one ``era_repr`` formatter ``(obj, mode)``.
    install, uninstall: route ``ndarray.__str__``/``__repr__`` to this module and back.
"""

import functools
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

__all__ = [
    "array2string",
    "array_str",
    "array_repr",
    "scalar_str",
    "scalar_repr",
    "format_str",
    "format_repr",
    "ERA_TYPES",
    "era_formatter",
    "install",
    "uninstall",
    "installed",
]

# TF1 parity: NumPy 1.13 on 64-bit Linux/macOS (Python 3): `repr` omitted the dtype for
# these element types, and for nothing else (not even bool).
_TYPELESS = (np.int_, np.float64, np.complex128)

# Significant digits of the C scalar printers (scalartypes.c.src): (str, repr).
_SCALAR_DIGITS = {
    np.float16: (5, 5),
    np.float32: (6, 8),
    np.float64: (12, 17),
}
_LONGDOUBLE_DIGITS = (12, 17) if np.finfo(np.longdouble).nmant == 52 else (12, 20)


def _options() -> Dict[str, Any]:
    """The print options that NumPy 1.13 knew, read from ``np.get_printoptions()``."""
    current = np.get_printoptions()
    return {
        "precision": current["precision"],
        "threshold": current["threshold"],
        "edgeitems": current["edgeitems"],
        "linewidth": current["linewidth"],
        "suppress": current["suppress"],
        "nanstr": current["nanstr"],
        "infstr": current["infstr"],
        "formatter": current.get("formatter"),
    }


# --- C printf's %g, for scalars -------------------------------------------------------------


def _printf_g(value: Any, digits: int) -> str:
    """C's ``"%.<digits>g"`` of a finite float, float64 or longdouble, correctly rounded.

    float16/32/64 go through Python's own ``%g`` (exact on their float64 value, as C's
    ``printf`` was); longdouble goes through NumPy's exact Dragon4 in scientific form and
    then follows C's rule: ``%e`` when the exponent is < -4 or >= digits, else ``%f``, then
    trailing zeros and a bare point are removed.
    """
    digits = max(digits, 1)
    if not isinstance(value, np.longdouble) or np.finfo(np.longdouble).nmant == 52:
        return "%.*g" % (digits, float(value))
    sci = np.format_float_scientific(value, precision=digits - 1, unique=False, trim="k", exp_digits=2)
    mantissa, exponent = sci.split("e")
    exp = int(exponent)
    if exp < -4 or exp >= digits:
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return "%se%s%02d" % (mantissa, "-" if exp < 0 else "+", abs(exp))
    fixed = np.format_float_positional(value, precision=digits - 1 - exp, unique=False, fractional=True, trim="k")
    if "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    return fixed


def _c_float(value: Any, digits: int) -> str:
    """NumPy 1.13's ``format_<float>``: ``%.<digits>g``, with ``.0`` added to bare digits."""
    if np.isnan(value):
        return "nan"
    if np.isinf(value):
        return "-inf" if value < 0 else "inf"
    text = _printf_g(value, digits)
    if text.lstrip("-").isdigit():
        text += ".0"
    return text


def _c_part(value: Any, digits: int, signed: bool) -> str:
    """One part of a complex scalar: ``%.<digits>g`` (``%+...`` when signed), no ``.0``."""
    if np.isnan(value):
        return "+nan" if signed else "nan"
    if np.isinf(value):
        return "-inf" if value < 0 else ("+inf" if signed else "inf")
    text = _printf_g(value, digits)
    return "+" + text if signed and not text.startswith("-") else text


def _c_complex(value: Any, digits: int) -> str:
    """NumPy 1.13's ``format_c<float>``: ``2j``, ``(1+2j)``, ``nan*j`` for non-finite parts."""
    real, imag = value.real, value.imag
    star = "" if np.isfinite(imag) else "*"
    if real == 0 and not np.signbit(real):
        return _c_part(imag, digits, signed=False) + star + "j"
    return "(%s%s%sj)" % (_c_part(real, digits, signed=False), _c_part(imag, digits, signed=True), star)


def _scalar(value: Any, which: int) -> Optional[str]:
    """``which`` 0 for str, 1 for repr; None when ``value`` is not a NumPy scalar we render."""
    if not isinstance(value, np.generic):
        return None
    if isinstance(value, np.longdouble):
        return _c_float(value, _LONGDOUBLE_DIGITS[which])
    if isinstance(value, np.clongdouble):
        return _c_complex(value, _LONGDOUBLE_DIGITS[which])
    if isinstance(value, np.floating):
        digits = _SCALAR_DIGITS.get(type(value))
        return None if digits is None else _c_float(value, digits[which])
    if isinstance(value, np.complexfloating):
        part = np.float32 if isinstance(value, np.complex64) else np.float64
        return _c_complex(value, _SCALAR_DIGITS[part][which])
    if isinstance(value, (np.bool_, np.integer, np.str_, np.bytes_)):
        # 1.13 printed these as the Python object they hold.
        item = value.item()
        return str(item) if which == 0 else repr(item)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        if which == 0:
            return str(value)
        text = repr(value)
        return "numpy." + text[3:] if text.startswith("np.") else text
    return None


def scalar_str(value: Any) -> Optional[str]:
    """``str(value)`` as NumPy 1.13 printed it, or None when ``value`` is no NumPy scalar.

    Args:
        value: any object.

    Returns:
        The 1.13 text for NumPy bool, integer, float, complex, string and time scalars;
        None for everything else (including arrays and Python numbers).
    """
    return _scalar(value, 0)


def scalar_repr(value: Any) -> Optional[str]:
    """``repr(value)`` as NumPy 1.13 printed it, or None when ``value`` is no NumPy scalar.

    >>> scalar_repr(np.float32(4.555)), scalar_repr(np.float64(0.1))
    ('4.5549998', '0.10000000000000001')

    Args:
        value: any object.

    Returns:
        The 1.13 text, or None (see ``scalar_str``).
    """
    return _scalar(value, 1)


def _era_repr(value: Any) -> str:
    """``repr`` for things inside arrays: NumPy scalars as 1.13, containers walked."""
    text = scalar_repr(value)
    if text is not None:
        return text
    if isinstance(value, np.ndarray):
        return array_repr(value)
    if type(value) is list:
        return "[" + ", ".join(_era_repr(v) for v in value) + "]"
    if type(value) is tuple:
        inner = ", ".join(_era_repr(v) for v in value)
        return "(" + inner + ("," if len(value) == 1 else "") + ")"
    if type(value) is dict:
        return "{" + ", ".join("%s: %s" % (_era_repr(k), _era_repr(v)) for k, v in value.items()) + "}"
    return repr(value)


def _era_str(value: Any) -> str:
    text = scalar_str(value)
    if text is not None:
        return text
    if isinstance(value, np.ndarray):
        return array_str(value)
    if type(value) in (list, tuple, dict):
        return _era_repr(value)
    return str(value)


# --- element formatters (arrayprint of NumPy 1.13) ------------------------------------------


class _FloatFormat:
    """One column format for a float array: fixed point, or exponent when the range asks."""

    def __init__(self, data: np.ndarray, precision: int, suppress: bool, opts: Dict[str, Any], sign: bool = False):
        self.precision = precision
        self.suppress = suppress
        self.sign = sign
        self.nanstr = opts["nanstr"]
        self.infstr = opts["infstr"]
        self.exp_format = False
        self.large_exponent = False
        self.width = 0
        self._choose(data)

    def _choose(self, data: np.ndarray) -> None:
        with np.errstate(all="ignore"):
            special = np.isnan(data) | np.isinf(data)
            magnitudes = np.absolute(data.compress(np.not_equal(data, 0) & ~special))
            if len(magnitudes) == 0:
                largest = smallest = 0.0
            else:
                largest = np.maximum.reduce(magnitudes)
                smallest = np.minimum.reduce(magnitudes)
                # TF1 parity: the ratio is computed in the array's own dtype (float16
                # overflows to inf), as NumPy 1.13 did.
                if largest >= 1.0e8:
                    self.exp_format = True
                if not self.suppress and (smallest < 0.0001 or largest / smallest > 1000.0):
                    self.exp_format = True
            if self.exp_format:
                self.large_exponent = bool(0 < smallest < 1e-99 or largest >= 1e100)
        if self.exp_format:
            self.width = 8 + self.precision + (1 if self.large_exponent else 0)
            self.format = "%" + ("+" if self.sign else "") + "%d.%de" % (self.width, self.precision)
        else:
            decimals = 0
            if len(magnitudes) and self.precision > 0:
                plain = "%%.%df" % self.precision
                decimals = max(self.precision - len(s) + len(s.rstrip("0")) for s in (plain % x for x in magnitudes))
            decimals = min(self.precision, decimals)
            self.width = len(str(int(largest))) + decimals + 2
            if np.any(special):
                self.width = max(self.width, len(self.nanstr), len(self.infstr) + 1)
            self.format = "%#" + ("+" if self.sign else "") + "%d.%df" % (self.width, decimals)
        self.special = "%%%ds" % self.width

    def __call__(self, x: Any, strip_zeros: bool = True) -> str:
        with np.errstate(invalid="ignore"):
            if np.isnan(x):
                return self.special % (("+" if self.sign else "") + self.nanstr)
            if np.isinf(x):
                if x > 0:
                    return self.special % (("+" if self.sign else "") + self.infstr)
                return self.special % ("-" + self.infstr)
        s = self.format % x
        if self.large_exponent:
            if s[-3] in "+-":  # widen a 2-digit exponent to 3, eating a pad space
                s = s[1:-2] + "0" + s[-2:]
        elif self.exp_format:
            if s[-3] == "0":  # drop the third exponent digit, pad on the left instead
                s = " " + s[:-3] + s[-2:]
        elif strip_zeros:
            stripped = s.rstrip("0")
            s = stripped + " " * (len(s) - len(stripped))
        return s


class _ComplexFormat:
    """Real and imaginary columns, each a ``_FloatFormat``; trailing zeros move past the j."""

    def __init__(self, data: np.ndarray, precision: int, suppress: bool, opts: Dict[str, Any]):
        self.real = _FloatFormat(data.real, precision, suppress, opts)
        self.imag = _FloatFormat(data.imag, precision, suppress, opts, sign=True)

    def __call__(self, x: Any) -> str:
        r = self.real(x.real, strip_zeros=False)
        i = self.imag(x.imag, strip_zeros=False)
        if not self.imag.exp_format:
            stripped = i.rstrip("0")
            return r + stripped + "j" + " " * (len(i) - len(stripped))
        return r + i + "j"


class _LongFloatFormat:
    """Longdouble elements: C ``%.<precision>Lg`` each, unaligned, a space for the sign."""

    def __init__(self, precision: int, opts: Dict[str, Any], sign: bool = False):
        self.precision = min(precision, 70)
        self.sign = sign
        self.nanstr = opts["nanstr"]
        self.infstr = opts["infstr"]

    def __call__(self, x: Any) -> str:
        pad = "+" if self.sign else " "
        if np.isnan(x):
            return pad + self.nanstr
        if np.isinf(x):
            return (pad if x > 0 else "-") + self.infstr
        text = _c_float(x, self.precision)
        return pad + text if x >= 0 else text


class _LongComplexFormat:
    def __init__(self, precision: int, opts: Dict[str, Any]):
        self.real = _LongFloatFormat(precision, opts)
        self.imag = _LongFloatFormat(precision, opts, sign=True)

    def __call__(self, x: Any) -> str:
        return self.real(x.real) + self.imag(x.imag) + "j"


class _IntegerFormat:
    """Right-aligned to the wider of the extremes; values beyond a C long print bare."""

    def __init__(self, data: np.ndarray):
        try:
            width = max(len(str(np.maximum.reduce(data))), len(str(np.minimum.reduce(data))))
            self.format = "%" + str(width) + "d"
        except (TypeError, NotImplementedError, ValueError):
            self.format = "%d"

    def __call__(self, x: Any) -> str:
        if -sys.maxsize - 1 < x < sys.maxsize:
            return self.format % x
        return "%s" % x


class _TimedeltaFormat:
    def __init__(self, data: np.ndarray):
        nat = np.array(["NaT"], dtype=data.dtype)[0]
        as_int = data.view(np.dtype(data.dtype.byteorder + "i8"))
        valid = as_int[np.not_equal(as_int, nat.view(np.dtype(data.dtype.byteorder + "i8")))]
        width = max(len(str(np.maximum.reduce(valid))), len(str(np.minimum.reduce(valid)))) if len(valid) else 0
        if len(valid) < len(data):
            width = max(width, 5)
        self.format = "%" + str(width) + "d"
        self.nat = "'NaT'".rjust(width)

    def __call__(self, x: Any) -> str:
        if np.isnat(x):
            return self.nat
        return self.format % x.astype("i8")


class _DatetimeFormat:
    def __init__(self, data: np.ndarray):
        self.unit = np.datetime_data(data.dtype)[0]

    def __call__(self, x: Any) -> str:
        return "'%s'" % np.datetime_as_string(x, unit=self.unit, timezone="naive", casting="same_kind")


def _bool_format(x: Any) -> str:
    return " True" if x else "False"


def _object_format(x: Any) -> str:
    return ("list(%s)" if type(x) is list else "%s") % _era_repr(x)


def _string_format(x: Any) -> str:
    return repr(x.item()) if isinstance(x, np.generic) else repr(x)


def _pick_format(data: np.ndarray, precision: int, suppress: bool, opts: Dict[str, Any]) -> Callable[[Any], str]:
    """The element formatter for ``data``'s dtype, honouring a user ``formatter`` dict."""
    dtype = data.dtype
    if dtype.fields is not None:
        parts = []
        for name in dtype.names:
            part = _pick_format(np.ravel(data[name]), precision, suppress, opts)
            if dtype[name].shape != ():
                part = _SubArrayFormat(part)
            parts.append(part)
        return _StructFormat(parts)

    kind = dtype.type
    if issubclass(kind, np.bool_):
        key = "bool"
    elif issubclass(kind, np.timedelta64):
        key = "timedelta"
    elif issubclass(kind, np.integer):
        key = "int"
    elif issubclass(kind, np.longdouble):
        key = "longfloat"
    elif issubclass(kind, np.floating):
        key = "float"
    elif issubclass(kind, np.clongdouble):
        key = "longcomplexfloat"
    elif issubclass(kind, np.complexfloating):
        key = "complexfloat"
    elif issubclass(kind, np.datetime64):
        key = "datetime"
    elif issubclass(kind, np.object_):
        key = "object"
    elif _float_like(dtype):
        # Newer than NumPy 1.13 (ml_dtypes' bfloat16, float8): laid out as its float values.
        key, data = "float", data.astype(np.float64)
    else:
        key = "numpystr"

    user = _user_formatter(opts.get("formatter"), key)
    if user is not None:
        return user
    builders: Dict[str, Callable[[], Callable[[Any], str]]] = {
        "bool": lambda: _bool_format,
        "int": lambda: _IntegerFormat(data),
        "timedelta": lambda: _TimedeltaFormat(data),
        "float": lambda: _FloatFormat(data, precision, suppress, opts),
        "longfloat": lambda: _LongFloatFormat(precision, opts),
        "complexfloat": lambda: _ComplexFormat(data, precision, suppress, opts),
        "longcomplexfloat": lambda: _LongComplexFormat(precision, opts),
        "datetime": lambda: _DatetimeFormat(data),
        "object": lambda: _object_format,
        "numpystr": lambda: _string_format,
    }
    return builders[key]()


def _float_like(dtype: np.dtype) -> bool:
    """A non-NumPy scalar type that is a float by another name (bfloat16 and kin)."""
    if dtype.kind != "V" or dtype.type is np.void or issubclass(dtype.type, np.void):
        return False
    try:
        np.zeros(1, dtype).astype(np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _user_formatter(formatter: Optional[dict], key: str) -> Optional[Callable[[Any], str]]:
    """The callable a ``np.set_printoptions(formatter=...)`` dict gives ``key``, 1.13 rules."""
    if not formatter:
        return None
    given = {k: f for k, f in formatter.items() if f is not None}
    groups = {
        "int_kind": ("int",),
        "float_kind": ("float", "longfloat"),
        "complex_kind": ("complexfloat", "longcomplexfloat"),
        "str_kind": ("numpystr", "str"),
    }
    chosen = given.get("all")
    for group, members in groups.items():
        if group in given and key in members:
            chosen = given[group]
    return given.get(key, chosen)


class _SubArrayFormat:
    def __init__(self, element: Callable[[Any], str]):
        self.element = element

    def __call__(self, arr: np.ndarray) -> str:
        if arr.ndim <= 1:
            return "[" + ", ".join(self.element(a) for a in arr) + "]"
        return "[" + ", ".join(self(a) for a in arr) + "]"


class _StructFormat:
    def __init__(self, parts: List[Callable[[Any], str]]):
        self.parts = parts

    def __call__(self, x: Any) -> str:
        inner = ", ".join(part(field) for field, part in zip(x, self.parts))
        return "(" + inner + ("," if len(self.parts) == 1 else "") + ")"


# --- layout ---------------------------------------------------------------------------------


def _edges(a: np.ndarray, edgeitems: int) -> np.ndarray:
    """The elements a summarized print shows, flattened, in order."""
    if a.ndim == 1:
        if len(a) > 2 * edgeitems:
            return np.concatenate((a[:edgeitems], a[-edgeitems:]))
        return a
    if len(a) > 2 * edgeitems:
        rows = [_edges(a[i], edgeitems) for i in range(min(len(a), edgeitems))]
        rows += [_edges(a[-i], edgeitems) for i in range(min(len(a), edgeitems), 0, -1)]
    else:
        rows = [_edges(a[i], edgeitems) for i in range(len(a))]
    return np.concatenate(tuple(rows))


def _extend(out: str, line: str, word: str, width: int, indent: str) -> Tuple[str, str]:
    """Appends ``word`` to ``line``, first flushing the line when it would reach ``width``."""
    if len(line.rstrip()) + len(word.rstrip()) >= width:
        out += line.rstrip() + "\n"
        line = indent
    return out, line + word


def _layout(
    a: np.ndarray, fmt: Callable[[Any], str], rank: int, width: int, indent: str, sep: str, edgeitems: int, skip: str
) -> str:
    """NumPy 1.13's ``_formatArray``: nested brackets, wrapped lines, a newline at the end."""
    if skip and 2 * edgeitems < len(a):
        leading, trailing, gap = edgeitems, edgeitems, skip
    else:
        leading, trailing, gap = 0, len(a), ""

    if rank == 1:
        out, line = "", indent
        for i in range(leading):
            out, line = _extend(out, line, fmt(a[i]) + sep, width, indent)
        if gap:
            out, line = _extend(out, line, gap, width, indent)
        for i in range(trailing, 1, -1):
            out, line = _extend(out, line, fmt(a[-i]) + sep, width, indent)
        out, line = _extend(out, line, fmt(a[-1]), width, indent)
        out += line + "]\n"
        return "[" + out[len(indent) :]

    out = "["
    row_sep = sep.rstrip()
    breaks = "\n" * max(rank - 1, 1)
    for i in range(leading):
        if i > 0:
            out += indent
        out += _layout(a[i], fmt, rank - 1, width, " " + indent, sep, edgeitems, skip)
        out = out.rstrip() + row_sep + breaks
    if gap:
        out += indent + gap + "\n"
    for i in range(trailing, 1, -1):
        if leading or i != trailing:
            out += indent
        out += _layout(a[-i], fmt, rank - 1, width, " " + indent, sep, edgeitems, skip)
        out = out.rstrip() + row_sep + breaks
    if leading or trailing > 1:
        out += indent
    out += _layout(a[-1], fmt, rank - 1, width, " " + indent, sep, edgeitems, skip).rstrip() + "]\n"
    return out


_busy = threading.local()


def array2string(
    a: np.ndarray,
    max_line_width: Optional[int] = None,
    precision: Optional[int] = None,
    suppress_small: Optional[bool] = None,
    separator: str = " ",
    prefix: str = "",
    style: Callable[[Any], str] = _era_repr,
    formatter: Optional[dict] = None,
) -> str:
    """The body of an array's str/repr (brackets and elements), as NumPy 1.13 wrote it.

    Args:
        a: the array.
        max_line_width: wrap lines before this column; default the ``linewidth`` option.
        precision: float decimals; default the ``precision`` option.
        suppress_small: print small floats in fixed point; default the ``suppress`` option.
        separator: between elements (", " for repr).
        prefix: text printed before the array (``"array("``); continuation lines are
            indented by its length.
        style: how a 0-d array's item is written.
        formatter: a ``np.set_printoptions``-style dict; default the current one.

    Returns:
        The text; an array that contains itself prints "..." in its place.
    """
    key = id(a)
    busy = getattr(_busy, "ids", None)
    if busy is None:
        busy = _busy.ids = set()
    if key in busy:
        return "..."
    busy.add(key)
    try:
        return _array2string(a, max_line_width, precision, suppress_small, separator, prefix, style, formatter)
    finally:
        busy.discard(key)


def _array2string(a, max_line_width, precision, suppress_small, separator, prefix, style, formatter) -> str:
    opts = _options()
    if formatter is not None:
        opts["formatter"] = formatter
    width = opts["linewidth"] if max_line_width is None else max_line_width
    precision = opts["precision"] if precision is None else precision
    suppress = opts["suppress"] if suppress_small is None else suppress_small

    if a.shape == ():
        item = a.item()
        if a.dtype.fields is not None:
            one = np.array([item], dtype=a.dtype)
            return _pick_format(one, precision, suppress, opts)(one[0])
        return style(item)
    if a.size == 0:
        return "[]"
    if a.size > opts["threshold"]:
        skip, data = "..., ", _edges(a, opts["edgeitems"])
    else:
        skip, data = "", np.ravel(np.asarray(a))
    fmt = _pick_format(data, precision, suppress, opts)
    indent = " " + " " * len(prefix)
    return _layout(a, fmt, a.ndim, width, indent, separator, opts["edgeitems"], skip)[:-1]


def array_str(a: np.ndarray, max_line_width: Optional[int] = None, precision: Optional[int] = None,
              suppress_small: Optional[bool] = None) -> str:
    """``str(a)`` as NumPy 1.13 printed it, e.g. ``[ 0.33333334  0.66666669  1.        ]``.

    Args:
        a: the array.
        max_line_width: see ``array2string``.
        precision: see ``array2string``.
        suppress_small: see ``array2string``.

    Returns:
        The text.
    """
    return array2string(a, max_line_width, precision, suppress_small, " ", "", _era_str)


def array_repr(arr: np.ndarray, max_line_width: Optional[int] = None, precision: Optional[int] = None,
               suppress_small: Optional[bool] = None) -> str:
    """``repr(arr)`` as NumPy 1.13 printed it, e.g. ``array([ 1.,  2.], dtype=float32)``.

    Args:
        arr: the array.
        max_line_width: see ``array2string``.
        precision: see ``array2string``.
        suppress_small: see ``array2string``.

    Returns:
        The text.
    """
    name = "array" if type(arr) is np.ndarray else type(arr).__name__
    if arr.size > 0 or arr.shape == (0,):
        body = array2string(arr, max_line_width, precision, suppress_small, ", ", name + "(")
    else:
        body = "[], shape=%s" % (repr(arr.shape),)
    if arr.dtype.type in _TYPELESS and arr.size > 0:
        return "%s(%s)" % (name, body)
    typename = arr.dtype.name
    if typename and not (typename[0].isalpha() and typename.isalnum()):
        typename = "'%s'" % typename
    spacer = " "
    if issubclass(arr.dtype.type, np.flexible):
        typename = str(arr.dtype) if arr.dtype.names else "'%s'" % str(arr.dtype)
        spacer = "\n" + " " * len(name + "(")
    return "%s(%s,%sdtype=%s)" % (name, body, spacer, typename)


def format_str(obj: Any) -> Optional[str]:
    """``str(obj)`` in NumPy 1.13 for an ndarray or NumPy scalar; None for anything else.

    ndarray subclasses (``np.matrix``, masked arrays) keep their own ``__str__``.

    Args:
        obj: any object.

    Returns:
        The 1.13 text, or None.
    """
    if type(obj) is np.ndarray:
        return array_str(obj)
    return scalar_str(obj)


def format_repr(obj: Any) -> Optional[str]:
    """``repr(obj)`` in NumPy 1.13 for an array or NumPy scalar; None for anything else.

    Args:
        obj: any object.

    Returns:
        The 1.13 text, or None.
    """
    if type(obj) is np.ndarray:
        return array_repr(obj)
    return scalar_repr(obj)


def _scalar_classes() -> Tuple[type, ...]:
    """np.generic and every subclass NumPy defines, concrete ones included.

    Display hooks look a printer up along the class MRO and stop at the first class that
    defines ``__repr__``; each concrete NumPy scalar type does, so each needs its entry.
    """
    found, pending = [], [np.generic]
    while pending:
        kind = pending.pop()
        if kind not in found:
            found.append(kind)
            pending.extend(kind.__subclasses__())
    return tuple(found)


#: What ``era_formatter`` answers for, for ``era_repr.register``: ndarray and NumPy scalars.
ERA_TYPES = (np.ndarray,) + _scalar_classes()


def era_formatter(obj: Any, mode: str) -> Optional[str]:
    """The ``era_repr`` formatter: ``format_str`` for mode "str", ``format_repr`` for "repr".

    Args:
        obj: an instance of one of ``ERA_TYPES``.
        mode: "str" (printed on its own) or "repr" (inside a container, or displayed).

    Returns:
        The NumPy 1.13 text, or None for objects it does not own (ndarray subclasses,
        void scalars), which then print as they do today.
    """
    return format_str(obj) if mode == "str" else format_repr(obj)


# --- installing ---------------------------------------------------------------------------

_saved: Optional[Tuple[str, Any]] = None


def _route_array_printing(str_fn: Optional[Callable], repr_fn: Optional[Callable]) -> Any:
    """Points ``ndarray.__str__``/``__repr__`` at the given functions (None: NumPy's own).

    The one place that touches NumPy internals. NumPy < 2 has the public
    ``np.set_string_function``. NumPy 2 removed it; its C ``__str__``/``__repr__`` call the
    cached ``functools.partial`` objects ``numpy._core.arrayprint._default_array_str`` and
    ``_default_array_repr``, and we swap the function inside those partials in place
    (``partial.__setstate__``), so the route survives ``np.set_printoptions`` calls, which
    reset ``override_repr``. If those objects are missing (a future NumPy), we fall back
    to the public ``np.set_printoptions(override_repr=...)``, which covers repr only.

    Returns:
        "string_function", "partial" or "override_repr": the route taken.
    """
    global _saved
    if hasattr(np, "set_string_function"):  # NumPy < 2
        np.set_string_function(str_fn, repr=False)
        np.set_string_function(repr_fn, repr=True)
        return "string_function"
    try:
        from numpy._core import arrayprint as _arrayprint  # NumPy-private, see docstring

        partials = (_arrayprint._default_array_str, _arrayprint._default_array_repr)
        if not all(isinstance(p, functools.partial) for p in partials):
            raise AttributeError("not partials")
    except (ImportError, AttributeError):
        np.set_printoptions(override_repr=repr_fn)
        return "override_repr"
    if _saved is None:
        _saved = ("partial", tuple(p.__reduce__()[2] for p in partials))
    originals = _saved[1]
    for partial, original, ours in zip(partials, originals, (str_fn, repr_fn)):
        if ours is None:
            partial.__setstate__(original)
        else:
            partial.__setstate__((_ignore_extra(ours), (), {}, None))
    if str_fn is None and repr_fn is None:
        _saved = None
    return "partial"


def _ignore_extra(fn: Callable[[np.ndarray], str]) -> Callable[..., str]:
    """NumPy 2 calls the partials as ``f(a)``; accept and drop anything else it may pass."""

    def call(a: np.ndarray, *args: Any, **kwargs: Any) -> str:
        return fn(a)

    call.__name__ = getattr(fn, "__name__", "np113")
    return call


_route: Optional[str] = None
_legacy_before: Any = False


def install() -> str:
    """Makes every ndarray print as NumPy 1.13 did, process-wide; idempotent.

    Also sets NumPy's own ``legacy="1.13"`` mode, so NumPy's float scalars, which cannot
    be re-routed, already come close (their exact 1.13 text is what ``scalar_repr``
    gives; callers route scalars through an ``era_repr`` print and display hook).

    Returns:
        The route taken (see ``_route_array_printing``).
    """
    global _route, _legacy_before
    if _route is None:
        _legacy_before = np.get_printoptions().get("legacy", False)
    np.set_printoptions(legacy="1.13")
    _route = _route_array_printing(array_str, array_repr)
    return _route


def uninstall() -> None:
    """Gives arrays back NumPy's own str/repr and turns NumPy's legacy mode off."""
    global _route
    if _route is None:
        return
    if _route == "override_repr":
        np.set_printoptions(override_repr=None)
    else:
        _route_array_printing(None, None)
    np.set_printoptions(legacy=_legacy_before)
    _route = None


def installed() -> bool:
    """True while ``install`` is in effect."""
    return _route is not None
