"""Exceptions raised where TF1 code reaches for something that no longer exists.

Every message is a complete sentence that names what is missing and what to do instead, so
``tf1-ema run`` can print it on one line instead of a traceback through our stand-ins.
``frames_kept`` trims our own frames from the tracebacks the runner and the kernel show.
"""

import types
from typing import Callable, Optional


class LegacyError(Exception):
    """Base class: a TF1 feature a script relies on is gone; ``str(err)`` says what to do."""


class ContribRemovedError(LegacyError, AttributeError):
    """A ``tf.contrib`` symbol has no stand-in.

    It is an ``AttributeError`` so that ``hasattr(tf.contrib, "slim")`` and
    ``getattr(..., default)`` feature checks keep working.
    """


class RemovedModuleError(LegacyError, ImportError):
    """An ``import tensorflow.contrib...``-style statement names a module that is gone."""


class MissingDataError(LegacyError, FileNotFoundError):
    """A dataset loader did not find its files (we never download them)."""


def frames_kept(
    tb: Optional[types.TracebackType], keep: Callable[[str], bool]
) -> Optional[types.TracebackType]:
    """A copy of a traceback chain holding only the frames whose file name ``keep`` accepts.

    The runner and the kernel use it to show the user's frames, not tf1_ema's machinery.

    Args:
        tb: the first entry of the chain (``err.__traceback__``), or None.
        keep: takes a frame's ``co_filename`` and says whether the frame stays.

    Returns:
        The first entry of the new chain, or None when no frame is kept.
    """
    kept = []
    while tb is not None:
        if keep(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for old in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, old.tb_frame, old.tb_lasti, old.tb_lineno)
    return rebuilt
