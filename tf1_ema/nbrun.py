"""Run a notebook cell by cell with nbclient and hand each cell to the nbcheck comparison.

``NotebookCheck`` owns one kernel per notebook, started in the notebook's folder with the
era's environment: ``TF1_EMA_NUMPY_PRINT`` (1.13 for a Python 2 notebook, else 1.25, or
what ``--numpy-print`` says), ``TF1_EMA_PY2=1`` for a Python 2 notebook, and whatever else
the caller's environment holds (``TF1_EMA_TF_VERSION`` included). ``tf1-ema nbcheck`` runs
all cells with :meth:`NotebookCheck.run_all`; the pytest plugin calls
:meth:`NotebookCheck.check_cell` once per item.

No TensorFlow here: the kernel imports it in its own process.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

import nbformat

from tf1_ema.nbcheck import CellResult, Markers, NotebookResult, Options, cell_markers, compare_cell, is_python2
from tf1_ema.nbcheck import format_notebook, numpy_era_for, source_text as _source
from tf1_ema.legacy.py2to3 import PY2_ENV
from tf1_ema.v1 import NUMPY_PRINT_ENV

__all__ = [
    "DEFAULT_KERNEL",
    "DEFAULT_TIMEOUT",
    "NbcheckInputError",
    "KernelStartError",
    "read_notebook",
    "check_kernel",
    "NotebookCheck",
    "run_checks",
]

DEFAULT_KERNEL = "tf1-ema"
DEFAULT_TIMEOUT = 600.0


class NbcheckInputError(ValueError):
    """A notebook that cannot be read, or a kernel that does not exist (a usage error)."""


class KernelStartError(RuntimeError):
    """The kernel did not start; the message ends with the tail of its log."""


def read_notebook(path: str) -> Any:
    """Reads a notebook as nbformat 4.

    Args:
        path: the ``.ipynb`` file.

    Returns:
        The notebook node.

    Raises:
        NbcheckInputError: the file is missing, unreadable or not a notebook.
    """
    if os.path.isdir(path):
        raise NbcheckInputError("%s: is a directory, not a notebook" % path)
    try:
        with open(path, encoding="utf-8") as stream:
            notebook = nbformat.read(stream, as_version=4)
    except FileNotFoundError:
        raise NbcheckInputError("%s: no such file" % path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise NbcheckInputError("%s: cannot read it (%s)" % (path, err)) from None
    except Exception as err:  # nbformat raises JSON, validation and version errors of several kinds
        raise NbcheckInputError("%s: not a Jupyter notebook (%s)" % (path, str(err).splitlines()[0])) from None
    if not isinstance(notebook.get("cells"), list):
        raise NbcheckInputError("%s: not a Jupyter notebook (no cells)" % path)
    return notebook


def check_kernel(name: str) -> None:
    """Checks that a Jupyter kernel of that name is installed.

    Raises:
        NbcheckInputError: it is not.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise NbcheckInputError(
            "no Jupyter kernel named %r (see `jupyter kernelspec list`; `tf1-ema kernel install` adds tf1-ema)" % name
        ) from None


