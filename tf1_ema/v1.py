"""The TF1 namespace handed to old code as ``tensorflow``: ``tf.compat.v1`` plus our EMA.

Contract (shared by ``tf1_ema.runner`` and the Jupyter kernel in ``tf1_ema.kernel``):

* ``prepare_environment(tf_log=False)`` -- call once before TensorFlow is imported: sets
  ``TF_USE_LEGACY_KERAS=1`` (``tf.layers`` is Keras 2, through tf-keras) and, unless
  ``tf_log``, quiets TensorFlow's C++ and Python logging. Safe to call twice.
* ``namespace(reference=False)`` -- the module user code receives as ``tensorflow``:
  everything in ``tf.compat.v1``, with ``train.ExponentialMovingAverage`` and
  ``assign_moving_average`` from tf1_ema (the stock ones when ``reference``), ``layers``
  through tf-keras, ``contrib`` and ``examples`` stand-ins, ``compat.v1`` pointing back at
  itself, and ``train.import_meta_graph``/``import_graph_def`` that load tf1_ema's fused
  update op when a graph uses it. The real ``tensorflow`` and ``tf.compat.v1`` modules are
  never modified.
* ``install(is_user_code, reference=False)`` -- switches TensorFlow to TF1 behaviour (graph
  mode first of all) and hooks ``import``: any ``import tensorflow...`` / ``from tensorflow...
  import ...`` run by code whose module globals satisfy ``is_user_code`` gets the namespace
  above; everyone else (third-party libraries) keeps the real module. Idempotent; a second
  call replaces the predicate and mode.
* ``configure_tf1_logging(version, interactive)`` -- after ``install``: TensorFlow's Python
  log as TF 1.x ``version`` showed it (INFO on stdout when interactive, WARNING on stderr
  in scripts; only messages that minor emitted, plus the user's own). User code also gets
  TF1's ``tensorflow.python.*`` idioms (``graph_util``, ``freeze_graph``, ...), a one-line
  error for ``tf.estimator``, and NumPy/Pillow/scipy.misc stand-ins with their TF1-era
  names (``tf1_ema.legacy.libshims``).
* ``set_numpy_print(era)`` with era in ``NUMPY_PRINT_ERAS`` ("1.13", "1.25", "modern");
  ``NUMPY_PRINT_ENV`` names the environment variable that picks the default era, and
  ``resolve_numpy_print(value)`` applies that rule.

Only this module, the runner, the kernel and ``ema.py`` import TensorFlow, and this one
only inside its functions, so ``prepare_environment`` can run first.
"""

import builtins
import contextlib
import logging
import os
import re
import sys
import tempfile
import types
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

__all__ = [
    "NUMPY_PRINT_ENV",
    "NUMPY_PRINT_ERAS",
    "DEFAULT_NUMPY_PRINT",
    "prepare_environment",
    "namespace",
    "install",
    "set_numpy_print",
    "resolve_numpy_print",
]

NUMPY_PRINT_ENV = "TF1_EMA_NUMPY_PRINT"
NUMPY_PRINT_ERAS = ("1.13", "1.25", "modern")
DEFAULT_NUMPY_PRINT = "1.25"

# What np.set_printoptions(legacy=...) gets for each era.
_NUMPY_LEGACY = {"1.13": "1.13", "1.25": "1.25", "modern": False}
_NUMPY_ERA_FORMATTER = "numpy-1.13"  # its name in tf1_ema.legacy.era_repr

# C++ lines TensorFlow writes while it loads, before absl logging is initialised, so that
# TF_CPP_MIN_LOG_LEVEL cannot stop them: INFO/WARNING records and absl's preamble.
_CPP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)\s*$"
)


class _State:
    quiet = False
    installed = False
    is_user_code: Optional[Callable[[dict], bool]] = None
    reference = False
    original_import: Optional[Callable[..., Any]] = None
    namespaces: Dict[bool, types.ModuleType] = {}


def prepare_environment(tf_log: bool = False) -> None:
    """Sets up the process for TF1 code; call before TensorFlow is imported.

    Args:
        tf_log: keep TensorFlow's C++ log lines and Python deprecation warnings (by default
            they are silenced, as TF1 users never saw most of them).
    """
    # TF1 parity: tf.layers and tf.keras were Keras 2; Keras 3 has no tf.layers.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    _State.quiet = not tf_log
    if tf_log:
        return
    # Level 3 also hides "failed call to cuInit" on machines without a GPU; --tf-log keeps all.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    _quiet_python_logging()
    # tf-keras warns "`tf.layers.dense` is deprecated ..." on every legacy layer call.
    warnings.filterwarnings("ignore", message=r"`tf\.", category=UserWarning)


