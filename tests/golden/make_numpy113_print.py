"""Writes tests/golden/numpy113_print.json: what NumPy 1.13.3 printed for a set of inputs.

The table is a record of facts made by NumPy 1.13 itself (``tests/np113_oracle.py`` loads
its arrayprint from the sdist; scalars come from the C library's printf with the formats
of 1.13's scalartypes.c.src). Regenerate after adding a case::

    cd /tmp && pip download numpy==1.13.3 --no-deps --no-binary :all: --no-build-isolation -d np113
    python tests/golden/make_numpy113_print.py          # or TF1_EMA_NP113_SDIST=DIR ...

Each array case is an expression over ``np`` plus the print options in force; each scalar
case an expression that makes one NumPy scalar.
"""

import json
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import np113_oracle  # noqa: E402

OUT = os.path.join(HERE, "numpy113_print.json")

R = "np.random.RandomState(%d)"

# (id, expression, options); options use NumPy 1.13's names. A "formatter" option is a dict
# of key -> printf format, turned into ``lambda x: fmt % x`` on both sides.
ARRAY_CASES = [
    ("f32 thirds", "np.float32([1/3, 2/3, 1])", {}),
    ("f32 small and one", "np.float32([1e-5, 1.0])", {}),
    ("f32 4.555", "np.float32([10.0, 4.555])", {}),
    ("f32 randn 2x3", (R % 0) + ".randn(2, 3).astype(np.float32)", {}),
    ("f32 randn 5x7 wraps", (R % 1) + ".randn(5, 7).astype(np.float32)", {}),
    ("f32 uniform 40 wraps", (R % 2) + ".uniform(0, 1, 40).astype(np.float32)", {}),
    ("f32 weights 3x4x5", (R % 3) + ".normal(0, 0.1, (3, 4, 5)).astype(np.float32)", {}),
    ("f32 loss curve", "np.float32([2.3025851, 0.45123, 0.3012, 0.1207, 0.0981])", {}),
    ("f32 zeros", "np.zeros(4, np.float32)", {}),
    ("f32 ones 2x2", "np.ones((2, 2), np.float32)", {}),
    ("f32 negative zero", "np.float32([-0.0, 0.0, 1.5])", {}),
    ("f32 large", "np.float32([1e8, 1.0])", {}),
    ("f32 1e7", "np.float32([1e7, 2.5])", {}),
    ("f32 ratio over 1000", "np.float32([0.001, 2.0])", {}),
    ("f32 nan inf", "np.float32([np.nan, 1.0, np.inf, -np.inf])", {}),
    ("f32 only nan", "np.float32([np.nan, np.nan])", {}),
    ("f32 nan with exp", "np.float32([np.nan, 1e-7, 3.0])", {}),
    ("f32 subnormal", "np.float32([1e-40, 1.0])", {}),
    ("f32 max", "np.array([np.finfo(np.float32).max, 1], np.float32)", {}),
    ("f64 arange", "np.arange(5.0)", {}),
    ("f64 thirds", "np.array([1/3, 2/3, 1.0])", {}),
    ("f64 0.1 steps", "np.arange(0, 1, 0.1)", {}),
    ("f64 linspace 30 wraps", "np.linspace(0, 1, 30)", {}),
    ("f64 randn 4x4", (R % 4) + ".randn(4, 4)", {}),
    ("f64 mixed sign", "np.array([-1.5, 2.25, -1000.0, 0.125])", {}),
    ("f64 1e100", "np.array([1e100, 1.0])", {}),
    ("f64 1e-100", "np.array([1e-100, 1.0])", {}),
    ("f64 1e-300 and 1e300", "np.array([1e-300, 1e300, -1e-5])", {}),
    ("f64 ints as floats", "np.array([1.0, 10.0, 100.0, 1000.0])", {}),
    ("f64 big", "np.array([123456789.0, 1.5])", {}),
    ("f64 inf only", "np.array([np.inf, -np.inf])", {}),
    ("f64 nan and big", "np.array([np.nan, 12345.678])", {}),
    ("f64 eps", "np.array([np.finfo(float).eps, 1.0])", {}),
    ("f64 column", "np.arange(4.0).reshape(4, 1)", {}),
    ("f64 4d", "np.arange(24.0).reshape(2, 3, 2, 2) / 7", {}),
    ("f16 values", "np.array([0.1, 1/3, 1000.0, -2.5], np.float16)", {}),
    ("f16 ratio overflow", "np.array([1e-4, 60000.0], np.float16)", {}),
    ("f16 small", "np.array([0.0001, 0.5], np.float16)", {}),
    ("f16 nan inf", "np.array([np.nan, np.inf, 1.0], np.float16)", {}),
    ("longdouble thirds", "np.array([1, 2, 3], np.longdouble) / 3", {}),
    ("longdouble mixed", "np.array([-1e-5, 1e30, 0.5, np.nan, -np.inf], np.longdouble)", {}),
    ("longdouble precision 3", "np.array([1, 2], np.longdouble) / 3", {"precision": 3}),
    ("int64 arange", "np.arange(10)", {}),
    ("int64 negative", "np.array([-5, 10, 300, -40000])", {}),
    ("int32", "np.array([1, -2, 3], np.int32)", {}),
    ("int8 extremes", "np.array([-128, 0, 127], np.int8)", {}),
    ("uint8 image", (R % 5) + ".randint(0, 256, (3, 8)).astype(np.uint8)", {}),
    ("uint16", "np.array([0, 65535], np.uint16)", {}),
    ("uint64 max", "np.array([0, 2**64 - 1], np.uint64)", {}),
    ("int64 extremes", "np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max])", {}),
    ("int64 3d", "np.arange(60).reshape(3, 4, 5)", {}),
    ("int64 wraps", "np.arange(0, 10**6, 25000)", {}),
    ("bool", "np.array([True, False, True])", {}),
    ("bool 2d", "np.eye(3, dtype=bool)", {}),
    ("c128", "np.array([1 + 2j, -0.5j, 3.25])", {}),
    ("c128 exp", "np.array([1e-5 + 1j, 2 - 3e6j])", {}),
    ("c128 nan", "np.array([complex(np.nan, 1), complex(1, np.inf)])", {}),
    ("c64", "np.array([1/3 + 2/3j, 1j], np.complex64)", {}),
    ("c64 2d", (R % 6) + ".randn(2, 3).astype(np.float32) * (1 + 1j)", {}),
    ("clongdouble", "np.array([1/3 + 1j, -2j], np.clongdouble)", {}),
    ("summary int 2000", "np.arange(2000)", {}),
    ("summary float 1001", "np.linspace(0, 1, 1001, dtype=np.float32)", {}),
    ("summary 2d", "np.arange(3000).reshape(30, 100)", {}),
    ("summary 2d f32", (R % 7) + ".rand(40, 50).astype(np.float32)", {}),
    ("summary 3d", "np.arange(2 * 30 * 40, dtype=np.float64).reshape(2, 30, 40)", {}),
    ("summary mnist-like", "np.zeros((100, 784), np.float32)", {}),
    ("threshold 5", "np.arange(10)", {"threshold": 5}),
    ("threshold 5 2d", "np.arange(20).reshape(4, 5)", {"threshold": 5}),
    ("edgeitems 1", "np.arange(2000.0)", {"edgeitems": 1}),
    ("edgeitems 5 2d", "np.arange(1500).reshape(50, 30)", {"edgeitems": 5}),
    ("precision 3", (R % 8) + ".randn(3, 3).astype(np.float32)", {"precision": 3}),
    ("precision 0", "np.array([1.4, 2.6, 100.5])", {"precision": 0}),
    ("precision 12", "np.float32([1/3, 0.1])", {"precision": 12}),
    ("precision 4 exp", "np.array([1e-6, 4e-7, 2, 3])", {"precision": 4}),
    ("suppress", "np.array([1e-6, 4e-7, 2, 3])", {"suppress": True}),
    ("suppress precision 6", "np.array([1e-6, 4e-7, 2, 3])", {"suppress": True, "precision": 6}),
    ("suppress f32 softmax", "np.float32([1e-9, 0.25, 0.75])", {"suppress": True}),
    ("suppress precision 3 big", "np.array([1e9, 0.001])", {"suppress": True, "precision": 3}),
    ("linewidth 40", "np.arange(20.0) / 3", {"linewidth": 40}),
    ("linewidth 120", (R % 9) + ".randn(3, 12)", {"linewidth": 120}),
    ("nanstr infstr", "np.array([np.nan, np.inf, 1.0])", {"nanstr": "NaN", "infstr": "Inf"}),
    ("formatter float_kind", "np.array([1.0, 2.5])", {"formatter": {"float_kind": "%.2f"}}),
    ("formatter int", "np.arange(3)", {"formatter": {"int": "<%d>"}}),
    ("empty f32", "np.array([], np.float32)", {}),
    ("empty f64", "np.array([])", {}),
    ("empty int 0x3", "np.zeros((0, 3), np.int64)", {}),
    ("empty 2x0 f32", "np.zeros((2, 0), np.float32)", {}),
    ("0d f64", "np.array(0.1)", {}),
    ("0d f32", "np.array(0.1, np.float32)", {}),
    ("0d f16", "np.array(0.1, np.float16)", {}),
    ("0d int", "np.array(7)", {}),
    ("0d int32", "np.array(7, np.int32)", {}),
    ("0d bool", "np.array(True)", {}),
    ("0d c128", "np.array(1 + 2j)", {}),
    ("0d longdouble", "np.array(np.longdouble(1) / 3)", {}),
    ("0d str", "np.array('abc')", {}),
    ("unicode", "np.array(['cat', 'dog', 'a'])", {}),
    ("bytes", "np.array([b'ab', b'c'])", {}),
    ("object lists", "np.array([[1, 2], [3]], dtype=object)", {}),
    ("object mixed", "np.array([1, 'a', None, 2.5], dtype=object)", {}),
    ("structured", "np.array([(1, 2.5), (3, 0.125)], dtype=[('a', np.int32), ('b', np.float32)])", {}),
    ("datetime", "np.array(['2017-01-01', '2017-06-15'], dtype='datetime64[D]')", {}),
    ("timedelta", "np.array([1, 20, 300], dtype='timedelta64[s]')", {}),
    ("big-endian f64", "np.array([1.5, 2.0], dtype='>f8')", {}),
    ("big-endian f32", "np.array([1.5, 2.0], dtype='>f4')", {}),
    ("confusion matrix", "np.array([[50, 2, 0], [3, 45, 1], [0, 4, 49]])", {}),
    ("softmax rows", "np.float32([[0.1, 0.7, 0.2], [0.05, 0.05, 0.9]])", {}),
    ("one-hot labels", "np.eye(4, dtype=np.float32)[[1, 3, 0]]", {}),
    ("ema shadow", "np.float32([0.99, 0.9801, 0.970299])", {}),
]

