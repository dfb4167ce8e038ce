"""TensorFlow 1.x's Python logging, as each minor showed it, over today's ``tensorflow`` logger.

TF 1.x configured the ``tensorflow`` logger once: in an interactive session (``sys.ps1``
set: IPython, Jupyter) at INFO on **stdout**, otherwise at the default WARNING on
**stderr**, both as ``LEVEL:tensorflow:message`` (``logging.BASIC_FORMAT``). Today's
TensorFlow still logs through the same logger, but also emits lines TF1 never printed
(deprecation notices of the compat API, checkpoint-listener chatter) and no longer emits
some it did (graph freezing).

``configure(logger, version, interactive)`` reproduces TF1: a record is shown when it
comes from the user's own code (``tf.logging.info(...)`` in a script or cell) or when its
message template is one the chosen TF 1.x minor emitted from that same source file
(``MESSAGES``, extracted from TF 1.x's sources by ``tests/golden/extract_tf1_messages.py``);
everything else is dropped. ``emit(version, source, template, *args)`` is for the
messages we produce ourselves where today's TensorFlow is silent: it logs or prints them the
way that minor did (TF 1.4-1.8 *printed* ``Converted 2 variables to const ops.``).

No TensorFlow import here: the ``tensorflow`` logger is a plain ``logging`` logger.
"""

import json
import logging
import os
import sys
import sysconfig
from typing import Any, Dict, FrozenSet, Optional, Tuple

__all__ = [
    "TF_VERSION_ENV",
    "TF_VERSIONS",
    "DEFAULT_TF_VERSION",
    "MESSAGES",
    "resolve_tf_version",
    "configure",
    "emit",
    "EraFilter",
]

TF_VERSION_ENV = "TF1_EMA_TF_VERSION"
TF_VERSIONS = tuple("1.%d" % minor for minor in range(0, 16))
DEFAULT_TF_VERSION = "1.15"

# TF 1.11 moved the checkpoint-state messages from saver.py into checkpoint_management.py,
# where today's TensorFlow still logs them: for older minors, the new file stands for the old.
_MOVED = {"saver.py": ("checkpoint_management.py",)}

# TF 1.15 is no longer served by the registry; its logging calls in these files are 1.14's.
_SOURCE_OF = {"1.15": "1.14"}
_TABLE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf1_log_messages.json")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_messages() -> Dict[str, FrozenSet[Tuple[str, str, str]]]:
    """``{minor: {(source file name, kind, template)}}`` from the shipped table."""
    with open(_TABLE_FILE, encoding="utf-8") as stream:
        raw = json.load(stream)
    table = {
        minor: frozenset((os.path.basename(path), kind, template) for path, kind, template in rows)
        for minor, rows in raw.items()
    }
    for minor, source in _SOURCE_OF.items():
        table.setdefault(minor, table[source])
    return table


MESSAGES: Dict[str, FrozenSet[Tuple[str, str, str]]] = _load_messages()


def resolve_tf_version(value: Optional[str] = None) -> str:
    """Picks the TF 1.x minor whose output to reproduce: ``value``, else the env, else 1.15.

    Args:
        value: an explicit choice (``--tf-version``), or None. "1.4.0" means "1.4".

    Returns:
        One of ``TF_VERSIONS``.

    Raises:
        ValueError: the choice is not a TF 1.x minor from 1.0 to 1.15; the message names
            where it came from.
    """
    where = "--tf-version"
    if value is None:
        value = os.environ.get(TF_VERSION_ENV, "").strip()
        where = TF_VERSION_ENV
        if not value:
            return DEFAULT_TF_VERSION
    minor = ".".join(value.strip().split(".")[:2])
    if minor not in TF_VERSIONS:
        raise ValueError(
            "%s=%r is not a TensorFlow version tf1-ema reproduces; use one of %s (default %s)"
            % (where, value, ", ".join(TF_VERSIONS), DEFAULT_TF_VERSION)
        )
    return minor


