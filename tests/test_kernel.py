"""The tf1-ema Jupyter kernel: its kernelspec, its TF1 cells, and how it fails.

Kernel start-up imports TensorFlow, so each kernel costs a few seconds: the
cell-level checks share one notebook executed through nbclient, and the
protocol conformance suite runs in a second kernel.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import unittest
import zipfile

import jupyter_kernel_test
import nbformat
import py2_golden
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from limits import TIMEOUT
from tf1_ema import kernelspec


def _interpreter_prefix(executable: str) -> str:
    """The ``sys.prefix`` that ``executable`` reports when run."""
    out = subprocess.run(
        [executable, "-c", "import sys; print(sys.prefix)"],
        capture_output=True, text=True, check=True, timeout=TIMEOUT,
    )
    return out.stdout.strip()


# ---------------------------------------------------------------------------
# The kernelspec
# ---------------------------------------------------------------------------


def test_kernelspec_is_registered_in_this_environment():
    """Jupyter finds a tf1-ema kernelspec with the TF1 display name in this environment's prefix."""
    specs = KernelSpecManager().find_kernel_specs()
    assert kernelspec.KERNEL_NAME in specs
    spec = KernelSpecManager().get_kernel_spec(kernelspec.KERNEL_NAME)
    assert spec.display_name == "Python 3 (TF1 graph mode)"
    assert spec.language == "python"
    assert spec.argv[1:3] == ["-m", "tf1_ema.kernel"]


def test_registered_kernelspec_runs_this_environments_interpreter():
    """The registered kernelspec's argv[0], with {resource_dir} filled in, is this environment's Python."""
    spec = KernelSpecManager().get_kernel_spec(kernelspec.KERNEL_NAME)
    executable = spec.argv[0].replace("{resource_dir}", spec.resource_dir)
    assert os.path.isabs(executable)
    assert _interpreter_prefix(executable) == sys.prefix


def test_shipped_kernel_json_points_four_levels_up_to_the_prefix():
    """The static kernel.json pip installs resolves to <prefix>/bin/python, never a bare `python`."""
    with open(os.path.join(kernelspec.SPEC_DIR, "kernel.json"), encoding="utf-8") as f:
        spec = json.load(f)
    assert spec["argv"][0] == "{resource_dir}/../../../../bin/python"
    resource_dir = os.path.join(sys.prefix, "share", "jupyter", "kernels", kernelspec.KERNEL_NAME)
    executable = spec["argv"][0].replace("{resource_dir}", resource_dir)
    assert _interpreter_prefix(executable) == sys.prefix
    assert spec["display_name"] == kernelspec.DISPLAY_NAME


def test_install_and_remove_under_a_prefix(tmp_path):
    """install(prefix=P) writes absolute-interpreter tf1-ema and tf1-ema-py2 specs under P; remove(prefix=P) deletes both."""
    path = kernelspec.install(prefix=str(tmp_path))
    assert path == str(tmp_path / "share" / "jupyter" / "kernels" / "tf1-ema")
    with open(os.path.join(path, "kernel.json"), encoding="utf-8") as f:
        spec = json.load(f)
    assert spec["argv"] == [os.path.abspath(sys.executable), "-m", "tf1_ema.kernel", "-f", "{connection_file}"]
    assert spec["display_name"] == "Python 3 (TF1 graph mode)"
    with open(os.path.join(os.path.dirname(path), "tf1-ema-py2", "kernel.json"), encoding="utf-8") as f:
        py2_spec = json.load(f)
    assert py2_spec["argv"] == spec["argv"] and py2_spec["env"] == {"TF1_EMA_PY2": "1"}
    assert kernelspec.install(prefix=str(tmp_path)) == path  # replaces, does not fail
    assert kernelspec.remove(prefix=str(tmp_path)) == path
    assert not os.path.exists(path) and not os.path.exists(os.path.join(os.path.dirname(path), "tf1-ema-py2"))
    with pytest.raises(FileNotFoundError, match="no tf1-ema kernelspec"):
        kernelspec.remove(prefix=str(tmp_path))


