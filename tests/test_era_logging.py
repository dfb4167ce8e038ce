"""TF 1.x's log output, per minor: the golden table of what TF1 emitted, the filter that keeps
only that (plus the user's own ``tf.logging`` calls), and whole programs in both settings TF1
had -- interactive (the kernel: INFO on stdout) and scripts (WARNING on stderr).

The table ``tf1_ema/legacy/tf1_log_messages.json`` is extracted from TF 1.0-1.14's own
sources by ``tests/golden/extract_tf1_messages.py``; the facts pinned below were read there.
"""

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from limits import TIMEOUT
from tf1_ema import cli
from tf1_ema.legacy import tflog

REPO = Path(__file__).resolve().parents[1]
TABLE = json.loads((REPO / "tf1_ema" / "legacy" / "tf1_log_messages.json").read_text())
ENV_SKIP = (tflog.TF_VERSION_ENV, "TF1_EMA_NUMPY_PRINT", "TF_CPP_MIN_LOG_LEVEL")


# ------------------------------------------------------------------- the golden table


# (minor, source file, kind, template): facts read in TF 1.x's sources.
FACTS = [
    ("1.0", "graph_util_impl.py", "info", "Froze %d variables."),
    ("1.0", "graph_util_impl.py", "print", "Converted %d variables to const ops."),
    ("1.1", "saver.py", "info", "Restoring parameters from %s"),
    ("1.4", "graph_util_impl.py", "info", "Froze %d variables."),
    ("1.4", "graph_util_impl.py", "print", "Converted %d variables to const ops."),
    ("1.8", "graph_util_impl.py", "print", "Converted %d variables to const ops."),
    ("1.9", "graph_util_impl.py", "info", "Converted %d variables to const ops."),
    ("1.15", "graph_util_impl.py", "info", "Converted %d variables to const ops."),
    ("1.4", "saver.py", "info", "Restoring parameters from %s"),
    ("1.15", "saver.py", "info", "Restoring parameters from %s"),
    ("1.4", "basic_session_run_hooks.py", "info", "Saving checkpoints for %d into %s."),
    ("1.4", "basic_session_run_hooks.py", "info", "Create CheckpointSaverHook."),
    ("1.6", "monitored_session.py", "info", "Graph was finalized."),
    ("1.6", "session_manager.py", "info", "Running local_init_op."),
    ("1.4", "supervisor.py", "info", "Starting standard services."),
    ("1.4", "estimator.py", "info", "Using default config."),
]


def rows(minor):
    """The table's rows for one minor, as (file name, kind, template) tuples."""
    return tflog.MESSAGES[minor]


@pytest.mark.parametrize("minor, source, kind, template", FACTS, ids=lambda v: str(v)[:30])
def test_table_holds_what_tf1_emitted(minor, source, kind, template):
    """Each fact read in TF 1.x's sources is in the shipped table for that minor."""
    assert (source, kind, template) in rows(minor)


@pytest.mark.parametrize(
    "minor, template",
    [
        ("1.4", "Graph was finalized."),
        ("1.5", "Running local_init_op."),
        ("1.15", "Calling checkpoint listeners before saving checkpoint %d..."),
    ],
)
def test_table_lacks_what_that_minor_did_not_emit(minor, template):
    """Messages added after a minor (or only by TF 2) are not in that minor's rows."""
    assert all(row[2] != template for row in rows(minor))


def test_table_covers_every_minor_from_1_0_to_1_15():
    """The golden table has 1.0-1.14 from the wheels; 1.15 (no longer served) reads as 1.14."""
    assert sorted(TABLE, key=lambda v: int(v.split(".")[1])) == ["1.%d" % m for m in range(0, 15)]
    assert tflog.TF_VERSIONS == tuple("1.%d" % m for m in range(0, 16))
    assert rows("1.15") == rows("1.14")


# ------------------------------------------------------------------- choosing the minor