def _quiet_python_logging() -> None:
    if _TF1Logging.version is None:  # once TF1's logging is set up, its levels stand
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quiet
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


@contextlib.contextmanager
def _cpp_noise_filtered() -> Iterator[None]:
    """Captures file descriptor 2 and replays it without TensorFlow's load-time C++ noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(True) if not _CPP_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _import_tensorflow() -> Any:
    """Imports TensorFlow (quietly after ``prepare_environment()``) and returns it."""
    if "tensorflow" not in sys.modules and _State.quiet:
        with _cpp_noise_filtered():
            import tensorflow  # noqa: F401
    import tensorflow

    if _State.quiet:
        _quiet_python_logging()
    return tensorflow


class _Namespace(types.ModuleType):
    """A module serving its own overrides first and everything else from ``target``.

    Looked-up attributes are cached on the namespace, so user code that assigns
    ``tf.foo = ...`` changes only this module, never the real one.
    """

    def __init__(self, name: str, target: Any, overrides: Optional[Dict[str, Any]] = None, doc: Optional[str] = None):
        super().__init__(name, doc if doc is not None else getattr(target, "__doc__", None))
        self.__dict__["_tf1_ema_target"] = target
        self.__dict__.update(overrides or {})

    def __getattr__(self, attr: str) -> Any:
        try:
            value = getattr(self.__dict__["_tf1_ema_target"], attr)
        except AttributeError:
            raise AttributeError("module %r has no attribute %r" % (self.__name__, attr)) from None
        self.__dict__[attr] = value
        return value

    def __dir__(self) -> Iterable[str]:
        names = set(dir(self.__dict__["_tf1_ema_target"])) | set(self.__dict__)
        return sorted(name for name in names if not name.startswith("_tf1_ema"))

    def __repr__(self) -> str:
        return "<module %r (TF1 API from tf1_ema)>" % self.__name__


def namespace(reference: bool = False) -> types.ModuleType:
    """Returns the module handed to TF1 code as ``tensorflow`` (built once per mode).

    Args:
        reference: keep the stock ``tf.compat.v1.train.ExponentialMovingAverage`` and
            ``assign_moving_average`` instead of tf1_ema's.

    Returns:
        A module named ``tensorflow`` serving ``tf.compat.v1`` with the overrides described
        in this module's docstring.
    """
    reference = bool(reference)
    if reference in _State.namespaces:
        return _State.namespaces[reference]
    tf = _import_tensorflow()
    from tf1_ema import _tf_internal
    from tf1_ema.legacy import contrib, tf_examples

    v1 = tf.compat.v1
    if reference:
        ema_class, assign = v1.train.ExponentialMovingAverage, _tf_internal.stock_assign_moving_average()
    else:
        import tf1_ema

        ema_class, assign = tf1_ema.ExponentialMovingAverage, tf1_ema.assign_moving_average
    ema = {"ExponentialMovingAverage": ema_class, "assign_moving_average": assign}
    from tf1_ema import _update_op

    # Graphs saved by sessions that used the fused EMA update import here, whatever the mode.
    train = {
        "ExponentialMovingAverage": ema_class,
        "import_meta_graph": _update_op.with_library(v1.train.import_meta_graph),
    }
    doc = "TensorFlow's TF1 API (tf.compat.v1) with %s ExponentialMovingAverage." % (
        "the stock" if reference else "tf1_ema's"
    )
    ns = _Namespace("tensorflow", v1, doc=doc)
    private = _private_namespace(v1, ema)
    ns.__dict__.update(
        {
            "train": _Namespace("tensorflow.train", v1.train, train),
            "import_graph_def": _update_op.with_library(v1.import_graph_def),
            # A SavedModel written by an older tf1_ema holds its ops; load it like a MetaGraph.
            "saved_model": _Namespace(
                "tensorflow.saved_model",
                v1.saved_model,
                {
                    "load": _update_op.with_library(v1.saved_model.load),
                    "loader": _Namespace(
                        "tensorflow.saved_model.loader",
                        v1.saved_model.loader,
                        {"load": _update_op.with_library(v1.saved_model.loader.load)},
                    ),
                },
            ),
            # Not in TF1's public API, but where users of tf1_ema look for it.
            "assign_moving_average": assign,
            "compat": _Namespace("tensorflow.compat", v1.compat, {"v1": ns}),
            "contrib": contrib.build(v1),
            "examples": tf_examples.build(),
            "python": private,
            "graph_util": private.framework.graph_util,
            "estimator": _estimator_stub(),
        }
    )
    _State.namespaces[reference] = ns
    return ns


def install(is_user_code: Callable[[dict], bool], reference: bool = False) -> None:
    """Gives code selected by ``is_user_code`` the TF1 namespace on ``import tensorflow``.

    Also switches TensorFlow to TF1 behaviour, once, before any graph is built.

    Args:
        is_user_code: called with the importing module's globals; True means "user code,
            give it the TF1 namespace". Exceptions from it count as False.
        reference: hand out the stock EMA instead of tf1_ema's.
    """
    tf = _import_tensorflow()
    namespace(reference)
    from tf1_ema import _update_op

    # Quiet unless --tf-log: without a compiler the EMA is slower, not different.
    _update_op.notice_enabled = not _State.quiet
    _State.is_user_code = is_user_code
    _State.reference = bool(reference)
    if _State.installed:
        return
    # TF1 parity: graph mode, reference variables, Dimension-valued shapes (so old
    # `x.get_shape()[1].value` works), hashable tensors and v1 control flow.
    tf.compat.v1.disable_v2_behavior()
    _State.original_import = builtins.__import__
    builtins.__import__ = _import_hook
    _State.installed = True


def _wants_tf1(globals_: Optional[dict]) -> bool:
    if globals_ is None or _State.is_user_code is None:
        return False
    try:
        return bool(_State.is_user_code(globals_))
    except Exception:  # a broken predicate must not break every import in the process
        return False


def _import_hook(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002 -- __import__'s names
    top = name.partition(".")[0]
    if level == 0 and top == "tensorflow" and _wants_tf1(globals):
        return _import_tf1(name, globals, locals, fromlist)
    if level == 0 and top in _ERA_LIBRARIES and _wants_tf1(globals):
        return _import_era_library(name, globals, locals, fromlist)
    return _State.original_import(name, globals, locals, fromlist, level)


def _walk(root: Any, parts: Iterable[str]) -> Any:
    for part in parts:
        root = getattr(root, part)
    return root


def _import_tf1(name: str, globals_: dict, locals_: Any, fromlist: Any) -> Any:
    """``__import__`` for user code: resolves ``tensorflow.*`` names in the TF1 namespace."""
    from tf1_ema.legacy.errors import LegacyError, RemovedModuleError

    original = _State.original_import
    ns = namespace(_State.reference)
    parts = name.split(".")[1:]
    try:
        target = _walk(ns, parts)
    except LegacyError as err:
        raise RemovedModuleError(str(err), name=name) from None
    except AttributeError:
        # A real submodule not loaded yet (tensorflow.python.ops.x): load it, look again.
        try:
            original(name, globals_, locals_, fromlist, 0)
        except ModuleNotFoundError as err:
            if not (err.name or "").startswith("tensorflow"):
                raise
            from tf1_ema.legacy import idioms

            raise RemovedModuleError(idioms.explain_missing(name), name=name) from None
        try:
            target = _walk(ns, parts)
        except AttributeError:
            raise ModuleNotFoundError("No module named %r" % name, name=name) from None
    if not isinstance(target, types.ModuleType):
        parent = name.rpartition(".")[0]
        raise ModuleNotFoundError("No module named %r; %r is not a package" % (name, parent), name=name)
    if not fromlist:
        return ns
    for item in fromlist:
        if item == "*":
            continue
        try:
            getattr(target, item)
        except LegacyError as err:
            # Raised here, or `from` would turn it into a bare "cannot import name".
            raise RemovedModuleError(str(err), name="%s.%s" % (name, item)) from None
        except AttributeError:
            with contextlib.suppress(ImportError):
                original(name, globals_, locals_, (item,), 0)
    return target


def resolve_numpy_print(value: Optional[str] = None) -> str:
    """Picks the NumPy print era: ``value``, else ``$TF1_EMA_NUMPY_PRINT``, else "1.25".

    Args:
        value: an explicit choice (a command-line flag), or None.

    Returns:
        One of ``NUMPY_PRINT_ERAS``.

    Raises:
        ValueError: the chosen value is not an era; the message names where it came from.
    """
    if value is None:
        from_env = os.environ.get(NUMPY_PRINT_ENV, "").strip()
        if not from_env:
            return DEFAULT_NUMPY_PRINT
        if from_env not in NUMPY_PRINT_ERAS:
            raise ValueError(
                "%s=%r is not a NumPy print era; set it to one of %s (or unset it for %s)"
                % (NUMPY_PRINT_ENV, from_env, ", ".join(NUMPY_PRINT_ERAS), DEFAULT_NUMPY_PRINT)
            )
        return from_env
    if value not in NUMPY_PRINT_ERAS:
        raise ValueError("%r is not a NumPy print era; use one of %s" % (value, ", ".join(NUMPY_PRINT_ERAS)))
    return value


def set_numpy_print(era: str) -> None:
    """Makes NumPy print the way it did in the given era.

    "1.25" (NumPy 1.14 to 1.26, the default): scalars inside lists print bare, ``[10.0,
    4.555]``, not ``[np.float32(10.0), np.float32(4.555)]``. "1.13" (before 2018): NumPy
    1.13's own text (``tf1_ema.legacy.np113print``): every float element with up to 8
    decimals of its float64 value, ``[ 0.33333334  0.66666669  1.        ]``, the old sign
    column and exponent format; arrays print so everywhere, and NumPy scalars
    (``4.5549998``) wherever user code's ``print`` or the kernel's display shows them,
    through the ``era_repr`` formatter registered here. "modern": NumPy 2 as is.

    Args:
        era: one of ``NUMPY_PRINT_ERAS``.

    Raises:
        ValueError: ``era`` is not one of them.
    """
    if era not in _NUMPY_LEGACY:
        raise ValueError("NumPy print era must be one of %s, not %r" % (", ".join(NUMPY_PRINT_ERAS), era))
    import numpy

    from tf1_ema.legacy import era_repr, np113print

    if era == "1.13":
        np113print.install()
        era_repr.register(_NUMPY_ERA_FORMATTER, np113print.ERA_TYPES, np113print.era_formatter)
        return
    np113print.uninstall()
    era_repr.unregister(_NUMPY_ERA_FORMATTER)
    legacy = _NUMPY_LEGACY[era]
    if legacy == "1.25" and numpy.lib.NumpyVersion(numpy.__version__) < "2.0.0":
        legacy = False  # NumPy 1.x prints this way already and rejects legacy="1.25"
    numpy.set_printoptions(legacy=legacy)


# ---------------------------------------------------------------------------- era fidelity
# TF1's logging, its private-module idioms and the libraries around TF1 code, as they were
# (issue 12). Data and TF-free parts live in tf1_ema.legacy.{tflog,idioms,libshims}.

_ERA_LIBRARIES = ("numpy", "PIL", "scipy")
_LOGGER_NAME = "tensorflow"


class _TF1Logging:
    version: Optional[str] = None


def configure_tf1_logging(version: str, interactive: bool) -> None:
    """Makes TensorFlow's Python logging look as it did in TF ``version`` (call after ``install``).

    Interactive (the kernel): INFO and up on stdout; a script: WARNING and up on stderr;
    ``LEVEL:tensorflow:message`` either way, and only the messages that TF 1.x minor emitted
    or the user's code logs (``tf1_ema.legacy.tflog``). Under ``--tf-log``
    (``prepare_environment(tf_log=True)``) nothing is filtered and this does nothing.

    Args:
        version: a TF 1.x minor from ``tflog.TF_VERSIONS``, e.g. "1.4".
        interactive: True in the Jupyter kernel.
    """
    from tf1_ema.legacy import tflog

    if not _State.quiet:
        return
    tf = _import_tensorflow()
    tflog.configure(tf.get_logger(), version, interactive)
    _TF1Logging.version = version


def _import_era_library(name: str, globals_: dict, locals_: Any, fromlist: Any) -> Any:
    """``__import__`` of numpy/PIL/scipy for user code: stand-ins with the names TF1 code used."""
    from tf1_ema.legacy import libshims

    libshims.notices = not _State.quiet
    return libshims.proxy_for_import(_State.original_import, name, globals_, locals_, fromlist)


def _estimator_stub() -> types.ModuleType:
    from tf1_ema.legacy import idioms
    from tf1_ema.legacy._stub import StubModule

    return StubModule("tensorflow.estimator", "tf.estimator: removed from TensorFlow 2.16.", idioms.explain_estimator)


def _private_namespace(v1: Any, ema: Dict[str, Any]) -> types.ModuleType:
    """``tensorflow.python`` for user code: TF1's contents where TF 2 moved or changed them.

    See ``tf1_ema.legacy.idioms.SERVED`` for the list.
    """
    import importlib

    def real(path: str) -> types.ModuleType:
        return importlib.import_module("tensorflow.python." + path)

    def sub(path: str, overrides: Dict[str, Any]) -> _Namespace:
        return _Namespace("tensorflow.python." + path, real(path), overrides)

    # tf.graph_util's contents (import_graph_def included), with TF1's freezing function.
    graph_util = _Namespace("tensorflow.python.framework.graph_util", v1.graph_util, _tf1_graph_util(v1))
    return _Namespace(
        "tensorflow.python",
        sys.modules["tensorflow.python"],
        {
            # Old batch-norm code imports the update function from here; give it ours too.
            "training": sub("training", {"moving_averages": sub("training.moving_averages", ema)}),
            "framework": sub("framework", {"graph_util": graph_util}),
            "tools": sub("tools", {"freeze_graph": _tf1_freeze_graph(graph_util)}),
            "ops": sub(
                "ops",
                {
                    # TF 2 moved these out of control_flow_ops; TF1 code imports them from it.
                    "control_flow_ops": sub(
                        "ops.control_flow_ops",
                        {"cond": v1.cond, "while_loop": v1.while_loop, "case": v1.case, "Assert": v1.Assert},
                    )
                },
            ),
        },
    )


_VARIABLE_OPS = ("Variable", "VariableV2", "VarHandleOp")


def _tf1_graph_util(v1: Any) -> Dict[str, Any]:
    """``graph_util`` as TF1 had it: ``convert_variables_to_constants`` and its log lines."""
    convert = v1.graph_util.convert_variables_to_constants

    def convert_variables_to_constants(
        sess, input_graph_def, output_node_names, variable_names_whitelist=None, variable_names_blacklist=None
    ):
        """Replaces the variables the outputs need by constants holding their values (TF1's).

        TF1 parity: logs ``Froze N variables.`` and then ``Converted N variables to const
        ops.`` (printed by TF 1.4-1.8, logged at INFO later), as TF 1.x's graph_util did.
        """
        output = convert(
            sess,
            input_graph_def,
            output_node_names,
            variable_names_whitelist=variable_names_whitelist,
            variable_names_blacklist=variable_names_blacklist,
        )
        variables = {node.name for node in input_graph_def.node if node.op in _VARIABLE_OPS}
        frozen = sum(1 for node in output.node if node.name in variables and node.op == "Const")
        _emit_tf1("graph_util_impl.py", "Froze %d variables.", frozen)
        _emit_tf1("graph_util_impl.py", "Converted %d variables to const ops.", frozen)
        return output

    from tf1_ema import _update_op

    return {
        "convert_variables_to_constants": convert_variables_to_constants,
        # As tf.import_graph_def: graphs that use tf1_ema's fused update op load too.
        "import_graph_def": _update_op.with_library(v1.import_graph_def),
        "extract_sub_graph": v1.graph_util.extract_sub_graph,
        "remove_training_nodes": v1.graph_util.remove_training_nodes,
        "must_run_on_cpu": v1.graph_util.must_run_on_cpu,
        "tensor_shape_from_node_def_name": v1.graph_util.tensor_shape_from_node_def_name,
    }


def _emit_tf1(source: str, template: str, *args: Any) -> None:
    from tf1_ema.legacy import tflog

    tflog.emit(logging.getLogger(_LOGGER_NAME), source, template, *args)


def _tf1_freeze_graph(graph_util: types.ModuleType) -> types.ModuleType:
    """A private instance of TensorFlow's ``freeze_graph`` module that freezes through TF1's graph_util.

    TensorFlow's own module object stays as it is; this second instance is loaded from the
    same file, with its ``convert_to_constants`` reference pointing at the TF1 function.
    """
    import importlib.util

    spec = importlib.util.find_spec("tensorflow.python.tools.freeze_graph")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.convert_to_constants = _Namespace(
        "tensorflow.python.framework.convert_to_constants",
        module.convert_to_constants,
        {"convert_variables_to_constants": graph_util.convert_variables_to_constants},
    )
    # TF1 parity: TF 2.x renamed variable_names_blacklist to variable_names_denylist.
    freeze = _accepting_blacklist(module.freeze_graph_with_def_protos)

    def freeze_graph_with_def_protos(*args: Any, **kwargs: Any) -> Any:
        output = freeze(*args, **kwargs)
        if hasattr(output, "node"):  # TF1 parity: TF 1.0-1.3 printed the frozen graph's size
            _emit_tf1("freeze_graph.py", "%d ops in the final graph.", len(output.node))
        return output

    module.freeze_graph_with_def_protos = freeze_graph_with_def_protos
    module.freeze_graph = _accepting_blacklist(module.freeze_graph)
    return module


def _accepting_blacklist(function: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(function)
    def tf1_signature(*args: Any, variable_names_blacklist: Any = None, **kwargs: Any) -> Any:
        if variable_names_blacklist is not None:
            kwargs.setdefault("variable_names_denylist", variable_names_blacklist)
        return function(*args, **kwargs)

    return tf1_signature
