"""tf1-ema run: every example through the CLI in a subprocess, plus the runner's contract.

Each run is a fresh ``python -m tf1_ema run ...`` process (a script run changes its process
for good: graph mode, ``sys.argv``, ``__main__``), and each costs a TensorFlow import, so
runs are cached per module and the TensorFlow-loading tests are marked slow. The few
behaviours that need no TensorFlow (syntax errors, ``--compare``'s report) run in-process.
"""

import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import py2_golden
import pytest

from limits import TIMEOUT
from tf1_ema import cli, runner
from tf1_ema.v1 import NUMPY_PRINT_ENV

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
MODES = {"ours": [], "reference": ["--reference"]}

# What each example prints: the same text with tf1_ema's EMA and with the stock one.
EXPECTED = {
    "walkthrough.py": """\
[0.0, 0.0]
[3.0, 2.6999998]
[3.0, 2.7029998]
""",
    "py2_print.py": """\
shadow variable: x/ExponentialMovingAverage:0
step 0 value 11.0 average 10.1
step 1 value 12.0 average 10.29
step 2 value 13.0 average 10.561
[13.0, 10.561]

done
""",
    "interactive_session.py": """\
[3. 4.] [2. 3.] 0.5
[5. 6.] [3.5 4.5] 0.5
[ 9. 10.] [6.25 7.25] 0.5
weights/ExponentialMovingAverage bias/ExponentialMovingAverage
['weights:0', 'bias:0']
""",
    "save_restore.py": """\
[10.0, 0.099999905]
['v', 'v/ExponentialMovingAverage']
{'v/ExponentialMovingAverage': <tf.Variable 'v:0' shape=() dtype=float32_ref>}
0.099999905
""",
    "train_dense.py": """\
(?, 3) 3
model/hidden/kernel:0 -> model/hidden/kernel/ExponentialMovingAverage
model/hidden/bias:0 -> model/hidden/bias/ExponentialMovingAverage
model/out/kernel:0 -> model/out/kernel/ExponentialMovingAverage
model/out/bias:0 -> model/out/bias/ExponentialMovingAverage
step   0  loss 1.1932  averaged 1.5125
step  50  loss 0.1788  averaged 0.2119
step 100  loss 0.0205  averaged 0.0327
step 150  loss 0.0033  averaged 0.0045
step 200  loss 0.0010  averaged 0.0012
global step 201
""",
    "mnist_input_data.py": """\
train 500, validation 5000, test 50
(500, 784) float32 (500, 10)
epochs completed 19
test accuracy 1.00
test accuracy, averaged weights 1.00
""",
}


def clean_env(**extra):
    """The test process's environment without our own settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in (NUMPY_PRINT_ENV, "TF_CPP_MIN_LOG_LEVEL")}
    env.update(extra)
    return env


def tf1_ema(*argv, cwd=REPO, env=None, timeout=TIMEOUT):
    """Runs ``python -m tf1_ema ARGV`` and returns the completed process (text, captured)."""
    return subprocess.run(
        [sys.executable, "-m", "tf1_ema", *map(str, argv)],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_tiny_mnist(directory, train=5500, test=50):
    """Four idx .gz files where label k lights pixels [78k, 78k + 78): learnable in a few steps."""
    for prefix, count in (("train", train), ("t10k", test)):
        labels = (np.arange(count) * 7 % 10).astype(np.uint8)
        images = np.zeros((count, 784), np.uint8)
        for row, label in enumerate(labels.astype(int)):
            images[row, 78 * label : 78 * label + 78] = 255
        for kind, magic, dims, data in (
            ("images-idx3", 2051, (count, 28, 28), images),
            ("labels-idx1", 2049, (count,), labels),
        ):
            with gzip.open(os.path.join(directory, "%s-%s-ubyte.gz" % (prefix, kind)), "wb") as stream:
                stream.write(np.array([magic, *dims], ">u4").tobytes() + data.tobytes())


@pytest.fixture(scope="module")
def learnable_mnist_dir(tmp_path_factory):
    """A directory holding tiny MNIST files for the input_data example."""
    directory = tmp_path_factory.mktemp("mnist")
    write_tiny_mnist(directory)
    return directory


@pytest.fixture(scope="module")
def example_run(learnable_mnist_dir):
    """Runs an example in a mode through the CLI once per module; returns the process."""
    cache = {}

    def run(example, mode):
        if (example, mode) not in cache:
            args = ["--data_dir", learnable_mnist_dir] if example == "mnist_input_data.py" else []
            cache[example, mode] = tf1_ema("run", *MODES[mode], EXAMPLES / example, *args)
        return cache[example, mode]

    return run


def test_every_example_has_expected_output():
    """Each script in examples/ has pinned output here, and each pinned output has a script."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_prints_expected_output(example_run, example, mode):
    """The example exits 0 and prints exactly the pinned TF1-era text, with either EMA."""
    result = example_run(example, mode)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED[example]


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_stderr_is_free_of_tensorflow_noise(example_run, example):
    """By default no C++ log lines, absl preamble or tf-keras deprecation warnings reach stderr."""
    stderr = example_run(example, "ours").stderr
    for noise in ("I0000", "W0000", "E0000", "absl::InitializeLog", "is deprecated", "WARNING:tensorflow"):
        assert noise not in stderr
    if example == "py2_print.py":
        assert stderr == "(progress goes to stderr)\n"


