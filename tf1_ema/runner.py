"""Run a TF1-era script the way ``python script.py`` ran it in 2018, on today's TensorFlow.

``run(script, args)`` gives the script -- and the modules beside it -- the TF1 namespace
from ``tf1_ema.v1`` on ``import tensorflow``, translates Python 2 source to Python 3 with
Python 2's meaning (``tf1_ema.legacy.py2to3``), sets NumPy's print era, then executes it as ``__main__`` with its own ``sys.argv``, ``__file__``
and ``sys.path[0]``. It returns the exit code ``python`` would have: the script's own
(``sys.exit(n)``), 1 after an uncaught exception (the traceback shows the user's frames, not
ours), 130 after Ctrl-C.

``check_script(path)`` is the up-front validation (a missing file, a directory, something
that is not Python); it needs no TensorFlow, so bad input fails in a fraction of a second.
``compare(...)`` runs a script twice, with our EMA and with the stock one, and diffs stdout.

This module imports TensorFlow only inside ``run``, after ``v1.prepare_environment()``.
"""

import ast
import builtins
import difflib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import traceback
import types
from typing import Callable, List, Optional, Sequence, Tuple

from tf1_ema.legacy import era_repr, py2runtime, py2to3
from tf1_ema.legacy.errors import LegacyError

__all__ = ["check_script", "run", "compare", "EXIT_INTERRUPTED", "EXIT_USAGE"]

EXIT_USAGE = 2  # bad command-line input, as argparse uses
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

_PYTHON_SUFFIXES = (".py", ".pyw")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames from these files are machinery, not the user's program: cut from tracebacks.
_MACHINERY = tuple(
    os.path.join(_PACKAGE_DIR, name)
    for name in ("runner.py", "v1.py", "cli.py", "__main__.py", "legacy/py2runtime.py", "legacy/era_repr.py")
)


def check_script(path: str) -> Optional[str]:
    """Says why ``path`` cannot be run as a script, or returns None when it can.

    A script is a readable text file ending in ``.py``/``.pyw``, or with no suffix and
    either a Python shebang or Python content.

    Args:
        path: the SCRIPT argument as the user typed it.

    Returns:
        None, or one line naming the problem and the fix.
    """
    if not os.path.exists(path):
        return "cannot find %r (no such file); check the path, which is relative to %s" % (path, os.getcwd())
    if os.path.isdir(path):
        scripts = sorted(name for name in os.listdir(path) if name.endswith(".py"))
        hint = " such as %s" % os.path.join(path, scripts[0]) if scripts else ""
        return "%r is a directory, not a script; name the .py file to run%s" % (path, hint)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".ipynb":
        return (
            "%r is a Jupyter notebook, not a script; open it with the tf1-ema kernel "
            "(`tf1-ema kernel install`) or convert it with `jupyter nbconvert --to script`" % path
        )
    if suffix and suffix not in _PYTHON_SUFFIXES:
        return "%r is not a Python script (expected a .py file); tf1-ema runs Python source only" % path
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as err:
        return "cannot read %r: %s" % (path, err.strerror or err)
    try:
        source = importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return "%r is not a Python script (it is not text in a Python source encoding)" % path
    if "\0" in source:
        return "%r is not a Python script (it contains NUL bytes, so it is binary)" % path
    if suffix:
        return None
    first_line = source.split("\n", 1)[0]
    if first_line.startswith("#!"):
        if "python" in first_line:
            return None
        return "%r is not a Python script (its first line runs %s); give tf1-ema a .py file" % (
            path,
            first_line[2:].strip() or "no interpreter",
        )
    if _compiles(source) or py2to3.parses_as_python2(source):
        return None
    return "%r is not a Python script (no .py suffix and it does not parse as Python); rename it to .py" % path


def _compiles(source: str) -> bool:
    try:
        compile(source, "<check>", "exec", dont_inherit=True, flags=ast.PyCF_ONLY_AST)
    except (SyntaxError, ValueError):
        return False
    return True