@pytest.mark.parametrize("value, env, expected", [(None, None, "1.15"), ("1.4", "1.9", "1.4"), (None, "1.9", "1.9"), ("1.13.1", None, "1.13")])
def test_resolve_tf_version_prefers_the_flag_then_the_environment(monkeypatch, value, env, expected):
    """--tf-version wins over $TF1_EMA_TF_VERSION, which wins over the 1.15 default; a patch level is ignored."""
    if env is None:
        monkeypatch.delenv(tflog.TF_VERSION_ENV, raising=False)
    else:
        monkeypatch.setenv(tflog.TF_VERSION_ENV, env)
    assert tflog.resolve_tf_version(value) == expected


@pytest.mark.parametrize("value", ["2.0", "0.12", "1.16", "banana"])
def test_resolve_tf_version_names_the_bad_value(monkeypatch, value):
    """A version outside 1.0-1.15 is refused with a message naming the source and the choices."""
    monkeypatch.setenv(tflog.TF_VERSION_ENV, value)
    with pytest.raises(ValueError, match=tflog.TF_VERSION_ENV):
        tflog.resolve_tf_version()
    with pytest.raises(ValueError, match="--tf-version"):
        tflog.resolve_tf_version(value)


def test_cli_accepts_tf_version_before_the_script():
    """`tf1-ema run --tf-version 1.4 SCRIPT ARGS` keeps the version for us and ARGS for the script."""
    args = cli.parse_args(["run", "--tf-version", "1.4", "x.py", "--tf-version", "2"])
    assert (args.tf_version, args.script, args.args) == ("1.4", "x.py", ["--tf-version", "2"])


def test_cli_rejects_a_bad_tf_version_as_usage_error(capsys, tmp_path):
    """A bad --tf-version exits 2 with one line, before TensorFlow is imported."""
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    assert cli.main(["run", "--tf-version", "0.12", str(script)]) == 2
    assert "tf1-ema run: error: --tf-version='0.12'" in capsys.readouterr().err


# ------------------------------------------------------------------- the filter and handler


def record(pathname, msg, args=(), level=logging.INFO):
    """A log record as the tensorflow logger would make it."""
    return logging.LogRecord("tensorflow", level, pathname, 1, msg, args, None)


TF_DIR = os.path.dirname(logging.__file__)  # any library directory stands for TensorFlow's


@pytest.mark.parametrize(
    "version, pathname, msg, kept",
    [
        ("1.15", TF_DIR + "/training/saver.py", "Restoring parameters from %s", True),
        ("1.0", TF_DIR + "/training/saver.py", "Restoring parameters from %s", False),
        ("1.4", TF_DIR + "/training/monitored_session.py", "Graph was finalized.", False),
        ("1.6", TF_DIR + "/training/monitored_session.py", "Graph was finalized.", True),
        ("1.15", TF_DIR + "/training/basic_session_run_hooks.py", "Calling checkpoint listeners before saving checkpoint %d...", False),
        ("1.15", TF_DIR + "/util/deprecation.py", "From %s: %s (from %s) is deprecated and will be removed %s.\nInstructions for updating:\n%s", False),
        ("1.15", TF_DIR + "/other.py", "Restoring parameters from %s", False),
        ("1.8", TF_DIR + "/checkpoint/checkpoint_management.py", "%s: Checkpoint ignored", True),
        ("1.4", "/home/user/project/train.py", "anything the user logs", True),
        ("1.4", "/tmp/ipykernel_1/123.py", "a notebook cell's tf.logging.info", True),
    ],
    ids=["saver", "saver-1.0", "finalized-1.4", "finalized-1.6", "tf2-only", "deprecation", "wrong-file", "moved-file", "user-script", "user-cell"],
)
def test_era_filter_keeps_tf1_messages_and_the_users_own(version, pathname, msg, kept):
    """A record passes when that minor emitted its template from that file, or when user code logged it."""
    assert tflog.EraFilter(version).filter(record(pathname, msg)) is kept


