"""Exceptions raised where TF1 code reaches for something that no longer exists.

Every message is a complete sentence that names what is missing and what to do instead, so
``tf1-ema run`` can print it on one line instead of a traceback through our stand-ins.
"""


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