# Expressions making one NumPy scalar each.
SCALAR_VALUES = ["0.1", "1/3", "4.555", "10.0", "1e16", "1e-5", "1e20", "123456789.0", "-0.0", "100.0",
                 "2.5e-310", "np.nan", "np.inf", "-np.inf", "65504.0", "0.30000000000000004", "-7.25",
                 "1e-45", "3.4028235e38"]
SCALAR_CASES = (
    ["np.float16(%s)" % v for v in SCALAR_VALUES]
    + ["np.float32(%s)" % v for v in SCALAR_VALUES]
    + ["np.float64(%s)" % v for v in SCALAR_VALUES]
    + ["np.longdouble(%s)" % v for v in SCALAR_VALUES]
    + ["np.longdouble(1) / 3", "np.longdouble(10) ** 30 / 7"]
    + ["np.complex128(1 + 2j)", "np.complex128(2j)", "np.complex128(0.1 + 0.2j)", "np.complex128(-1 - 1j)",
       "np.complex128(complex(0.0, np.nan))", "np.complex128(complex(1.0, np.inf))",
       "np.complex128(complex(np.nan, -np.inf))", "np.complex128(complex(-0.0, 3.0))",
       "np.complex64(1/3 + 1j)", "np.complex64(2.5j)", "np.clongdouble(1/3 + 1j)"]
    + ["np.int64(5)", "np.int32(-7)", "np.uint8(200)", "np.uint64(2**64 - 1)", "np.bool_(True)",
       "np.bool_(False)", "np.str_('abc')", "np.bytes_(b'ab')"]
)


