"""NumPy 1.13.3 itself as a printing oracle, loaded from its source distribution.

Nothing of NumPy 1.13 is kept in this repository. ``load()`` reads
``numpy/core/arrayprint.py`` and the ``array_repr``/``array_str`` functions of
``numpy/core/numeric.py`` out of the sdist (a directory or the ``.zip`` that
``pip download numpy==1.13.3 --no-deps --no-binary :all: --no-build-isolation -d DIR``
leaves), points their relative imports at today's NumPy, and executes them in a private
namespace. NumPy scalars were printed by C (``scalartypes.c.src``, ``format_<type>``); the
oracle for them calls the C library's own ``snprintf`` through ctypes with the formats that
file uses, so it shares no code with ``tf1_ema.legacy.np113print``.

Where is the sdist? ``$TF1_EMA_NP113_SDIST``, else ``/tmp/np113``. When it is absent,
``load()`` returns None and the property tests skip; the golden table always runs.
"""

from __future__ import annotations

import ast
import ctypes
import glob
import os
import sys
import types
import zipfile
from typing import Optional

import numpy as np

SDIST_ENV = "TF1_EMA_NP113_SDIST"
DEFAULT_SDIST = "/tmp/np113"


def _read(root: str, member: str) -> Optional[str]:
    """The text of ``numpy-1.13.3/<member>`` from a directory or zip under ``root``."""
    candidates = [root] if os.path.isfile(root) else glob.glob(os.path.join(root, "numpy-1.13.3*.zip"))
    for path in candidates:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                try:
                    return archive.read("numpy-1.13.3/" + member).decode("utf-8")
                except KeyError:
                    continue
    for base in (root, os.path.join(root, "numpy-1.13.3")):
        path = os.path.join(base, member)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return handle.read()
    return None


# --- C printf through ctypes ----------------------------------------------------------------

def c_format(fmt: str, value) -> str:
    """C's ``snprintf(fmt, value)``; ``L`` formats take the longdouble's own bytes."""
    snprintf = ctypes.CDLL(None).snprintf
    buf = ctypes.create_string_buffer(256)
    if "L" in fmt:
        raw = np.asarray(value, dtype=np.longdouble).tobytes()
        arg = ctypes.c_longdouble.from_buffer_copy(raw.ljust(ctypes.sizeof(ctypes.c_longdouble), b"\0"))
    else:
        arg = ctypes.c_double(float(value))
    snprintf(buf, ctypes.sizeof(buf), fmt.encode(), arg)
    return buf.value.decode()


def _format_real(value, prec: int, length: str) -> str:
    """``format_<float>`` of scalartypes.c.src: NumPyOS_ascii_format, then ``.0`` for bare digits."""
    if np.isnan(value):
        text = "nan"
    elif np.isinf(value):
        text = "-inf" if np.signbit(value) else "inf"
    else:
        text = c_format("%%.%d%sg" % (prec, length), value)
    body = text[1:] if text.startswith("-") else text
    if body.isdigit():
        text += ".0"
    return text


def _ascii(value, fmt: str) -> str:
    if np.isnan(value):
        return "nan"
    if np.isinf(value):
        return "-inf" if np.signbit(value) else "inf"
    return c_format(fmt, value)


def _format_complex(value, prec: int, length: str) -> str:
    """``format_c<float>`` of scalartypes.c.src."""
    real, imag = value.real, value.imag
    if real == 0.0 and not np.signbit(real):
        text = _ascii(imag, "%%.%d%sg" % (prec, length))
        if not np.isfinite(imag):
            text += "*"
        return text + "j"
    if np.isfinite(real):
        re_text = c_format("%%.%d%sg" % (prec, length), real)
    else:
        re_text = "nan" if np.isnan(real) else ("inf" if real > 0 else "-inf")
    if np.isfinite(imag):
        im_text = c_format("%%+.%d%sg" % (prec, length), imag)
    else:
        im_text = ("+nan" if np.isnan(imag) else ("+inf" if imag > 0 else "-inf")) + "*"
    return "(%s%sj)" % (re_text, im_text)


_LONG = np.finfo(np.longdouble).nmant != 52
# (str, repr) precisions, scalartypes.c.src: HALF/FLOAT/DOUBLE/LONGDOUBLE PREC_STR/_REPR.
_PREC = {
    np.float16: (5, 5, ""),
    np.float32: (6, 8, ""),
    np.float64: (12, 17, ""),
    np.longdouble: (12, 20, "L") if _LONG else (12, 17, ""),
    np.complex64: (6, 8, ""),
    np.complex128: (12, 17, ""),
    np.clongdouble: (12, 20, "L") if _LONG else (12, 17, ""),
}