def _library_dirs() -> Tuple[str, ...]:
    """Directories whose files are libraries, not the user's code."""
    paths = sysconfig.get_paths()
    dirs = {paths.get("purelib"), paths.get("platlib"), paths.get("stdlib"), _PACKAGE_DIR}
    dirs.update(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p))
    return tuple(sorted(os.path.realpath(d) + os.sep for d in dirs if d))


class EraFilter(logging.Filter):
    """Lets through what TF 1.x of one minor would have shown, and the user's own records.

    Args:
        version: a TF 1.x minor from ``TF_VERSIONS``.
    """

    def __init__(self, version: str) -> None:
        super().__init__()
        self.version = version
        self._known = {
            (name, template)
            for source, kind, template in MESSAGES[version]
            if kind != "print"
            for name in (source,) + _MOVED.get(source, ())
        }
        self._libraries = _library_dirs()

    def is_user_record(self, record: logging.LogRecord) -> bool:
        """True when the record was logged by code outside every installed library."""
        if getattr(record, "tf1_ema_era", False):
            return True
        path = os.path.realpath(record.pathname or "")
        return not path.startswith(self._libraries)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.is_user_record(record):
            return True
        return (os.path.basename(record.pathname or ""), str(record.msg)) in self._known


class _CurrentStream(logging.StreamHandler):
    """A StreamHandler writing to whatever ``sys.stdout``/``sys.stderr`` is at emit time.

    A notebook kernel swaps ``sys.stdout`` for each cell's output stream; binding the stream
    once, at set-up, would send the lines to the kernel's terminal instead of the cell.
    """

    def __init__(self, name: str) -> None:
        super().__init__(getattr(sys, name))
        self._name = name

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return getattr(sys, self._name)

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


class _Era:
    version = DEFAULT_TF_VERSION
    handler: Optional[logging.Handler] = None


def configure(logger: logging.Logger, version: str, interactive: bool) -> None:
    """Makes ``logger`` (TensorFlow's) show what TF ``version`` showed, where it showed it.

    Replaces the logger's handlers with one that writes ``LEVEL:tensorflow:message`` to
    stdout at INFO when ``interactive``, else to stderr from WARNING on (TF1's defaults;
    ``tf.logging.set_verbosity`` still changes the level), through an ``EraFilter``.

    Args:
        logger: the ``tensorflow`` logger.
        version: one of ``TF_VERSIONS``.
        interactive: True for a notebook or IPython session, False for a script.
    """
    if version not in MESSAGES:
        raise ValueError("TF version must be one of %s, not %r" % (", ".join(TF_VERSIONS), version))
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _CurrentStream("stdout" if interactive else "stderr")
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    handler.addFilter(EraFilter(version))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if interactive else logging.WARNING)
    # TF1 parity: one line per record, whatever the root logger's handlers are.
    logger.propagate = False
    _Era.version = version
    _Era.handler = handler


def configured_version() -> Optional[str]:
    """The minor ``configure`` was last called with, or None when it has not been."""
    return _Era.version if _Era.handler is not None else None


def emit(logger: logging.Logger, source: str, template: str, *args: Any) -> None:
    """Reproduces one TF1 message that today's TensorFlow no longer emits.

    Looks up how the configured minor emitted ``template`` from ``source`` (a file name in
    ``MESSAGES`` such as "graph_util_impl.py"): ``print`` prints it on stdout, a level logs
    it at that level through ``logger``; a minor that did not have it emits nothing. Before
    ``configure`` (``--tf-log``) it is logged at INFO.

    Args:
        logger: the ``tensorflow`` logger.
        source: the TF 1.x source file that emitted it.
        template: the message as TF1 wrote it, with ``%`` placeholders.
        *args: the values for the placeholders.
    """
    if _Era.handler is None:
        logger.info(template, *args, extra={"tf1_ema_era": True})
        return
    kinds = [kind for name, kind, text in MESSAGES[_Era.version] if name == source and text == template]
    if not kinds:
        return
    if kinds[0] == "print":
        print(template % args if args else template)
        return
    logger.log(logging.getLevelName(kinds[0].upper()), template, *args, extra={"tf1_ema_era": True})