# ------------------------------------------------------------ the script's environment

PROBE = '''\
import os
import sys

import numpy as np
import tensorflow
import tensorflow as tf
import tensorflow.compat.v1 as tfv1
from tensorflow import train
from tensorflow.compat import v1 as tfc
from tensorflow.examples.tutorials.mnist import input_data
from tensorflow.python.training import moving_averages
from tensorflow.train import ExponentialMovingAverage

import helper
import thirdparty
from pkg import sub

real = sys.modules["tensorflow"]


def show(key, value):
    print("%s=%s" % (key, value))


show("one namespace", tensorflow is tf is tfv1 is tfc)
show("ema", tf.train.ExponentialMovingAverage.__module__)
show("same ema", train.ExponentialMovingAverage is ExponentialMovingAverage is tf.train.ExponentialMovingAverage)
show("assign", tf.assign_moving_average.__module__)
show("private path", moving_averages.assign_moving_average is tf.assign_moving_average)
show("sibling module", helper.EMA is tf.train.ExponentialMovingAverage)
show("subpackage", sub.train is tf.train)
show("third party gets real", thirdparty.tf is real and real is not tf)
show("real untouched", real.compat.v1.train.ExponentialMovingAverage.__module__)
show("eager", tf.executing_eagerly())
show("layers", tf.layers.dense.__module__.split(".")[0])
show("contrib", tf.contrib.layers.xavier_initializer.__module__)
try:
    tf.contrib.slim
except AttributeError as err:
    show("contrib error", err)
try:
    import tensorflow.contrib.seq2seq
except ImportError as err:
    show("contrib import", type(err).__name__)
show("input_data", input_data.read_data_sets.__module__)
show("version", tf.__version__ == real.__version__)
show("v2", hasattr(tf.compat.v2, "function"))
show("dimension", tf.placeholder(tf.float32, [None, 3]).get_shape()[1].value)
show("name", __name__)
show("file", "%s %s" % (os.path.basename(__file__), os.path.isabs(__file__)))
show("argv0", sys.argv[0])
show("path0", sys.path[0] == os.path.dirname(os.path.realpath(__file__)))
show("cwd", open("data.txt").read().strip())
show("numpy", [np.float32(10.0), np.float32(4.555)])
helper.shout()

tf.flags.DEFINE_integer("n", 1, "a number")
FLAGS = tf.flags.FLAGS


def main(argv):
    show("flag", FLAGS.n)
    show("rest", argv[1:])


if __name__ == "__main__":
    tf.app.run(main)
'''

PROBE_EXPECTED = """\
one namespace=True
ema=tf1_ema.ema
same ema=True
assign=tf1_ema.ema
private path=True
sibling module=True
subpackage=True
third party gets real=True
real untouched=tensorflow.python.training.moving_averages
eager=False
layers=tf_keras
contrib=tensorflow.contrib.layers
contrib error=tf.contrib.slim was removed in TensorFlow 2.0; use the tf-slim package (pip install tf-slim; \
import tf_slim as slim) instead.
contrib import=RemovedModuleError
input_data=tf1_ema.legacy.input_data
version=True
v2=True
dimension=3
name=__main__
file=probe.py True
argv0=project/probe.py
path0=True
cwd=read relative to the working directory
numpy=[10.0, 4.555]
helper says hi
flag=5
rest=['extra', '--', '-x']
"""