@pytest.fixture
def logger():
    """A private logger configured as the tensorflow one would be, restored afterwards."""
    log = logging.getLogger("tf1_ema_test_era")
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
    tflog._Era.handler = None
    tflog._Era.version = tflog.DEFAULT_TF_VERSION


def test_interactive_logging_goes_to_the_current_stdout_at_info(logger, monkeypatch):
    """Interactive: INFO and up, BASIC_FORMAT, written to whatever sys.stdout is at the time."""
    tflog.configure(logger, "1.15", interactive=True)
    cell = io.StringIO()
    monkeypatch.setattr(sys, "stdout", cell)
    logger.info("user %d", 1, extra={"tf1_ema_era": True})
    logger.debug("hidden", extra={"tf1_ema_era": True})
    assert cell.getvalue() == "INFO:tf1_ema_test_era:user 1\n"


def test_script_logging_goes_to_stderr_from_warning(logger, monkeypatch):
    """Script: WARNING and up on stderr; INFO is hidden until the user raises the verbosity."""
    tflog.configure(logger, "1.15", interactive=False)
    err, out = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    logger.info("hidden", extra={"tf1_ema_era": True})
    logger.warning("shown", extra={"tf1_ema_era": True})
    logger.setLevel(logging.INFO)  # tf.logging.set_verbosity(tf.logging.INFO)
    logger.info("now shown", extra={"tf1_ema_era": True})
    assert (out.getvalue(), err.getvalue()) == ("", "WARNING:tf1_ema_test_era:shown\nINFO:tf1_ema_test_era:now shown\n")


@pytest.mark.parametrize(
    "version, expected",
    [
        ("1.4", "INFO:tf1_ema_test_era:Froze 2 variables.\nConverted 2 variables to const ops.\n"),
        ("1.8", "INFO:tf1_ema_test_era:Froze 2 variables.\nConverted 2 variables to const ops.\n"),
        ("1.9", "INFO:tf1_ema_test_era:Froze 2 variables.\nINFO:tf1_ema_test_era:Converted 2 variables to const ops.\n"),
        ("1.15", "INFO:tf1_ema_test_era:Froze 2 variables.\nINFO:tf1_ema_test_era:Converted 2 variables to const ops.\n"),
    ],
)
def test_emit_prints_or_logs_as_the_minor_did(logger, monkeypatch, version, expected):
    """TF 1.4-1.8 printed 'Converted N variables to const ops.'; 1.9 on logged it at INFO."""
    tflog.configure(logger, version, interactive=True)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    tflog.emit(logger, "graph_util_impl.py", "Froze %d variables.", 2)
    tflog.emit(logger, "graph_util_impl.py", "Converted %d variables to const ops.", 2)
    assert out.getvalue() == expected


@pytest.mark.parametrize("version, expected", [("1.3", "7 ops in the final graph.\n"), ("1.4", "")])
def test_freeze_graph_printed_its_size_until_1_3(logger, monkeypatch, version, expected):
    """TF 1.0-1.3's freeze_graph printed 'N ops in the final graph.'; 1.4 on did not."""
    tflog.configure(logger, version, interactive=False)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    tflog.emit(logger, "freeze_graph.py", "%d ops in the final graph.", 7)
    assert out.getvalue() == expected


def test_emit_in_a_script_prints_converted_on_stdout_only_for_old_minors(logger, monkeypatch):
    """In a script TF 1.4's print still reached stdout, while the INFO lines stayed hidden."""
    tflog.configure(logger, "1.4", interactive=False)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    tflog.emit(logger, "graph_util_impl.py", "Froze %d variables.", 3)
    tflog.emit(logger, "graph_util_impl.py", "Converted %d variables to const ops.", 3)
    assert (out.getvalue(), err.getvalue()) == ("Converted 3 variables to const ops.\n", "")


# ------------------------------------------------------------------- whole programs

