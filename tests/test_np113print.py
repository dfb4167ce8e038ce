"""NumPy 1.13 printing (tf1_ema.legacy.np113print) against NumPy 1.13.3's own output.

The golden table (tests/golden/numpy113_print.json, made by NumPy 1.13.3) always runs.
The property tests compare with NumPy 1.13.3's arrayprint loaded from its sdist
(tests/np113_oracle.py) and skip when the sdist is not on this machine.
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tf1_ema.legacy import np113print

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import np113_oracle  # noqa: E402

with open(os.path.join(HERE, "golden", "numpy113_print.json"), encoding="utf-8") as _handle:
    GOLDEN = json.load(_handle)

ORACLE = np113_oracle.load()
EXAMPLES = int(os.environ.get("NP113_EXAMPLES", 400))  # hypothesis examples per property
needs_oracle = pytest.mark.skipif(ORACLE is None, reason="NumPy 1.13.3 sdist not found (see tests/np113_oracle.py)")


def _user_options(options: dict) -> dict:
    out = dict(options)
    if "formatter" in out:
        out["formatter"] = {k: (lambda fmt: lambda x: fmt % x)(fmt) for k, fmt in out["formatter"].items()}
    return out


@pytest.fixture(autouse=True)
def restore_numpy_printing():
    """Every test leaves NumPy's print options and array printing as it found them."""
    saved = np.get_printoptions()
    yield
    np113print.uninstall()
    np.set_printoptions(**{k: v for k, v in saved.items() if k in _SETTABLE})


_SETTABLE = ("precision", "threshold", "edgeitems", "linewidth", "suppress", "nanstr", "infstr", "formatter",
             "sign", "floatmode", "legacy")


@pytest.mark.parametrize("case", GOLDEN["arrays"], ids=[c["id"] for c in GOLDEN["arrays"]])
def test_array_golden(case):
    """array_str/array_repr give NumPy 1.13.3's text for each recorded array and print option set."""
    np.set_printoptions(**_user_options(case["options"]))
    value = eval(case["expr"], {"np": np})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np113print.array_str(value) == case["str"]
        assert np113print.array_repr(value) == case["repr"]


@pytest.mark.parametrize("case", GOLDEN["arrays"], ids=[c["id"] for c in GOLDEN["arrays"]])
def test_array_golden_installed(case):
    """Once installed, plain str()/repr()/format of arrays give the recorded NumPy 1.13.3 text."""
    np113print.install()
    np.set_printoptions(**_user_options(case["options"]))
    value = eval(case["expr"], {"np": np})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert str(value) == case["str"]
        assert repr(value) == case["repr"]
        assert "%s" % (value,) == case["str"]


@pytest.mark.parametrize("case", GOLDEN["scalars"], ids=[c["expr"] for c in GOLDEN["scalars"]])
def test_scalar_golden(case):
    """scalar_str/scalar_repr give the text NumPy 1.13.3's C scalar printers made."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = eval(case["expr"], {"np": np})
    assert np113print.scalar_str(value) == case["str"]
    assert np113print.scalar_repr(value) == case["repr"]


def test_issue_examples():
    """The two lines quoted in issue 12 print as NumPy 1.13 did."""
    assert np113print.array_str(np.float32([1 / 3, 2 / 3, 1])) == "[ 0.33333334  0.66666669  1.        ]"
    assert np113print.array_str(np.float32([1e-5, 1.0])) == "[  9.99999975e-06   1.00000000e+00]"


def test_format_functions_answer_only_for_numpy():
    """format_str/format_repr render arrays and NumPy scalars and return None for anything else."""
    assert np113print.format_repr(np.float32(4.555)) == "4.5549998"
    assert np113print.format_str(np.float32([0.5])) == "[ 0.5]"
    for other in (1.5, "x", [np.float32(1)], None):
        assert np113print.format_str(other) is None
        assert np113print.format_repr(other) is None


def test_float_types_newer_than_numpy113_do_not_break_printing():
    """bfloat16 (ml_dtypes, which TensorFlow returns) arrays print in 1.13's layout and its scalars as today."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert np113print.array_str(np.array([0.5, 1.0], ml_dtypes.bfloat16)) == "[ 0.5  1. ]"
    assert np113print.scalar_repr(ml_dtypes.bfloat16(0.5)) is None


def test_scalars_inside_object_arrays_and_nested_arrays():
    """Object arrays show their NumPy scalars and sub-arrays with 1.13 reprs."""
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = np.float32(0.1), np.float64(0.1)
    assert np113print.array_repr(arr) == "array([0.1, 0.10000000000000001], dtype=object)"


def test_options_set_after_install_still_apply():
    """np.set_printoptions after install (which resets NumPy 2's override_repr) keeps 1.13 printing."""
    np113print.install()
    np.set_printoptions(precision=3, suppress=True)
    assert repr(np.float32([1 / 3, 1e-9])) == "array([ 0.333,  0.   ], dtype=float32)"
    assert str(np.float32([1 / 3, 1e-9])) == "[ 0.333  0.   ]"


def test_uninstall_restores_numpy_printing():
    """uninstall gives arrays back today's NumPy printing."""
    before = repr(np.float32([1 / 3]))
    np113print.install()
    assert repr(np.float32([1 / 3])) != before
    np113print.uninstall()
    assert repr(np.float32([1 / 3])) == before