@pytest.mark.slow
def test_script_and_its_modules_get_tf1_while_libraries_get_real_tensorflow(tmp_path):
    """Every import form gives the script and its sibling modules the TF1 namespace; libraries keep TF2."""
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "probe.py").write_text(PROBE)
    # A Python 2 module beside the script: TF1 namespace and print fix apply to it too.
    (project / "helper.py").write_text(
        "import tensorflow as tf\nEMA = tf.train.ExponentialMovingAverage\n\n"
        "def shout():\n    print 'helper says', 'hi'\n"
    )
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "sub.py").write_text("from tensorflow import train\n")
    library = tmp_path / "site"
    library.mkdir()
    (library / "thirdparty.py").write_text("import tensorflow as tf\n")
    (tmp_path / "data.txt").write_text("read relative to the working directory\n")
    result = tf1_ema(
        "run", "project/probe.py", "--n", "5", "extra", "--", "-x", cwd=tmp_path, env=clean_env(PYTHONPATH=str(library))
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == PROBE_EXPECTED


ERA_SCRIPT = """\
import numpy as np
import tensorflow as tf
print([np.float32(10.0), np.float32(4.555)])
print(np.array([1.5, 2.0], np.float32))
"""


# "modern" is the installed NumPy's own style: scalars print as np.float32(...) from NumPy 2 on.
MODERN_ERA_OUTPUT = (
    "[np.float32(10.0), np.float32(4.555)]\n[1.5 2. ]\n"
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0"
    else "[10.0, 4.555]\n[1.5 2. ]\n"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how, expected",
    [
        (("env", "1.13"), "[10.0, 4.5549998]\n[ 1.5  2. ]\n"),
        (("flag", "modern"), MODERN_ERA_OUTPUT),
    ],
    ids=["1.13 from the environment", "modern from the flag"],
)
def test_numpy_print_era(tmp_path, how, expected):
    """--numpy-print and $TF1_EMA_NUMPY_PRINT pick how NumPy values print (1.25 is the probe's)."""
    script = tmp_path / "era.py"
    script.write_text(ERA_SCRIPT)
    source, era = how
    if source == "env":
        result = tf1_ema("run", script, env=clean_env(**{NUMPY_PRINT_ENV: era}))
    else:
        result = tf1_ema("run", "--numpy-print", era, script, env=clean_env(**{NUMPY_PRINT_ENV: "1.13"}))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


NP113_SCRIPT = """\
import numpy as np
import tensorflow as tf
import np113_helper
x = np.float32([1/3, 2/3, 1])
print(x)
print(repr(x))
print(np.float32(4.555), [np.float32(4.555), np.float64(0.1)], {'a': (np.float32(0.1),)})
print("%s|%r" % (x[:1], x[:1]))
np113_helper.show()
with tf.Session() as sess:
    print(sess.run(tf.constant([1e-5, 1.0])))
np.set_printoptions(precision=3, suppress=True)
print(np.float32([1/3, 1e-9]))
"""

NP113_EXPECTED = """\
[ 0.33333334  0.66666669  1.        ]
array([ 0.33333334,  0.66666669,  1.        ], dtype=float32)
4.555 [4.5549998, 0.10000000000000001] {'a': (0.1,)}
[ 0.33333334]|array([ 0.33333334], dtype=float32)
helper 0.333333 [0.33333334]
[  9.99999975e-06   1.00000000e+00]
[ 0.333  0.   ]
"""


@pytest.mark.slow
def test_numpy_113_print_reaches_scripts_and_their_modules(tmp_path):
    """--numpy-print 1.13: arrays, scalars, containers and set_printoptions print NumPy 1.13's text, also beside the script."""
    (tmp_path / "np113_helper.py").write_text(
        "import numpy as np\n\ndef show():\n    print('helper', np.float32(1/3), [np.float32(1/3)])\n"
    )
    script = tmp_path / "np113.py"
    script.write_text(NP113_SCRIPT)
    result = tf1_ema("run", "--numpy-print", "1.13", script, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == NP113_EXPECTED


# -------------------------------------------------------------------------- exit codes

EXITS = """\
import sys
import time

import tensorflow as tf


def fail():
    return tf.constant(1.0) + undefined_name


if sys.argv[1] == "raise":
    fail()
elif sys.argv[1] == "exit":
    sys.exit(int(sys.argv[2]))
elif sys.argv[1] == "wait":
    print("ready", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def exits_script(tmp_path):
    """A script that raises, exits with a code, or waits for Ctrl-C, as argv[1] says."""
    path = tmp_path / "exits.py"
    path.write_text(EXITS)
    return path


@pytest.mark.slow
def test_uncaught_exception_exits_1_with_the_users_traceback(exits_script):
    """An uncaught exception exits 1 and the traceback shows the script's frames, not the runner's."""
    result = tf1_ema("run", exits_script, "raise")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "NameError: name 'undefined_name' is not defined"
    assert 'exits.py", line 12, in <module>' in lines[1] and 'exits.py", line 8, in fail' in lines[3]
    assert "runner.py" not in result.stderr and "tf1_ema" not in result.stderr


@pytest.mark.slow
def test_sys_exit_code_is_the_exit_code(exits_script):
    """sys.exit(n) in the script makes the command exit n, with nothing on stderr."""
    result = tf1_ema("run", exits_script, "exit", "7")
    assert (result.returncode, result.stderr) == (7, "")


@pytest.mark.slow
def test_ctrl_c_exits_130(exits_script):
    """SIGINT while the script runs exits 130 with a KeyboardInterrupt traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tf1_ema", "run", str(exits_script), "wait"],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python ignores Ctrl-C when started with SIGINT ignored (as background jobs are).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.splitlines()[-1] == "KeyboardInterrupt"


@pytest.mark.slow
def test_missing_mnist_files_are_one_clear_line(tmp_path):
    """input_data without its files: exit 1, one line naming the directory and where to get them."""
    result = tf1_ema("run", EXAMPLES / "mnist_input_data.py", "--data_dir", tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("tf1-ema: error: MNIST data not found: train-images-idx3-ubyte.gz")
    assert str(tmp_path) in line and "https://" in line and line.endswith("(examples/mnist_input_data.py:17)")


def test_syntax_error_exits_1_like_python(tmp_path):
    """A script that does not compile exits 1 with python's SyntaxError report, before TF loads."""
    script = tmp_path / "broken.py"
    script.write_text("x = 1\nexcept E, e:\n    print e\n")
    result = tf1_ema("run", script)
    assert result.returncode == 1
    assert 'broken.py", line 2' in result.stderr and "SyntaxError" in result.stderr
    assert "neither Python 3 nor Python 2" in result.stderr


@pytest.mark.parametrize("option", ["--no-py2", "--no-py2-print"])
def test_no_py2_leaves_python2_source_alone(option):
    """--no-py2 (old name --no-py2-print) runs the Python 2 example untranslated, so it fails to compile."""
    result = tf1_ema("run", option, EXAMPLES / "py2_print.py")
    assert result.returncode == 1
    assert "Missing parentheses in call to 'print'" in result.stderr


# ------------------------------------------------------------------- Python 2 programs

PY3_NEIGHBOUR = "def half(n):\n    return n / 2\n\ndef show():\n    print(b'raw', 7 / 2)\n"
GOLDEN_TAIL = "import golden_future\nimport py3mod\nprint '=== python 3 module untouched'\nprint py3mod.half(7)\npy3mod.show()\n"


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    """The whole golden table as one Python 2 script through `tf1-ema run`, with stdin for raw_input."""
    project = tmp_path_factory.mktemp("golden")
    future, body = py2_golden.FUTURE_DIVISION[0].split("\n", 1)
    (project / "golden_future.py").write_text("%s\nprint '=== future division'\n%s" % (future, body))
    (project / "py3mod.py").write_text(PY3_NEIGHBOUR)
    (project / "golden.py").write_text(py2_golden.script() + GOLDEN_TAIL)
    return subprocess.run(
        [sys.executable, "-m", "tf1_ema", "run", str(project / "golden.py")],
        cwd=REPO, env=clean_env(), input=py2_golden.STDIN, capture_output=True, text=True, timeout=TIMEOUT,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(py2_golden.GOLDEN))
def test_golden_table_through_tf1_ema_run(golden_run, name):
    """Each golden-table snippet prints, under `tf1-ema run`, exactly what Python 2.7 printed."""
    assert golden_run.returncode == 0, golden_run.stderr
    assert py2_golden.split_output(golden_run.stdout)[name] == py2_golden.GOLDEN[name][1]


@pytest.mark.slow
def test_python2_tensor_division_logs_no_deprecation(golden_run):
    """`tensor / 2` in Python 2 code is TF1's division, with no warning about today's deprecated tf.div."""
    assert "div (from tensorflow" not in golden_run.stderr, golden_run.stderr


@pytest.mark.slow
def test_modules_beside_a_python2_script_are_judged_one_by_one(golden_run):
    """A Python 2 neighbour with `from __future__ import division` divides truly; a Python 3 one is untouched."""
    outputs = py2_golden.split_output(golden_run.stdout)
    assert outputs["future division"] == py2_golden.FUTURE_DIVISION[1]
    assert outputs["python 3 module untouched"] == "3.5\nb'raw' 3.5\n"


@pytest.mark.slow
def test_python2_traceback_points_at_the_users_lines(tmp_path):
    """An error in translated code reports the user's file, line and text, without our helper frames."""
    script = tmp_path / "old.py"
    script.write_text("from urllib import urlencode, urlretrieve\nx = reduce(max, [1, 2])\nprint x\ny = x / 0\n")
    result = tf1_ema("run", script)
    assert result.returncode == 1 and result.stdout == "2\n"
    assert 'old.py", line 4, in <module>\n    y = x / 0\n' in result.stderr
    assert "py2runtime" not in result.stderr and result.stderr.endswith("ZeroDivisionError: integer division or modulo by zero\n")


@pytest.mark.slow
def test_tf1_ema_py2_environment_forces_translation_of_python3_source(tmp_path):
    """TF1_EMA_PY2=1 translates a valid Python 3 script too: `/` floors, and `print (a, b)` prints a tuple."""
    script = tmp_path / "valid3.py"
    script.write_text("print(7 / 2, b'x')\n")
    result = tf1_ema("run", script, env=clean_env(TF1_EMA_PY2="1"))
    assert (result.returncode, result.stdout) == (0, "(3, 'x')\n"), result.stderr


def test_bad_tf1_ema_py2_environment_is_a_usage_error(monkeypatch, capsys, tmp_path):
    """An unknown TF1_EMA_PY2 value exits 2 with one line naming the accepted values."""
    monkeypatch.setenv("TF1_EMA_PY2", "maybe")
    assert cli.main(["run", str(tmp_path / "x.py")]) == runner.EXIT_USAGE
    assert "TF1_EMA_PY2='maybe'" in capsys.readouterr().err


def test_console_script_is_installed():
    """The tf1-ema console script sits next to the interpreter and answers --version."""
    script = Path(sys.executable).with_name("tf1-ema")
    if not script.exists():
        pytest.skip("tf1-ema console script not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0 and result.stdout.startswith("tf1-ema ")


# ----------------------------------------------------------------------------- compare


@pytest.mark.slow
def test_compare_reports_identical_stdout():
    """--compare runs both EMAs, prints our output and says the two are identical."""
    result = tf1_ema("run", "--compare", EXAMPLES / "walkthrough.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED["walkthrough.py"] + (
        "tf1-ema compare: identical stdout (3 lines) with tf1_ema's EMA and the stock one\n"
    )


def test_compare_prints_a_diff_and_exits_1_when_outputs_differ(capsys):
    """When the two runs print different text, --compare shows a unified diff and exits 1."""
    outputs = iter(["[3.0, 2.7]\nsame\n", "[3.0, 2.6999998]\nsame\n"])
    commands = []

    def fake_runner(command):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=next(outputs))

    code = runner.compare("w.py", ["--flag"], numpy_print="1.13", capture=fake_runner)
    out = capsys.readouterr().out
    assert code == 1
    assert "--reference" not in commands[0] and "--reference" in commands[1]
    assert commands[0][-3:] == ["--", "w.py", "--flag"] and "1.13" in commands[0]
    assert out.startswith("[3.0, 2.7]\nsame\ntf1-ema compare: stdout DIFFERS")
    assert "-[3.0, 2.6999998]\n+[3.0, 2.7]\n" in out


def test_exit_code_follows_python_for_non_integer_codes(capsys):
    """sys.exit(None) is 0, sys.exit("message") prints the message and is 1, like python."""
    assert runner._exit_code(None) == 0
    assert runner._exit_code(4) == 4
    assert runner._exit_code("bye") == 1
    assert capsys.readouterr().err == "bye\n"