def test_user_install_goes_to_the_jupyter_data_dir(tmp_path, monkeypatch):
    """install(user=True) and remove(user=True) act on the user's Jupyter data directory only."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    path = kernelspec.install(user=True)
    assert path == str(tmp_path / "kernels" / "tf1-ema")
    assert os.path.isfile(os.path.join(path, "kernel.json"))
    assert kernelspec.remove(user=True) == path
    assert not os.path.exists(path)


def test_remove_without_a_location_removes_the_spec_jupyter_would_launch(tmp_path, monkeypatch):
    """remove() with no flag deletes the first tf1-ema spec on Jupyter's search path and no other."""
    first = kernelspec.install(prefix=str(tmp_path))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))  # searched before all others
    assert KernelSpecManager().find_kernel_specs()[kernelspec.KERNEL_NAME] == first
    assert kernelspec.remove() == first
    assert not os.path.exists(first)
    monkeypatch.delenv("JUPYTER_PATH")
    assert kernelspec.KERNEL_NAME in KernelSpecManager().find_kernel_specs()  # this environment's copy stays


@pytest.mark.parametrize(
    "kwargs",
    [dict(user=True, sys_prefix=True), dict(user=True, prefix="/x"), dict(sys_prefix=True, prefix="/x")],
    ids=["user+sys_prefix", "user+prefix", "sys_prefix+prefix"],
)
def test_install_and_remove_refuse_two_locations(kwargs):
    """Asking for two install locations at once is a ValueError, not a silent choice."""
    with pytest.raises(ValueError, match="at most one"):
        kernelspec.install(**kwargs)
    with pytest.raises(ValueError, match="at most one"):
        kernelspec.remove(**kwargs)


def test_sanitize_file_ships_inside_the_package():
    """SANITIZE_FILE is a file in the installed tf1_ema package, usable outside this repository."""
    import tf1_ema

    assert os.path.isfile(kernelspec.SANITIZE_FILE)
    assert os.path.dirname(kernelspec.SANITIZE_FILE) == os.path.dirname(os.path.abspath(tf1_ema.__file__))


def test_kernelspec_module_does_not_import_tensorflow():
    """Importing tf1_ema.kernelspec (what `tf1-ema kernel install` needs) leaves TensorFlow unloaded."""
    code = "import sys, tf1_ema.kernelspec; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=TIMEOUT)
    assert out.stdout.strip() == "False"


