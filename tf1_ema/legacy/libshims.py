"""NumPy, Pillow and ``scipy.misc`` as TF1-era code knew them, for that code alone.

Old TF1 scripts die today on names their libraries have since removed: ``np.float``
(NumPy 1.24), ``np.reshape(x, newshape=...)`` (NumPy 2.4), ``Image.ANTIALIAS`` (Pillow 10),
``scipy.misc.imresize`` (SciPy 1.3). ``proxy(module)`` returns a stand-in module that serves
everything of the real one and, where the real one lacks it, the old name with its old
meaning (the same result wherever the old function was defined). The hook in ``tf1_ema.v1``
hands these stand-ins to user code only; the real modules, and every library importing
them, are never changed.

A library that is not installed gets no stand-in (its import fails as it always did). With
``notices`` on (``--tf-log``), the first use of each shim prints one line on stderr.

The shims are data: ``SHIMS[module name][attribute] = (why, factory)``; ``factory(real
module)`` builds the value. No TensorFlow import here.
"""

import builtins
import importlib
import math
import pickle
import sys
import types
import warnings
from typing import Any, Callable, Dict, Tuple

__all__ = ["LIBRARIES", "SHIMS", "proxy", "proxy_for_import", "notices"]

# Top-level packages whose imports by user code get stand-ins.
LIBRARIES = ("numpy", "PIL", "scipy")

notices = False  # set by tf1_ema.v1: True under --tf-log

Factory = Callable[[types.ModuleType], Any]


def _alias(name: str) -> Factory:
    return lambda module: getattr(module, name)


def _value(value: Any) -> Factory:
    return lambda module: value


# ---------------------------------------------------------------------------- NumPy


# Module-level functions (not closures), so that user code can pickle them, as it could
# pickle NumPy's own (multiprocessing's pool.map(np.sum, ...)).


def asscalar(a):
    """np.asscalar(a): the array's single element as a Python scalar (a.item())."""
    return a.item()


def rank(a):
    """np.rank(a): the number of dimensions (removed in NumPy 1.18)."""
    import numpy

    return numpy.ndim(a)


def msort(a):
    """np.msort(a): ``a`` sorted along its first axis."""
    import numpy

    return numpy.sort(a, axis=0)


def in1d(ar1, ar2, assume_unique=False, invert=False, **kwargs):
    """np.in1d: np.isin flattened to one dimension."""
    import numpy

    return numpy.isin(ar1, ar2, assume_unique=assume_unique, invert=invert, **kwargs).ravel()


def asfarray(a, dtype=float):
    """np.asfarray: ``a`` as an array of floats (float64 unless ``dtype`` is inexact)."""
    import numpy

    dtype = numpy.dtype(dtype)
    if not numpy.issubdtype(dtype, numpy.inexact):
        dtype = numpy.dtype(numpy.float64)
    return numpy.asarray(a, dtype=dtype)


def issubclass_(arg1, arg2):
    """np.issubclass_: issubclass that answers False instead of raising TypeError."""
    try:
        return issubclass(arg1, arg2)
    except TypeError:
        return False


def np_reshape(a, newshape=None, order="C", **kwargs):
    """np.reshape(a, newshape, order='C'): the TF1-era spelling of np.reshape(a, shape)."""
    import numpy

    shape = kwargs.pop("shape", newshape)
    return numpy.reshape(a, shape, order=order, **kwargs)


def np_histogram(a, bins=10, range=None, normed=None, weights=None, density=None):  # noqa: A002
    """np.histogram with the ``normed`` argument NumPy 1.24 removed.

    normed=True divided the counts by sum(counts * bin widths), as NumPy <= 1.23 did.
    """
    import numpy

    if not normed:
        return numpy.histogram(a, bins=bins, range=range, weights=weights, density=density)
    counts, edges = numpy.histogram(a, bins=bins, range=range, weights=weights)
    widths = numpy.diff(edges).astype(float)
    return counts / (counts * widths).sum(), edges


def np_array(object, dtype=None, *args, copy=True, **kwargs):  # noqa: A002 -- NumPy's name
    """np.array where copy=False means "copy only if needed", as before NumPy 2.0."""
    import numpy

    if copy is False and numpy.lib.NumpyVersion(numpy.__version__) >= "2.0.0":
        copy = None  # NumPy 1.x still reads copy=False as "copy only if needed" and rejects None
    return numpy.array(object, dtype, *args, copy=copy, **kwargs)


