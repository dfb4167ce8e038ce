"""TF1-era ``tensorflow.python.*`` imports: which ones tf1-ema serves, and what replaced the rest.

TF1 tutorials reached into TensorFlow's private modules for things the public API hid:
``from tensorflow.python.framework import graph_util`` to freeze a graph,
``from tensorflow.python.client import device_lib`` to list GPUs, and so on. Most of
those modules still exist in TensorFlow 2, some with TF1 functions moved out of them. For
user code, ``tf1_ema.v1`` serves the modules in ``SERVED`` with their TF1 contents, leaves
other existing ones as they are, and answers an import of one that is gone with one line
from ``explain_missing`` naming the replacement.

Data only, no TensorFlow import.
"""

from typing import Dict

__all__ = ["SERVED", "REMOVED", "ESTIMATOR_GONE", "explain_missing", "explain_estimator"]

# tensorflow.python.<path>  ->  what user code gets there (for the README and the tests).
SERVED: Dict[str, str] = {
    "framework.graph_util": "convert_variables_to_constants (logs 'Froze N variables.' as TF1 did), "
    "extract_sub_graph, remove_training_nodes, must_run_on_cpu, tensor_shape_from_node_def_name",
    "tools.freeze_graph": "freeze_graph, freeze_graph_with_def_protos (through the TF1 graph_util above)",
    "platform.gfile": "FastGFile, GFile, Open, Exists, MakeDirs, Glob, ... (TensorFlow's own)",
    "client.device_lib": "list_local_devices (TensorFlow's own)",
    "training.moving_averages": "ExponentialMovingAverage and assign_moving_average from tf1_ema",
    "ops.control_flow_ops": "TensorFlow's module plus cond, while_loop, case and Assert, which TF 2 moved out",
}

# Gone from TensorFlow 2 (or from 2.16 on): tensorflow.python.<prefix>  ->  the replacement.
REMOVED: Dict[str, str] = {
    "ops.summary_ops": "tf.summary (tf.compat.v1.summary.scalar, histogram, merge_all, FileWriter)",
    "contrib": "the tf.contrib stand-ins tf1-ema provides (import tensorflow.contrib)",
}

ESTIMATOR_GONE = (
    "tf.estimator was removed from TensorFlow in 2.16 (tensorflow-estimator needs TensorFlow <= 2.15), "
    "so tf1-ema cannot run Estimator code; rewrite the model with tf.keras (model.fit / evaluate / "
    "predict) or a tf.compat.v1 Session loop"
)


def explain_estimator(attr: str) -> str:
    """The one line for ``tf.estimator.<attr>``."""
    return "tf.estimator.%s: %s" % (attr, ESTIMATOR_GONE)


def explain_missing(module: str) -> str:
    """One line for ``import <module>`` where ``module`` is a ``tensorflow.*`` name that is gone.

    Args:
        module: the dotted name as written in the import (``tensorflow.python.estimator``).

    Returns:
        A sentence naming the module and what to use instead.
    """
    if module.split(".")[:2] == ["tensorflow", "estimator"] or module.split(".")[:3] == ["tensorflow", "python", "estimator"]:
        return "No module named %r: %s" % (module, ESTIMATOR_GONE)
    prefix = "tensorflow.python."
    if module.startswith(prefix):
        private = module[len(prefix):]
        for removed, replacement in REMOVED.items():
            if private == removed or private.startswith(removed + "."):
                return "No module named %r (gone from TensorFlow 2); use %s" % (module, replacement)
        return (
            "No module named %r: TensorFlow 2 removed or moved this private module; use the public "
            "API under tf.* (tf.compat.v1 keeps TF1's names), which tf1-ema serves as `tensorflow`" % module
        )
    return "No module named %r in TensorFlow 2; use the public API under tf.* (tf.compat.v1 keeps TF1's names)" % module