def test_wheel_ships_the_kernelspec_as_shared_data_and_the_sanitize_file(tmp_path):
    """The built wheel installs kernel.json to share/jupyter/kernels/tf1-ema (and tf1-ema-py2) and carries nbval_sanitize.cfg."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=root, check=True, capture_output=True, timeout=TIMEOUT,
    )
    (wheel,) = tmp_path.glob("tf1_ema-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = [n for n in names if n.endswith(".data/data/share/jupyter/kernels/tf1-ema/kernel.json")]
        assert len(data) == 1, sorted(names)
        assert json.loads(archive.read(data[0]))["argv"][0] == "{resource_dir}/../../../../bin/python"
        (py2,) = [n for n in names if n.endswith(".data/data/share/jupyter/kernels/tf1-ema-py2/kernel.json")]
        assert json.loads(archive.read(py2))["env"] == {"TF1_EMA_PY2": "1"}
    assert "tf1_ema/nbval_sanitize.cfg" in names


def test_cli_kernel_install_and_remove(tmp_path, capsys):
    """`tf1-ema kernel install/remove --prefix P` print the kernelspec directory and exit 0."""
    from tf1_ema import cli

    expected = str(tmp_path / "share" / "jupyter" / "kernels" / "tf1-ema")
    assert cli.main(["kernel", "install", "--prefix", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert cli.main(["kernel", "remove", "--prefix", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert cli.main(["kernel", "remove", "--prefix", str(tmp_path)]) == 1
    assert "no tf1-ema kernelspec" in capsys.readouterr().err


def test_nbval_config_command_prints_the_shipped_sanitize_file():
    """The installed `tf1-ema nbval-config` script prints SANITIZE_FILE, for `--nbval-sanitize-with "$(...)"`."""
    script = os.path.join(os.path.dirname(sys.executable), "tf1-ema")
    out = subprocess.run([script, "nbval-config"], capture_output=True, text=True, check=True, timeout=TIMEOUT)
    assert out.stdout == kernelspec.SANITIZE_FILE + "\n"


# ---------------------------------------------------------------------------
# Cells in the kernel, through nbclient
# ---------------------------------------------------------------------------

# (source, expected stdout) pairs; each is one code cell.
_CELLS = [
    (
        "import tensorflow as tf\n"
        "import tf1_ema\n"
        "print(tf.executing_eagerly())\n"
        "print(tf.train.ExponentialMovingAverage is tf1_ema.ExponentialMovingAverage)",
        "False\nTrue\n",
    ),
    ('print "python", 2, "print"', "python 2 print\n"),
    ('%config InlineBackend.figure_formats = ["png"]\nprint "after a magic"', "after a magic\n"),
    ("import numpy as np\nprint(repr(np.float32(2.7)), np.array([0.5], np.float32))", "2.7 [0.5]\n"),
    (
        "v1 = tf.Variable(0, dtype=tf.float32)\n"
        "step = tf.Variable(0, trainable=False)\n"
        "ema = tf.train.ExponentialMovingAverage(0.99, step)\n"
        "maintain_averages_op = ema.apply([v1])\n"
        "with tf.Session() as sess:\n"
        "    sess.run(tf.global_variables_initializer())\n"
        "    print sess.run([v1, ema.average(v1)])\n"
        "    sess.run(tf.assign(v1, 3))\n"
        "    sess.run(maintain_averages_op)\n"
        "    print sess.run([v1, ema.average(v1)])\n"
        "    sess.run(tf.assign(step, 10000))\n"
        "    sess.run(maintain_averages_op)\n"
        "    print sess.run([v1, ema.average(v1)])",
        "[0.0, 0.0]\n[3.0, 2.6999998]\n[3.0, 2.7029998]\n",
    ),
    (
        "x = tf.placeholder(tf.float32, [None, 2])\n"
        "y = tf.layers.dense(x, 3, name='dense')\n"
        "print(sorted(v.op.name for v in tf.trainable_variables() if v.op.name.startswith('dense')))",
        "['dense/bias', 'dense/kernel']\n",
    ),
    ('print 7 / 2, "x".encode("ascii")', "3 x\n"),
    ("print(7 / 2, b'x')", "3.5 b'x'\n"),
]


@pytest.fixture(scope="module")
def executed_notebook():
    """A notebook of the _CELLS, executed once in the tf1-ema kernel through nbclient."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "tf1-ema", "display_name": kernelspec.DISPLAY_NAME, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source, _ in _CELLS]
    client = NotebookClient(nb, kernel_name="tf1-ema", timeout=TIMEOUT, startup_timeout=TIMEOUT)
    client.execute()
    return nb


def _stdout(cell) -> str:
    return "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream" and o["name"] == "stdout")


@pytest.mark.slow
@pytest.mark.parametrize(
    "index", range(len(_CELLS)),
    ids=[
        "tf1-namespace", "py2-print", "py2-print-after-magic", "numpy-1.25-print", "walkthrough", "tf-layers",
        "py2-cell-detected", "py3-cell-untouched",
    ],
)
def test_cell_prints_what_tf1_printed(executed_notebook, index):
    """Each probe cell, run in the tf1-ema kernel via nbclient, prints exactly what it printed under TF1."""
    assert _stdout(executed_notebook.cells[index]) == _CELLS[index][1]


@pytest.mark.slow
def test_no_cell_writes_to_stderr(executed_notebook):
    """No cell output in the kernel is a stderr stream or an error: TensorFlow's log noise stays out."""
    for cell in executed_notebook.cells:
        for output in cell.outputs:
            assert output["output_type"] != "error", output
            assert output.get("name") != "stderr", output