def np_fromstring(string, dtype=float, count=-1, sep="", **kwargs):
    """np.fromstring, including the binary mode (sep='') NumPy 2.3 removed: a copy of the bytes."""
    import numpy

    if sep == "":
        data = string.encode("latin-1") if isinstance(string, str) else string
        return numpy.frombuffer(data, dtype=dtype, count=count, **kwargs).copy()
    return numpy.fromstring(string, dtype=dtype, count=count, sep=sep, **kwargs)


def np_linspace(start, stop, num=50, *args, **kwargs):
    """np.linspace accepting a float ``num`` (truncated, as NumPy < 1.18 did)."""
    import numpy

    if isinstance(num, float):
        num = int(num)
    return numpy.linspace(start, stop, num, *args, **kwargs)


def np_sum(a, *args, **kwargs):
    """np.sum; a generator is summed by Python's sum, as NumPy < 2.0 did."""
    import numpy

    if isinstance(a, types.GeneratorType):
        total = builtins.sum(a)
        out = kwargs.get("out")
        if out is not None:
            out[...] = total
            return out
        return total
    return numpy.sum(a, *args, **kwargs)


def _numpy_functions() -> Dict[str, Tuple[str, Factory]]:
    """NumPy functions removed or changed since 2017, each rebuilt on today's NumPy."""
    return {
        "asscalar": ("removed in NumPy 1.23: a.item()", _value(asscalar)),
        "rank": ("removed in NumPy 1.18: np.ndim", _value(rank)),
        "msort": ("removed in NumPy 2.0: np.sort(a, axis=0)", _value(msort)),
        "in1d": ("removed in NumPy 2.4: np.isin(...).ravel()", _value(in1d)),
        "asfarray": ("removed in NumPy 2.0: np.asarray(a, dtype=float)", _value(asfarray)),
        "issubclass_": ("removed in NumPy 2.0: issubclass", _value(issubclass_)),
        "reshape": ("newshape= removed in NumPy 2.4: shape=", _value(np_reshape)),
        "histogram": ("normed= removed in NumPy 1.24: density=", _value(np_histogram)),
        "array": ("copy=False means 'never copy' since NumPy 2.0: copy=None", _value(np_array)),
        "fromstring": ("binary mode removed in NumPy 2.3: np.frombuffer(...).copy()", _value(np_fromstring)),
        "linspace": ("a float num raises since NumPy 1.18: int(num)", _value(np_linspace)),
        "sum": ("np.sum(generator) raises since NumPy 2.4: sum(generator)", _value(np_sum)),
        "loads": ("removed in NumPy 1.15: pickle.loads", _value(pickle.loads)),
    }


_NUMPY_ALIASES = {
    # name: (replacement attribute or value, when it was removed)
    "float": (float, "1.24"),
    "int": (int, "1.24"),
    "bool": (bool, "1.24"),
    "object": (object, "1.24"),
    "str": (str, "1.24"),
    "complex": (complex, "1.24"),
    "unicode": (str, "2.0"),
    "float_": ("float64", "2.0"),
    "complex_": ("complex128", "2.0"),
    "cfloat": ("complex128", "2.0"),
    "singlecomplex": ("complex64", "2.0"),
    "longfloat": ("longdouble", "2.0"),
    "longcomplex": ("clongdouble", "2.0"),
    "clongfloat": ("clongdouble", "2.0"),
    "unicode_": ("str_", "2.0"),
    "string_": ("bytes_", "2.0"),
    "int0": ("intp", "2.0"),
    "uint0": ("uintp", "2.0"),
    "bool8": ("bool_", "2.0"),
    "object0": ("object_", "2.0"),
    "str0": ("str_", "2.0"),
    "bytes0": ("bytes_", "2.0"),
    "void0": ("void", "2.0"),
    "NaN": (math.nan, "2.0"),
    "NAN": (math.nan, "2.0"),
    "Inf": (math.inf, "2.0"),
    "Infinity": (math.inf, "2.0"),
    "PINF": (math.inf, "2.0"),
    "infty": (math.inf, "2.0"),
    "NINF": (-math.inf, "2.0"),
    "PZERO": (0.0, "2.0"),
    "NZERO": (-0.0, "2.0"),
    "alltrue": ("all", "2.0"),
    "sometrue": ("any", "2.0"),
    "product": ("prod", "2.0"),
    "cumproduct": ("cumprod", "2.0"),
    "round_": ("round", "2.0"),
    "mat": ("asmatrix", "2.0"),
    "trapz": ("trapezoid", "2.4"),
}


