"""tf1-ema nbcheck: the comparison engine without a kernel, then the CLI and pytest routes with one.

The fast tests feed hand-made outputs to ``tf1_ema.nbcheck``. The slow ones run the notebooks
in tests/nbcheck_notebooks/ (each standing for a class of old notebook, see make_notebooks.py)
and our own tutorials in the tf1-ema kernel: one CLI run for all the test notebooks, one
pytest run for the plugin, one CLI run for notebooks/.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from limits import TIMEOUT
from tf1_ema import cli, nbcheck
from tf1_ema.nbcheck import Markers, Options, compare_cell, compare_numbers, normalize_lines

REPO = Path(__file__).resolve().parents[1]
NB_DIR = Path(__file__).resolve().parent / "nbcheck_notebooks"
TUTORIALS = sorted((REPO / "notebooks").glob("*.ipynb"))
PY2 = Options(python2=True)


def stream(text, name="stdout"):
    """A stream output."""
    return {"output_type": "stream", "name": name, "text": text}


def error(ename, evalue="boom"):
    """An error output."""
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def image():
    """A display_data output holding a PNG."""
    return {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}}


def verdict(stored, fresh, options=Options(), markers=Markers()):
    """Compares one cell's stored and fresh outputs."""
    return compare_cell(4, stored, fresh, options, markers)


def text_verdict(stored_text, fresh_text, options=Options()):
    """Compares two stdout texts as one cell's outputs."""
    return verdict([stream(stored_text)], [stream(fresh_text)], options)


# ----------------------------------------------------------------------------- eras and markers