@pytest.mark.slow
def test_notebook_records_the_kernel_language(executed_notebook):
    """The kernel reports Python in language_info, which nbformat stores in the executed notebook."""
    assert executed_notebook.metadata["language_info"]["name"] == "python"


# (source, expected stdout, expected displayed text/plain or None) in a kernel started
# with TF1_EMA_NUMPY_PRINT=1.13.
_NP113_CELLS = [
    (
        "import numpy as np\nx = np.float32([1/3, 2/3, 1])\nprint(x)\n"
        "print(np.float32(4.555), [np.float32(4.555), np.float64(0.1)], {'a': np.float32(0.1)})",
        "[ 0.33333334  0.66666669  1.        ]\n4.555 [4.5549998, 0.10000000000000001] {'a': 0.1}\n",
        None,
    ),
    ("x", "", "array([ 0.33333334,  0.66666669,  1.        ], dtype=float32)"),
    ("[np.float32(4.555), np.float64(0.1)]", "", "[4.5549998, 0.10000000000000001]"),
    ("np.float32(1/3)", "", "0.33333334"),
    # A Python 2 cell: `1.0 / 3`, since its `1 / 3` is 0 as in Python 2.
    ("print np.float32(1.0 / 3), np.float32([1e-5, 1.0])", "0.333333 [  9.99999975e-06   1.00000000e+00]\n", None),
]