def _options(options: dict) -> dict:
    out = dict(options)
    if "formatter" in out:
        out["formatter"] = {k: (lambda fmt: lambda x: fmt % x)(fmt) for k, fmt in out["formatter"].items()}
    return out


def main() -> int:
    """Regenerates the golden table; returns the exit status."""
    oracle = np113_oracle.load()
    if oracle is None:
        print("NumPy 1.13.3 sdist not found; see this file's docstring", file=sys.stderr)
        return 1
    defaults = oracle.get_printoptions()
    # NumPy 1.13's arrayprint asks the element scalars for their repr (strings, objects,
    # 0-d items); today's NumPy answers as 1.13 did only in its legacy mode.
    np.set_printoptions(legacy="1.13")
    arrays = []
    for case_id, expr, options in ARRAY_CASES:
        oracle.set_printoptions(**defaults)
        oracle.set_printoptions(**_options(options))
        value = eval(expr, {"np": np})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arrays.append(dict(id=case_id, expr=expr, options=options,
                               str=oracle.array_str(value), repr=oracle.array_repr(value)))
    oracle.set_printoptions(**defaults)
    scalars = []
    for expr in SCALAR_CASES:
        value = eval(expr, {"np": np})
        scalars.append(dict(expr=expr, str=oracle.scalar_text(value, "str"), repr=oracle.scalar_text(value, "repr")))
    table = {
        "about": "NumPy 1.13.3's str/repr (Python 3, x86-64 Linux), made by tests/golden/make_numpy113_print.py",
        "arrays": arrays,
        "scalars": scalars,
    }
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump(table, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    print("wrote %d array and %d scalar cases to %s" % (len(arrays), len(scalars), OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
