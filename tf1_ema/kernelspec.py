"""Install and remove the ``tf1-ema`` Jupyter kernelspec; no TensorFlow import.

There are two ways the kernelspec reaches Jupyter, and both point the kernel at
the interpreter of the environment that holds ``tf1_ema``, never a bare
``python`` found on ``PATH``:

* ``pip install`` (editable or not) copies ``kernelspec_data/`` to
  ``<prefix>/share/jupyter/kernels/tf1-ema`` as wheel shared data. That
  ``kernel.json`` is static, so its ``argv[0]`` is
  ``{resource_dir}/../../../../bin/python``: Jupyter replaces ``{resource_dir}``
  with the kernelspec's own directory, and four levels up is ``<prefix>``.
* :func:`install` (``tf1-ema kernel install``) writes the same spec with
  ``argv[0]`` set to the absolute ``sys.executable``, which also works for
  ``--user`` and ``--prefix`` locations that are not inside the environment.

A second kernelspec, ``tf1-ema-py2`` ("Python 2 (TF1 graph mode)"), is the same
kernel with ``TF1_EMA_PY2=1``: every cell is translated from Python 2, for
notebooks whose metadata declares Python 2. Both are installed and removed
together.

The module also names the nbval sanitize file shipped in the package, so that
``pytest --nbval`` can use it outside this repository.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

KERNEL_NAME = "tf1-ema"
DISPLAY_NAME = "Python 3 (TF1 graph mode)"
#: The kernelspec that translates every cell from Python 2 (TF1_EMA_PY2=1).
PY2_KERNEL_NAME = "tf1-ema-py2"

_PACKAGE_DIR = Path(__file__).resolve().parent
#: The directory pip installs as ``share/jupyter/kernels/tf1-ema``.
SPEC_DIR = str(_PACKAGE_DIR / "kernelspec_data")
#: The directory pip installs as ``share/jupyter/kernels/tf1-ema-py2``.
PY2_SPEC_DIR = str(_PACKAGE_DIR / "kernelspec_py2_data")
#: nbval output sanitizers for TF1 notebooks (``--nbval-sanitize-with``).
SANITIZE_FILE = str(_PACKAGE_DIR / "nbval_sanitize.cfg")


def kernel_spec(executable: str | None = None, py2: bool = False) -> dict:
    """Returns the kernelspec dictionary with a concrete interpreter.

    Args:
        executable: Interpreter that runs the kernel; defaults to
            ``sys.executable``, the interpreter running this code.
        py2: the ``tf1-ema-py2`` spec instead of ``tf1-ema``.

    Returns:
        The contents of ``kernel.json``: the shipped template with ``argv[0]``
        replaced by the absolute path of ``executable``.
    """
    with open(os.path.join(PY2_SPEC_DIR if py2 else SPEC_DIR, "kernel.json"), encoding="utf-8") as f:
        spec = json.load(f)
    spec["argv"][0] = os.path.abspath(executable or sys.executable)
    return spec


def _target(user: bool, sys_prefix: bool, prefix: str | None) -> tuple[bool, str | None]:
    """Checks the location flags and folds ``sys_prefix`` into ``prefix``."""
    if sum([bool(user), bool(sys_prefix), prefix is not None]) > 1:
        raise ValueError("choose at most one of user, sys_prefix and prefix")
    if sys_prefix:
        prefix = sys.prefix
    return bool(user), prefix


def install(user: bool = False, sys_prefix: bool = False, prefix: str | None = None) -> str:
    """Installs the ``tf1-ema`` kernelspec, replacing any earlier copy there.

    With no flag the spec goes to Jupyter's system-wide directory, as
    ``ipython kernel install`` does.

    Args:
        user: Install into the current user's Jupyter data directory.
        sys_prefix: Install into ``sys.prefix`` (this virtualenv or conda env).
        prefix: Install into ``<prefix>/share/jupyter/kernels``.

    Returns:
        The directory the kernelspec was written to.

    Raises:
        ValueError: If more than one location is given.
        OSError: If the location is not writable.
    """
    user, prefix = _target(user, sys_prefix, prefix)
    paths = []
    for name, py2 in ((KERNEL_NAME, False), (PY2_KERNEL_NAME, True)):
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, name)
            os.mkdir(source)
            with open(os.path.join(source, "kernel.json"), "w", encoding="utf-8") as f:
                json.dump(kernel_spec(py2=py2), f, indent=2)
                f.write("\n")
            paths.append(
                KernelSpecManager().install_kernel_spec(source, name, user=user, prefix=prefix, replace=True)
            )
    return paths[0]


def remove(user: bool = False, sys_prefix: bool = False, prefix: str | None = None) -> str:
    """Removes the ``tf1-ema`` kernelspec.

    With no flag this removes the copy Jupyter would launch (the first one on
    its search path); with a flag, exactly the copy in that location.

    Args:
        user: Remove the copy in the current user's Jupyter data directory.
        sys_prefix: Remove the copy under ``sys.prefix``.
        prefix: Remove the copy under ``<prefix>/share/jupyter/kernels``.

    Returns:
        The directory that was removed.

    Raises:
        ValueError: If more than one location is given.
        FileNotFoundError: If there is no ``tf1-ema`` kernelspec to remove.
    """
    user, prefix = _target(user, sys_prefix, prefix)
    manager = KernelSpecManager()
    if not user and prefix is None:
        try:
            path = manager.remove_kernel_spec(KERNEL_NAME)
        except (KeyError, NoSuchKernel):
            raise FileNotFoundError(f"no {KERNEL_NAME} kernelspec is installed") from None
        py2_path = os.path.join(os.path.dirname(path), PY2_KERNEL_NAME)
        if os.path.isdir(py2_path):  # its companion in the same location
            shutil.rmtree(py2_path)
        return path
    if user:
        kernels = manager.user_kernel_dir
    else:
        kernels = os.path.join(os.path.abspath(prefix), "share", "jupyter", "kernels")
    path = os.path.join(kernels, KERNEL_NAME)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no {KERNEL_NAME} kernelspec in {path}")
    shutil.rmtree(path)
    shutil.rmtree(os.path.join(kernels, PY2_KERNEL_NAME), ignore_errors=True)
    return path
