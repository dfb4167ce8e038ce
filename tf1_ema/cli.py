"""The ``tf1-ema`` command line: argparse only; the work happens in the modules it calls.

    tf1-ema run [options] SCRIPT [ARGS...]     run a TF1-era script unchanged
    tf1-ema kernel install|remove [--user|--sys-prefix|--prefix P]
    tf1-ema nbval-config                       print the nbval sanitize file's path
    tf1-ema nbcheck [options] NOTEBOOK...      re-run notebooks, compare numbers with tolerance

Building the parser imports no TensorFlow, and neither does rejecting bad input, so
``tf1-ema run missing.py`` answers at once. Everything after SCRIPT belongs to the script,
verbatim (``--`` and ``-h`` included), as it would under ``python SCRIPT ARGS...``.
"""

import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

from tf1_ema import __version__
from tf1_ema.legacy.py2to3 import PY2_ENV
from tf1_ema.v1 import DEFAULT_NUMPY_PRINT, NUMPY_PRINT_ENV, NUMPY_PRINT_ERAS

__all__ = ["build_parser", "parse_args", "main"]

PROG = "tf1-ema"
# `run` options that take a value; the splitter in main() must skip over it.
_RUN_VALUE_OPTIONS = ("--numpy-print", "--tf-version")
_PLACEHOLDER = "SCRIPT"