def run(
    script: str,
    args: Sequence[str] = (),
    *,
    reference: bool = False,
    numpy_print: str = "1.25",
    py2: Optional[bool] = None,
    tf_log: bool = False,
    tf_version: Optional[str] = None,
) -> int:
    """Runs ``script`` as ``__main__`` with the TF1 API and returns its exit code.

    Call ``check_script`` first; this function assumes the file is a readable script.
    It changes this process for good (``sys.argv``, ``sys.modules["__main__"]``, graph
    mode), so call it once, as the last thing a process does.

    Args:
        script: the path as typed; it becomes ``sys.argv[0]``.
        args: the script's own arguments, ``sys.argv[1:]``.
        reference: give the script the stock ``tf.compat.v1.train.ExponentialMovingAverage``.
        numpy_print: the NumPy print era, see ``tf1_ema.v1.set_numpy_print``.
        py2: translate Python 2 source (the script and the modules beside it): True always,
            False never, None when a file does not compile as Python 3 but does as Python 2.
        tf_log: keep TensorFlow's log noise.
        tf_version: the TF 1.x minor whose log output to reproduce ("1.0" ... "1.15");
            None means ``$TF1_EMA_TF_VERSION``, else 1.15. Resolve it first
            (``tflog.resolve_tf_version``) to report a bad value as a usage error.

    Returns:
        0, the script's ``sys.exit`` code, 1 after an uncaught exception, or 130 after Ctrl-C.
    """
    from tf1_ema import v1

    v1.prepare_environment(tf_log=tf_log)
    v1.set_numpy_print(numpy_print)
    path = os.path.abspath(script)
    root = os.path.dirname(os.path.realpath(path))
    loader = _UserLoader("__main__", path, py2)
    try:
        code = loader.get_code("__main__")
    except SyntaxError as err:
        traceback.print_exception(type(err), err, None)
        if py2 is None and not loader.translated:
            print("tf1-ema: note: this file is neither Python 3 nor Python 2 that tf1-ema can translate", file=sys.stderr)
        return 1
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=path, __builtins__=builtins, __loader__=loader, __spec__=None, __package__=None, __cached__=None
    )
    if numpy_print == "1.13":
        # NumPy scalars' repr is fixed in C: user code's print asks era_repr for 1.13's text.
        _USER_GLOBALS["print"] = era_repr.era_print
    main.__dict__.update(_USER_GLOBALS)
    if loader.translated:
        main.__dict__[py2runtime.HELPER_NAME] = py2runtime.RUNTIME
    try:
        v1.install(_UserCode(main.__dict__), reference=reference)
        _configure_tf1_logging(v1, tf_version)
        _install_finder(root, py2)
        sys.modules["__main__"] = main
        sys.argv = [script, *args]
        # As `python script.py` does: the script's (symlink-resolved) directory comes first.
        if sys.path:
            sys.path[0] = root
        else:
            sys.path.insert(0, root)
        exec(code, main.__dict__)
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    except KeyboardInterrupt as err:
        _print_user_traceback(err)
        return EXIT_INTERRUPTED
    except LegacyError as err:
        where = _innermost_user_frame(err.__traceback__, root)
        print("tf1-ema: error: %s%s" % (err, " (%s)" % where if where else ""), file=sys.stderr)
        return 1
    except BaseException as err:  # noqa: B036 -- the script's uncaught exception, as python reports it
        _print_user_traceback(err)
        return 1
    finally:
        _flush()
    return 0


def _configure_tf1_logging(v1: types.ModuleType, tf_version: Optional[str]) -> None:
    """TF1 parity: a script's TensorFlow log shows WARNING and up on stderr, as TF 1.x's did."""
    from tf1_ema.legacy import tflog

    v1.configure_tf1_logging(tflog.resolve_tf_version(tf_version), interactive=False)