@pytest.fixture(scope="module")
def np113_notebook():
    """A notebook of the _NP113_CELLS, executed once in a tf1-ema kernel started with TF1_EMA_NUMPY_PRINT=1.13."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "tf1-ema", "display_name": kernelspec.DISPLAY_NAME, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source, _, _ in _NP113_CELLS]
    before = os.environ.get("TF1_EMA_NUMPY_PRINT")
    os.environ["TF1_EMA_NUMPY_PRINT"] = "1.13"
    try:
        NotebookClient(nb, kernel_name="tf1-ema", timeout=TIMEOUT, startup_timeout=TIMEOUT).execute()
    finally:
        if before is None:
            del os.environ["TF1_EMA_NUMPY_PRINT"]
        else:
            os.environ["TF1_EMA_NUMPY_PRINT"] = before
    return nb


@pytest.mark.slow
@pytest.mark.parametrize(
    "index", range(len(_NP113_CELLS)), ids=["print", "array-display", "list-display", "scalar-display", "py2-print"]
)
def test_numpy_113_cells_print_and_display_numpy113_text(np113_notebook, index):
    """With TF1_EMA_NUMPY_PRINT=1.13, a cell's print and displayed value show NumPy 1.13's text."""
    cell = np113_notebook.cells[index]
    _, stdout, shown = _NP113_CELLS[index]
    assert _stdout(cell) == stdout
    results = [o["data"]["text/plain"] for o in cell.outputs if o["output_type"] == "execute_result"]
    assert results == ([shown] if shown is not None else [])


# ---------------------------------------------------------------------------
# Python 2 notebooks: one kernel with TF1_EMA_PY2=1 (what tf1-ema-py2 sets)
# ---------------------------------------------------------------------------

_PY2_DISPLAY = [
    ('sess.run(tf.constant("Hello"))', "'Hello'"),
    ("['a'.encode('ascii'), 7 / 2]", "['a', 3]"),
    ("set([1])", "{1}"),
]
_PY2_TRACEBACK = "from urllib import urlencode, urlretrieve\nx = reduce(max, [1, 2])\n\ny = x / 0\n"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _execute(client, code: str) -> dict:
    """Runs one cell; returns its stdout, stderr, displayed text/plain and error traceback (ANSI stripped)."""
    result = {"stdout": "", "stderr": "", "display": None, "error": None}

    def on_output(msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            result[content["name"]] += content["text"]
        elif kind == "execute_result":
            result["display"] = content["data"]["text/plain"]
        elif kind == "error":
            result["error"] = _ANSI.sub("", "\n".join(content["traceback"]))

    def on_input(msg):
        client.input(py2_golden.STDIN.rstrip("\n"))

    client.execute_interactive(code, allow_stdin=True, output_hook=on_output, stdin_hook=on_input, timeout=TIMEOUT)
    return result


@pytest.fixture(scope="module")
def py2_kernel_results():
    """The golden table, display and traceback probes, one cell each, in one tf1-ema kernel with TF1_EMA_PY2=1."""
    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ, TF1_EMA_PY2="1")
    manager, client = start_new_kernel(kernel_name=kernelspec.KERNEL_NAME, startup_timeout=TIMEOUT, env=env)
    try:
        results = {"prelude": _execute(client, py2_golden.PRELUDE + py2_golden.TF_PRELUDE)}
        for name, (source, _, _) in py2_golden.GOLDEN.items():
            results[name] = _execute(client, source)
        for index, (source, _) in enumerate(_PY2_DISPLAY):
            results["display %d" % index] = _execute(client, source)
        results["traceback"] = _execute(client, _PY2_TRACEBACK)
        results["open line"] = _execute(client, 'print "a",')
        results["after open line"] = _execute(client, 'print "b"')
        # Last: a __future__ import holds for the cells after it.
        results["future division"] = _execute(client, py2_golden.FUTURE_DIVISION[0])
        results["after future division"] = _execute(client, "print 7 / 2")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", list(py2_golden.GOLDEN))
def test_golden_table_in_the_py2_kernel(py2_kernel_results, name):
    """Each golden-table snippet, as a cell of a Python 2 notebook, prints exactly what Python 2.7 printed."""
    result = py2_kernel_results[name]
    assert result["error"] is None, result["error"]
    assert result["stdout"] == py2_golden.GOLDEN[name][1]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_PY2_DISPLAY)), ids=[code for code, _ in _PY2_DISPLAY])
def test_py2_cell_displays_values_as_python2_ipython_did(py2_kernel_results, index):
    """A translated cell's last value displays with Python 2's str for bytes (sets as IPython showed them)."""
    assert py2_kernel_results["display %d" % index]["display"] == _PY2_DISPLAY[index][1]


@pytest.mark.slow
def test_py2_cell_traceback_shows_the_cells_own_lines(py2_kernel_results):
    """An error in a translated cell is reported at the cell's line 4 with its own text, not a helper's."""
    error = py2_kernel_results["traceback"]["error"]
    assert "line 4" in error and "y = x / 0" in error and "py2runtime" not in error, error
    assert "integer division or modulo by zero" in error


@pytest.mark.slow
def test_cell_ending_in_a_trailing_comma_ends_its_line(py2_kernel_results):
    """`print "a",` as a cell's last print ends the line when the cell ends, as Python 2's IPython did."""
    assert py2_kernel_results["open line"]["stdout"] == "a\n"
    assert py2_kernel_results["after open line"]["stdout"] == "b\n"


@pytest.mark.slow
def test_future_division_cell_holds_for_later_cells(py2_kernel_results):
    """`from __future__ import division` in a cell makes `/` true division there and in later cells."""
    assert py2_kernel_results["future division"]["stdout"] == py2_golden.FUTURE_DIVISION[1]
    assert py2_kernel_results["after future division"]["stdout"] == "3.5\n"


# ---------------------------------------------------------------------------
# %tf1_era: one plain tf1-ema kernel switched between eras at run time
# ---------------------------------------------------------------------------

_FREEZE = (
    "import tensorflow as tf\n"
    "from tensorflow.python.framework import graph_util\n"
    "v = tf.Variable(3.0, name='v')\n"
    "w = tf.add(v, 1.0, name='add')\n"
    "sess = tf.Session()\n"
    "sess.run(tf.global_variables_initializer())\n"
    "frozen = graph_util.convert_variables_to_constants(sess, sess.graph_def, ['add'])"
)
_FREEZE_AGAIN = "frozen = graph_util.convert_variables_to_constants(sess, sess.graph_def, ['add'])"
_PY3_CELL = "import numpy as np\nprint(7 / 2, b'x', np.float32([1/3., 2/3., 1]))"
# (name, cell source); run in this order in one kernel started without any TF1_EMA_* variable.
_ERA_CELLS = [
    ("default era", "%tf1_era"),
    ("before", _PY3_CELL),
    ("switch", "%tf1_era --py2 --numpy-print 1.13 --tf-version 1.4"),
    ("switched era", "%tf1_era"),
    ("py3 cell, py2 era", _PY3_CELL),
    ("py2 print", "print 7 / 2, 'x'.encode('ascii')"),
    ("freeze 1.4", _FREEZE),
    ("to 1.15", "%tf1_era --tf-version 1.15"),
    ("freeze 1.15", _FREEZE_AGAIN),
    ("back", "%tf1_era --no-py2 --numpy-print 1.25"),
    ("py3 cell again", _PY3_CELL),
    ("bad version", "%tf1_era --tf-version 2.0"),
    ("bad option", "%tf1_era --py2 --no-py2"),
    ("unchanged era", "%tf1_era"),
]


@pytest.fixture(scope="module")
def era_magic_results():
    """Each of the _ERA_CELLS' stdout, display and error, run in order in one plain tf1-ema kernel."""
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if k not in ("TF1_EMA_PY2", "TF1_EMA_NUMPY_PRINT", "TF1_EMA_TF_VERSION")}
    manager, client = start_new_kernel(kernel_name=kernelspec.KERNEL_NAME, startup_timeout=TIMEOUT, env=env)
    try:
        return {name: _execute(client, source) for name, source in _ERA_CELLS}
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.mark.slow
def test_era_magic_alone_prints_the_era_in_force(era_magic_results):
    """`%tf1_era` with no options prints the era as the magic line that would set it."""
    assert era_magic_results["default era"]["stdout"] == "%tf1_era --detect-py2 --numpy-print 1.25 --tf-version 1.15\n"
    assert era_magic_results["switched era"]["stdout"] == "%tf1_era --py2 --numpy-print 1.13 --tf-version 1.4\n"
    assert era_magic_results["unchanged era"]["stdout"] == "%tf1_era --no-py2 --numpy-print 1.25 --tf-version 1.15\n"


