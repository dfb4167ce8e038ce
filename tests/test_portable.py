"""Graphs written from a session built with the default apply() load and train on with TensorFlow alone.

The fast path runs tf1_ema's fused update op in the session, but every GraphDef
TensorFlow writes from such a graph (``sess.graph_def`` with
``tf.io.write_graph``, ``Saver.save``'s ``.meta``, ``simple_save``) holds
TensorFlow's own ops for it (``_update_op.to_stock_graph_def``). Each test
writes the same training program with TF1's class and with ours, then loads
and runs both in a subprocess that cannot import tf1_ema, and compares bits.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from limits import TIMEOUT
from fast_path_harness import (  # noqa: F401 - fixtures are looked up by name
    FAST,
    MODES,
    STOCK,
    assert_bits_equal,
    behaviour,
    fused_ops,
    fused_update_expected,
    in_fresh_graph,
)
from harness import from_bits_record
from tf1_ema import _update_op

v1 = tf.compat.v1

DATA = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(6, 4)
TARGETS = np.linspace(2.0, -1.0, 12, dtype=np.float32).reshape(6, 2)

# Loads what the writer wrote, in a process where `import tf1_ema` fails, and
# prints the averages' bits (as ``bits_record``s: dtype, shape, hex bytes) after
# resuming (one more update) or after four updates from the initializer (a bare
# GraphDef has no variable values).
LOAD_PROGRAM = r"""
import json, sys


class _NoTf1Ema:
    def find_spec(self, name, path=None, target=None):
        if name == "tf1_ema" or name.startswith("tf1_ema."):
            raise ImportError("tf1_ema is not installed here")


sys.meta_path.insert(0, _NoTf1Ema())
import tensorflow as tf  # TensorFlow alone

v1 = tf.compat.v1
spec = json.loads(sys.argv[1])
out = {}


def record(x):
    return [x.dtype.name, list(x.shape), x.tobytes().hex()]  # harness.bits_record, without tests/ on the path


def run(sess, updates):
    for _ in range(updates):
        sess.run(spec["train"])
    return [record(sess.run(name)) for name in spec["averages"]]


for label, d in spec["dirs"].items():
    try:
        with tf.Graph().as_default(), v1.Session() as sess:
            graph_def = v1.GraphDef()
            with open(d + "/graph.pb", "rb") as f:
                graph_def.ParseFromString(f.read())
            v1.import_graph_def(graph_def, name="")
            sess.run(spec["init"])
            out[label + ":graph_def"] = run(sess, 4)
        with tf.Graph().as_default(), v1.Session() as sess:
            saver = v1.train.import_meta_graph(d + "/ckpt/model.meta")
            saver.restore(sess, d + "/ckpt/model")
            out[label + ":meta"] = run(sess, 1)
        with tf.Graph().as_default(), v1.Session() as sess:
            v1.saved_model.loader.load(sess, [v1.saved_model.tag_constants.SERVING], d + "/saved_model")
            out[label + ":saved_model"] = run(sess, 1)
        signature = tf.saved_model.load(d + "/saved_model").signatures["serving_default"]
        out[label + ":serving"] = record(signature(x=tf.constant(%r))["y"].numpy())
    except Exception as e:  # pylint: disable=broad-except
        out[label] = "%%s: %%s" %% (type(e).__name__, str(e).splitlines()[0])
assert "tf1_ema" not in sys.modules
print(json.dumps(out))
""" % (DATA[:2].tolist(),)


def _write_training_program(cls, out_dir, dtype=tf.float32):
    """A linear regression trained with the EMA, written in three formats after three steps.

    Returns:
      The names the loader needs, the averages after a fourth step taken
      here, and the fused ops of the graph.
    """
    x = v1.placeholder_with_default(tf.constant(DATA), [None, 4], name="x")
    w = v1.get_variable("w", initializer=tf.constant(np.linspace(0.5, -0.5, 8).reshape(4, 2), dtype))
    b = v1.get_variable("b", initializer=tf.constant([0.25, -0.25], dtype))
    y = tf.identity(tf.cast(tf.matmul(tf.cast(x, dtype), w) + b, tf.float32), name="y")
    loss = tf.reduce_mean(tf.square(y - TARGETS))
    step = v1.train.get_or_create_global_step()
    train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    ema = cls(0.9, step)
    with tf.control_dependencies([train_op]):
        train = ema.apply([w, b])
    averages = [tf.identity(ema.average(v), name="average_%s" % v.op.name).name for v in (w, b)]
    init = v1.global_variables_initializer()
    with v1.Session() as sess:
        sess.run(init)
        for _ in range(3):
            sess.run(train)
        tf.io.write_graph(sess.graph_def, out_dir, "graph.pb", as_text=False)
        v1.train.Saver().save(sess, os.path.join(out_dir, "ckpt", "model"))
        v1.saved_model.simple_save(sess, os.path.join(out_dir, "saved_model"), {"x": x}, {"y": y})
        sess.run(train)
        resumed = [sess.run(a) for a in averages]
    spec = {"train": train.name, "init": init.name, "averages": averages}
    return spec, resumed, fused_ops()


def _load_without_tf1_ema(spec, dirs, cwd):
    """Runs LOAD_PROGRAM on ``dirs`` ({label: directory}) in a subprocess; its JSON result."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF1_EMA_CACHE_DIR")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_PROGRAM, json.dumps({**spec, "dirs": dirs})],
        capture_output=True, text=True, env=env, cwd=str(cwd), timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _arrays(records):
    """The arrays LOAD_PROGRAM printed: one ``bits_record``, or a list of them."""
    if records and isinstance(records[0], str):
        return from_bits_record(records)
    return [from_bits_record(r) for r in records]