def _numpy_shims() -> Dict[str, Tuple[str, Factory]]:
    shims = {}
    for name, (target, removed) in _NUMPY_ALIASES.items():
        if isinstance(target, str):
            shims[name] = ("removed in NumPy %s: np.%s" % (removed, target), _alias(target))
        else:
            shown = target.__name__ if isinstance(target, type) else repr(target)
            shims[name] = ("removed in NumPy %s: %s" % (removed, shown), _value(target))
    shims.update(_numpy_functions())
    return shims


# ---------------------------------------------------------------------------- Pillow

_PIL_IMAGE_SHIMS = {
    "ANTIALIAS": ("removed in Pillow 10: Image.LANCZOS", _alias("LANCZOS")),
    "LINEAR": ("removed in Pillow 10: Image.BILINEAR", _alias("BILINEAR")),
    "CUBIC": ("removed in Pillow 10: Image.BICUBIC", _alias("BICUBIC")),
}


# ---------------------------------------------------------------------------- scipy.misc


def _pil_image() -> Any:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError:
        raise ImportError("scipy.misc image functions need Pillow, as they did in SciPy < 1.2: pip install pillow") from None


def bytescale(data, cmin=None, cmax=None, high=255, low=0):
    """Scales an array linearly onto ``low..high`` and returns it as uint8 (scipy.misc.bytescale).

    uint8 input comes back unchanged. Otherwise ``(data - cmin) * (high - low) / (cmax -
    cmin) + low``, clipped to ``low..high`` and rounded half up; ``cmin``/``cmax`` default to
    the data's minimum and maximum, and a zero range counts as 1.
    """
    import numpy

    data = numpy.asarray(data)
    if data.dtype == numpy.uint8:
        return data
    if high > 255 or low < 0 or high < low:
        raise ValueError("bytescale needs 0 <= low <= high <= 255, got low=%r high=%r" % (low, high))
    cmin = data.min() if cmin is None else cmin
    cmax = data.max() if cmax is None else cmax
    spread = cmax - cmin
    if spread < 0:
        raise ValueError("`cmax` should be larger than `cmin`.")
    scale = float(high - low) / (spread if spread != 0 else 1)
    scaled = (data - cmin) * scale + low
    return (scaled.clip(low, high) + 0.5).astype(numpy.uint8)


def fromimage(im, flatten=False, mode=None):
    """A PIL image as a NumPy array (scipy.misc.fromimage): palette images become RGB(A),
    ``flatten`` gives a float32 grey image, ``mode`` converts first."""
    import numpy

    image_module = _pil_image()
    if not isinstance(im, image_module.Image):
        raise TypeError("Input is not a PIL image.")
    if mode is not None:
        if mode != im.mode:
            im = im.convert(mode)
    elif im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if flatten:
        im = im.convert("F")
    elif im.mode == "1":
        im = im.convert("L")
    return numpy.array(im)


def imread(name, flatten=False, mode=None):
    """Reads an image file into an array (scipy.misc.imread, via Pillow)."""
    return fromimage(_pil_image().open(name), flatten=flatten, mode=mode)


def toimage(arr, high=255, low=0, cmin=None, cmax=None, pal=None, mode=None, channel_axis=None):
    """An array as a PIL image (scipy.misc.toimage): 2-D arrays become grey ('L', byte-scaled
    to low..high), 3-D arrays with a 3- or 4-long axis RGB or RGBA."""
    import numpy

    image_module = _pil_image()
    data = numpy.asarray(arr)
    if numpy.iscomplexobj(data):
        raise ValueError("Cannot convert a complex-valued array.")
    shape = list(data.shape)
    if not (len(shape) == 2 or (len(shape) == 3 and (3 in shape or 4 in shape))):
        raise ValueError("'arr' does not have a suitable array shape for any mode.")
    if len(shape) == 2:
        size = (shape[1], shape[0])
        if mode == "F":
            return image_module.frombytes("F", size, data.astype(numpy.float32).tobytes())
        if mode in (None, "L", "P"):
            grey = bytescale(data, high=high, low=low, cmin=cmin, cmax=cmax)
            image = image_module.frombytes("L", size, grey.tobytes())
            if pal is not None:
                image.putpalette(numpy.asarray(pal, dtype=numpy.uint8).tobytes())
            elif mode == "P":
                ramp = numpy.arange(0, 256, 1, dtype=numpy.uint8)[:, numpy.newaxis]
                image.putpalette((ramp * numpy.ones((3,), dtype=numpy.uint8)[numpy.newaxis, :]).tobytes())
            return image
        if mode == "1":
            return image_module.frombytes("1", size, (data > high).tobytes())
        low_value = numpy.amin(data) if cmin is None else cmin
        high_value = numpy.amax(data) if cmax is None else cmax
        scaled = (data * 1.0 - low_value) * (high - low) / (high_value - low_value) + low
        if mode == "I":
            return image_module.frombytes("I", size, scaled.astype(numpy.uint32).tobytes())
        raise ValueError("Mode is unknown or incompatible with input array shape.")
    if channel_axis is None:
        axis = shape.index(3) if 3 in shape else shape.index(4)
    else:
        axis = channel_axis
    channels = shape[axis]
    if channels not in (3, 4):
        raise ValueError("Channel axis dimension is not valid.")
    pixels = numpy.moveaxis(bytescale(data, high=high, low=low, cmin=cmin, cmax=cmax), axis, 2)
    size = (pixels.shape[1], pixels.shape[0])
    if mode is None:
        mode = "RGB" if channels == 3 else "RGBA"
    if mode not in ("RGB", "RGBA", "YCbCr", "CMYK"):
        raise ValueError("Mode is unknown or incompatible with input array shape.")
    if (mode in ("RGB", "YCbCr")) != (channels == 3):
        raise ValueError("Invalid array shape for mode.")
    return image_module.frombytes(mode, size, numpy.ascontiguousarray(pixels).tobytes())