@pytest.mark.slow
def test_era_magic_py2_translates_later_cells_even_valid_python3_ones(era_magic_results):
    """After `%tf1_era --py2 --numpy-print 1.13` a valid Python 3 cell gets 7 / 2 == 3, str bytes, NumPy 1.13 text."""
    assert era_magic_results["before"]["stdout"] == "3.5 b'x' [0.33333334 0.6666667  1.        ]\n"
    assert era_magic_results["switch"] == {"stdout": "", "stderr": "", "display": None, "error": None}
    assert era_magic_results["py3 cell, py2 era"]["stdout"] == (
        "(3, 'x', array([ 0.33333334,  0.66666669,  1.        ], dtype=float32))\n"
    )
    assert era_magic_results["py2 print"]["stdout"] == "3 x\n"


@pytest.mark.slow
def test_era_magic_switches_tf_logging_between_minors(era_magic_results):
    """Freezing a graph prints 'Converted' bare under --tf-version 1.4 and as an INFO line after switching to 1.15."""
    assert era_magic_results["freeze 1.4"]["stdout"] == (
        "INFO:tensorflow:Froze 1 variables.\nConverted 1 variables to const ops.\n"
    )
    assert era_magic_results["freeze 1.15"]["stdout"] == (
        "INFO:tensorflow:Froze 1 variables.\nINFO:tensorflow:Converted 1 variables to const ops.\n"
    )


@pytest.mark.slow
def test_era_magic_no_py2_restores_python3_cells(era_magic_results):
    """`%tf1_era --no-py2 --numpy-print 1.25` gives the following cells Python 3 and NumPy 1.25 printing back."""
    assert era_magic_results["py3 cell again"]["stdout"] == "3.5 b'x' [0.33333334 0.6666667  1.        ]\n"


