"""NumPy, Pillow and scipy.misc names that TF1-era code used, served to that code alone.

The stand-ins come from ``tf1_ema.legacy.libshims.proxy``; the import hook that hands them
to user code is exercised end to end in ``test_era_idioms.py``. Expected values are what
the old functions returned (NumPy <= 1.23, Pillow 9, SciPy 1.1 semantics), worked out by
hand for small inputs. Pillow and SciPy tests skip when the library is not installed.
"""

import builtins
import io
import math
import sys
import types

import numpy
import pytest

from tf1_ema.legacy import libshims

np = libshims.proxy(numpy)


# ------------------------------------------------------------------- NumPy golden table

# (expression over `np` and `a = np.arange(6.0)`, expected value, as old NumPy gave it)
NUMPY_GOLDEN = [
    ("np.float", float), ("np.int", int), ("np.bool", bool), ("np.object", object),
    ("np.str", str), ("np.complex", complex), ("np.unicode", str),
    ("np.float_", numpy.float64), ("np.complex_", numpy.complex128), ("np.cfloat", numpy.complex128),
    ("np.string_", numpy.bytes_), ("np.unicode_", numpy.str_), ("np.bool8", numpy.bool_),
    ("np.int0", numpy.intp), ("np.longfloat", numpy.longdouble),
    ("np.Inf", math.inf), ("np.NINF", -math.inf), ("np.PZERO", 0.0),
    ("np.asscalar(np.array([7]))", 7),
    ("np.alltrue([True, False])", False), ("np.sometrue([True, False])", True),
    ("np.product([2, 3, 4])", 24), ("np.cumproduct([2, 3, 4]).tolist()", [2, 6, 24]),
    ("np.round_(2.567, 1)", 2.6), ("np.rank(np.zeros((2, 3)))", 2),
    ("np.msort(np.array([[3, 1], [1, 2]])).tolist()", [[1, 1], [3, 2]]),
    ("np.in1d([[1, 5], [2, 7]], [1, 7]).tolist()", [True, False, False, True]),
    ("np.trapz([1.0, 2.0, 3.0])", 4.0), ("np.mat([[1, 2]]).shape", (1, 2)),
    ("np.loads(__import__('pickle').dumps([1]))", [1]),
    ("np.asfarray([1, 2]).dtype", numpy.float64), ("np.asfarray([1, 2], np.float32).dtype", numpy.float32),
    ("np.asfarray([1, 2], np.int32).dtype", numpy.float64),
    ("np.issubclass_(1, int)", False), ("np.issubclass_(bool, int)", True),
    ("np.reshape(a, newshape=(2, 3)).shape", (2, 3)), ("np.reshape(a, (3, 2)).shape", (3, 2)),
    ("np.reshape(a, newshape=(2, 3), order='F')[1].tolist()", [1.0, 3.0, 5.0]),
    ("np.histogram([1, 2, 2, 4], bins=[0, 2, 4], normed=True)[0].tolist()", [0.125, 0.375]),
    ("np.histogram([1, 2, 2, 4], bins=[0, 1, 4], normed=True)[0].tolist()", [0.0, 1 / 3]),
    ("np.fromstring(b'\\x01\\x02', dtype=np.uint8).tolist()", [1, 2]),
    ("np.fromstring('1 2', dtype=int, sep=' ').tolist()", [1, 2]),
    ("np.linspace(0, 1, 3.0).tolist()", [0.0, 0.5, 1.0]),
    ("np.sum(x * x for x in range(4))", 14),
    ("np.sum(a)", 15.0),
]


@pytest.mark.parametrize("expression, expected", NUMPY_GOLDEN, ids=[e for e, _ in NUMPY_GOLDEN])
def test_numpy_old_names_give_old_results(expression, expected):
    """Each removed NumPy name or keyword, through the stand-in, gives what old NumPy gave."""
    value = eval(expression, {"np": np, "a": numpy.arange(6.0)})
    assert value == expected


def test_numpy_array_copy_false_copies_only_when_needed():
    """np.array(x, copy=False) shares an existing array and copies a list, as NumPy < 2 did."""
    existing = numpy.arange(3)
    assert np.array(existing, copy=False) is existing
    assert np.array([1, 2], copy=False).tolist() == [1, 2]
    assert np.array(existing) is not existing


def test_numpy_shims_pickle_like_numpys_functions():
    """The function shims pickle by reference (pool.map(np.sum, ...) keeps working)."""
    import pickle

    for name in ("sum", "array", "reshape", "asscalar", "histogram"):
        function = getattr(np, name)
        assert pickle.loads(pickle.dumps(function)) is function