def test_python2_follows_language_info_then_kernelspec_then_print_statements():
    """language_info.version decides; then a python2 kernelspec; with neither, a `print x` statement in a cell."""
    assert nbcheck.is_python2({"language_info": {"version": "2.7.12"}, "kernelspec": {"name": "python3"}})
    assert not nbcheck.is_python2({"language_info": {"version": "3.6.9"}, "kernelspec": {"name": "python2"}})
    assert nbcheck.is_python2({"kernelspec": {"name": "python2", "display_name": "Python 2"}})
    assert nbcheck.is_python2({"kernelspec": {"name": "conda", "display_name": "Python 2 (TF 1.3)"}})
    assert not nbcheck.is_python2({"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    assert not nbcheck.is_python2({})
    assert nbcheck.is_python2({}, ["x = 1", "print x"])
    assert not nbcheck.is_python2({"kernelspec": {"name": "python3"}}, ["print x"])


def test_numpy_era_is_113_for_python2_else_125_unless_overridden():
    """A Python 2 notebook is checked in the NumPy 1.13 era, others in 1.25; an explicit era wins."""
    py2 = {"language_info": {"version": "2.7.6"}}
    assert nbcheck.numpy_era_for(py2) == "1.13"
    assert nbcheck.numpy_era_for({}) == "1.25"
    assert nbcheck.numpy_era_for(py2, "modern") == "modern"


def test_markers_follow_nbval_comments_and_tags():
    """NBVAL comment lines and cell tags set skip / ignore / raises; a later CHECK_OUTPUT re-enables checking."""
    assert nbcheck.cell_markers({"source": "# NBVAL_SKIP\nx = 1"}).skip
    assert not nbcheck.cell_markers({"source": "#  NBVAL_IGNORE_OUTPUT\nx"}).check_output
    assert nbcheck.cell_markers({"source": "x", "metadata": {"tags": ["raises-exception"]}}).raises
    assert not nbcheck.cell_markers({"source": "x", "metadata": {"tags": ["nbval-ignore-output"]}}).check_output
    assert nbcheck.cell_markers(
        {"source": "# NBVAL_CHECK_OUTPUT", "metadata": {"tags": ["nbval-ignore-output"]}}).check_output
    assert nbcheck.cell_markers({"source": "print('# NBVAL_SKIP')"}) == Markers()


# ----------------------------------------------------------------------------- numbers


def test_numbers_are_rounded_to_the_shorter_before_comparing():
    """0.81131822 equals 0.8113182, and 1.00000000e-05 equals 1.e-05: both are rounded to the coarser digit first."""
    assert compare_numbers("0.81131822", "0.8113182", Options()) == (0.0, 0.0, True)
    assert compare_numbers("1.00000000e-05", "1.e-05", Options())[2]
    assert compare_numbers("0.3", "0.30000000000000004", Options())[2]


def test_float_tolerance_is_atol_plus_rtol_times_stored():
    """0.02476984 vs 0.02476977 (rel 2.8e-06) passes at rtol 1e-5; a 3e-03 change fails; rtol widens it."""
    abs_diff, rel_diff, ok = compare_numbers("0.02476984", "0.02476977", Options())
    assert ok and math.isclose(abs_diff, 7e-8) and math.isclose(rel_diff, 7e-8 / 0.02476984)
    assert not compare_numbers("0.02476984", "0.02469300", Options())[2]
    assert compare_numbers("0.02476984", "0.02469300", Options(rtol=5e-3))[2]
    assert compare_numbers("0.00000000", "5e-09", Options())[2]
    assert not compare_numbers("0.00000000", "5e-07", Options())[2]


def test_integers_must_be_equal_and_never_equal_floats():
    """Step counts and shapes compare exactly, whatever the tolerance, and 3 is not 3.0."""
    assert compare_numbers("1000", "1000", Options())[2]
    assert not compare_numbers("1000", "1001", Options(rtol=0.5))[2]
    assert not compare_numbers("3", "3.0", Options(rtol=0.5))[2]


def test_nan_equals_nan_and_infinities_equal_by_sign():
    """NaN matches NaN (any spelling); inf matches inf, not -inf, and never a finite number."""
    assert compare_numbers("nan", "NaN", Options())[2]
    assert compare_numbers("inf", "inf", Options())[2]
    assert compare_numbers("-inf", "-inf", Options())[2]
    assert not compare_numbers("inf", "-inf", Options())[2]
    assert not compare_numbers("nan", "1.5", Options())[2]


def test_number_report_line_has_both_values_and_differences():
    """A drifted number is reported as 'cell N, line L: stored vs fresh (abs .., rel ..) ok'."""
    result = text_verdict("step 5000\n" * 6 + "loss 0.02476984\n", "step 5000\n" * 6 + "loss 0.02476977\n")
    assert result.passed
    assert [n.describe(4) for n in result.numbers] == [
        "cell 4, line 7: 0.02476984 vs 0.02476977 (abs 7.0e-08, rel 2.8e-06) ok"
    ]
    failed = text_verdict("loss 0.02476984\n", "loss 0.02484700\n")
    assert failed.numbers[0].describe(4) == "cell 4, line 1: 0.02476984 vs 0.02484700 (abs 7.7e-05, rel 3.1e-03) FAIL"


# ----------------------------------------------------------------------------- normalizations


@pytest.mark.parametrize(
    "stored, fresh, options",
    [
        ("[ 1.  2.]\n", "[1. 2.]\n", Options()),
        ("array([ 0.07930292,  0.03475097], dtype=float32)\n", "array([0.07930292, 0.03475097], dtype=float32)\n",
         Options()),
        ("[ 0.5         0.53565359  0.57094663  0.60553247  0.63909274  0.67134744\n  0.70206344]\n",
         "[0.5        0.5356536  0.5709466  0.60553247 0.63909274 0.67134744 0.70206344]\n", Options()),
        ("[10.0, 4.555]\n", "[np.float32(10.0), np.float32(4.555)]\n", Options()),
        ("True\n", "np.True_\n", Options()),
        ("['ema' 'decay']\n", "[b'ema' b'decay']\n", Options()),
        ("[u'w:0', u'w/avg:0']\n", "['w:0', 'w/avg:0']\n", PY2),
        ("ema\n", "b'ema'\n", PY2),
        ("value: ema\n", "value: b'ema'\n", PY2),
        ("float32 (2L,) <type 'numpy.ndarray'>\n", "float32 (2,) <class 'numpy.ndarray'>\n", PY2),
        ("('step', 100, 'loss', 0.234)\n", "step 100 loss 0.234\n", PY2),
        ("('step', 100, 'loss', 0.234)\n", "('step', 100, 'loss', 0.234)\n", PY2),
        ("TensorShape([Dimension(2), Dimension(3)])\n", "TensorShape([2, 3])\n", Options()),
        ("<tf.Variable 'w:0' shape=(2,) dtype=float32_ref>\n", "<tf.Variable 'w:0' shape=(2,) dtype=float32>\n",
         Options()),
        ("<Session object at 0x7f3a2b1c4d50>\n", "<Session object at 0x55d0c0ffee00>\n", Options()),
        ("saved /tmp/tmpab12/model.ckpt-300\n", "saved /tmp/tmpzz99/model.ckpt-300\n", Options()),
        ("/job:localhost/replica:0/task:0/cpu:0 ran\n", "/job:localhost/replica:0/task:0/device:CPU:0 ran\n",
         Options()),
        ("step   100   loss  0.5  \n", "step 100 loss 0.5\n", Options()),
        ("epoch 1\rstep 3 of 3\n", "step 3 of 3\n", Options()),
        ('Tensor("x:0", shape=(?, 784), dtype=float32)\n', 'Tensor("x:0", shape=(None, 784), dtype=float32)\n',
         Options()),
        ("60000/60000 [==========] - 5s 85us/step - loss: 0.2593\n",
         "60000/60000 [==========] - 3s 51us/step - loss: 0.2593\n", Options()),
        ("1/2 [=>..] - ETA: 1:23" + "\b" * 22 + "2/2 [====] - 1s\n",
         "2/2 [====] - 2s\n", Options()),
        ("Wall time: 3.2 s\n", "Wall time: 812 ms\n", Options()),
        ("<matplotlib.text.Text at 0x10d7b0f60>\n", "Text(0.5, 1.0, 'loss')\n", Options()),
        ("<matplotlib.axes._subplots.AxesSubplot at 0x7f00aabbcc>\n", "<Axes: xlabel='step'>\n", Options()),
        ("100%|##########| 1000/1000 [00:05<00:00, 190.23it/s]\n",
         "100%|##########| 1000/1000 [00:02<00:00, 411.02it/s]\n", Options()),
        ("<ipython-input-4-5b3c0f4e1e47>:3: UserWarning: check me\n",
         "/tmp/ipykernel_4127/2104416837.py:3: UserWarning: check me\n", Options()),
    ],
    ids=["numpy-spacing", "numpy-repr", "numpy-wrapping", "np-float32", "np-bool", "bytes-in-array", "py2-unicode",
         "py2-bare-str", "py2-bare-str-in-line", "py2-long-and-type", "py2-tuple-print", "py2-tuple-kept", "dimension", "ref-dtype", "address",
         "temp-path", "device", "spaces", "carriage-return", "unknown-dim", "keras-timing", "keras-backspaces",
         "ipython-time", "matplotlib-text", "matplotlib-axes", "tqdm", "warning-in-cell"],
)
def test_era_differences_are_normalized(stored, fresh, options):
    """Text that differs only by era or machine (spacing, prefixes, reprs, addresses, paths, devices) matches."""
    result = text_verdict(stored, fresh, options)
    assert result.passed, result.report()


def test_python3_notebook_does_not_accept_bytes_for_a_bare_string_or_a_tuple_for_print_arguments():
    """Only a Python 2 notebook lets a fresh b'x' stand for a bare x, or `a 1` for a printed tuple ('a', 1)."""
    assert not text_verdict("ema\n", "b'ema'\n").passed
    assert not text_verdict("('a', 1)\n", "a 1\n").passed
    assert not text_verdict("('a', 1)\n", "b 1\n", PY2).passed


def test_device_names_mask_cpu_and_gpu_alike():
    """Device strings are masked wherever they appear, as the nbval sanitize file masks them."""
    assert normalize_lines("on /device:GPU:0\n") == normalize_lines("on /device:CPU:0\n") == ["on /device:DEVICE"]


TF_LOG = (
    "WARNING:tensorflow:From <ipython-input-2-5b3c>:5: initialize_all_variables (from tensorflow.python.ops"
    ".variables) is deprecated and will be removed after 2017-03-02.\n"
    "Instructions for updating:\n"
    "Use `tf.global_variables_initializer` instead.\n"
    "INFO:tensorflow:Restoring parameters from model.ckpt\n"
    "2017-09-12 10:15:31.123456: W tensorflow/core/platform/cpu_feature_guard.cc:45] The TensorFlow library "
    "wasn't compiled to use SSE4.1 instructions\n"
    "I0000 00:00:1700000000.123456   12345 device_compiler.h:186] Compiled cluster using XLA!\n"
    "/usr/lib/python3.6/site-packages/tensorflow/python/framework/dtypes.py:516: FutureWarning: Passing (type, 1)\n"
    '  _np_qint8 = np.dtype([("qint8", np.int8, 1)])\n'
    "WARNING:tensorflow:From <ipython-input-1-ab>:1: The name tf.Session is deprecated.\n"
    "\n"
    "WARNING:tensorflow:\n"
    "The TensorFlow contrib module will not be included in TensorFlow 2.0.\n"
    "  * https://github.com/tensorflow/addons\n"
    "\n"
    "Using TensorFlow backend.\n"
    "/usr/local/lib/python3.6/dist-packages/h5py/__init__.py:36: FutureWarning: Conversion of the second argument\n"
    "  from ._conv import register_converters as _register_converters\n"
)


def test_tensorflow_log_lines_are_ignored_unless_asked_for():
    """TF's log lines (Python, C++, its warnings) on one side only pass, and fail with tf_log_lines."""
    stored = [stream(TF_LOG, "stderr"), stream("result 3\n")]
    assert verdict(stored, [stream("result 3\n")]).passed
    assert not verdict(stored, [stream("result 3\n")], Options(tf_log_lines=True)).passed


def test_other_stderr_lines_are_compared():
    """A stderr line that is not TensorFlow's log must match too."""
    fresh = [stream("result 3\n"), stream("UserWarning: careful\n", "stderr")]
    assert not verdict([stream("result 3\n")], fresh).passed


# ----------------------------------------------------------------------------- must fail


@pytest.mark.parametrize(
    "stored, fresh, expected",
    [
        ([stream("loss 0.02486977\n")], [stream("loss 0.02476977\n")], "FAIL"),
        ([stream("shadow: 2.6999998\n")], [stream("average: 2.6999998\n")], "line 1: stored  shadow: 2.6999998"),
        ([stream("step 100\nstep 200\nstep 300\n")], [stream("step 100\nstep 200\n")],
         "line 3: missing in the fresh run: step 300"),
        ([stream("step 100\nstep 200\n")], [stream("step 100\nstep 200\nstep 300\n")],
         "extra line after stored line 2: step 300"),
        ([stream("\n")], [stream("\n\n")], "extra line"),
        ([error("InvalidArgumentError")], [error("ValueError")],
         "stored error InvalidArgumentError, fresh error ValueError"),
        ([], [stream("3.0\n")], "output where none was stored: 3.0"),
        ([stream("3\n")], [error("IndexError")], "the fresh run raised IndexError"),
        ([error("ZeroDivisionError")], [], "stored error ZeroDivisionError, the fresh run raised nothing"),
        ([stream("steps: 1001\n")], [stream("steps: 1000\n")], "1001 vs 1000"),
        ([stream("a b\n")], [stream("ab\n")], "stored  a b"),
        ([image()], [], "images/HTML outputs: 1 stored, 0 fresh"),
        ([stream("[ 1.  2.]\n")], [stream("[1. 2. 3.]\n")], "stored  [1. 2.]"),
    ],
    ids=["beyond-tolerance", "changed-word", "missing-line", "extra-line", "extra-blank-line", "exception-type",
         "output-where-none-stored", "error-where-none-stored", "stored-error-not-raised", "integer",
         "space-removed", "image-missing", "array-longer"],
)
def test_real_differences_fail(stored, fresh, expected):
    """Each kind of real difference fails the cell and the report says what differs."""
    result = verdict(stored, fresh)
    assert not result.passed
    assert expected in "\n".join(result.report()), result.report()


def test_same_exception_type_passes_whatever_the_message():
    """A stored error passes when the fresh run raises the same type, with a different message."""
    result = verdict([stream("before\n"), error("FailedPreconditionError", "old text")],
                     [stream("before\n"), error("FailedPreconditionError", "new text")])
    assert result.passed and "FailedPreconditionError" in result.note


def test_markers_ignore_output_and_expect_exceptions():
    """IGNORE_OUTPUT skips the text but not an unexpected error; RAISES_EXCEPTION needs one."""
    ignore = Markers(check_output=False)
    assert verdict([stream("took 0.81 s\n")], [stream("took 0.12 s\nmore\n")], markers=ignore).status == "ignored"
    assert not verdict([stream("x\n")], [error("ValueError")], markers=ignore).passed
    raises = Markers(raises=True)
    assert verdict([], [error("ValueError")], markers=raises).passed
    assert not verdict([], [], markers=raises).passed


def test_images_are_counted_not_compared():
    """Images present on both sides pass whatever their bytes, and are counted in the report."""
    other = image()
    other["data"]["image/png"] = "different"
    result = verdict([image()], [other])
    assert result.passed and result.rich == (1, 1)


def test_notebook_report_names_failing_cells_and_summarizes():
    """The notebook report lists failing cells, drift within tolerance, and a summary line with the verdict."""
    cells = [text_verdict("a 1\n", "a 1\n"), verdict([stream("x 0.5\n")], [stream("y 0.5\n")]),
             text_verdict("l 0.02476984\n", "l 0.02476977\n")]
    result = nbcheck.NotebookResult("nb.ipynb", "Python 3, NumPy 1.25", Options(), cells)
    report = nbcheck.format_notebook(result)
    assert report.startswith("nb.ipynb  (Python 3, NumPy 1.25; rtol 1e-05, atol 1e-08)\n")
    assert "  cell 4: FAIL\n" in report and "within tolerance" in report
    assert report.endswith("3 code cells: 2 match, 1 differ\n  FAIL\n")


# ----------------------------------------------------------------------------- CLI without a kernel


def test_nbcheck_parser_defaults():
    """`nbcheck NB` means kernel tf1-ema, rtol 1e-5, atol 1e-8, era from metadata, 600 s a cell, TF logs ignored."""
    args = cli.parse_args(["nbcheck", "a.ipynb", "b.ipynb"])
    assert args.notebooks == ["a.ipynb", "b.ipynb"]
    assert (args.kernel, args.rtol, args.atol, args.numpy_print, args.timeout, args.tf_log_lines) == (
        "tf1-ema", 1e-5, 1e-8, None, 600.0, False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nbcheck", "missing.ipynb"], "missing.ipynb: no such file"),
        (["nbcheck", "README.md"], "README.md: not a Jupyter notebook"),
        (["nbcheck", "tests"], "tests: is a directory"),
        (["nbcheck", "--rtol", "-1", "notebooks/01_walkthrough.ipynb"], "--rtol must be a finite number >= 0"),
        (["nbcheck", "--kernel", "no-such-kernel", "notebooks/01_walkthrough.ipynb"], "no Jupyter kernel named"),
    ],
    ids=["missing", "not-a-notebook", "directory", "negative-rtol", "unknown-kernel"],
)
def test_nbcheck_bad_input_exits_2_with_one_line(argv, message, capsys, monkeypatch):
    """Bad input is refused before any kernel starts: exit 2 and one line naming the problem."""
    monkeypatch.chdir(REPO)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tf1-ema nbcheck: error: ") and message in err, err


def test_nbcheck_usage_errors_exit_2_in_a_real_process():
    """`python -m tf1_ema nbcheck` with an unknown era or no notebook exits 2 from argparse."""
    for argv in (["nbcheck", "--numpy-print", "1.99", "x.ipynb"], ["nbcheck"]):
        proc = subprocess.run([sys.executable, "-m", "tf1_ema", *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert proc.returncode == 2 and "usage:" in proc.stderr, proc.stderr


def test_committed_test_notebooks_are_what_the_generator_writes(tmp_path):
    """tests/nbcheck_notebooks/*.ipynb are exactly what make_notebooks.py writes (no hand edits drift)."""
    sys.path.insert(0, str(NB_DIR))
    try:
        import make_notebooks
    finally:
        sys.path.remove(str(NB_DIR))
    make_notebooks.main(tmp_path)
    for name in make_notebooks.NOTEBOOKS:
        assert json.loads((tmp_path / name).read_text()) == json.loads((NB_DIR / name).read_text()), name


# ----------------------------------------------------------------------------- with a kernel


def _kernel_env():
    """The environment for kernels: this checkout's tf1_ema first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    """One `tf1-ema nbcheck` run over all test notebooks (copied): (exit code, {notebook: report})."""
    folder = tmp_path_factory.mktemp("nbcheck_cli")
    names = ["py2_numpy113.ipynb", "drift.ipynb", "expected_error.ipynb", "must_fail.ipynb", "stale.ipynb"]
    for name in names:
        shutil.copy(NB_DIR / name, folder / name)
    out = io.StringIO()
    old = os.environ.copy()
    os.environ.update(_kernel_env())
    try:
        with contextlib.redirect_stdout(out):
            code = cli.main(["nbcheck", *[str(folder / name) for name in names]])
    finally:
        os.environ.clear()
        os.environ.update(old)
    reports = {}
    for block in re.split(r"(?m)^(?=\S+\.ipynb  \()", out.getvalue()):
        if block.strip() and ".ipynb" in block.split("\n")[0]:
            reports[Path(block.split("  (")[0]).name] = block
    return code, reports, out.getvalue()


@pytest.mark.slow
def test_cli_exits_1_when_any_notebook_differs(cli_report):
    """With must_fail and stale among the notebooks the CLI exits 1 and says 3 of 5 match."""
    code, reports, text = cli_report
    assert code == 1, text
    assert text.endswith("3 of 5 notebooks match\n"), text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["py2_numpy113.ipynb", "drift.ipynb", "expected_error.ipynb"])
def test_old_era_notebooks_pass(cli_report, name):
    """The Python 2 / NumPy 1.13 notebook, the drifting one and the one expecting errors all pass."""
    report = cli_report[1][name]
    assert "\n  ok\n" in report and " 0 differ" in report, report


@pytest.mark.slow
def test_python2_notebook_runs_in_the_113_era_with_drift_reported(cli_report):
    """The Python 2 notebook is run as Python 2 / NumPy 1.13, and its tolerated digits are listed."""
    report = cli_report[1]["py2_numpy113.ipynb"]
    assert "(Python 2, NumPy 1.13;" in report
    # Which tolerated number drifts most depends on the TensorFlow and NumPy under test.
    assert re.search(r"cell 4, line 1: \d\.\d+ vs \d\.\d+ \(abs .*\) ok", report), report


@pytest.mark.slow
def test_drifting_training_numbers_pass_within_tolerance(cli_report):
    """Last-digit drift in losses and weights passes, each listed as within tolerance."""
    report = cli_report[1]["drift.ipynb"]
    assert "cell 1: ok" in report and "5 number(s) differ within tolerance" in report, report


@pytest.mark.slow
def test_expected_errors_and_markers_are_honoured(cli_report):
    """The stored FailedPreconditionError passes as the same type, the run goes on, SKIP and IGNORE are honoured."""
    report = cli_report[1]["expected_error.ipynb"]
    assert "7 code cells: 5 match, 0 differ, 1 ignored, 1 skipped" in report, report


@pytest.mark.slow
def test_every_must_fail_cell_fails_and_only_those(cli_report):
    """In must_fail.ipynb exactly the cells built to differ fail, and the run reaches the last cell."""
    sys.path.insert(0, str(NB_DIR))
    try:
        from make_notebooks import MUST_FAIL_CELLS
    finally:
        sys.path.remove(str(NB_DIR))
    report = cli_report[1]["must_fail.ipynb"]
    failed = {int(n) for n in re.findall(r"(?m)^  cell (\d+): FAIL", report)}
    assert failed == set(MUST_FAIL_CELLS), report
    assert "11 code cells: 2 match, 9 differ" in report, report


@pytest.mark.slow
def test_stale_notebook_fails(cli_report):
    """A notebook whose outputs came from an earlier version of its code (another learning rate) fails."""
    report = cli_report[1]["stale.ipynb"]
    assert "\n  FAIL\n" in report and "cell 1: FAIL" in report and "cell 2: FAIL" in report, report
    assert "cell 1, line 1: 0.00872565 vs 0.68175721" in report


def _plugin_args():
    """`-p tf1_ema.nbcheck_pytest` unless the installed package already registers the plugin."""
    registered = any(ep.value == "tf1_ema.nbcheck_pytest" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if registered else ["-p", "tf1_ema.nbcheck_pytest"]


@pytest.mark.slow
def test_pytest_route_has_one_item_per_cell(tmp_path):
    """`pytest --nbcheck` fails exactly the must-fail cells, passes the others, and takes the CLI's options."""
    for name in ("must_fail.ipynb", "drift.ipynb", "py2_numpy113.ipynb"):
        shutil.copy(NB_DIR / name, tmp_path / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *_plugin_args(), "-q", "-rfs", "--nbcheck",
         "--nbcheck-numpy-print", "1.25", "--nbcheck-rtol", "1e-5", "must_fail.ipynb", "drift.ipynb",
         "py2_numpy113.ipynb"],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, env=_kernel_env(),
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 1, report
    assert "9 failed, 11 passed" in report, report
    failed = {int(n) for n in re.findall(r"^FAILED must_fail\.ipynb::Cell (\d+)", report, re.MULTILINE)}
    assert failed == set(range(1, 10)), report
    assert "cell 1, line 1: 0.02486977 vs 0.02476977" in report, report


@pytest.mark.parametrize(
    "option, message",
    [(["--nbcheck-rtol", "-1"], "--nbcheck-rtol must be a finite number >= 0"),
     (["--nbcheck-kernel", "no-such-kernel"], "no Jupyter kernel named 'no-such-kernel'")],
    ids=["negative-rtol", "unknown-kernel"],
)
def test_pytest_route_rejects_bad_options(tmp_path, option, message):
    """A bad --nbcheck-* value or an unknown kernel is a pytest usage error (exit 4) before any kernel starts."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *_plugin_args(), "--nbcheck", *option, "x.ipynb"],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, env=_kernel_env(),
    )
    assert proc.returncode == 4 and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_our_tutorials_pass_nbcheck(capsys, monkeypatch):
    """nbcheck passes on the six tutorials in notebooks/, as nbval does."""
    assert len(TUTORIALS) == 6
    monkeypatch.setenv("PYTHONPATH", _kernel_env()["PYTHONPATH"])
    code = cli.main(["nbcheck", *[str(path) for path in TUTORIALS]])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.endswith("6 of 6 notebooks match\n"), out


def test_benchmark_script_builds_the_three_commands_and_times_the_comparison():
    """bench_nbcheck.py runs nbval, the CLI and the plugin on the same tutorials; the comparison alone is fast."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_nbcheck", REPO / "benchmarks" / "bench_nbcheck.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs = bench.commands(bench.NOTEBOOKS)
    count = len(TUTORIALS)
    assert list(runs) == ["nbval", "nbcheck", "pytest-nbcheck"] and len(bench.NOTEBOOKS) == count
    assert all(argv[-count:] == bench.NOTEBOOKS for argv in runs.values())
    assert "--nbval" in runs["nbval"] and "--nbcheck" in runs["pytest-nbcheck"]
    assert bench.comparison_seconds(bench.NOTEBOOKS, repeats=1) < 5.0


def _tiny_notebook(path, cells):
    """Writes a Python 3 notebook whose code cells are (source, stored stdout) pairs."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [v4.new_code_cell(source, outputs=[v4.new_output("stream", name="stdout", text=text)] if text else [])
                for source, text in cells]
    nbformat.write(nb, str(path))
    return str(path)


@pytest.mark.slow
def test_a_timeout_or_a_dead_kernel_fails_the_cell_and_stops_the_run(tmp_path, capsys):
    """A cell over --timeout, or one that kills the kernel, fails and the cells after it are reported not run."""
    slow = _tiny_notebook(tmp_path / "slow.ipynb", [("import time\ntime.sleep(60)", ""), ("print(1)", "1\n")])
    dies = _tiny_notebook(tmp_path / "dies.ipynb", [("import os\nos._exit(3)", ""), ("print(1)", "1\n")])
    assert cli.main(["nbcheck", "--kernel", "python3", "--timeout", "3", slow, dies]) == 1
    out = capsys.readouterr().out
    assert "cell 0: FAIL\n    timed out after 3 s" in out, out
    assert "cell 1: FAIL\n    not run: cell 0 ran over the 3 s timeout" in out, out
    assert "the kernel died while running this cell" in out, out
    assert out.endswith("0 of 2 notebooks match\n"), out