@pytest.mark.slow
def test_era_magic_rejects_bad_options_in_one_line(era_magic_results):
    """An unknown TF version or conflicting options is a one-line UsageError naming the problem; nothing switches."""
    bad_version = era_magic_results["bad version"]["stderr"]
    assert bad_version.startswith("UsageError: --tf-version='2.0' is not a TensorFlow version"), bad_version
    assert "Traceback" not in bad_version
    assert "not allowed with argument --py2" in era_magic_results["bad option"]["stderr"]
    assert era_magic_results["unchanged era"]["stdout"] == "%tf1_era --no-py2 --numpy-print 1.25 --tf-version 1.15\n"


def test_py2_kernelspec_sets_tf1_ema_py2():
    """The shipped tf1-ema-py2 kernelspec runs the same kernel module with TF1_EMA_PY2=1."""
    spec = kernelspec.kernel_spec(py2=True)
    assert spec["env"] == {"TF1_EMA_PY2": "1"} and spec["argv"][1:3] == ["-m", "tf1_ema.kernel"]
    assert spec["display_name"] == "Python 2 (TF1 graph mode)"


# ---------------------------------------------------------------------------
# Failing loudly
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_failed_tf1_setup_kills_the_kernel_with_a_clear_error(tmp_path):
    """A kernel whose TF1 set-up fails exits non-zero with a message, instead of serving plain eager cells."""
    env = dict(os.environ, TF1_EMA_NUMPY_PRINT="1.0-does-not-exist")
    proc = subprocess.run(
        [sys.executable, "-m", "tf1_ema.kernel", "-f", str(tmp_path / "kernel.json")],
        env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 1
    assert "tf1-ema kernel: the TF1 set-up failed" in proc.stderr
    assert "never falls back to a plain eager kernel" in proc.stderr
    assert not (tmp_path / "kernel.json").exists()  # it never got as far as opening sockets


# ---------------------------------------------------------------------------
# Protocol conformance (jupyter_kernel_test)
# ---------------------------------------------------------------------------


class _Conformance(jupyter_kernel_test.KernelTests):
    """jupyter_kernel_test's protocol checks, configured for the tf1-ema kernel.

    ``__test__ = False`` keeps pytest from collecting these unittest methods one
    by one; test_kernel_protocol_conformance runs them as one suite.
    """

    __test__ = False

    kernel_name = "tf1-ema"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print 'hello, world'"
    code_stderr = "import sys; print('problem', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "import tensorflow as tf", "def f(x):\n    return x\n"]
    incomplete_code_samples = ["def f(x):", "if True:"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": "import numpy as np; np.float32(2.5)", "result": "2.5"},
        {"code": "import tensorflow as tf; tf.executing_eagerly()", "result": "False"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>tf1</b>'))", "mime": "text/html"},
    ]
    code_history_pattern = "1 + ?"
    # Not "range": IPython answers a range request for the running session with
    # session number 0, which jupyter_kernel_test 0.7 compares with the real
    # number; the stock python3 kernel fails that check the same way.
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    @classmethod
    def setUpClass(cls) -> None:
        """Starts the kernel with the suite's start-up limit, not jupyter_client's 60 s."""
        cls.km, cls.kc = start_new_kernel(kernel_name=cls.kernel_name, startup_timeout=TIMEOUT)

    def execute_helper(self, code, timeout=TIMEOUT, **kwargs):
        """Runs ``code`` as jupyter_kernel_test does, waiting up to the suite's limit, not 15 s."""
        return super().execute_helper(code, timeout=timeout, **kwargs)


@pytest.mark.slow
def test_kernel_protocol_conformance(tmp_path, monkeypatch):
    """The tf1-ema kernel passes every jupyter_kernel_test protocol check that IPython itself passes."""
    # The history checks read IPython's history database; a private one keeps
    # other kernels running on this machine out of the search results.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    # jupyter_kernel_test waits 15 s for a kernel_info reply; a busy machine needs the suite's limit.
    monkeypatch.setattr(jupyter_kernel_test, "TIMEOUT", TIMEOUT)
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(_Conformance)
    stream = io.StringIO()
    result = unittest.TextTestRunner(stream=stream, verbosity=2).run(suite)
    assert result.wasSuccessful(), stream.getvalue()
    assert [reason for _, reason in result.skipped] == ["History range not supported"], stream.getvalue()
    assert result.testsRun >= 12