def _exit_code(code: object) -> int:
    """The process exit status ``sys.exit(code)`` gives, printing non-integer codes as python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


# Names every user module starts with (the era's ``print``), set by ``run``.
_USER_GLOBALS: dict = {}


class _UserCode:
    """The ``is_user_code`` predicate: the script's globals, or a module we loaded from beside it."""

    def __init__(self, main_globals: dict) -> None:
        self._main = main_globals

    def __call__(self, globals_: dict) -> bool:
        return globals_ is self._main or isinstance(globals_.get("__loader__"), _UserLoader)


class _UserLoader(importlib.machinery.SourceFileLoader):
    """Loads the user's own modules: Python 2 translated, never cached as bytecode.

    No ``.pyc`` is read or written, so a translated Python 2 module never leaks into a
    later plain ``python`` run, and ``--no-py2`` always sees the file as it is.
    """

    def __init__(self, fullname: str, path: str, py2: Optional[bool]) -> None:
        super().__init__(fullname, path)
        self.py2 = py2
        self.translated = False
        self._code: Optional[types.CodeType] = None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__.update(_USER_GLOBALS)
        super().exec_module(module)

    def get_code(self, fullname: str) -> types.CodeType:
        if self._code is not None:
            code, self._code = self._code, None
            return code
        path = self.get_filename(fullname)
        source = importlib.util.decode_source(self.get_data(path))
        code, self.translated = _compile_user(source, path, self.py2)
        return code

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        # Compiled here, before exec_module, so a translated module starts with its helpers.
        self._code = self.get_code(spec.name)
        if not self.translated:
            return None
        module = types.ModuleType(spec.name)
        module.__dict__[py2runtime.HELPER_NAME] = py2runtime.RUNTIME
        return module


def _compile_user(source: str, path: str, py2: Optional[bool]) -> Tuple[types.CodeType, bool]:
    """Compiles a user file, translated from Python 2 when ``py2to3.decide`` says so.

    Returns:
        The code object (its line numbers are the user's) and whether it was translated.

    Raises:
        SyntaxError: at the user's line, when the text is not valid Python either way.
    """
    translation = py2to3.translate(source) if py2to3.decide(source, py2) else None
    if translation is None:
        return compile(source, path, "exec", dont_inherit=True), False
    try:
        tree = ast.parse(translation.source, path)
    except SyntaxError as err:
        if err.lineno:
            err.lineno = translation.line_map[min(err.lineno, len(translation.line_map) - 1)]
            err.text = source.splitlines()[err.lineno - 1] if err.lineno <= len(source.splitlines()) else err.text
            err.end_lineno = err.offset = err.end_offset = None
        raise
    return compile(translation.remap(tree), path, "exec", dont_inherit=True), True