def test_numpy_nan_aliases_are_nan():
    """np.NaN and np.NAN are NaN."""
    assert math.isnan(np.NaN) and math.isnan(np.NAN)


def test_numpy_stand_in_serves_everything_else_from_numpy():
    """Names NumPy still has are NumPy's own objects (np.float32, np.random, np.__version__)."""
    assert np.float32 is numpy.float32 and np.random is numpy.random
    assert np.__version__ == numpy.__version__ and np.__name__ == "numpy"
    assert "float" in dir(np) and "float32" in dir(np)
    assert repr(np) == repr(numpy)


def test_real_numpy_is_never_changed():
    """After the stand-in served old names, the real numpy still lacks them (libraries see NumPy as is)."""
    assert np.float is float and np.reshape is not numpy.reshape
    assert not hasattr(numpy, "float") and not hasattr(numpy, "asscalar")
    if numpy.lib.NumpyVersion(numpy.__version__) >= "2.4.0":  # newshape= still works before NumPy 2.4
        with pytest.raises(TypeError):
            numpy.reshape(numpy.arange(4), newshape=(2, 2))


def test_unknown_attribute_is_an_ordinary_attribute_error():
    """A name neither NumPy nor the shims have raises AttributeError naming numpy."""
    with pytest.raises(AttributeError, match="'numpy' has no attribute 'no_such_name'"):
        np.no_such_name


def test_notice_is_one_line_per_shim_when_enabled(monkeypatch, capsys):
    """With notices on (--tf-log), the first use of a shim prints one line on stderr, later uses none."""
    monkeypatch.setattr(libshims, "notices", True)
    monkeypatch.setattr(libshims, "_noticed", set())
    fresh = libshims.ShimModule(numpy)
    fresh.asscalar  # removed in every NumPy the package runs on (1.23), so always a shim
    fresh.asscalar
    err = capsys.readouterr().err
    assert err == "tf1-ema: np.asscalar is the TF1-era shim (removed in NumPy 1.23: a.item())\n"


def test_no_notice_by_default(capsys):
    """Without --tf-log the shims are silent."""
    libshims.ShimModule(numpy).alltrue
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------- the import path


def fake_import(installed):
    """An __import__ that knows only the modules in ``installed`` (name -> module)."""

    def original(name, globals_=None, locals_=None, fromlist=(), level=0):
        if name not in installed:
            error = ModuleNotFoundError("No module named %r" % name)
            error.name = name
            raise error
        return installed[name] if fromlist else installed[name.partition(".")[0]]

    return original


def test_a_library_that_is_not_installed_still_fails_to_import():
    """No stand-in for a library that is absent: the import fails as it always did."""
    with pytest.raises(ModuleNotFoundError, match="scipy"):
        libshims.proxy_for_import(fake_import({}), "scipy.misc", {}, {}, ("imread",))


def test_scipy_misc_is_served_when_scipy_lacks_it():
    """SciPy without scipy.misc (2.0 on): `from scipy.misc import imresize` still finds the old function."""
    scipy = types.ModuleType("scipy")
    scipy.__path__ = []
    stand_in = libshims.proxy_for_import(fake_import({"scipy": scipy}), "scipy.misc", {}, {}, ("imresize",))
    assert stand_in.imresize is libshims.imresize and stand_in.__name__ == "scipy.misc"
    libshims._proxies.pop("scipy", None)
    libshims._proxies.pop("scipy.misc", None)


def test_import_of_submodule_without_fromlist_returns_the_top_stand_in():
    """`import numpy.linalg` binds the numpy stand-in, whose linalg is NumPy's own."""
    top = libshims.proxy_for_import(builtins.__import__, "numpy.linalg", {}, {}, None)
    assert top is np and top.linalg is numpy.linalg


# ------------------------------------------------------------------- Pillow


def test_pillow_antialias_is_lanczos_and_resizes_the_same():
    """Image.ANTIALIAS (Pillow < 10) is LANCZOS: same filter, same pixels; real PIL.Image is untouched."""
    PIL_Image = pytest.importorskip("PIL.Image")
    Image = libshims.proxy(PIL_Image)
    assert Image.ANTIALIAS == PIL_Image.LANCZOS == 1
    assert Image.LINEAR == PIL_Image.BILINEAR and Image.CUBIC == PIL_Image.BICUBIC
    picture = PIL_Image.fromarray(numpy.arange(64, dtype=numpy.uint8).reshape(8, 8))
    assert picture.resize((3, 3), Image.ANTIALIAS).tobytes() == picture.resize((3, 3), PIL_Image.LANCZOS).tobytes()
    assert not hasattr(PIL_Image, "ANTIALIAS")


