"""The ``tf1-ema`` Jupyter kernel: IPython whose cells run the way TF1 ran them.

Every cell gets the semantics of ``tf1-ema run``, from the same code in
``tf1_ema.v1`` and ``tf1_ema.legacy``:

* ``import tensorflow as tf`` in a cell gives the TF1 namespace, whose
  ``tf.train.ExponentialMovingAverage`` is ``tf1_ema.ExponentialMovingAverage``;
  eager execution is off and ``tf.layers`` comes from tf-keras.
* Python 2 cells are translated to Python 3 with Python 2's meaning
  (``tf1_ema.legacy.py2to3``): a cell that is Python 2 and not Python 3 always;
  every cell, from the first, when ``TF1_EMA_PY2=1`` (the ``tf1-ema-py2``
  kernelspec sets it, for notebooks whose metadata declares Python 2); none
  with ``TF1_EMA_PY2=0``. Tracebacks keep the cell's own line numbers, and
  a translated cell's byte strings print and display as Python 2's ``str``.
* NumPy prints floats the way the era named by ``TF1_EMA_NUMPY_PRINT`` did
  (``1.13``, ``1.25`` or ``modern``; default ``1.25``).
* TensorFlow's log noise is silenced, so no stderr lands in cell outputs;
  TF 1.x's own INFO lines (``INFO:tensorflow:Restoring parameters from ...``)
  show on stdout as they did, for the minor named by ``TF1_EMA_TF_VERSION``.

The TF1 set-up runs before the kernel accepts any request. If it fails, the
process prints why and exits non-zero: a client sees a dead kernel, never a
plain eager one that would print different numbers.

Launch with ``python -m tf1_ema.kernel -f CONNECTION_FILE`` (what the
kernelspec does); install the kernelspec with ``tf1-ema kernel install``.
"""

from __future__ import annotations

import ast
import linecache
import sys
import traceback
import types
from typing import List, Optional

from IPython.core.interactiveshell import InteractiveShell
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

from tf1_ema import __version__
from tf1_ema.kernelspec import DISPLAY_NAME, KERNEL_NAME
from tf1_ema.legacy import era_repr, py2runtime, py2to3

_setup_done = False


class TF1SetupError(RuntimeError):
    """The TF1 environment could not be set up, so the kernel must not start."""


def _is_user_code(module_globals: dict) -> bool:
    """Whether ``module_globals`` is the namespace notebook cells run in."""
    from IPython import get_ipython

    shell = get_ipython()
    # Looked up on every import, not captured once: `%reset` and embedding
    # code may hand the shell a new namespace.
    return shell is not None and module_globals is shell.user_ns


_HELPER_FILES = (py2runtime.__file__, era_repr.__file__)


def _without_helper_frames(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """A copy of the traceback chain without frames from the Python 2 run-time helpers."""
    kept = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename not in _HELPER_FILES:
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for old in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, old.tb_frame, old.tb_lasti, old.tb_lineno)
    return rebuilt


class _Py2Cells:
    """Translates Python 2 cells, gives their AST the cell's line numbers, and tags their output.

    IPython calls ``transform`` (an input transformer) on each cell after turning
    magics into Python, then parses the result and calls ``visit`` (an AST
    transformer) on it: the translation made in ``transform`` is what ``visit``
    maps back. ``tags()`` is the era_repr tag set of the cell that runs now.

    Args:
        shell: the kernel's InteractiveShell.
        force: True to translate every cell, False none, None to detect per cell.
    """

    def __init__(self, shell: InteractiveShell, force: Optional[bool]) -> None:
        self.shell = shell
        self.force = force
        # TF1 parity (Python 2 IPython): a __future__ import in one cell holds for later ones.
        self.futures: frozenset = frozenset()
        self.pending: Optional[py2to3.Translation] = None
        self.translated = False
        self._cache = shell.compile.cache
        # IPython caches the transformed cell as the traceback source; cache the cell as
        # the user wrote it instead, so the remapped line numbers show the user's lines.
        shell.compile.cache = self.cache
        # IPython never hides the innermost frame, even with __tracebackhide__; a
        # ZeroDivisionError from `7 / 0` must end at the user's line, as in Python 2.
        self._structured_traceback = shell.InteractiveTB.structured_traceback
        shell.InteractiveTB.structured_traceback = self.structured_traceback

    def cache(self, transformed_code: str, number: int = 0, raw_code: Optional[str] = None) -> str:
        """IPython's ``CachingCompiler.cache``, keeping a translated cell's own text for tracebacks."""
        name = self._cache(transformed_code, number, raw_code)
        if self.pending is not None:
            original = self.pending.original
            linecache.cache[name] = (len(original), None, [line + "\n" for line in original.splitlines()], name)
        return name

    def transform(self, lines: List[str]) -> List[str]:
        """Input transformer: the cell's lines, translated when the rule says so."""
        source = "".join(lines)
        self.futures |= py2to3.future_features(source)
        translation = py2to3.translate(source, self.futures) if py2to3.decide(source, self.force) else None
        self.pending, self.translated = translation, translation is not None
        if translation is None:
            return lines
        self.shell.user_ns[py2runtime.HELPER_NAME] = py2runtime.RUNTIME
        return translation.source.splitlines(keepends=True)

    def structured_traceback(self, etype: type, evalue: BaseException, etb: Optional[types.TracebackType] = None,
                             *args, **kwargs) -> List[str]:
        """IPython's traceback formatter, minus the frames of the Python 2 run-time helpers."""
        return self._structured_traceback(etype, evalue, _without_helper_frames(etb), *args, **kwargs)

    def visit(self, tree: ast.AST) -> ast.AST:
        """AST transformer: the translated cell's nodes get the cell's own line numbers."""
        pending, self.pending = self.pending, None
        return pending.remap(tree) if pending is not None else tree

    def tags(self) -> frozenset:
        """The era_repr tags for values shown while the current cell runs."""
        return frozenset([py2runtime.TAG]) if self.translated else frozenset()