_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "cubic": 3}


def imresize(arr, size, interp="bilinear", mode=None):
    """Resizes an image array (scipy.misc.imresize) and returns uint8 (or ``mode``'s) pixels.

    TF1 parity: the array goes through ``toimage`` first, so a float image is byte-scaled
    from its own min..max to 0..255. ``size`` is an int percentage, a float fraction, or
    (height, width).
    """
    import numpy

    image = toimage(arr, mode=mode)
    if isinstance(size, (int, numpy.signedinteger)) and not isinstance(size, bool):
        size = tuple((numpy.array(image.size) * (size / 100.0)).astype(int))
    elif isinstance(size, (float, numpy.floating)):
        size = tuple((numpy.array(image.size) * size).astype(int))
    else:
        size = (size[1], size[0])
    return fromimage(image.resize(size, resample=_RESAMPLE[interp]))


def imsave(name, arr, format=None):  # noqa: A002 -- SciPy's name
    """Saves an array as an image file (scipy.misc.imsave), byte-scaled as ``toimage`` does."""
    image = toimage(arr, channel_axis=2)
    if format is None:
        image.save(name)
    else:
        image.save(name, format)


def _special(name: str) -> Factory:
    return lambda module: getattr(importlib.import_module("scipy.special"), name)


_SCIPY_MISC_SHIMS = {
    "imread": ("removed in SciPy 1.2: imageio.imread / PIL", _value(imread)),
    "imsave": ("removed in SciPy 1.2: imageio.imwrite / PIL", _value(imsave)),
    "imresize": ("removed in SciPy 1.3: PIL's Image.resize", _value(imresize)),
    "toimage": ("removed in SciPy 1.2: PIL's Image.fromarray", _value(toimage)),
    "fromimage": ("removed in SciPy 1.2: np.asarray(image)", _value(fromimage)),
    "bytescale": ("removed in SciPy 1.2", _value(bytescale)),
    "logsumexp": ("moved in SciPy 1.3: scipy.special.logsumexp", _special("logsumexp")),
    "comb": ("moved in SciPy 1.3: scipy.special.comb", _special("comb")),
    "factorial": ("moved in SciPy 1.3: scipy.special.factorial", _special("factorial")),
}


def _scipy_misc() -> Factory:
    def build(scipy_module):
        try:
            return importlib.import_module("scipy.misc")
        except ImportError:  # SciPy without scipy.misc: an empty module the shims fill
            return types.ModuleType("scipy.misc", "SciPy's scipy.misc, as TF1-era code knew it (tf1-ema).")

    return build


SHIMS: Dict[str, Dict[str, Tuple[str, Factory]]] = {
    "numpy": _numpy_shims(),
    "PIL": {},
    "PIL.Image": _PIL_IMAGE_SHIMS,
    "scipy": {"misc": ("scipy.misc (removed in SciPy 1.14)", _scipy_misc())},
    "scipy.misc": _SCIPY_MISC_SHIMS,
}


# ---------------------------------------------------------------------------- the stand-in