def test_from_pil_import_image_gives_the_image_stand_in():
    """`from PIL import Image` in user code binds the PIL.Image stand-in."""
    pytest.importorskip("PIL.Image")
    pil = libshims.proxy_for_import(builtins.__import__, "PIL", {}, {}, ("Image",))
    assert pil.Image.ANTIALIAS == 1 and pil.Image.open is pil.Image._tf1_ema_real.open


# ------------------------------------------------------------------- scipy.misc (needs Pillow)


@pytest.fixture
def misc():
    """The scipy.misc stand-in (skipped without Pillow; SciPy itself is optional for these)."""
    pytest.importorskip("PIL.Image")
    return libshims.ShimModule(types.ModuleType("scipy.misc"))


def test_bytescale_maps_min_max_onto_0_255(misc):
    """bytescale stretches min..max to 0..255, rounding half up; uint8 comes back as is."""
    assert misc.bytescale(numpy.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    assert misc.bytescale(numpy.array([2.0, 2.0])).tolist() == [0, 0]
    assert misc.bytescale(numpy.array([-1.0, 5.0]), cmin=0, cmax=4).tolist() == [0, 255]
    raw = numpy.array([3, 7], numpy.uint8)
    assert misc.bytescale(raw) is raw


@pytest.mark.parametrize(
    "size, shape", [((4, 6), (4, 6)), (200, (4, 4)), (0.5, (1, 1))], ids=["tuple", "percent", "fraction"]
)
def test_imresize_sizes(misc, size, shape):
    """imresize's size is (height, width), an int percentage or a float fraction."""
    assert misc.imresize(numpy.eye(2), size).shape == shape


def test_imresize_byte_scales_floats_first(misc):
    """TF1 parity: a float image in 0..1 comes back as uint8 0..255 (bytescaled), nearest keeps pixels."""
    out = misc.imresize(numpy.array([[0.0, 1.0], [1.0, 0.0]]), (4, 4), interp="nearest")
    assert out.dtype == numpy.uint8
    assert out.tolist() == [[0, 0, 255, 255], [0, 0, 255, 255], [255, 255, 0, 0], [255, 255, 0, 0]]


def test_toimage_finds_the_channel_axis(misc):
    """A (3, H, W) array is read channel-first and gives the same RGB image as (H, W, 3)."""
    rgb = numpy.arange(24, dtype=numpy.uint8).reshape(2, 4, 3)
    last = misc.toimage(rgb)
    first = misc.toimage(numpy.moveaxis(rgb, 2, 0))
    assert last.mode == first.mode == "RGB" and last.size == (4, 2)
    assert last.tobytes() == first.tobytes() == rgb.tobytes()


def test_imsave_then_imread_round_trips(misc, tmp_path):
    """imsave writes a PNG that imread reads back; flatten gives float32 grey."""
    rgb = (numpy.arange(48).reshape(4, 4, 3) * 5).astype(numpy.uint8)
    path = str(tmp_path / "x.png")
    misc.imsave(path, rgb)
    back = misc.imread(path)
    assert back.dtype == numpy.uint8 and back.tolist() == rgb.tolist()
    grey = misc.imread(path, flatten=True)
    assert grey.dtype == numpy.float32 and grey.shape == (4, 4)
    assert misc.imread(path, mode="L").shape == (4, 4)


def test_scipy_misc_moved_functions_come_from_scipy_special(misc):
    """misc.logsumexp / comb / factorial are scipy.special's (needs SciPy)."""
    special = pytest.importorskip("scipy.special")
    assert misc.comb is special.comb and misc.logsumexp is special.logsumexp


def test_scipy_through_the_import_path_when_installed():
    """With SciPy installed, `import scipy.misc` gives the stand-in, with imresize."""
    pytest.importorskip("scipy")
    pytest.importorskip("PIL.Image")
    import warnings

    sys.modules.pop("scipy.misc", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # SciPy's own notice stays hidden
        top = libshims.proxy_for_import(builtins.__import__, "scipy.misc", {}, {}, None)
    assert top.misc.imresize is libshims.imresize
    import scipy

    assert not hasattr(scipy, "misc") or not hasattr(scipy.misc, "imresize")