def scalar_text(value, which: str) -> str:
    """``str`` (which="str") or ``repr`` of a NumPy scalar as NumPy 1.13's C code made it."""
    str_prec, repr_prec, length = _PREC.get(type(value), (None, None, None))
    if str_prec is None:
        if isinstance(value, (np.bool_, np.integer, np.str_, np.bytes_)):
            return str(value.item()) if which == "str" else repr(value.item())
        raise TypeError("no oracle for %r" % type(value))
    prec = str_prec if which == "str" else repr_prec
    if isinstance(value, np.complexfloating):
        return _format_complex(value, prec, length)
    if isinstance(value, np.float16):
        value = np.float32(value)  # format_half: npy_half_to_float, then format_float
    return _format_real(value, prec, length)


# --- arrayprint.py of NumPy 1.13 -------------------------------------------------------------


def _format_longfloat(x, precision: int) -> str:
    """multiarray.format_longfloat of 1.13: ``format_longdouble`` with precision <= 70."""
    return _format_real(np.longdouble(x), min(precision, 70), "L" if _LONG else "")


def _numpy_types() -> types.SimpleNamespace:
    """``numerictypes`` as 1.13's arrayprint used it, names removed since mapped back."""
    ns = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    ns.longfloat = np.longdouble
    ns.clongfloat = np.clongdouble
    ns.unicode_ = np.str_
    ns.string_ = np.bytes_
    ns.bool_ = np.bool_
    return ns


def load(root: Optional[str] = None) -> Optional[types.SimpleNamespace]:
    """NumPy 1.13's printing, run on today's NumPy; None when the sdist is not there.

    Args:
        root: the sdist directory or zip; default ``$TF1_EMA_NP113_SDIST`` or /tmp/np113.

    Returns:
        A namespace with ``array_str``, ``array_repr``, ``array2string``,
        ``set_printoptions``, ``get_printoptions`` (1.13's own option globals) and
        ``scalar_text(value, "str"|"repr")``; or None.
    """
    root = root or os.environ.get(SDIST_ENV) or DEFAULT_SDIST
    arrayprint = _read(root, "numpy/core/arrayprint.py")
    numeric = _read(root, "numpy/core/numeric.py")
    if arrayprint is None or numeric is None:
        return None
    replacements = {
        "from . import numerictypes as _nt": "_nt = _NUMPY_TYPES",
        "from .umath import": "from numpy import",
        "from .multiarray import (array, format_longfloat, datetime_as_string,":
            "from numpy import (array, datetime_as_string,",
        "from .fromnumeric import ravel": "from numpy import ravel",
        "from .numeric import asarray": "from numpy import asarray",
        "from . import numeric as _nc": "import numpy as _nc",
    }
    for old, new in replacements.items():
        if old not in arrayprint:
            raise RuntimeError("unexpected NumPy 1.13 arrayprint.py: %r not found" % old)
        arrayprint = arrayprint.replace(old, new)
    module = types.ModuleType("_numpy113_arrayprint")
    module.__dict__.update(_NUMPY_TYPES=_numpy_types(), format_longfloat=_format_longfloat)
    exec(compile(arrayprint, "numpy-1.13.3/numpy/core/arrayprint.py", "exec"), module.__dict__)

    # array_repr / array_str, lifted out of numeric.py by name.
    tree = ast.parse(numeric)
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("array_repr", "array_str")]
    scope = dict(
        array2string=module.array2string,
        ndarray=np.ndarray,
        flexible=np.flexible,
        # numeric.py: [int_, float_, complex_] (+ intc, longlong when they subclass int: Python 2 only)
        _typelessdata=[np.int_, np.float64, np.complex128],
    )
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "numpy-1.13.3/numpy/core/numeric.py", "exec"), scope)
    return types.SimpleNamespace(
        array2string=module.array2string,
        array_str=scope["array_str"],
        array_repr=scope["array_repr"],
        set_printoptions=module.set_printoptions,
        get_printoptions=module.get_printoptions,
        scalar_text=scalar_text,
        module=module,
    )


if __name__ == "__main__":  # a quick look: python tests/np113_oracle.py
    oracle = load()
    if oracle is None:
        sys.exit("NumPy 1.13.3 sdist not found (set %s)" % SDIST_ENV)
    print(oracle.array_str(np.float32([1 / 3, 2 / 3, 1])))
    print(oracle.array_str(np.float32([1e-5, 1.0])))
    print(oracle.scalar_text(np.float32(4.555), "repr"), oracle.scalar_text(np.float64(0.1), "repr"))