class ShimModule(types.ModuleType):
    """Serves a real module's attributes, plus the old names the real one no longer has.

    Attributes are resolved on first access and cached here; a submodule that has shims of
    its own (``PIL.Image`` under ``PIL``) comes back as its stand-in.
    """

    def __init__(self, real: types.ModuleType) -> None:
        super().__init__(real.__name__, getattr(real, "__doc__", None))
        self.__dict__["_tf1_ema_real"] = real
        for dunder in ("__file__", "__path__", "__spec__", "__loader__", "__package__"):
            if dunder in real.__dict__:
                self.__dict__[dunder] = real.__dict__[dunder]

    def __getattr__(self, attr: str) -> Any:
        real = self.__dict__["_tf1_ema_real"]
        shims = SHIMS.get(real.__name__, {})
        if attr in shims and (attr not in _REAL_FIRST or not _has(real, attr)):
            why, factory = shims[attr]
            value = factory(real)
            _notice("%s.%s" % (_SHORT.get(real.__name__, real.__name__), attr), why)
        else:
            try:
                value = getattr(real, attr)
            except AttributeError:
                raise AttributeError("module %r has no attribute %r" % (real.__name__, attr)) from None
        if isinstance(value, types.ModuleType) and value.__name__ in SHIMS:
            value = proxy(value)
        self.__dict__[attr] = value
        return value

    def __dir__(self):
        real = self.__dict__["_tf1_ema_real"]
        return sorted(set(dir(real)) | set(SHIMS.get(real.__name__, {})))

    def __repr__(self) -> str:
        # Printed as the real module is: the stand-in does not show in a notebook's output.
        return repr(self.__dict__["_tf1_ema_real"])


# Names that still exist in some installed versions: the real one wins there. The others
# (wrappers of functions that still exist, like np.reshape) always come from the shim.
_BUILTIN_ALIASES = frozenset(("float", "int", "bool", "object", "str", "complex"))
# TF1 parity: np.bool was Python's bool; NumPy 2's np.bool is np.bool_, so the shim wins.
_REAL_FIRST = (frozenset(_NUMPY_ALIASES) - _BUILTIN_ALIASES) | {
    "asscalar", "rank", "msort", "in1d", "asfarray", "issubclass_", "loads", "misc",
} | frozenset(_PIL_IMAGE_SHIMS) | frozenset(_SCIPY_MISC_SHIMS)
_SHORT = {"numpy": "np", "PIL.Image": "Image"}
_proxies: Dict[str, ShimModule] = {}
_noticed = set()


def _has(module: types.ModuleType, attr: str) -> bool:
    with warnings.catch_warnings():
        # NumPy 1.2x answers np.float with a FutureWarning/AttributeError; either way, shim it.
        warnings.simplefilter("ignore")
        try:
            getattr(module, attr)
        except AttributeError:
            return False
    return True


def _notice(name: str, why: str) -> None:
    if notices and name not in _noticed:
        _noticed.add(name)
        print("tf1-ema: %s is the TF1-era shim (%s)" % (name, why), file=sys.stderr)


def proxy(module: types.ModuleType) -> types.ModuleType:
    """The stand-in for ``module`` (one per module), or ``module`` itself when it has no shims."""
    name = module.__name__
    if name not in SHIMS:
        return module
    if name not in _proxies:
        _proxies[name] = ShimModule(module)
    return _proxies[name]


def proxy_for_import(original: Callable[..., Any], name: str, globals_: Any, locals_: Any, fromlist: Any) -> Any:
    """``__import__(name, ..., fromlist, 0)`` for user code, with stand-ins where there are shims.

    Args:
        original: the real ``__import__``.
        name: the dotted module name being imported; its top package is in ``LIBRARIES``.
        globals_, locals_, fromlist: as ``__import__`` gets them.

    Returns:
        What ``__import__`` returns, with stand-ins for modules that have shims.
    """
    try:
        if name.partition(".")[0] == "scipy":
            with warnings.catch_warnings():
                # TF1 parity: scipy.misc was no deprecated module then; SciPy >= 1.10 warns on import.
                warnings.filterwarnings("ignore", message="scipy.misc is deprecated", category=DeprecationWarning)
                module = original(name, globals_, locals_, fromlist, 0)
        else:
            module = original(name, globals_, locals_, fromlist, 0)
    except ModuleNotFoundError:
        # A whole module that is gone (scipy.misc): served when its parent is installed.
        parent, _, child = name.rpartition(".")
        if name not in SHIMS or not parent:
            raise
        stand_in = getattr(proxy(original(parent, globals_, locals_, (child,), 0)), child)
        if fromlist:
            return stand_in
        return proxy(sys.modules[name.partition(".")[0]])
    return proxy(module)