class NotebookCheck:
    """One notebook's check: its kernel, its code cells, and a verdict per cell.

    Args:
        path: the notebook file.
        rtol: relative tolerance for floats.
        atol: absolute tolerance for floats.
        kernel: the Jupyter kernel to run it in.
        numpy_print: NumPy print era for the kernel, or None to follow the notebook's metadata.
        timeout: seconds a cell may run.
        tf_log_lines: compare TensorFlow's log lines instead of dropping them.
        notebook: the notebook already read (else it is read from ``path``).

    Raises:
        NbcheckInputError: the notebook cannot be read.
    """

    def __init__(self, path: str, rtol: float, atol: float, kernel: str = DEFAULT_KERNEL,
                 numpy_print: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 tf_log_lines: bool = False, notebook: Any = None) -> None:
        self.path = path
        self.notebook = notebook if notebook is not None else read_notebook(path)
        metadata = self.notebook.get("metadata") or {}
        sources = [_source(cell) for cell in self.notebook.cells if cell.get("cell_type") == "code"]
        self.python2 = is_python2(metadata, sources)
        self.numpy_era = numpy_era_for(metadata, numpy_print, sources)
        self.options = Options(rtol=rtol, atol=atol, python2=self.python2, tf_log_lines=tf_log_lines)
        self.kernel = kernel
        self.timeout = timeout
        self.code_cells = [cell for cell in self.notebook.cells if cell.get("cell_type") == "code"]
        self.markers: List[Markers] = [cell_markers(cell) for cell in self.code_cells]
        self.results: Dict[int, CellResult] = {}
        self._client: Any = None
        self._stack: Optional[contextlib.ExitStack] = None
        self._log: Any = None
        self._next = 0
        self._stopped = ""

    @property
    def era(self) -> str:
        """The era the notebook is checked in, e.g. "Python 2, NumPy 1.13"."""
        return "Python %d, NumPy %s" % (2 if self.python2 else 3, self.numpy_era)

    def kernel_env(self) -> Dict[str, str]:
        """The kernel's environment: the caller's, plus the era's variables."""
        env = dict(os.environ)
        env[NUMPY_PRINT_ENV] = self.numpy_era
        if self.python2:
            env[PY2_ENV] = "1"
        else:
            env.pop(PY2_ENV, None)
        return env

    def start(self) -> None:
        """Starts the kernel in the notebook's folder (idempotent).

        The kernel's own log (its stderr) goes to a temporary file, whose tail is reported
        if the kernel fails to start or dies.
        """
        if self._client is not None:
            return
        from nbclient import NotebookClient

        folder = str(Path(self.path).resolve().parent)
        shell = nbformat.v4.new_notebook(metadata=copy.deepcopy(self.notebook.metadata))
        shell.cells = [nbformat.v4.new_code_cell(_source(cell)) for cell in self.code_cells]
        client = NotebookClient(
            shell,
            kernel_name=self.kernel,
            timeout=self.timeout,
            allow_errors=True,
            # As nbval does: kill the kernel at the end instead of waiting for it to exit.
            shutdown_kernel="immediate",
            resources={"metadata": {"path": folder}},
        )
        self._log = tempfile.TemporaryFile(mode="w+b")
        self._stack = contextlib.ExitStack()
        self._stack.callback(self._log.close)
        try:
            self._stack.enter_context(client.setup_kernel(env=self.kernel_env(), stderr=self._log))
        except Exception as err:
            log = self.kernel_log()
            self._stack.close()
            raise KernelStartError("kernel %r did not start: %s%s" % (self.kernel, err, log)) from None
        self._client = client

    def kernel_log(self, lines: int = 5) -> str:
        """The last lines the kernel wrote to its stderr, as an indented block ("" if none)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.seek(0)
        tail = self._log.read().decode("utf-8", "replace").splitlines()[-lines:]
        return "".join("\n    kernel: " + line for line in tail)

    def stop(self) -> None:
        """Shuts the kernel down (idempotent)."""
        self._client = None
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def _execute(self, index: int) -> CellResult:
        cell = self.code_cells[index]
        markers = self.markers[index]
        if markers.skip:
            return CellResult(index, "skipped", note="NBVAL_SKIP")
        if self._stopped:
            return CellResult(index, "fail", ["not run: %s" % self._stopped])
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        try:
            self.start()
        except KernelStartError as err:
            self._stopped = str(err)
            return CellResult(index, "fail", ["not run: %s" % err])
        fresh = self._client.nb.cells[index]
        try:
            self._client.execute_cell(fresh, index)
        except CellTimeoutError:
            self._stopped = "cell %d ran over the %g s timeout" % (index, self.timeout)
            self.stop()
            return CellResult(index, "fail", ["timed out after %g s" % self.timeout])
        except DeadKernelError:
            self._stopped = "the kernel died in cell %d" % index
            log = self.kernel_log()
            self.stop()
            return CellResult(index, "fail", ["the kernel died while running this cell" + log])
        return compare_cell(index, cell.get("outputs", []), fresh.get("outputs", []), self.options, markers)

    def check_cell(self, index: int) -> CellResult:
        """Runs the code cells up to ``index`` (those not run yet, in order) and returns cell ``index``'s verdict.

        Args:
            index: position among the code cells, from 0.

        Returns:
            The cell's verdict.
        """
        while self._next <= index:
            self.results[self._next] = self._execute(self._next)
            self._next += 1
        return self.results[index]

    def result(self) -> NotebookResult:
        """The notebook's verdict on the cells checked so far."""
        return NotebookResult(self.path, self.era, self.options, [self.results[i] for i in sorted(self.results)],
                              self._stopped)

    def run_all(self) -> NotebookResult:
        """Runs every code cell top to bottom, stops the kernel, and returns the verdict."""
        try:
            if self.code_cells:
                self.check_cell(len(self.code_cells) - 1)
        finally:
            self.stop()
        return self.result()


def run_checks(checks: List[NotebookCheck], out: TextIO, verbose: bool = False) -> int:
    """Runs notebook checks one after the other, writing each report as it is done.

    Args:
        checks: the notebooks, ready to run.
        out: where the reports go.
        verbose: also list the cells that match exactly.

    Returns:
        0 when every notebook passed, else 1.
    """
    failed = 0
    for check in checks:
        result = check.run_all()
        out.write(format_notebook(result, verbose=verbose))
        out.flush()
        failed += not result.passed
    if len(checks) > 1:
        out.write("%d of %d notebooks match\n" % (len(checks) - failed, len(checks)))
    return 1 if failed else 0
