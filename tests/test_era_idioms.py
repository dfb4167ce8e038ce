"""TF1-era ``tensorflow.python.*`` imports and ``tf.estimator`` in user code.

The modules TF1 tutorials imported privately (``idioms.SERVED``) resolve to their TF1
contents for the user's script; a private module that is gone, and ``tf.estimator``, end
in one line naming the replacement. One ``tf1-ema run`` process covers the served modules
(a TensorFlow import each), the messages need no TensorFlow.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from limits import TIMEOUT
from tf1_ema.legacy import idioms
from tf1_ema.legacy.errors import LegacyError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module, fragment",
    [
        ("tensorflow.python.estimator", "tf.estimator was removed from TensorFlow in 2.16"),
        ("tensorflow.estimator.inputs", "rewrite the model with tf.keras"),
        ("tensorflow.python.ops.summary_ops", "use tf.summary"),
        ("tensorflow.python.not_a_module", "use the public API under tf.*"),
    ],
)
def test_explain_missing_names_the_replacement_in_one_line(module, fragment):
    """Each gone module gets one line that names it and what to use instead."""
    message = idioms.explain_missing(module)
    assert module in message and fragment in message and "\n" not in message


def test_served_table_lists_what_the_issue_requires():
    """graph_util, freeze_graph, gfile, device_lib, moving_averages and control_flow_ops are served."""
    required = {"framework.graph_util", "tools.freeze_graph", "platform.gfile", "client.device_lib",
                "training.moving_averages", "ops.control_flow_ops"}
    assert required <= set(idioms.SERVED)


SCRIPT = """\
import os
import numpy as np
from PIL import Image
import tensorflow as tf
from tensorflow.python.framework import graph_util
from tensorflow.python.tools import freeze_graph
from tensorflow.python.platform import gfile
from tensorflow.python.client import device_lib
from tensorflow.python.training import moving_averages
from tensorflow.python.ops import control_flow_ops
import tensorflow.python.framework.graph_util as graph_util_again
import tf1_ema
import thirdparty

here = os.path.dirname(os.path.abspath(__file__))
print("ema", moving_averages.ExponentialMovingAverage is tf1_ema.ExponentialMovingAverage,
      moving_averages.assign_moving_average is tf1_ema.assign_moving_average)
print("graph_util", graph_util_again is graph_util, tf.graph_util is graph_util)
print("devices", [d.device_type for d in device_lib.list_local_devices()][:1])
x = tf.placeholder(tf.float32, [], name="x")
v = tf.Variable(2.0, name="v")
out = tf.identity(control_flow_ops.cond(x > 0, lambda: x * v, lambda: -x), name="out")
print("sub graph has v", "v" in {n.name for n in graph_util.extract_sub_graph(tf.get_default_graph().as_graph_def(), ["out"]).node})
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    checkpoint = tf.train.Saver().save(sess, os.path.join(here, "m.ckpt"))
    tf.train.write_graph(sess.graph_def, here, "g.pb", as_text=False)
    frozen = graph_util.convert_variables_to_constants(sess, sess.graph_def, ["out"])
print("v is const", [n.op for n in graph_util.remove_training_nodes(frozen).node if n.name == "v"])
freeze_graph.freeze_graph(os.path.join(here, "g.pb"), "", True, checkpoint, "out", "", "",
                          os.path.join(here, "frozen.pb"), True, "", variable_names_blacklist="")
with gfile.FastGFile(os.path.join(here, "frozen.pb"), "rb") as stream:
    graph_def = tf.GraphDef()
    graph_def.ParseFromString(stream.read())
with tf.Graph().as_default():
    tf.import_graph_def(graph_def, name="")
    with tf.Session() as sess:
        print("frozen graph", sess.run("out:0", {"x:0": 3.0}), sess.run("out:0", {"x:0": -3.0}))
try:
    from tensorflow.python.estimator import estimator
except ImportError as err:
    print("import error:", err)
print("numpy", np.float is float, np.reshape(np.arange(4), newshape=(2, 2)).shape, thirdparty.HAS_FLOAT)
print("pillow", Image.ANTIALIAS == Image.LANCZOS, thirdparty.HAS_ANTIALIAS)
print("estimator attribute", hasattr(tf.estimator, "Estimator"))
tf.estimator.Estimator(model_fn=None)
print("not reached")
"""

# A library beside the script's PYTHONPATH: it must see the real, unshimmed modules.
THIRDPARTY = """\
import numpy
from PIL import Image
HAS_FLOAT = hasattr(numpy, "float")
HAS_ANTIALIAS = hasattr(Image, "ANTIALIAS")
"""

EXPECTED_STDOUT = """\
ema True True
graph_util True True
devices ['CPU']
sub graph has v True
INFO_SKIPPED
v is const ['Const']
frozen graph 6.0 3.0
import error: No module named 'tensorflow.python.estimator': tf.estimator was removed from TensorFlow in 2.16 (tensorflow-estimator needs TensorFlow <= 2.15), so tf1-ema cannot run Estimator code; rewrite the model with tf.keras (model.fit / evaluate / predict) or a tf.compat.v1 Session loop
numpy True (2, 2) False
pillow True False
estimator attribute False
""".replace("INFO_SKIPPED\n", "")


@pytest.mark.slow
def test_tf1_private_module_idioms_run_as_in_tf1(tmp_path):
    """Served private modules work as in TF1; tf.estimator ends the script with one line; libraries see real modules."""
    pytest.importorskip("PIL")
    project = tmp_path / "project"
    project.mkdir()
    (project / "idioms.py").write_text(SCRIPT)
    site = tmp_path / "site"
    site.mkdir()
    (site / "thirdparty.py").write_text(THIRDPARTY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF1_EMA_") and k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(site)])
    result = subprocess.run(
        [sys.executable, "-m", "tf1_ema", "run", "idioms.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.stdout == EXPECTED_STDOUT, result.stderr
    assert result.returncode == 1
    assert result.stderr.startswith("tf1-ema: error: tf.estimator.Estimator: tf.estimator was removed from TensorFlow in 2.16")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_estimator_stub_raises_a_legacy_attribute_error():
    """tf.estimator.<anything> raises one error that is both LegacyError and AttributeError."""
    from tf1_ema.legacy._stub import StubModule

    stub = StubModule("tensorflow.estimator", "", idioms.explain_estimator)
    with pytest.raises(AttributeError) as info:
        stub.RunConfig
    assert isinstance(info.value, LegacyError)
    assert str(info.value).startswith("tf.estimator.RunConfig: tf.estimator was removed")
