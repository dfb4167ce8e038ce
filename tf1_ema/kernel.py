"""The ``tf1-ema`` Jupyter kernel: IPython whose cells run the way TF1 ran them.

Every cell gets the semantics of ``tf1-ema run``, from the same code in
``tf1_ema.v1`` and ``tf1_ema.legacy``:

* ``import tensorflow as tf`` in a cell gives the TF1 namespace, whose
  ``tf.train.ExponentialMovingAverage`` is ``tf1_ema.ExponentialMovingAverage``;
  eager execution is off and ``tf.layers`` comes from tf-keras.
* Python 2 ``print x`` statements are rewritten to calls, one cell at a time.
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

import sys
import traceback
from typing import List, Optional

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp

from tf1_ema import __version__
from tf1_ema.kernelspec import DISPLAY_NAME, KERNEL_NAME
from tf1_ema.legacy.py2print import fix_print

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


def _fix_print_lines(lines: List[str]) -> List[str]:
    """IPython input transformer: Python 2 ``print`` statements to calls, per cell.

    fix_print keeps the line count, so tracebacks point at the user's lines,
    and returns anything it cannot parse unchanged for IPython to report.
    """
    return fix_print("".join(lines)).splitlines(keepends=True)


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
    Python 2 ``print`` fix and identifies itself in ``kernel_info``.
    """

    implementation = "tf1_ema"
    implementation_version = __version__
    banner = f"{DISPLAY_NAME}: `import tensorflow as tf` is TF1 with tf1_ema's ExponentialMovingAverage."

    def __init__(self, **kwargs):
        setup_tf1()
        super().__init__(**kwargs)
        # `post` transformers see the cell after IPython has turned `%magic`
        # and `!cmd` lines into Python, so the fixer only ever sees Python.
        self.shell.input_transformers_post.append(_fix_print_lines)
        _install_era_printing(self.shell)


def _install_era_printing(shell) -> None:
    """Cells' ``print`` and displayed values show NumPy scalars in the chosen era's text.

    Arrays already print in the era's text everywhere (``v1.set_numpy_print``); NumPy
    scalars' repr is fixed in C, so the cell namespace gets ``era_repr.era_print`` and the
    text/plain display formatter asks ``era_repr`` too. Only for the "1.13" era.
    """
    from tf1_ema import v1
    from tf1_ema.legacy import era_repr

    if v1.resolve_numpy_print() != "1.13":
        return
    shell.user_ns["print"] = era_repr.era_print
    shell.user_ns_hidden["print"] = era_repr.era_print
    era_repr.install_ipython(shell.display_formatter.formatters["text/plain"])


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