def build_parser() -> argparse.ArgumentParser:
    """Returns the ``tf1-ema`` argument parser (each subcommand sets ``handler``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run TensorFlow 1 code, and its ExponentialMovingAverage, bit for bit on today's TensorFlow.",
    )
    parser.add_argument("--version", action="version", version="%s %s" % (PROG, __version__))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run a TF1-era script unchanged",
        description=(
            "Run SCRIPT as `python SCRIPT ARGS...` would have with TensorFlow 1: `import tensorflow` "
            "in it (and in the modules beside it) gives the TF1 API in graph mode, with tf1_ema's "
            "ExponentialMovingAverage."
        ),
    )
    run.add_argument(
        "--numpy-print",
        choices=NUMPY_PRINT_ERAS,
        default=None,
        help="how NumPy prints: 1.25 = NumPy 1.14-1.26, [10.0, 4.555]; 1.13 = pre-2018 digits, 4.5549998; "
        "modern = NumPy 2, np.float32(10.0) (default: $%s, else %s)" % (NUMPY_PRINT_ENV, DEFAULT_NUMPY_PRINT),
    )
    py2 = run.add_mutually_exclusive_group()
    py2.add_argument(
        "--py2",
        dest="py2",
        action="store_true",
        default=None,
        help="translate SCRIPT and the modules beside it from Python 2, even where they are valid Python 3 "
        "(default: $%s=1|0, else only files that are Python 2 and not Python 3)" % PY2_ENV,
    )
    py2.add_argument(
        "--no-py2",
        "--no-py2-print",
        dest="py2",
        action="store_false",
        help="never translate Python 2 source (--no-py2-print is the old name)",
    )
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--reference",
        action="store_true",
        help="use the stock tf.compat.v1.train.ExponentialMovingAverage instead of tf1_ema's",
    )
    mode.add_argument(
        "--compare",
        action="store_true",
        help="run with both EMAs and report whether stdout is identical (exit 1 and a diff when not)",
    )
    run.add_argument("--tf-log", action="store_true", help="keep TensorFlow's C++ log lines and deprecation warnings")
    _add_tf_version_option(run)
    run.add_argument("script", metavar="SCRIPT", help="the Python file to run")
    run.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="arguments for the script")
    run.set_defaults(handler=_run)

    kernel = commands.add_parser("kernel", help="install or remove the tf1-ema Jupyter kernel")
    kernel_commands = kernel.add_subparsers(dest="kernel_command", metavar="ACTION", required=True)
    for action, verb in (("install", "install"), ("remove", "remove")):
        sub = kernel_commands.add_parser(action, help="%s the kernelspec" % verb)
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--user", action="store_true", help="for the current user only")
        where.add_argument("--sys-prefix", action="store_true", help="into this Python environment (sys.prefix)")
        where.add_argument("--prefix", metavar="PREFIX", default=None, help="under PREFIX/share/jupyter")
        sub.set_defaults(handler=_kernel)

    nbval = commands.add_parser("nbval-config", help="print the path of the nbval sanitize file")
    nbval.set_defaults(handler=_nbval_config)

    nbcheck = commands.add_parser(
        "nbcheck",
        help="re-run notebooks and compare their stored outputs, numbers within a tolerance",
        description=(
            "Run each NOTEBOOK top to bottom in its folder and compare every code cell's fresh outputs "
            "with the stored ones: text after era normalizations, numbers within atol + rtol*|stored|, "
            "errors by exception type. Exit 0 when every cell matches, 1 when any differs, 2 on bad input."
        ),
    )
    add_nbcheck_options(nbcheck.add_argument, prefix="--")
    nbcheck.add_argument("--verbose", "-v", action="store_true", help="also list the cells that match exactly")
    nbcheck.add_argument("notebooks", metavar="NOTEBOOK", nargs="+", help="the .ipynb files to check")
    nbcheck.set_defaults(handler=_nbcheck)
    return parser


def add_nbcheck_options(add_argument, prefix: str) -> None:
    """Declares nbcheck's options, for the CLI (``--rtol``) and the pytest plugin (``--nbcheck-rtol``).

    Args:
        add_argument: ``ArgumentParser.add_argument`` or pytest's ``OptionGroup.addoption``.
        prefix: what goes before each option's name.
    """
    add_argument(prefix + "rtol", type=float, default=1e-5, metavar="R",
                 help="relative tolerance for floats, against the stored value (default 1e-5)")
    add_argument(prefix + "atol", type=float, default=1e-8, metavar="A",
                 help="absolute tolerance for floats (default 1e-8)")
    add_argument(prefix + "kernel", default="tf1-ema", metavar="NAME",
                 help="Jupyter kernel to run in (default tf1-ema)")
    add_argument(prefix + "numpy-print", choices=NUMPY_PRINT_ERAS, default=None, metavar="ERA",
                 help="NumPy print era of the stored outputs: %s (default: 1.13 for a Python 2 notebook, "
                 "else 1.25)" % ", ".join(NUMPY_PRINT_ERAS))
    add_argument(prefix + "timeout", type=float, default=600.0, metavar="S",
                 help="seconds a cell may run (default 600)")
    add_argument(prefix + "tf-log-lines", action="store_true",
                 help="compare TensorFlow's log lines (INFO:tensorflow: ...) instead of ignoring them")


def _add_tf_version_option(run: argparse.ArgumentParser) -> None:
    from tf1_ema.legacy.tflog import DEFAULT_TF_VERSION, TF_VERSION_ENV

    run.add_argument(
        "--tf-version",
        metavar="1.N",
        default=None,
        help="the TensorFlow 1.x version whose log output to reproduce, 1.0 to 1.15 (TF 1.0-1.8 printed "
        "'Converted N variables to const ops.', later ones logged it) (default: $%s, else %s)"
        % (TF_VERSION_ENV, DEFAULT_TF_VERSION),
    )


def _split_run_argv(argv: List[str]) -> Tuple[List[str], Optional[Tuple[str, List[str]]]]:
    """Splits ``run [options] SCRIPT ARGS`` into (what argparse sees, (SCRIPT, ARGS)).

    argparse would swallow a ``--`` among ARGS, claim options meant for the script, and
    refuse a SCRIPT that starts with ``-`` even after ``--``; so SCRIPT and ARGS are cut
    off first and argparse sees a placeholder SCRIPT. Returns ``(argv, None)`` when there
    is no ``run`` command with a SCRIPT (argparse then reports what is wrong).
    """
    command = next((i for i, token in enumerate(argv) if not token.startswith("-")), None)
    if command is None or argv[command] != "run":
        return argv, None
    index = command + 1
    while index < len(argv):
        token = argv[index]
        if token == "--":
            if index + 1 < len(argv):
                return argv[:index] + [_PLACEHOLDER], (argv[index + 1], argv[index + 2 :])
            return argv, None
        if token.startswith("-") and token != "-":
            index += 2 if token in _RUN_VALUE_OPTIONS else 1
            continue
        return argv[:index] + [_PLACEHOLDER], (token, argv[index + 1 :])
    return argv, None


def _error(command: str, message: str) -> None:
    print("%s %s: error: %s" % (PROG, command, message), file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from tf1_ema import runner, v1
    from tf1_ema.legacy import py2to3

    try:
        era = v1.resolve_numpy_print(args.numpy_print)
        py2 = py2to3.resolve_py2(args.py2)
    except ValueError as err:
        _error("run", str(err))
        return runner.EXIT_USAGE
    tf_version = _resolve_tf_version(args)
    if tf_version is None:
        return runner.EXIT_USAGE
    problem = runner.check_script(args.script)
    if problem:
        _error("run", problem)
        return runner.EXIT_USAGE
    options = dict(numpy_print=era, py2=py2, tf_log=args.tf_log, tf_version=tf_version)
    if args.compare:
        return runner.compare(args.script, args.args, **options)
    return runner.run(args.script, args.args, reference=args.reference, **options)


def _resolve_tf_version(args: argparse.Namespace) -> Optional[str]:
    """``--tf-version``, else ``$TF1_EMA_TF_VERSION``, else 1.15; None (and a message) when invalid."""
    from tf1_ema.legacy import tflog

    try:
        return tflog.resolve_tf_version(getattr(args, "tf_version", None))
    except ValueError as err:
        _error("run", str(err))
        return None


def _kernel(args: argparse.Namespace) -> int:
    try:
        from tf1_ema import kernelspec
    except ImportError as err:
        _error("kernel", "Jupyter kernel support is not available (%s)" % err)
        return 1
    action = kernelspec.install if args.kernel_command == "install" else kernelspec.remove
    try:
        path = action(user=args.user, sys_prefix=args.sys_prefix, prefix=args.prefix)
    except (OSError, ValueError) as err:
        _error("kernel " + args.kernel_command, str(err))
        return 1
    print(path)
    return 0


def _nbval_config(args: argparse.Namespace) -> int:
    try:
        from tf1_ema import kernelspec
    except ImportError as err:
        _error("nbval-config", "Jupyter kernel support is not available (%s)" % err)
        return 1
    print(os.fspath(kernelspec.SANITIZE_FILE))
    return 0


def _nbcheck(args: argparse.Namespace) -> int:
    try:
        from tf1_ema import nbrun
    except ImportError as err:
        _error("nbcheck", "notebook support is not available (%s); install tf1_ema[notebook]" % err)
        return 2
    problem = nbcheck_option_problem(args.rtol, args.atol, args.timeout)
    if problem:
        _error("nbcheck", problem)
        return 2
    try:
        nbrun.check_kernel(args.kernel)
        checks = [
            nbrun.NotebookCheck(path, args.rtol, args.atol, kernel=args.kernel, numpy_print=args.numpy_print,
                                timeout=args.timeout, tf_log_lines=args.tf_log_lines)
            for path in args.notebooks
        ]
    except nbrun.NbcheckInputError as err:
        _error("nbcheck", str(err))
        return 2
    return nbrun.run_checks(checks, sys.stdout, verbose=args.verbose)


def nbcheck_option_problem(rtol: float, atol: float, timeout: float) -> Optional[str]:
    """Says what is wrong with nbcheck's numeric options, or returns None.

    Args:
        rtol: relative tolerance.
        atol: absolute tolerance.
        timeout: seconds per cell.

    Returns:
        A one-line message, or None when all are valid.
    """
    for name, value in (("--rtol", rtol), ("--atol", atol)):
        if not value >= 0 or value == float("inf"):
            return "%s must be a finite number >= 0, got %s" % (name, value)
    if not timeout > 0:
        return "--timeout must be > 0 seconds, got %s" % timeout
    return None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parses a ``tf1-ema`` command line, keeping a script's own arguments verbatim.

    Args:
        argv: the arguments after the program name.

    Returns:
        The parsed arguments; ``handler`` is the function that runs the command.

    Raises:
        SystemExit: for ``--help``/``--version`` and usage errors, as argparse does.
    """
    head, script = _split_run_argv(list(argv))
    args = build_parser().parse_args(head)
    if script is not None:
        args.script, args.args = script
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the ``tf1-ema`` command line and returns the exit code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for bad input, else what the command reports
        (for ``run``, the script's own exit code).
    """
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
