"""tf1_ema.cli: the parser and dispatch in-process, plus one real subprocess per command.

Nothing here imports TensorFlow: bad input is rejected before the runner loads it, and the
kernel commands go to ``tf1_ema.kernelspec`` (replaced by a stub for the dispatch tests).
"""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from limits import TIMEOUT
from tf1_ema import __version__, cli, runner
from tf1_ema.v1 import NUMPY_PRINT_ENV

REPO = Path(__file__).resolve().parents[1]


def parse(*argv):
    """Shorthand for ``cli.parse_args(argv)``."""
    return cli.parse_args(argv)


def tf1_ema(*argv, cwd=REPO, env=None):
    """Runs ``python -m tf1_ema ARGV`` in a subprocess and returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "tf1_ema", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


# ----------------------------------------------------------------------------- parser


def test_run_defaults():
    """`run SCRIPT` means: our EMA, era from the environment, Python 2 detected (py2 None), logs off."""
    args = parse("run", "x.py")
    assert (args.script, args.args, args.numpy_print) == ("x.py", [], None)
    assert (args.reference, args.compare, args.py2, args.tf_log) == (False, False, None, False)


def test_run_options_before_script_are_ours():
    """Options before SCRIPT configure the runner."""
    args = parse("run", "--numpy-print", "1.13", "--no-py2-print", "--reference", "--tf-log", "x.py")
    assert (args.numpy_print, args.py2, args.reference, args.tf_log) == ("1.13", False, True, True)
    assert parse("run", "--no-py2", "x.py").py2 is False and parse("run", "--py2", "x.py").py2 is True
    assert parse("run", "--numpy-print=modern", "x.py").numpy_print == "modern"


def test_everything_after_script_belongs_to_the_script():
    """ARGS are passed verbatim, including -h, --, and options that look like ours."""
    args = parse("run", "--compare", "x.py", "--reference", "-h", "--", "--numpy-print", "bogus")
    assert args.compare and not args.reference
    assert args.args == ["--reference", "-h", "--", "--numpy-print", "bogus"]


def test_double_dash_marks_a_script_that_looks_like_an_option():
    """`run -- -odd.py a` runs the file -odd.py with argument a."""
    args = parse("run", "--", "-odd.py", "a")
    assert (args.script, args.args) == ("-odd.py", ["a"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--reference", "--compare", "x.py"], "not allowed with argument"),
        (["run", "--numpy-print", "1.99", "x.py"], "invalid choice: '1.99'"),
        (["run"], "the following arguments are required: SCRIPT"),
        (["kernel", "install", "--user", "--sys-prefix"], "not allowed with argument"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
    ids=["reference and compare", "unknown era", "no script", "two kernel locations", "unknown command"],
)
def test_usage_errors_exit_2(argv, message, capsys):
    """Malformed command lines exit 2 with argparse's usage message."""
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_version(capsys):
    """`--version` prints the package version and exits 0."""
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "tf1-ema %s" % __version__


def test_help_lists_the_run_options(capsys):
    """`run --help` documents every run option and the environment variable."""
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--numpy-print", "--py2", "--no-py2", "--reference", "--compare", "--tf-log", NUMPY_PRINT_ENV, "TF1_EMA_PY2"):
        assert option in out


def test_value_options_are_known_to_the_splitter():
    """Every run option that takes a value is listed for the argv splitter."""
    run_parser = cli.build_parser()._subparsers._group_actions[0].choices["run"]
    takes_value = {
        option
        for action in run_parser._actions
        if action.option_strings and action.nargs != 0
        for option in action.option_strings
    }
    assert takes_value == set(cli._RUN_VALUE_OPTIONS)


# ------------------------------------------------------------------------ bad input


