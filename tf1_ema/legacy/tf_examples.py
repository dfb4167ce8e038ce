"""The ``tensorflow.examples`` module tree, holding only ``tutorials.mnist.input_data``."""

import types

from tf1_ema.legacy import input_data
from tf1_ema.legacy._stub import StubModule

__all__ = ["build"]


def _explain(prefix: str):
    def explain(attr: str) -> str:
        return (
            "%s.%s was removed with TensorFlow 2.0; tf1-ema provides only "
            "tensorflow.examples.tutorials.mnist.input_data." % (prefix, attr)
        )

    return explain


def build() -> types.ModuleType:
    """Returns a fresh ``tensorflow.examples`` module whose ``tutorials.mnist.input_data`` works.

    Returns:
        The ``examples`` module; every other name under it raises one clear error.
    """
    names = ["tensorflow.examples", "tensorflow.examples.tutorials", "tensorflow.examples.tutorials.mnist"]
    examples, tutorials, mnist = (
        StubModule(name, "TF1's %s, as far as tutorials still need it." % name, _explain(name)) for name in names
    )
    examples.tutorials = tutorials
    tutorials.mnist = mnist
    mnist.input_data = input_data
    return examples