class _UserFinder:
    """Finds modules as ``PathFinder`` does and hands the user's own ones to ``_UserLoader``.

    "The user's own" means a ``.py`` file under the script's directory that is not part of
    an installed package (no site-packages, no virtualenv, not tf1_ema itself).
    """

    def __init__(self, root: str, py2: Optional[bool]) -> None:
        self.root = root
        self.py2 = py2
        self.excluded = [
            os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, _PACKAGE_DIR}
        ]

    def owns(self, origin: str) -> bool:
        """True when ``origin`` is a user module file under the script's directory."""
        real = os.path.realpath(origin)
        if not real.endswith(".py") or not _is_within(real, self.root):
            return False
        parts = real.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return False
        return not any(_is_within(real, excluded) for excluded in self.excluded)

    def find_spec(self, fullname, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            if spec.origin and self.owns(spec.origin):
                spec.loader = _UserLoader(fullname, spec.origin, self.py2)
        return spec

    def invalidate_caches(self) -> None:
        importlib.machinery.PathFinder.invalidate_caches()


def _is_within(path: str, directory: str) -> bool:
    try:
        return os.path.commonpath([path, directory]) == directory
    except ValueError:  # different drives
        return False


def _install_finder(root: str, py2: Optional[bool]) -> None:
    finder = _UserFinder(root, py2)
    for index, existing in enumerate(sys.meta_path):
        if existing is importlib.machinery.PathFinder:
            sys.meta_path.insert(index, finder)
            return
    sys.meta_path.append(finder)


def _without_machinery(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """A copy of the traceback chain with our own frames (runner, v1, cli) cut out."""
    frames = []
    while tb is not None:
        # The import system's frames too, as python hides them for a module that fails to load.
        if not tb.tb_frame.f_code.co_filename.startswith(_MACHINERY + ("<frozen importlib",)):
            frames.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for old in reversed(frames):
        rebuilt = types.TracebackType(rebuilt, old.tb_frame, old.tb_lasti, old.tb_lineno)
    return rebuilt


def _print_user_traceback(err: BaseException) -> None:
    seen = set()
    chained: Optional[BaseException] = err
    pending = [err]
    while pending:
        chained = pending.pop()
        if chained is None or id(chained) in seen:
            continue
        seen.add(id(chained))
        chained.__traceback__ = _without_machinery(chained.__traceback__)
        pending.extend([chained.__cause__, chained.__context__])
    _flush()
    traceback.print_exception(type(err), err, err.__traceback__)


def _innermost_user_frame(tb: Optional[types.TracebackType], root: str) -> str:
    """``file:line`` of the deepest traceback frame in the user's code, or ''."""
    found = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(root + os.sep) and not filename.startswith(_MACHINERY):
            found = "%s:%d" % (os.path.relpath(filename), tb.tb_lineno)
        tb = tb.tb_next
    return found


def compare(
    script: str,
    args: Sequence[str] = (),
    *,
    numpy_print: str = "1.25",
    py2: Optional[bool] = None,
    tf_log: bool = False,
    tf_version: Optional[str] = None,
    capture: Optional[Callable[[List[str]], subprocess.CompletedProcess]] = None,
) -> int:
    """Runs ``script`` with our EMA and with the stock one and compares their stdout.

    The two runs are separate processes, one after the other (scripts may write files).
    Our run's stdout is printed, then a verdict line; when the outputs differ, a unified
    diff (reference first) follows.

    Args:
        script: the path as typed.
        args: the script's own arguments.
        numpy_print: NumPy print era for both runs.
        py2: force Python 2 translation on (True) or off (False) in both runs; None detects.
        tf_log: keep TensorFlow's log noise in both runs.
        tf_version: the TF 1.x minor whose log output both runs reproduce.
        capture: runs one command line and captures its stdout (tests substitute it).

    Returns:
        The common exit code when stdout and exit codes agree, else 1.
    """
    capture = capture or _capture
    base = [sys.executable, "-m", "tf1_ema", "run", "--numpy-print", numpy_print]
    base += [] if py2 is None else ["--py2" if py2 else "--no-py2"]
    base += ["--tf-log"] if tf_log else []
    base += ["--tf-version", tf_version] if tf_version else []
    ours = capture(base + ["--", script, *args])
    stock = capture(base + ["--reference", "--", script, *args])
    sys.stdout.write(ours.stdout)
    if ours.stdout == stock.stdout and ours.returncode == stock.returncode:
        lines = len(ours.stdout.splitlines())
        print("tf1-ema compare: identical stdout (%d lines) with tf1_ema's EMA and the stock one" % lines)
        return ours.returncode
    print("tf1-ema compare: stdout DIFFERS between the stock EMA (---) and tf1_ema's (+++)")
    diff = difflib.unified_diff(
        stock.stdout.splitlines(True), ours.stdout.splitlines(True), "reference (stock EMA)", "ours (tf1_ema EMA)"
    )
    sys.stdout.writelines(line if line.endswith("\n") else line + "\n" for line in diff)
    if ours.returncode != stock.returncode:
        print("tf1-ema compare: exit codes differ: ours %d, reference %d" % (ours.returncode, stock.returncode))
    return 1


def _capture(command: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