def test_missing_script_is_one_line_and_exit_2(tmp_path, capsys):
    """A path that does not exist: exit 2, one line naming it and the current directory."""
    assert cli.main(["run", str(tmp_path / "nope.py")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("tf1-ema run: error: cannot find") and "nope.py" in err


def test_directory_is_one_line_and_exit_2(tmp_path, capsys):
    """A directory: exit 2, one line suggesting a .py file inside it."""
    (tmp_path / "train.py").write_text("pass\n")
    assert cli.main(["run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err and "train.py" in err


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("notes.txt", b"print 1\n", "not a Python script (expected a .py file)"),
        ("model.ipynb", b"{}", "is a Jupyter notebook"),
        ("blob.py", b"\x00\x01\x02\xff\xfe", "not a Python script"),
        ("train", b"#!/bin/bash\necho hi\n", "its first line runs /bin/bash"),
        ("train2", b"echo $HOME && ls\n", "does not parse as Python"),
    ],
    ids=["text file", "notebook", "binary .py", "shell script", "no suffix, not python"],
)
def test_non_python_file_is_one_line_and_exit_2(tmp_path, capsys, name, content, fragment):
    """Something that is not Python source: exit 2, one line saying so."""
    path = tmp_path / name
    path.write_bytes(content)
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_extensionless_python_scripts_are_accepted(tmp_path):
    """A file without suffix runs when it has a python shebang or parses as Python (2)."""
    shebang = tmp_path / "a"
    shebang.write_text("#!/usr/bin/env python\nprint 1\n")
    plain = tmp_path / "b"
    plain.write_text("print 'hello'\n")
    assert runner.check_script(str(shebang)) is None
    assert runner.check_script(str(plain)) is None


def test_bad_numpy_print_environment_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """An invalid $TF1_EMA_NUMPY_PRINT: exit 2, naming the variable and the valid eras."""
    script = tmp_path / "ok.py"
    script.write_text("pass\n")
    monkeypatch.setenv(NUMPY_PRINT_ENV, "1.7")
    assert cli.main(["run", str(script)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and NUMPY_PRINT_ENV + "='1.7'" in err and "1.13, 1.25, modern" in err


# ---------------------------------------------------------------- kernel / nbval-config


@pytest.fixture
def fake_kernelspec(monkeypatch):
    """Replaces tf1_ema.kernelspec with a stub that records its calls."""
    calls = []
    stub = types.ModuleType("tf1_ema.kernelspec")
    stub.install = lambda **kwargs: calls.append(("install", kwargs)) or "/k/install"
    stub.remove = lambda **kwargs: calls.append(("remove", kwargs)) or "/k/remove"
    stub.SANITIZE_FILE = "/k/sanitize.cfg"
    monkeypatch.setitem(sys.modules, "tf1_ema.kernelspec", stub)
    import tf1_ema

    monkeypatch.setattr(tf1_ema, "kernelspec", stub, raising=False)
    return calls


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["kernel", "install"], ("install", dict(user=False, sys_prefix=False, prefix=None))),
        (["kernel", "install", "--user"], ("install", dict(user=True, sys_prefix=False, prefix=None))),
        (["kernel", "remove", "--sys-prefix"], ("remove", dict(user=False, sys_prefix=True, prefix=None))),
        (["kernel", "remove", "--prefix", "/p"], ("remove", dict(user=False, sys_prefix=False, prefix="/p"))),
    ],
    ids=["install", "install --user", "remove --sys-prefix", "remove --prefix"],
)
def test_kernel_commands_dispatch_to_kernelspec(fake_kernelspec, capsys, argv, expected):
    """`kernel install|remove` call kernelspec with the location flags and print the path."""
    assert cli.main(argv) == 0
    assert fake_kernelspec == [expected]
    assert capsys.readouterr().out == "/k/%s\n" % expected[0]


def test_nbval_config_prints_the_sanitize_file(fake_kernelspec, capsys):
    """`nbval-config` prints kernelspec.SANITIZE_FILE."""
    assert cli.main(["nbval-config"]) == 0
    assert capsys.readouterr().out == "/k/sanitize.cfg\n"


def test_kernel_errors_are_one_line(fake_kernelspec, capsys):
    """An OSError from the installer becomes one line and exit 1."""

    def refuse(**kwargs):
        raise PermissionError("[Errno 13] Permission denied: '/usr/share/jupyter'")

    sys.modules["tf1_ema.kernelspec"].install = refuse
    assert cli.main(["kernel", "install", "--sys-prefix"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tf1-ema kernel install: error:")


# ------------------------------------------------------------- one subprocess per command


def test_subprocess_run_rejects_a_missing_script_fast():
    """`python -m tf1_ema run missing.py` exits 2 with one line, before loading TensorFlow."""
    result = tf1_ema("run", "does/not/exist.py")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "tf1-ema run: error: cannot find 'does/not/exist.py' (no such file); check the path, "
        "which is relative to %s" % REPO
    ]


def test_subprocess_kernel_install_and_remove(tmp_path):
    """`kernel install --prefix P` writes a tf1-ema kernelspec under P; `kernel remove` deletes it."""
    installed = tf1_ema("kernel", "install", "--prefix", str(tmp_path))
    assert installed.returncode == 0, installed.stderr
    spec_dir = Path(installed.stdout.strip())
    assert str(spec_dir).startswith(str(tmp_path))
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert "tf1_ema" in " ".join(spec["argv"])
    removed = tf1_ema("kernel", "remove", "--prefix", str(tmp_path))
    assert removed.returncode == 0, removed.stderr
    assert not spec_dir.exists()


def test_subprocess_nbval_config_prints_an_existing_file():
    """`nbval-config` prints the path of the sanitize file shipped with the package."""
    result = tf1_ema("nbval-config")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_file()