def setup_tf1() -> None:
    """Puts this process into TF1 mode for notebook cells; idempotent.

    Silences TensorFlow's logs, sets the NumPy print era from
    ``TF1_EMA_NUMPY_PRINT``, disables eager execution and installs the import
    hook that hands cells the TF1 ``tensorflow`` namespace.

    Raises:
        TF1SetupError: If any step fails (for example TensorFlow cannot be
            imported, or ``TF1_EMA_NUMPY_PRINT`` names an unknown era).
    """
    global _setup_done
    if _setup_done:
        return
    try:
        from tf1_ema import v1

        v1.prepare_environment(tf_log=False)
        v1.set_numpy_print(v1.resolve_numpy_print())
        py2to3.resolve_py2()  # a bad TF1_EMA_PY2 stops the kernel here, with the reason
        v1.install(_is_user_code)
        _configure_tf1_logging(v1)
    except Exception as exc:
        raise TF1SetupError(f"{type(exc).__name__}: {exc}") from exc
    _setup_done = True


def _configure_tf1_logging(v1) -> None:
    """TF1 parity: in a notebook TF 1.x logged INFO lines to stdout (cell output).

    The TF 1.x minor is ``$TF1_EMA_TF_VERSION`` (default 1.15).
    """
    from tf1_ema.legacy import tflog

    v1.configure_tf1_logging(tflog.resolve_tf_version(), interactive=True)


class TF1Kernel(IPythonKernel):
    """An IPython kernel whose cells see TensorFlow 1 with tf1_ema's EMA.

    The process-wide set-up is :func:`setup_tf1`; this class adds the per-cell
    Python 2 translation and identifies itself in ``kernel_info``.
    """

    implementation = "tf1_ema"
    implementation_version = __version__
    banner = f"{DISPLAY_NAME}: `import tensorflow as tf` is TF1 with tf1_ema's ExponentialMovingAverage."

    def __init__(self, **kwargs):
        setup_tf1()
        super().__init__(**kwargs)
        # `post` transformers see the cell after IPython has turned `%magic`
        # and `!cmd` lines into Python, so the translator only ever sees Python.
        self.py2_cells = _Py2Cells(self.shell, py2to3.resolve_py2())
        self.shell.input_transformers_post.append(self.py2_cells.transform)
        self.shell.ast_transformers.append(self.py2_cells)
        # One era_repr hook for displayed values: NumPy's era always, Python 2's text while
        # a translated cell runs.
        era_repr.install_ipython(self.shell.display_formatter.formatters["text/plain"], self.py2_cells.tags)
        # TF1 parity (Python 2's IPython): a cell ending in `print x,` still ends its line.
        self.shell.events.register("post_run_cell", lambda *_: py2runtime.end_softspace())
        _install_era_print(self.shell)


def _install_era_print(shell: InteractiveShell) -> None:
    """Cells' ``print`` shows NumPy scalars in the chosen era's text (the "1.13" era only).

    Arrays already print in the era's text everywhere (``v1.set_numpy_print``); NumPy
    scalars' repr is fixed in C, so the cell namespace gets ``era_repr.era_print``; the
    displayed value asks ``era_repr`` through the hook installed in ``TF1Kernel``.
    Translated Python 2 cells print through ``py2runtime`` instead, which asks the same
    registry.
    """
    from tf1_ema import v1

    if v1.resolve_numpy_print() != "1.13":
        return
    shell.user_ns["print"] = era_repr.era_print
    shell.user_ns_hidden["print"] = era_repr.era_print


def main(argv: Optional[List[str]] = None) -> int:
    """Starts the kernel; returns the exit status when it stops.

    Args:
        argv: Kernel application arguments (``-f CONNECTION_FILE`` ...);
            default ``sys.argv[1:]``.

    Returns:
        0 after a normal shutdown, 1 if the TF1 set-up failed.
    """
    try:
        setup_tf1()
    except TF1SetupError as exc:
        traceback.print_exc()
        print(
            f"\n{KERNEL_NAME} kernel: the TF1 set-up failed, so the kernel will not start "
            f"(it never falls back to a plain eager kernel): {exc}",
            file=sys.stderr,
        )
        return 1
    # The kernel's own fd 2 stays the kernel's log: TensorFlow's C++ logging
    # and the CUDA libraries write there from their own threads, and captured
    # they would land as stderr in whichever cell happened to be running.
    app = IPKernelApp.instance(kernel_class=TF1Kernel, capture_fd_output=False)
    app.initialize(argv)
    app.start()
    return 0


if __name__ == "__main__":
    # Run the importable module's main(), not this `__main__` copy, so that
    # `tf1_ema.kernel` exists once in the process.
    from tf1_ema.kernel import main as _main

    sys.exit(_main())
