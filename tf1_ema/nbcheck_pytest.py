"""pytest plugin: ``pytest --nbcheck NOTEBOOKS`` checks notebooks as ``tf1-ema nbcheck`` does.

Registered through the ``pytest11`` entry point ``tf1_ema.nbcheck_pytest`` (the module's
name, so an explicit ``-p tf1_ema.nbcheck_pytest`` is the same plugin): it is active wherever
tf1_ema is installed, and does nothing without ``--nbcheck``. Each ``.ipynb`` file collected
becomes one pytest file node with one item per code cell, named ``Cell N`` as nbval names
them (N counts code cells from 0). The notebook's kernel starts with its first item and
stops after its last; a notebook that cannot be read is a collection error. Running an item
first runs any earlier cell not run yet, so ``-k`` keeps the notebook's state consistent.

Options (same meaning and defaults as the CLI's): ``--nbcheck-rtol``, ``--nbcheck-atol``,
``--nbcheck-kernel``, ``--nbcheck-numpy-print``, ``--nbcheck-timeout``,
``--nbcheck-tf-log-lines``.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import pytest

from tf1_ema.cli import add_nbcheck_options, nbcheck_option_problem


def pytest_addoption(parser: Any) -> None:
    """Adds ``--nbcheck`` and its options to pytest."""
    group = parser.getgroup("nbcheck", "tf1-ema nbcheck: notebooks re-run, numbers compared with tolerance")
    group.addoption("--nbcheck", action="store_true",
                    help="check .ipynb files: one item per code cell, numbers within --nbcheck-rtol/--nbcheck-atol")
    add_nbcheck_options(group.addoption, prefix="--nbcheck-")


def pytest_configure(config: Any) -> None:
    """Rejects bad ``--nbcheck-*`` values and an unknown kernel before anything runs."""
    if not config.getoption("nbcheck", default=False):
        return
    opt = config.option
    problem = nbcheck_option_problem(opt.nbcheck_rtol, opt.nbcheck_atol, opt.nbcheck_timeout)
    if problem:
        raise pytest.UsageError("nbcheck: " + problem.replace("--", "--nbcheck-"))
    from tf1_ema import nbrun

    try:
        nbrun.check_kernel(opt.nbcheck_kernel)
    except nbrun.NbcheckInputError as err:
        raise pytest.UsageError("nbcheck: %s" % err) from None


def pytest_collect_file(file_path: Any, parent: Any) -> Optional["NbcheckFile"]:
    """Collects ``.ipynb`` files when ``--nbcheck`` is given."""
    if file_path.suffix == ".ipynb" and parent.config.getoption("nbcheck", default=False):
        return NbcheckFile.from_parent(parent, path=file_path)
    return None


class NbcheckCellFailure(Exception):
    """A cell whose fresh outputs differ from its stored ones."""


class NbcheckFile(pytest.File):
    """A notebook: one kernel, one item per code cell."""

    check: Any = None

    def _make_check(self) -> Any:
        from tf1_ema import nbrun

        opt = self.config.option
        try:
            return nbrun.NotebookCheck(
                str(self.path), opt.nbcheck_rtol, opt.nbcheck_atol, kernel=opt.nbcheck_kernel,
                numpy_print=opt.nbcheck_numpy_print, timeout=opt.nbcheck_timeout,
                tf_log_lines=opt.nbcheck_tf_log_lines,
            )
        except nbrun.NbcheckInputError as err:
            raise self.CollectError("nbcheck: %s" % err) from None

    def collect(self) -> Iterator["NbcheckCell"]:
        """One item per code cell."""
        self.check = self._make_check()
        for index, _ in enumerate(self.check.code_cells):
            yield NbcheckCell.from_parent(self, name="Cell %d" % index, index=index)

    # The kernel starts with the first item (a failed start fails the items, with its log) and
    # stops after the last.
    def teardown(self) -> None:
        """Stops the notebook's kernel."""
        if self.check is not None:
            self.check.stop()


class NbcheckCell(pytest.Item):
    """One code cell: run it, compare its outputs with the stored ones."""

    def __init__(self, *, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.result: Any = None

    def runtest(self) -> None:
        """Runs the cell (and any earlier one not run yet) and fails if its outputs differ."""
        self.result = self.parent.check.check_cell(self.index)
        if self.result.status == "skipped":
            pytest.skip("NBVAL_SKIP")
        if not self.result.passed:
            raise NbcheckCellFailure(self.result)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        """The cell's nbcheck report instead of a Python traceback."""
        if isinstance(excinfo.value, NbcheckCellFailure):
            return "\n".join(self.result.report())
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> Any:
        """Where the item lives: the notebook and the cell number."""
        return self.path, 0, "%s::Cell %d" % (self.path.name, self.index)