PROGRAM = """\
import os
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import graph_util

here = os.path.dirname(os.path.abspath(__file__))
v = tf.Variable(1.0, name="v")
w = tf.Variable(2.0, name="w")
out = tf.add(v, w, name="add")
tf.logging.info("user info %d", 1)
tf.logging.warning("user warning")
tf.initialize_all_variables()  # deprecated since TF 1.x: TF 2's notice must not show
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    saver = tf.train.Saver()
    path = saver.save(sess, os.path.join(here, "model.ckpt"))
    saver.restore(sess, path)
    frozen = graph_util.convert_variables_to_constants(sess, sess.graph_def, ["add"])
print(len(frozen.node), "nodes" if np.asscalar(np.array([1])) else "")
step = tf.assign_add(tf.train.get_or_create_global_step(), 1)
with tf.train.MonitoredTrainingSession(checkpoint_dir=os.path.join(here, "mts")) as mts:
    mts.run(step)
print("done")
"""

# What TF 1.15 / 1.4 / 1.0 showed in a notebook ({here}: the script's directory). TF 1.0's
# Saver did not log restores yet; MonitoredTrainingSession's set-up lines came with 1.6.
INTERACTIVE = {
    "1.15": """\
INFO:tensorflow:user info 1
WARNING:tensorflow:user warning
INFO:tensorflow:Restoring parameters from {here}/model.ckpt
INFO:tensorflow:Froze 2 variables.
INFO:tensorflow:Converted 2 variables to const ops.
5 nodes
INFO:tensorflow:Create CheckpointSaverHook.
INFO:tensorflow:Graph was finalized.
INFO:tensorflow:Running local_init_op.
INFO:tensorflow:Done running local_init_op.
INFO:tensorflow:Saving checkpoints for 0 into {here}/mts/model.ckpt.
INFO:tensorflow:Saving checkpoints for 1 into {here}/mts/model.ckpt.
done
""",
    "1.4": """\
INFO:tensorflow:user info 1
WARNING:tensorflow:user warning
INFO:tensorflow:Restoring parameters from {here}/model.ckpt
INFO:tensorflow:Froze 2 variables.
Converted 2 variables to const ops.
5 nodes
INFO:tensorflow:Create CheckpointSaverHook.
INFO:tensorflow:Saving checkpoints for 0 into {here}/mts/model.ckpt.
INFO:tensorflow:Saving checkpoints for 1 into {here}/mts/model.ckpt.
done
""",
    "1.0": """\
INFO:tensorflow:user info 1
WARNING:tensorflow:user warning
INFO:tensorflow:Froze 2 variables.
Converted 2 variables to const ops.
5 nodes
INFO:tensorflow:Create CheckpointSaverHook.
INFO:tensorflow:Saving checkpoints for 0 into {here}/mts/model.ckpt.
INFO:tensorflow:Saving checkpoints for 1 into {here}/mts/model.ckpt.
done
""",
}

# The kernel's set-up (tf1_ema.kernel.setup_tf1) without a kernel: interactive logging.
DRIVER = """\
import runpy, sys
from tf1_ema import v1
v1.prepare_environment()
v1.install(lambda g: g.get("__name__") == "__main__")
v1.configure_tf1_logging(sys.argv[1], interactive=True)
runpy.run_path(sys.argv[2], run_name="__main__")
"""