@pytest.mark.slow
@pytest.mark.parametrize("mode_name", MODES)
def test_written_graphs_load_and_train_on_without_tf1_ema(mode_name, tmp_path):
    """GraphDef, .meta and SavedModel of a default fast graph load, serve and resume with TF1's bits in TensorFlow alone."""
    dirs = {}
    written = {}
    with behaviour(mode_name):
        for label, cls in (("stock", STOCK), ("fast", FAST)):
            dirs[label] = str(tmp_path / label)
            written[label] = in_fresh_graph(_write_training_program, cls, dirs[label])
    (spec, stock_next, stock_fused), (fast_spec, fast_next, fast_fused) = written["stock"], written["fast"]
    assert stock_fused == []
    assert fast_fused == (["Tf1EmaUpdateByName" if mode_name == "tf2-graph" else "Tf1EmaUpdateRef"]
                          if fused_update_expected() else [])  # fmt: skip
    assert fast_spec == spec
    loaded = _load_without_tf1_ema(spec, dirs, tmp_path)
    for fmt in ("graph_def", "meta", "saved_model", "serving"):
        assert "stock:" + fmt in loaded, loaded.get("stock")
        assert "fast:" + fmt in loaded, loaded.get("fast")
        assert_bits_equal(_arrays(loaded["stock:" + fmt]), _arrays(loaded["fast:" + fmt]), path=fmt)
    # Resuming from the .meta and the SavedModel gives the next update TF1 gives, and ours in-process.
    assert_bits_equal(stock_next, fast_next)
    assert_bits_equal(stock_next, _arrays(loaded["fast:meta"]), path="meta")
    assert_bits_equal(stock_next, _arrays(loaded["fast:saved_model"]), path="saved_model")


def test_written_graph_def_has_only_stock_ops_and_the_train_op_name():
    """sess.graph_def of a fast graph holds no tf1_ema op, and the fused op's name survives as a NoOp."""
    with tf.Graph().as_default() as graph:
        w = v1.Variable(np.arange(6, dtype=np.float32), name="w")
        h = v1.Variable(np.ones(3, np.float16), name="h")
        update = FAST(0.9).apply([w, h])
        fused = [op.name for op in graph.get_operations() if op.type in _update_op.OP_TYPES]
        graph_def = graph.as_graph_def(add_shapes=True)
    by_name = {node.name: node for node in graph_def.node}
    assert not {node.op for node in graph_def.node} & set(_update_op.OP_TYPES)
    assert by_name[update.name].op == "NoOp"
    for name in fused:
        assert by_name[name].op == "NoOp"
    if fused_update_expected():
        assert len(fused) == 1
        assert {"Sub", "Mul", "Cast", "AssignSubVariableOp", "ReadVariableOp"} <= {n.op for n in graph_def.node}


def test_the_running_graph_keeps_the_fused_op():
    """Writing the GraphDef leaves the live graph, which sessions run, with the fused op."""
    with tf.Graph().as_default() as graph:
        w = v1.Variable(np.arange(6, dtype=np.float32), name="w")
        FAST(0.9).apply([w])
        before = fused_ops(graph)
        graph.as_graph_def()
        assert fused_ops(graph) == before
        assert before == (["Tf1EmaUpdateByName"] if fused_update_expected() else [])


def test_without_the_serialization_hook_the_fused_op_is_not_used(monkeypatch):
    """Where TensorFlow's serializer cannot be hooked, apply() builds TensorFlow's ops, so written graphs stay portable."""
    monkeypatch.setattr(_update_op._tf_internal, "install_graph_def_rewriter", lambda rewrite: False)
    with tf.Graph().as_default() as graph:
        w = v1.Variable(np.arange(6, dtype=np.float32), name="w")
        ema = FAST(0.5)
        update = ema.apply([w])
        assert fused_ops(graph) == []
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(w.assign(np.full(6, 2.0, np.float32)))
            sess.run(update)
            assert sess.run(ema.average(w)).tolist() == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]


def test_the_hook_reports_a_tensorflow_without_graph_serializer(monkeypatch):
    """_tf_internal says the hook cannot be installed when Graph._as_graph_def is missing."""
    from tensorflow.python.framework import ops  # pylint: disable=g-import-not-at-top

    from tf1_ema import _tf_internal

    monkeypatch.delattr(ops.Graph, "_as_graph_def")
    assert _tf_internal._install_graph_def_hook() is False