def test_import_leaves_numpy_printing_alone():
    """Importing tf1_ema and its np113 module changes nothing in NumPy's printing."""
    code = (
        "import numpy as np; before = (repr(np.float32([1/3])), np.get_printoptions()['legacy']);"
        "import tf1_ema, tf1_ema.legacy.np113print;"
        "assert (repr(np.float32([1/3])), np.get_printoptions()['legacy']) == before, before"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- property tests against NumPy 1.13.3 itself ------------------------------------------------

_DTYPES = [np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128,
           np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_]


def _elements(dtype):
    """Magnitudes from 1e-40 to 1e40, zeros of both signs, NaN and infinities."""
    if np.dtype(dtype).kind == "f":
        exponent = st.integers(-40, 40)
        finite = st.builds(lambda m, e: m * 10.0 ** e, st.floats(-10, 10), exponent)
        return st.one_of(finite, st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, 0.5]))
    real = _elements(np.float64)
    return st.builds(complex, real, real)


@st.composite
def _arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9))
    if dtype.kind not in "fc":
        return draw(hnp.arrays(dtype, shape))
    # Values are drawn as float64/complex128 and then rounded to the dtype, as user data is.
    wide = np.complex128 if dtype.kind == "c" else np.float64
    count = int(np.prod(shape))
    values = draw(st.lists(_elements(wide), min_size=count, max_size=count))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.array(values, dtype=wide).reshape(shape).astype(dtype)


_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "precision": st.integers(0, 12),
        "threshold": st.integers(1, 60),
        "edgeitems": st.integers(1, 4),
        "linewidth": st.integers(20, 120),
        "suppress": st.booleans(),
        "nanstr": st.sampled_from(["nan", "NaN", "--"]),
        "infstr": st.sampled_from(["inf", "Infinity"]),
    },
)


@needs_oracle
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_arrays(), _OPTIONS)
def test_arrays_match_numpy113(value, options):
    """For random arrays (dtypes, shapes, magnitudes, NaN/inf) and print options, str/repr equal NumPy 1.13.3's."""
    defaults = ORACLE.get_printoptions()
    saved = np.get_printoptions()
    try:
        ORACLE.set_printoptions(**options)
        np.set_printoptions(legacy="1.13", **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert np113print.array_str(value) == ORACLE.array_str(value)
            assert np113print.array_repr(value) == ORACLE.array_repr(value)
    finally:
        ORACLE.set_printoptions(**defaults)
        np.set_printoptions(**{k: v for k, v in saved.items() if k in _SETTABLE})


_FLOAT_SCALARS = [np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128, np.clongdouble]


@needs_oracle
@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(_FLOAT_SCALARS), _elements(np.float64), _elements(np.float64))
def test_scalars_match_numpy113(kind, real, imag):
    """For random float and complex scalars, str/repr equal what NumPy 1.13.3's C printf made."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = kind(complex(real, imag)) if issubclass(kind, np.complexfloating) else kind(real)
    assert np113print.scalar_str(value) == ORACLE.scalar_text(value, "str")
    assert np113print.scalar_repr(value) == ORACLE.scalar_text(value, "repr")


@needs_oracle
@settings(max_examples=200, deadline=None)
@given(st.integers(-4950, 4950), st.integers(1, 10**6))
def test_longdouble_scalars_match_numpy113(exponent, mantissa):
    """Longdouble scalars beyond float64's range and precision print as C's %Lg did."""
    with np.errstate(all="ignore"):
        value = np.longdouble(mantissa) * np.longdouble(10) ** exponent / np.longdouble(7)
    if not np.isfinite(value):
        return
    assert np113print.scalar_repr(value) == ORACLE.scalar_text(value, "repr")
    assert np113print.scalar_str(value) == ORACLE.scalar_text(value, "str")


# --- through era_repr: print and displayed values -------------------------------------------


@pytest.fixture
def era_registered():
    """The NumPy 1.13 formatter registered in era_repr for the test's duration."""
    from tf1_ema.legacy import era_repr

    era_repr.register("numpy-1.13", np113print.ERA_TYPES, np113print.era_formatter)
    yield era_repr
    era_repr.unregister("numpy-1.13")


def test_render_walks_containers_with_scalars_and_arrays(era_registered):
    """render shows NumPy scalars and arrays inside lists, tuples and dicts as NumPy 1.13's print did."""
    value = [np.float32(4.555), (np.float64(0.1),), {"w": np.float32([1 / 3, 1])}, np.int64(3), np.bool_(True)]
    assert era_registered.render(value) == (
        "[4.5549998, (0.10000000000000001,), {'w': array([ 0.33333334,  1.        ], dtype=float32)}, 3, True]"
    )
    assert era_registered.render(np.float32(1 / 3)) == "0.333333"
    assert era_registered.render(np.float32(1 / 3), "repr") == "0.33333334"
    assert era_registered.render(np.float16(0.1)) == "0.099976"


def test_era_print_writes_numpy113_text(era_registered, capsys):
    """era_print, the print user code gets, writes scalars and arrays with 1.13's text and keeps print's keywords."""
    era_registered.era_print(np.float32(1 / 3), [np.float32(1 / 3)], np.float32([1e-5, 1.0]), sep="|", end="!\n")
    assert capsys.readouterr().out == "0.333333|[0.33333334]|[  9.99999975e-06   1.00000000e+00]!\n"


def test_ipython_display_uses_numpy113_text(era_registered):
    """An IPython text/plain formatter hooked by install_ipython shows scalars (also in lists) as 1.13 did."""
    formatters = pytest.importorskip("IPython.core.formatters")
    PlainTextFormatter = formatters.PlainTextFormatter

    formatter = PlainTextFormatter()
    era_registered.install_ipython(formatter)
    assert formatter(np.float32(4.555)) == "4.5549998"
    assert formatter([np.float32(4.555), np.float64(0.1)]) == "[4.5549998, 0.10000000000000001]"