def env(**extra):
    """This environment without our settings, with this checkout first on the path."""
    result = {k: v for k, v in os.environ.items() if k not in ENV_SKIP}
    result["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result.update(extra)
    return result


def run(argv, cwd, **extra):
    """Runs a Python command line; returns the completed process (text, captured)."""
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture
def program(tmp_path):
    """The PROGRAM written to a fresh directory."""
    path = tmp_path / "program.py"
    path.write_text(PROGRAM)
    (tmp_path / "driver.py").write_text(DRIVER)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("version", ["1.15", "1.4", "1.0"])
def test_interactive_program_prints_what_the_notebook_showed(program, version):
    """Interactive (as in the kernel): TF1's INFO lines on stdout, for that minor, and nothing on stderr."""
    result = run(["driver.py", version, program.name], cwd=program.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout == INTERACTIVE[version].format(here=program.parent)
    assert result.stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["default", "env 1.4", "--tf-log"])
def test_script_logging(program, how):
    """`tf1-ema run`: warnings on stderr as TF1 scripts showed them; 1.4 prints 'Converted'; --tf-log shows TF 2's notices."""
    argv = ["-m", "tf1_ema", "run"] + (["--tf-log"] if how == "--tf-log" else []) + [program.name]
    extra = {tflog.TF_VERSION_ENV: "1.4"} if how == "env 1.4" else {}
    result = run(argv, cwd=program.parent, **extra)
    assert result.returncode == 0, result.stderr
    if how == "--tf-log":
        assert "is deprecated" in result.stderr
        assert "tf1-ema: np.asscalar is the TF1-era shim (removed in NumPy 1.23: a.item())\n" in result.stderr
        return
    converted = "Converted 2 variables to const ops.\n" if how == "env 1.4" else ""
    assert result.stdout == converted + "5 nodes\ndone\n"
    assert result.stderr == "WARNING:tensorflow:user warning\n"


PLAIN = """\
import builtins, logging, sys
import numpy
import tensorflow as tf

def state():
    log = logging.getLogger("tensorflow")
    return (builtins.__import__, log.level, log.propagate, [type(h) for h in log.handlers],
            hasattr(numpy, "float"), sorted(m for m in sys.modules if m.startswith("tf1_ema.legacy")))

before = state()
import tf1_ema
after = state()
print(before == after, after[4], after[5])
"""


@pytest.mark.slow
def test_plain_import_tf1_ema_changes_nothing(tmp_path):
    """`import tf1_ema` in a plain program leaves imports, TensorFlow's logger and NumPy as they were."""
    (tmp_path / "plain.py").write_text(PLAIN)
    result = run(["plain.py"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True False []\n"


KERNEL_CELLS = [
    (
        "import tensorflow as tf\n"
        "from tensorflow.python.framework import graph_util\n"
        "v = tf.Variable(1.0, name='v'); w = tf.Variable(2.0, name='w'); total = tf.add(v, w, name='add')\n"
        "tf.initialize_all_variables()\n"
        "sess = tf.Session(); sess.run(tf.global_variables_initializer())\n"
        "saver = tf.train.Saver(); path = saver.save(sess, 'Saved_model/model.ckpt')",
        "",
    ),
    ("saver.restore(sess, 'Saved_model/model.ckpt')", "INFO:tensorflow:Restoring parameters from Saved_model/model.ckpt\n"),
    (
        "frozen = graph_util.convert_variables_to_constants(sess, sess.graph_def, ['add'])",
        "INFO:tensorflow:Froze 2 variables.\nINFO:tensorflow:Converted 2 variables to const ops.\n",
    ),
    ("tf.logging.info('from a cell %d', 7)", "INFO:tensorflow:from a cell 7\n"),
]


@pytest.mark.slow
def test_kernel_cells_show_tf1_info_lines(tmp_path, monkeypatch):
    """In the tf1-ema kernel, TF1's INFO lines land in the cell's stdout and TF 2's notices nowhere."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv(tflog.TF_VERSION_ENV, raising=False)
    monkeypatch.setenv("PYTHONPATH", env()["PYTHONPATH"])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source, _ in KERNEL_CELLS]
    client = nbclient.NotebookClient(nb, kernel_name="tf1-ema", timeout=TIMEOUT, startup_timeout=TIMEOUT,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    for cell, (_, expected) in zip(nb.cells, KERNEL_CELLS):
        streams = [(o["name"], o["text"]) for o in cell.outputs if o["output_type"] == "stream"]
        assert "".join(text for name, text in streams if name == "stdout") == expected
        assert all(name != "stderr" for name, _ in streams), streams
        assert all(o["output_type"] != "error" for o in cell.outputs), cell.outputs


# Messages tf1-ema lets through because today's TensorFlow still logs them verbatim from the
# same file: if an upgrade rewords one, this fails instead of the line silently vanishing.
STILL_LOGGED = [
    ("training/saver.py", "Restoring parameters from %s"),
    ("training/basic_session_run_hooks.py", "Create CheckpointSaverHook."),
    ("training/basic_session_run_hooks.py", "Saving checkpoints for %d into %s."),
    ("training/monitored_session.py", "Graph was finalized."),
    ("training/session_manager.py", "Running local_init_op."),
    ("training/session_manager.py", "Done running local_init_op."),
    ("training/supervisor.py", "Starting standard services."),
    ("training/supervisor.py", "Starting queue runners."),
    ("training/supervisor.py", "Saving checkpoint to path %s"),
]


@pytest.mark.parametrize("path, template", STILL_LOGGED, ids=[t for _, t in STILL_LOGGED])
def test_installed_tensorflow_still_logs_the_tf1_message(path, template):
    """The installed TensorFlow's source still logs this TF1 message, word for word, from that file."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflow")  # locates the package without importing it
    source = (Path(spec.submodule_search_locations[0]) / "python" / path).read_text()
    assert repr(template)[1:-1] in source or template in source


def test_extractor_reads_literal_formatted_and_printed_messages():
    """The golden-table extractor finds logging calls and prints, with non-literal parts as %s."""
    sys.path.insert(0, str(REPO / "tests" / "golden"))
    try:
        import extract_tf1_messages as extractor
    finally:
        sys.path.pop(0)
    source = (
        "logging.info('Froze %d variables.', n)\n"
        "print('Converted %d variables to const ops.' % n)\n"
        "logging.warn('Input ' + name + ' missing')\n"
        "other.info('not TensorFlow logging')\n"
        "logging.info(message)\n"
    )
    assert extractor.messages(source) == [
        ["info", "Froze %d variables."],
        ["print", "Converted %d variables to const ops."],
        ["warning", "Input %s missing"],
    ]


def test_kernel_refuses_a_bad_tf_version_before_configuring(monkeypatch):
    """The kernel's set-up step reads $TF1_EMA_TF_VERSION and fails on a bad one (so the kernel dies loudly)."""
    kernel = pytest.importorskip("tf1_ema.kernel")
    monkeypatch.setenv(tflog.TF_VERSION_ENV, "2.0")
    calls = []

    class FakeV1:
        @staticmethod
        def configure_tf1_logging(version, interactive):
            calls.append((version, interactive))

    with pytest.raises(ValueError, match=tflog.TF_VERSION_ENV):
        kernel._configure_tf1_logging(FakeV1)
    monkeypatch.setenv(tflog.TF_VERSION_ENV, "1.4")
    kernel._configure_tf1_logging(FakeV1)
    assert calls == [("1.4", True)]


def test_wheel_ships_the_log_table(tmp_path):
    """The built wheel carries tf1_log_messages.json next to tflog.py, so installed copies can load it."""
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=REPO, check=True, capture_output=True, timeout=TIMEOUT,
    )
    (wheel,) = tmp_path.glob("tf1_ema-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert json.loads(archive.read("tf1_ema/legacy/tf1_log_messages.json")) == TABLE


def test_compare_passes_the_tf_version_to_both_runs(capsys):
    """`tf1-ema run --compare --tf-version 1.4` runs both processes with --tf-version 1.4."""
    from tf1_ema import runner

    commands = []

    def capture(command):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "same\n", "")

    assert runner.compare("s.py", tf_version="1.4", capture=capture) == 0
    assert len(commands) == 2
    assert all(c[c.index("--tf-version") + 1] == "1.4" for c in commands)
