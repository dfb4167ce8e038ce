"""Whole TF1 programs, and TF1's less common APIs, with the fast default ``apply()`` and with stock TF.

A second hunt after tests/test_fast_path.py, which it does not repeat. Two kinds of test:

* in-process programs built twice, each in a fresh graph, with
  ``tf.compat.v1.train.ExponentialMovingAverage`` and with
  ``tf1_ema.ExponentialMovingAverage`` as it comes (fast shadows, fused update op),
  in TF2 graph mode and in TF1 mode (ref variables, v1 control flow): odd shapes,
  names and var_lists, variable scopes, decay variables, ``average_name`` and
  ``variables_to_restore``, fed variables, ``init_from_checkpoint``, frozen graphs,
  SavedModels, ``Supervisor``, ``SyncReplicasOptimizer``, hooks, queue runners,
  ``make_callable``, a server target, a mixed-precision custom getter, graphs mixed up;
  what a user can see is compared: values bit for bit, names, collections, errors;
* TF1 scripts run by ``tf1-ema run`` and ``tf1-ema run --reference`` in real
  processes (a run switches its process to TF1 behaviour for good): a blog
  walkthrough, a cifar10_train-style program (queue input, ``tf.contrib.layers``
  stand-ins, loss and variable averages, MonitoredTrainingSession, a Keras model
  with an EMA callback) and a cifar10_eval-style program that restores either
  mode's checkpoint through ``variables_to_restore()``, freezes the model and
  resumes training from either mode's ``.meta``; their stdout must be identical.
  One more process runs sessions with XLA auto-clustering on the CPU, and one loads
  SavedModels with TensorFlow alone, as TF Serving would.

A difference of the fast path is kept as a strict xfail whose condition turns it
off where the fast graph is off, so with ``TF1_EMA_FAST=0`` every test here passes.
"""

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from limits import TIMEOUT
import tf1_ema

from fast_path_harness import (  # noqa: F401 - fixtures and xfail conditions are looked up by name
    FAST,
    FUSED_TYPE,
    MODES,
    STOCK,
    assert_bits_equal,
    assert_fast_path,
    behaviour,
    bump,
    fast_graph_expected,
    fused_ops,
    fused_update_expected,
    graph_state,
    graph_mode,
    in_fresh_graph,
    modes,
    names,
    twin,
)
from harness import from_bits_record

v1 = tf.compat.v1

pytestmark = pytest.mark.filterwarnings("ignore:`tf.layers.:UserWarning")

REPO = Path(__file__).resolve().parents[1]

RNG = np.random.default_rng(20240612)
DATA = RNG.standard_normal((16, 4)).astype(np.float32)
TARGETS = RNG.standard_normal((16, 3)).astype(np.float32)


# ---------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------


def assert_same_program(stock, fast):
    """Everything but the fused-op list is bit for bit equal."""
    assert_bits_equal({**stock, "fused": []}, {**fast, "fused": []})


def assert_bits_one_of(value, outcomes):
    """Asserts ``value`` has the bits (dtype, shape, bytes) of one of ``outcomes`` under the suite's bit rule."""
    failures = []
    for i, expected in enumerate(outcomes):
        try:
            assert_bits_equal(expected, value, path="outcome %d" % i)
            return
        except AssertionError as e:
            failures.append(str(e))
    raise AssertionError("matches none of the outcomes:\n" + "\n".join(failures))


def raised(error: BaseException) -> str:
    """``"ErrorClass: message"`` with object addresses masked (they differ between any two graphs)."""
    return "%s: %s" % (type(error).__name__, re.sub(r"0x[0-9a-f]+", "0x?", str(error)))


def _regression():
    """A linear model and its loss: (w, b, loss)."""
    w = v1.get_variable("w", [4, 3], initializer=v1.random_normal_initializer(seed=1))
    b = v1.get_variable("b", [3], initializer=v1.zeros_initializer())
    return w, b, tf.reduce_mean(tf.square(tf.matmul(DATA, w) + b - TARGETS))


# ---------------------------------------------------------------------------
# Odd var_lists: empty and scalar shapes, a variable twice, [] and None
# ---------------------------------------------------------------------------


def _edge_shapes(cls):
    empty = v1.get_variable("empty", [0], initializer=v1.zeros_initializer())
    flat = v1.get_variable("flat", [3, 0], initializer=v1.zeros_initializer())
    scalar = v1.get_variable("scalar", [], initializer=v1.constant_initializer(2.5))
    total = tf.reduce_sum(empty, name="total")  # a scalar tensor computed from nothing
    doubled = tf.identity(flat * 2.0, name="doubled")  # a zero-element tensor
    primaries = [empty, flat, scalar, total, doubled]
    ema = cls(0.75)
    op = ema.apply(primaries)
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        values = [sess.run([ema.average(p) for p in primaries])]
        for _ in range(2):
            sess.run(bump([empty, flat, scalar]))
            sess.run(op)
            values.append(sess.run([ema.average(p) for p in primaries]))
    return {"values": values, "state": graph_state(ema, primaries), "fused": fused_ops()}


def test_zero_element_and_scalar_variables_and_tensors_like_tf1(graph_mode):
    """Shapes [0], [3, 0] and [] (variables and tensors) get TF1's shadows, names and values."""
    stock, fast = twin(_edge_shapes)
    assert_same_program(stock, fast)
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _listed_twice(cls):
    w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    b = v1.get_variable("b", [3], initializer=v1.constant_initializer([4.0, 5.0, 6.0]))
    ema = cls(0.5)
    op = ema.apply([w, w, b])  # w's shadow is updated twice by one run
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(bump([w, b]))
        sess.run(op)
        values = sess.run([w, ema.average(w), b, ema.average(b)])
    return {"values": values, "state": graph_state(ema, [w, b]), "op": op.name, "fused": fused_ops()}


def test_a_variable_listed_twice_updates_its_one_shadow_twice_like_tf1(graph_mode):
    """apply([w, w, b]) makes one shadow of w, updated twice per run in one of TF1's two orders; b as usual."""
    stock, fast = twin(_listed_twice)
    keep = ("state", "op")
    assert_bits_equal({k: stock[k] for k in keep}, {k: fast[k] for k in keep})
    assert stock["state"]["global"] == ["w:0", "b:0", "w/ExponentialMovingAverage:0", "b/ExponentialMovingAverage:0"]
    w, _, b, b_avg = stock["values"]
    assert_bits_equal(fast["values"][2:], [b, b_avg])
    # The two updates of w's shadow are not ordered: both read it first, or one runs after the other.
    k, s = np.float32(0.5), np.float32([1.0, 2.0, 3.0])
    side_by_side = s - (s - w) * k - (s - w) * k
    first = s - (s - w) * k
    one_after_the_other = first - (first - w) * k
    assert_bits_one_of(stock["values"][1], [side_by_side, one_after_the_other])
    assert_bits_one_of(fast["values"][1], [side_by_side, one_after_the_other])
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])  # b's update; w's repeated shadow takes stock ops


def _empty_and_default_lists(cls):
    w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    frozen = v1.get_variable("frozen", [2], initializer=v1.ones_initializer(), trainable=False)
    counter = v1.get_local_variable("counter", [2], initializer=v1.ones_initializer())
    ema = cls(0.5)
    ops = [ema.apply([]), ema.apply(), ema.apply(None)]  # nothing; the trainable variables, twice
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(v1.local_variables_initializer())
        sess.run(bump([w, frozen, counter]))
        values = []
        for op in ops:
            sess.run(op)
            values.append(sess.run(ema.average(w)))
    return {
        "empty_op": (ops[0].name, ops[0].type, len(ops[0].control_inputs)),
        "op_names": [op.name for op in ops],
        "values": values,
        "averaged": [ema.average(v) is not None for v in (w, frozen, counter)],
        "state": graph_state(ema, [w]),
        "fused": fused_ops(),
    }


def test_empty_list_and_default_list_like_tf1(graph_mode):
    """apply([]) is a NoOp named like TF1's; apply() and apply(None) average the trainable variables only."""
    stock, fast = twin(_empty_and_default_lists)
    assert_same_program(stock, fast)
    assert stock["empty_op"] == ("ExponentialMovingAverage", "NoOp", 0)
    assert stock["averaged"] == [True, False, False]
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode], FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# Variable scopes: AUTO_REUSE models, apply() in reusing and re-entered scopes
# ---------------------------------------------------------------------------

SCOPES = ("auto-reuse", "reuse", "re-entered", "re-entered-reuse", "root-reuse", "no-name-scope")


def _scoped(cls, where):
    def tower():
        with v1.variable_scope("model", reuse=v1.AUTO_REUSE):
            w = v1.get_variable("w", [2], initializer=v1.constant_initializer([1.0, 2.0]))
            with v1.variable_scope("inner"):
                u = v1.get_variable("u", [2], initializer=v1.constant_initializer([3.0, 4.0]))
        return w, u

    w, u = tower()
    assert tower() == (w, u)  # the second tower shares the first one's variables
    with v1.variable_scope("model") as captured:
        pass
    scopes = {
        "auto-reuse": lambda: v1.variable_scope("model", reuse=v1.AUTO_REUSE),
        "reuse": lambda: v1.variable_scope("model", reuse=True),
        "re-entered": lambda: v1.variable_scope(captured),
        "re-entered-reuse": lambda: v1.variable_scope(captured, reuse=True),
        "root-reuse": lambda: v1.variable_scope(v1.get_variable_scope(), reuse=True),
        "no-name-scope": lambda: v1.variable_scope("model", auxiliary_name_scope=False),
    }
    ema = cls(0.5)
    try:
        with scopes[where](), tf.name_scope("averages"):
            op = ema.apply([w, u])
    except ValueError as e:
        return {"error": raised(e), "global": names(v1.global_variables()), "fused": fused_ops()}
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(bump([w, u]))
        sess.run(op)
        values = sess.run([ema.average(w), ema.average(u)])
    return {"op": op.name, "values": values, "state": graph_state(ema, [w, u]), "fused": fused_ops()}


@pytest.mark.parametrize("where", SCOPES)
def test_apply_in_reusing_and_re_entered_variable_scopes_like_tf1(graph_mode, where):
    """apply() in AUTO_REUSE, reuse=True, re-entered, name-scope-less variable scopes: TF1's names, values, errors."""
    stock, fast = twin(_scoped, where)
    assert_same_program(stock, fast)
    if where in ("reuse", "re-entered-reuse", "root-reuse"):  # the shadow does not exist to be reused
        assert stock["error"].startswith("ValueError: Variable model/")
        assert_fast_path(stock, fast)
    else:
        assert stock["state"]["average_names"][0] == "model/model/w/ExponentialMovingAverage"
        assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _names_after_apply(cls):
    with v1.variable_scope("model"):
        w = v1.get_variable("w", [2], initializer=v1.ones_initializer())
        with v1.variable_scope(None, default_name="block"):
            u = v1.get_variable("u", [2], initializer=v1.ones_initializer())
    t = tf.identity(w * 2.0, name="model/t")
    ema = cls(0.5, zero_debias=True)
    with v1.variable_scope("outer"):
        op = ema.apply([w, u, t])  # TF1 nests the shadows (and twice the debias variables) under outer/
    later = []
    with v1.variable_scope("model"):
        for default_name in ("block", "w"):
            with v1.variable_scope(None, default_name=default_name) as scope:
                later.append(scope.name)
        with v1.variable_scope("w"):
            with v1.variable_scope(None, default_name="ExponentialMovingAverage") as scope:
                later.append(scope.name)
    for default_name in ("model", "outer"):
        with v1.variable_scope(None, default_name=default_name) as scope:
            later.append(scope.name)
    second = cls(0.5, zero_debias=True)
    op2 = second.apply([w, t])
    later.append(tf.constant(1.0, name="model/t").name)
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run([op, op2])
        values = sess.run([ema.average(t), second.average(t)])
    return {"later": later, "global": names(v1.global_variables()), "values": values, "fused": fused_ops()}


def test_scope_and_op_names_given_after_apply_like_tf1(graph_mode):
    """Default-named variable scopes, a second EMA and ops created after apply() in an outer scope get TF1's names."""
    stock, fast = twin(_names_after_apply)
    assert_same_program(stock, fast)
    assert stock["later"][:3] == ["model/block", "model/w", "model/w/ExponentialMovingAverage"]
    assert "outer/outer/model/t/ExponentialMovingAverage/biased:0" in stock["global"]
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode], FUSED_TYPE[graph_mode])


def _resource_scope(cls, use_resource):
    w = v1.get_variable("w", [2], initializer=v1.ones_initializer())
    t = tf.identity(w * 2.0, name="t")
    ema = cls(0.5, zero_debias=True)
    with v1.variable_scope("s", use_resource=use_resource):
        op = ema.apply([w, t])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(op)
        values = sess.run([ema.average(w), ema.average(t)])
    kinds = [(type(v).__name__, v.name) for v in v1.global_variables()]
    return {"kinds": kinds, "values": values, "fused": fused_ops()}


@pytest.mark.parametrize("use_resource", [True, False], ids=["use_resource", "ref"])
def test_apply_in_a_use_resource_scope_like_tf1(graph_mode, use_resource):
    """apply() in variable_scope(use_resource=...): a variable's shadow keeps its kind, a tensor's follows the scope."""
    stock, fast = twin(_resource_scope, use_resource)
    assert_same_program(stock, fast)
    assert stock["kinds"][2][0] == ("ResourceVariable" if use_resource else "RefVariable")
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# The step counter and the decay as variables
# ---------------------------------------------------------------------------


def _decay_variable(cls, dtype):
    w = v1.get_variable("w", [5], initializer=v1.random_normal_initializer(seed=1))
    h = v1.get_variable("h", [5], tf.float16, initializer=v1.random_normal_initializer(seed=2))
    decay = v1.Variable(0.9, dtype=dtype, trainable=False, name="decay")
    step = v1.train.get_or_create_global_step()  # int64
    try:
        ema = cls(decay, num_updates=step)
        op = ema.apply([w, h])
    except ValueError as e:
        return {"error": raised(e), "global": names(v1.global_variables()), "fused": fused_ops()}
    values = []
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for d, n in ((0.9, 3), (0.5, 0), (0.999, 100), (1.0, 1), (0.25, 1000)):
            sess.run(decay.assign(d))
            sess.run(v1.assign_add(step, n))
            sess.run(bump([w, h]))
            sess.run(op)
            values.append(sess.run([ema.average(w), ema.average(h)]))
    return {"values": values, "state": graph_state(ema, [w, h]), "fused": fused_ops()}


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
def test_decay_variable_changed_between_steps_with_int64_global_step_like_tf1(graph_mode, dtype):
    """A decay tf.Variable reassigned between runs, capped by an int64 global step: TF1's bits (float64: its error)."""
    stock, fast = twin(_decay_variable, dtype)
    assert_same_program(stock, fast)
    if dtype == tf.float64:
        assert stock["error"].startswith("ValueError: Incompatible type conversion requested to type")
        assert_fast_path(stock, fast)
    else:
        assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# average_name() and variables_to_restore() around partitioned and scoped variables
# ---------------------------------------------------------------------------


def _names_around_apply(cls):
    with v1.variable_scope("enc"):
        emb = v1.get_variable(
            "emb", [6, 2], initializer=v1.ones_initializer(), partitioner=v1.fixed_size_partitioner(2)
        )
        w = v1.get_variable("w", [2], initializer=v1.ones_initializer())
    with tf.name_scope("head"):
        t = tf.identity(w * 2.0, name="t")
    parts = list(emb)
    ema = cls(0.9, name="avg")
    out = {"before": [ema.average_name(x) for x in [w, t] + parts]}
    try:
        ema.average_name(emb)
    except AttributeError as e:  # TF1: a PartitionedVariable has no ref()
        out["partitioned"] = raised(e)
    op = ema.apply(parts + [w, t])
    out["after"] = [ema.average_name(x) for x in [w, t] + parts]
    for key, moving in {"w": [w], "parts": parts, "none": [], "tensor": [w, t]}.items():
        out["restore_" + key] = sorted((k, v.name) for k, v in ema.variables_to_restore(moving).items())
    out["op"] = op.name
    out["fused"] = fused_ops()
    return out


def test_average_name_and_variables_to_restore_around_apply_like_tf1(graph_mode):
    """average_name() before and after apply() of scoped parts and tensors, and variables_to_restore(list) are TF1's."""
    stock, fast = twin(_names_around_apply)
    assert_same_program(stock, fast)
    assert stock["before"] == stock["after"] == [
        "enc/w/avg", "head/t/avg", "enc/emb/part_0/avg", "enc/emb/part_1/avg"
    ]
    assert stock["partitioned"] == "AttributeError: 'PartitionedVariable' object has no attribute 'ref'"
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# A variable fed in the update's run
# ---------------------------------------------------------------------------


def _fed_variable(cls):
    w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    ema = cls(0.5)
    op = ema.apply([w])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(op, {w: np.float32([10.0, 20.0, 30.0])})  # TF1: feeding a variable overrides its value
        values = sess.run([w, ema.average(w)])
    return {"values": values, "fused": fused_ops()}


def test_update_run_with_the_variable_fed_like_tf1(graph_mode):
    """sess.run(ema_op, {w: value}) averages towards the fed value for ref variables, not resource ones, as in TF1."""
    stock, fast = twin(_fed_variable)
    assert_same_program(stock, fast)
    expected = [5.5, 11.0, 16.5] if graph_mode == "tf1" else [1.0, 2.0, 3.0]
    assert_bits_equal(stock["values"], [np.float32([1.0, 2.0, 3.0]), np.float32(expected)])
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# Warm start through tf.train.init_from_checkpoint
# ---------------------------------------------------------------------------


def _pretrained_checkpoint(path):
    """A checkpoint holding ``pre/w`` = [7, 8, 9], written with no EMA."""
    with tf.Graph().as_default():
        w = v1.get_variable("pre/w", [3], initializer=v1.constant_initializer([7.0, 8.0, 9.0]))
        with v1.Session() as sess:
            sess.run(w.initializer)
            v1.train.Saver().save(sess, path)


def _initialized_from_checkpoint(cls, checkpoint):
    w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    v1.train.init_from_checkpoint(checkpoint, {"pre/w": "w"})
    ema = cls(0.5)
    op = ema.apply([w])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        values = [sess.run([w, ema.average(w)])]
        sess.run(bump([w]))
        sess.run(op)
        values.append(sess.run([w, ema.average(w)]))
    return {"values": values, "fused": fused_ops()}


def test_shadows_start_from_init_from_checkpoint_values_like_tf1(graph_mode, tmp_path):
    """After init_from_checkpoint, apply() starts the shadow from the checkpoint's value, as TF1 does."""
    # Called after apply(), TF1 races the shadow's initializer against the restore in
    # global_variables_initializer(); either value comes out there, with either class: not pinned.
    checkpoint = str(tmp_path / "pre")
    _pretrained_checkpoint(checkpoint)
    stock, fast = twin(_initialized_from_checkpoint, checkpoint)
    assert_same_program(stock, fast)
    assert_bits_equal(stock["values"][0], [np.float32([7.0, 8.0, 9.0])] * 2)
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# Frozen graphs and written GraphDefs
# ---------------------------------------------------------------------------


def _frozen(cls, out_dir):
    x = v1.placeholder(tf.float32, [None, 4], name="x")
    w, b, loss = _regression()
    y = tf.nn.relu(tf.matmul(x, w) + b, name="y")
    step = v1.train.get_or_create_global_step()
    train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    ema = cls(0.9, num_updates=step)
    with tf.control_dependencies([train_op]):
        train = ema.apply([w, b])
    shadows = [ema.average(w).op.name, ema.average(b).op.name]
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        frozen = v1.graph_util.convert_variables_to_constants(sess, sess.graph_def, ["y"] + shadows)
        live = sess.run([y] + [ema.average(w), ema.average(b)], {x: DATA[:5]})
    v1.train.write_graph(v1.get_default_graph(), out_dir, "train.pbtxt")  # the whole graph, fused op and all
    v1.train.write_graph(frozen, out_dir, "frozen.pb", as_text=False)
    constants = sorted(
        (n.name, tf.make_ndarray(n.attr["value"].tensor)) for n in frozen.node if n.name in ["w", "b"] + shadows
    )
    with tf.Graph().as_default():
        graph_def = v1.GraphDef()
        graph_def.ParseFromString((Path(out_dir) / "frozen.pb").read_bytes())
        outputs = v1.import_graph_def(graph_def, return_elements=["y:0"] + [s + ":0" for s in shadows], name="")
        with v1.Session() as sess:
            reloaded = sess.run(outputs, {"x:0": DATA[:5]})
    with tf.Graph().as_default() as graph:
        written = text_format.Parse((Path(out_dir) / "train.pbtxt").read_text(), v1.GraphDef())
        v1.import_graph_def(written, name="")
        imported = [op.type for op in graph.get_operations()]
    return {
        "live": live,
        "reloaded": reloaded,
        "constants": constants,
        "op_types": sorted({n.op for n in frozen.node}),
        "imported_everything": sorted(imported) == sorted(n.op for n in written.node),
        "fused": fused_ops(),
    }


def test_frozen_inference_graph_and_written_graph_def_like_tf1(graph_mode, tmp_path):
    """convert_variables_to_constants of the model and its shadows, write_graph and re-import work and match TF1."""
    stock = in_fresh_graph(_frozen, STOCK, str(tmp_path / "stock"))
    fast = in_fresh_graph(_frozen, FAST, str(tmp_path / "fast"))
    assert_same_program(stock, fast)
    assert_bits_equal(stock["reloaded"], stock["live"])
    assert stock["imported_everything"]
    assert not any(t.startswith("Tf1Ema") for t in fast["op_types"])  # the frozen graph runs anywhere
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# Supervisor, SyncReplicasOptimizer, SessionRunHooks, queue runners
# ---------------------------------------------------------------------------


def _supervised(cls, logdir, steps):
    w, b, loss = _regression()
    step = v1.train.get_or_create_global_step()
    train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    ema = cls(0.9, num_updates=step)
    with tf.control_dependencies([train_op]):
        train = ema.apply([w, b])
    supervisor = v1.train.Supervisor(logdir=logdir, save_model_secs=0, save_summaries_secs=0, summary_op=None)
    with supervisor.managed_session() as sess:
        start = sess.run(step)
        for _ in range(steps):
            sess.run(train)
        values = sess.run([w, b, ema.average(w), ema.average(b), step])
        supervisor.saver.save(sess, supervisor.save_path, global_step=step)
    return {"start": start, "values": values, "fused": fused_ops()}


@pytest.mark.parametrize("second", [STOCK, FAST], ids=["resumed-by-stock", "resumed-by-fast"])
def test_supervisor_trains_saves_and_resumes_like_tf1(graph_mode, tmp_path, second):
    """A Supervisor's managed_session trains and saves with either class, and either class resumes it, as TF1 does."""
    reference = [in_fresh_graph(_supervised, STOCK, str(tmp_path / "stock"), n) for n in (3, 2)]
    run_dir = str(tmp_path / "run")
    got = [in_fresh_graph(_supervised, FAST, run_dir, 3), in_fresh_graph(_supervised, second, run_dir, 2)]
    assert_same_program(reference[0], got[0])
    assert_same_program(reference[1], got[1])
    assert [r["start"] for r in reference] == [0, 3]
    assert_fast_path(reference[0], got[0], FUSED_TYPE[graph_mode])


def _sync_replicas(cls):
    w, b, loss = _regression()
    step = v1.train.get_or_create_global_step()
    ema = cls(0.9, num_updates=step)
    optimizer = v1.train.SyncReplicasOptimizer(
        v1.train.GradientDescentOptimizer(0.1),
        replicas_to_aggregate=1,
        total_num_replicas=1,
        variable_averages=ema,
        variables_to_average=[w, b],
    )
    train = optimizer.minimize(loss, global_step=step)
    (chief_step,) = optimizer.get_chief_queue_runner().enqueue_ops  # applies, hands out a token, then averages
    values = []
    with v1.Session() as sess:
        sess.run([v1.global_variables_initializer(), v1.local_variables_initializer()])
        sess.run(optimizer.chief_init_op)
        for _ in range(4):
            # The chief's queue-runner step, one at a time, so that each step's averages are read when done.
            chief = threading.Thread(target=sess.run, args=(chief_step,))
            chief.start()
            sess.run(train)  # the worker: gradients into the accumulators, then waits for the chief's token
            chief.join()
            values.append(sess.run([w, b, ema.average(w), ema.average(b), step]))
    return {"values": values, "state": graph_state(ema, [w, b]), "fused": fused_ops()}


def test_sync_replicas_optimizer_with_variable_averages_like_tf1(graph_mode):
    """SyncReplicasOptimizer(variable_averages=ema), one replica: the chief's step averages after each update as TF1."""
    stock, fast = twin(_sync_replicas)
    assert_same_program(stock, fast)
    assert [v[-1] for v in stock["values"]] == [1, 2, 3, 4]
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


class _AverageAfterEachStep(v1.train.SessionRunHook):
    """Runs the EMA update after every training run, and records the shadows."""

    def __init__(self, ema, update, averaged):
        self._update, self._shadows = update, [ema.average(v) for v in averaged]
        self.seen = []

    def after_run(self, run_context, run_values):
        run_context.session.run(self._update)
        self.seen.append(run_context.session.run(self._shadows))


def _hooked(cls):
    w, b, loss = _regression()
    step = v1.train.get_or_create_global_step()
    train = v1.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step)
    ema = cls(0.95, num_updates=step)
    hook = _AverageAfterEachStep(ema, ema.apply([w, b]), [w, b])
    with v1.train.SingularMonitoredSession(hooks=[hook, v1.train.StopAtStepHook(last_step=4)]) as sess:
        while not sess.should_stop():
            sess.run(train)
    return {"seen": hook.seen, "fused": fused_ops()}


def test_session_run_hook_running_the_update_after_each_step_like_tf1(graph_mode):
    """A SessionRunHook that runs the EMA op after each step of a SingularMonitoredSession sees TF1's shadows."""
    stock, fast = twin(_hooked)
    assert_same_program(stock, fast)
    assert len(stock["seen"]) == 4
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _queue_fed(cls):
    data = (np.arange(40, dtype=np.float32).reshape(10, 4) / 7.0).astype(np.float32)
    (x,) = v1.train.slice_input_producer([tf.constant(data)], shuffle=False)
    batch = v1.train.batch([x], batch_size=3, num_threads=1, capacity=8)
    w = v1.get_variable("w", [4, 2], initializer=v1.random_normal_initializer(seed=3))
    loss = tf.reduce_mean(tf.square(tf.matmul(batch, w)), name="loss")
    step = v1.train.get_or_create_global_step()
    loss_averages = cls(0.9, name="avg", zero_debias=True)
    with tf.control_dependencies([loss_averages.apply([loss])]):
        train_op = v1.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=step)
    variable_averages = cls(0.99, step)
    with tf.control_dependencies([train_op]):
        train = variable_averages.apply(v1.trainable_variables())
    values = []
    with v1.Session() as sess:
        sess.run([v1.global_variables_initializer(), v1.local_variables_initializer()])
        coord = v1.train.Coordinator()
        threads = v1.train.start_queue_runners(sess, coord)
        for _ in range(6):
            sess.run(train)
            values.append(sess.run([loss_averages.average(loss), variable_averages.average(w)]))
        coord.request_stop()
        coord.join(threads)
    return {"values": values, "state": graph_state(variable_averages, [w]), "fused": fused_ops()}


def test_queue_runner_fed_training_with_loss_and_variable_averages_like_tf1(graph_mode):
    """slice_input_producer/batch feeding a model with a debiased loss average and variable averages matches TF1."""
    stock, fast = twin(_queue_fed)
    assert_same_program(stock, fast)
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _callables(cls):
    w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    p = v1.placeholder(tf.float32, [3], name="p")
    t = tf.identity(w * p, name="t")
    ema = cls(0.5)
    op = ema.apply([w, t])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        handle = sess.partial_run_setup([t], [p])
        first = sess.partial_run(handle, t, {p: [2.0, 2.0, 2.0]})
        update = sess.make_callable(op, feed_list=[p], accept_options=True)
        update(np.float32([3.0, 3.0, 3.0]))
        metadata = v1.RunMetadata()
        options = v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE)
        update(np.float32([-1.0, 0.5, 4.0]), options=options, run_metadata=metadata)
        traced = sess.run([ema.average(w), ema.average(t)])
        ran = {n.node_name for d in metadata.step_stats.dev_stats for n in d.node_stats}
    return {"values": [first, traced], "fused": fused_ops(), "traced": sorted(n for n in ran if "Tf1Ema" in n)}


def test_make_callable_with_options_and_a_traced_run_update_like_tf1(graph_mode):
    """The update run by Session.make_callable (feed list, FULL_TRACE) after a partial_run gives TF1's values."""
    stock, fast = twin(_callables)
    assert_bits_equal({**stock, "fused": [], "traced": []}, {**fast, "fused": [], "traced": []})
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# Names: odd EMA and variable names, two EMAs with one name
# ---------------------------------------------------------------------------


def _odd_names(cls, ema_name):
    w = v1.Variable([1.0, 2.0], name="my-var.1")
    u = v1.Variable([3.0, 4.0], name="ExponentialMovingAverage")
    t = tf.identity(w * 2.0, name="t.x-y")
    try:
        ema = cls(0.5, name=ema_name)
        op = ema.apply([w, u, t])
    except ValueError as e:
        return {"error": raised(e), "global": names(v1.global_variables()), "fused": fused_ops()}
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(bump([w, u]))
        sess.run(op)
        values = sess.run([ema.average(v) for v in (w, u, t)])
    return {"op": op.name, "values": values, "state": graph_state(ema, [w, u, t]), "fused": fused_ops()}


@pytest.mark.parametrize("ema_name", ["", "avg/ema", "ExponentialMovingAverage", "a b", "_x"])
def test_odd_ema_and_variable_names_like_tf1(graph_mode, ema_name):
    """EMA names '' / with a slash / a space / a leading underscore, and variables named oddly, behave as in TF1."""
    stock, fast = twin(_odd_names, ema_name)
    assert_same_program(stock, fast)
    if "error" in stock:
        assert ema_name in ("a b", "_x")
        assert_fast_path(stock, fast)
    else:
        assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _same_named_emas(cls):
    w = v1.Variable([1.0, 2.0], name="w")
    first, second = cls(0.5), cls(0.9)  # both named ExponentialMovingAverage
    ops = [first.apply([w]), second.apply([w])]
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(bump([w]))
        sess.run(ops)
        values = sess.run([first.average(w), second.average(w)])
    return {
        "values": values,
        "ops": [op.name for op in ops],
        "first": graph_state(first, [w]),
        "second": graph_state(second, [w]),
        "fused": fused_ops(),
    }


def test_two_emas_with_the_default_name_like_tf1(graph_mode):
    """Two EMAs both named ExponentialMovingAverage get TF1's _1 shadow, op and restore names."""
    stock, fast = twin(_same_named_emas)
    assert_same_program(stock, fast)
    assert stock["second"]["average_names"] == ["w/ExponentialMovingAverage_1"]
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode], FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# Initial values, shapes, devices and collections of the primaries
# ---------------------------------------------------------------------------


def _dependent_initial_values(cls):
    w1 = v1.Variable([1.0, 2.0, 3.0], name="w1")
    w2 = v1.Variable(w1 * 2.0, name="w2")  # TF1 guards this read of w1
    try:
        w3 = v1.Variable(w1.initialized_value() + w2.initialized_value(), name="w3")
    except NotImplementedError as e:  # TF2 behaviour has no initialized_value()
        return {"error": raised(e), "fused": fused_ops()}
    ema = cls(0.5)
    op = ema.apply([w2, w3])
    with v1.Session() as sess:
        sess.run(w1.initializer)
        sess.run(w1.assign([5.0, 5.0, 5.0]))
        sess.run([ema.average(w2).initializer, ema.average(w3).initializer])  # w2, w3 not initialized
        early = sess.run([ema.average(w2), ema.average(w3)])
        sess.run([w2.initializer, w3.initializer])
        sess.run(op)
        late = sess.run([ema.average(w2), ema.average(w3), w2, w3])
    return {"early": early, "late": late, "fused": fused_ops()}


def test_shadows_of_variables_initialized_from_other_variables_like_tf1(graph_mode):
    """Shadows initialized before their variables start from initial values that read other variables, as in TF1."""
    stock, fast = twin(_dependent_initial_values)
    assert_same_program(stock, fast)
    if graph_mode == "tf1":
        assert_bits_equal(stock["early"], [np.float32([10.0] * 3), np.float32([15.0] * 3)])
        assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _unknown_shapes(cls):
    x = v1.placeholder(tf.float32, [None, 3], name="x")
    w = v1.Variable(tf.zeros([2, 3]), validate_shape=False, name="w")
    m = tf.reduce_mean(x, 0, name="m")
    ema = cls(0.5)
    op = ema.apply([w, x, m])
    values = []
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer(), {x: np.zeros((2, 3), np.float32)})
        for i in range(2):
            sess.run(op, {x: np.full((2, 3), i + 1.5, np.float32)})
            values.append(sess.run([ema.average(v) for v in (w, x, m)]))
    shapes = [ema.average(v).get_shape().as_list() if ema.average(v).get_shape().rank else None for v in (w, x, m)]
    return {"values": values, "shapes": shapes, "state": graph_state(ema, [w, x, m]), "fused": fused_ops()}


def test_variables_and_tensors_of_unknown_shape_like_tf1(graph_mode):
    """A validate_shape=False variable and a [None, 3] placeholder get TF1's shadows; a [3] mean takes the fused op."""
    stock, fast = twin(_unknown_shapes)
    assert_same_program(stock, fast)
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _device_setter(cls):
    cpu = "/job:localhost/replica:0/task:0/device:CPU:0"
    with v1.device(v1.train.replica_device_setter(ps_tasks=1, ps_device=cpu, worker_device=cpu)):
        w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
        t = tf.identity(w * 3.0, name="t")
        step = v1.train.get_or_create_global_step()
        ema = cls(0.5, step)
        op = ema.apply([w, t])
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        sess.run(bump([w]))
        sess.run(op)
        values = sess.run([ema.average(w), ema.average(t)])
    return {"values": values, "devices": [ema.average(v).device for v in (w, t)], "fused": fused_ops()}


def test_replica_device_setter_placed_model_like_tf1(graph_mode):
    """Under tf.train.replica_device_setter (ps and worker on this CPU), shadows are placed and updated as in TF1."""
    stock, fast = twin(_device_setter)
    assert_same_program(stock, fast)
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _local_and_metric_variables(cls):
    total = v1.get_local_variable("total", [2], initializer=v1.constant_initializer([1.0, 2.0]))
    _, update_mean = v1.metrics.mean(tf.constant([3.0, 5.0]))
    metric_variables = [v for v in v1.local_variables() if "mean" in v.name]
    averaged = [total] + metric_variables
    ema = cls(0.5)
    op = ema.apply(averaged)
    with v1.Session() as sess:
        sess.run(v1.local_variables_initializer())
        sess.run(v1.global_variables_initializer())
        sess.run(update_mean)
        sess.run(op)
        values = sess.run([ema.average(v) for v in averaged])
    return {"values": values, "state": graph_state(ema, averaged), "fused": fused_ops()}


def test_local_and_metric_variables_averaged_like_tf1(graph_mode):
    """Averages of a local variable and tf.metrics.mean's total and count: global shadows, TF1's values."""
    stock, fast = twin(_local_and_metric_variables)
    assert_same_program(stock, fast)
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


def _variable_tensors(cls):
    w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    tensors = [w.op.outputs[0], w.value(), w.read_value(), tf.convert_to_tensor(w)]
    ema = cls(0.5)
    try:
        op = ema.apply(tensors)
    except TypeError as e:  # TF2 behaviour: w.op.outputs[0] is the resource handle
        return {"error": raised(e), "global": names(v1.global_variables()), "fused": fused_ops()}
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        values = []
        for _ in range(2):
            sess.run(bump([w]))
            sess.run(op)
            values.append(sess.run([ema.average(t) for t in tensors]))
    shadows = [ema.average(t) for t in tensors]
    return {
        "values": values,
        "names": names(shadows),
        "colocation": [s.op.colocation_groups() for s in shadows],
        "global": names(v1.global_variables()),
        "fused": fused_ops(),
    }


def test_tensors_of_a_variable_averaged_like_tf1(graph_mode):
    """A variable's raw output (a ref in TF1), value(), read_value() and converted tensor are averaged as TF1 does."""
    stock, fast = twin(_variable_tensors)
    assert_same_program(stock, fast)
    if graph_mode == "tf2-graph":
        assert stock["error"] == "TypeError: The variables must be half, float, or double: w:0"
    else:
        assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# Primaries or decay from another graph
# ---------------------------------------------------------------------------


def _from_another_graph(cls, what):
    with tf.Graph().as_default():
        other_w = v1.get_variable("w", [3])
        other_t = tf.identity(other_w * 2.0, name="t")
        other_decay = tf.constant(0.9)
    w = v1.get_variable("w", [3])
    t = tf.identity(w * 2.0, name="t")
    build = {
        "variable": lambda: cls(0.5).apply([other_w]),
        "tensor": lambda: cls(0.5).apply([other_t]),
        "mixed": lambda: cls(0.5).apply([w, other_t]),
        "decay": lambda: cls(other_decay).apply([w, t]),
    }[what]
    try:
        build()
    except ValueError as e:
        error = raised(e)
    else:
        error = None
    other = other_w.graph
    return {
        "error": error,
        "global": names(v1.global_variables()),
        "other_global": names(other.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)),
        "other_ops": sorted(op.name for op in other.get_operations()),  # nothing built there but shadows
    }


@pytest.mark.parametrize("what", ["variable", "tensor", "mixed", "decay"])
def test_primary_or_decay_from_another_graph_raises_tf1s_error(graph_mode, what):
    """apply() of a variable or tensor, or with a decay, from another graph raises TF1's ValueError, word for word."""
    stock, fast = twin(_from_another_graph, what)
    assert stock["error"] is not None and "must be from the same graph" in stock["error"]
    assert fast == stock


# ---------------------------------------------------------------------------
# Mixed precision through a custom getter; a session on an in-process server
# ---------------------------------------------------------------------------


def _float32_storage_getter(getter, name, shape=None, dtype=None, initializer=None, trainable=True, *args, **kwargs):
    """The TF1 mixed-precision recipe: float32 master weights, read as float16."""
    variable = getter(name, shape, *args, dtype=tf.float32 if trainable else dtype, initializer=initializer,
                      trainable=trainable, **kwargs)  # fmt: skip
    return tf.cast(variable, dtype) if trainable and dtype != tf.float32 else variable


def _mixed_precision(cls):
    x = tf.constant(DATA.astype(np.float16))
    with v1.variable_scope("fp32_vars", custom_getter=_float32_storage_getter):
        w = v1.get_variable("w", [4, 3], tf.float16, initializer=v1.random_normal_initializer(seed=1))
        loss = tf.reduce_mean(tf.cast(tf.matmul(x, w), tf.float32) ** 2)
        step = v1.train.get_or_create_global_step()
        train_op = v1.train.MomentumOptimizer(0.01, 0.9).minimize(loss * 128.0, global_step=step)
        ema = cls(0.99, step)
        with tf.control_dependencies([train_op]):
            train = ema.apply(v1.trainable_variables())  # inside the getter's scope, as such models did
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        values = sess.run(v1.global_variables())
    return {"values": values, "state": graph_state(ema, v1.trainable_variables()), "fused": fused_ops()}


def test_mixed_precision_custom_getter_model_like_tf1(graph_mode):
    """float32 master weights behind a float16 custom getter, averaged inside the getter's scope, match TF1."""
    stock, fast = twin(_mixed_precision)
    assert_same_program(stock, fast)
    assert stock["state"]["trainable"] == ["fp32_vars/w:0"]
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


@pytest.fixture(scope="module")
def local_server():
    """An in-process tf.distribute.Server: sessions on its target run through the distributed runtime."""
    return tf.distribute.Server.create_local_server()


def _on_server(cls, target):
    w = v1.get_variable("w", [3], initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    h = v1.get_variable("h", [3], tf.float16, initializer=v1.constant_initializer([1.0, 2.0, 3.0]))
    t = tf.identity(w * 2.0, name="t")
    ema = cls(0.5)
    op = ema.apply([w, h, t])
    values = []
    try:
        with v1.Session(target) as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(bump([w, h]))
            sess.run(op)
            values.append(sess.run([ema.average(v) for v in (w, h, t)]))
        with v1.Session(target) as sess:  # TF1: a new session on a server finds its variables there
            sess.run(bump([w, h]))
            sess.run(op)
            values.append(sess.run([ema.average(v) for v in (w, h, t)]))
    finally:
        v1.Session.reset(target)  # the next graph starts without them
    return {"values": values, "fused": fused_ops()}


def test_sessions_on_a_server_target_share_and_update_shadows_like_tf1(graph_mode, local_server):
    """Two sessions on a tf.distribute.Server target: the second finds and updates the first one's shadows as TF1."""
    stock, fast = twin(_on_server, local_server.target)
    assert_same_program(stock, fast)
    assert_fast_path(stock, fast, FUSED_TYPE[graph_mode])


# ---------------------------------------------------------------------------
# SavedModels exported from the training session
# ---------------------------------------------------------------------------


def _exported_saved_model(cls, export_dir):
    x = v1.placeholder(tf.float32, [None, 4], name="x")
    w, b, loss = _regression()
    y = tf.add(tf.matmul(x, w), b, name="y")
    step = v1.train.get_or_create_global_step()
    train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    ema = cls(0.9, step)
    with tf.control_dependencies([train_op]):
        train = ema.apply([w, b])
    averaged = tf.identity(ema.average(w), name="averaged")
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        # The TF1 tutorials' one-liner: the whole training graph goes into the SavedModel.
        v1.saved_model.simple_save(sess, export_dir, {"x": x}, {"y": y, "averaged": averaged})
    return {"train": train.name, "fused": fused_ops()}


def _loaded_saved_model(export_dir, train_op):
    with tf.Graph().as_default() as graph, v1.Session() as sess:
        v1.saved_model.loader.load(sess, [v1.saved_model.tag_constants.SERVING], export_dir)
        served = sess.run(["y:0", "averaged:0"], {"x:0": DATA[:3]})
        sess.run(train_op)  # training goes on in the loaded graph
        served.append(sess.run("averaged:0"))
        fused = fused_ops(graph)
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]  # TF2's loader, eagerly
    outputs = signature(x=tf.constant(DATA[:3]))
    return {"v1": served, "v2": [outputs["y"].numpy(), outputs["averaged"].numpy()], "fused": fused}


def test_saved_model_of_the_training_session_loads_and_trains_on_like_tf1(graph_mode, tmp_path):
    """simple_save() of the training session loads with TF1's loader (and trains on) and TF2's, serving TF1's values."""
    exported = {cls: in_fresh_graph(_exported_saved_model, cls, str(tmp_path / cls.__name__ / str(i)))
                for i, cls in enumerate((STOCK, FAST))}  # fmt: skip
    stock, fast = (_loaded_saved_model(str(tmp_path / cls.__name__ / str(i)), exported[cls]["train"])
                   for i, cls in enumerate((STOCK, FAST)))  # fmt: skip
    assert_same_program(stock, fast)
    assert_fast_path(stock, fast)  # written with TensorFlow's ops: the loaded graph has no fused op


SERVE_PROGRAM = r"""
import json, sys
import numpy as np, tensorflow as tf  # TensorFlow alone, as TF Serving or saved_model_cli would load it
x = np.arange(12, dtype=np.float32).reshape(3, 4)
out = {}
for export_dir in sys.argv[1:]:
    try:
        outputs = tf.saved_model.load(export_dir).signatures["serving_default"](x=tf.constant(x))
        y = outputs["y"].numpy()
        out[export_dir] = [y.dtype.name, list(y.shape), y.tobytes().hex()]  # harness.bits_record
    except Exception as e:  # pylint: disable=broad-except
        out[export_dir] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0])
print(json.dumps(out))
"""


def test_saved_model_of_the_training_session_serves_without_tf1_ema(tmp_path):
    """A SavedModel that simple_save() wrote from a training session with the EMA loads in a process without tf1_ema."""
    dirs = [str(tmp_path / name) for name in ("stock", "fast")]
    for cls, export_dir in zip((STOCK, FAST), dirs):
        in_fresh_graph(_exported_saved_model, cls, export_dir)
    env = {k: v for k, v in os.environ.items() if k != "TF1_EMA_CACHE_DIR"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run([sys.executable, "-c", SERVE_PROGRAM, *dirs], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(served[dirs[0]], list), served[dirs[0]]  # stock's loads
    assert isinstance(served[dirs[1]], list), served[dirs[1]]
    assert_bits_equal(from_bits_record(served[dirs[0]]), from_bits_record(served[dirs[1]]), path="served y")


# ---------------------------------------------------------------------------
# XLA auto-clustering (a process of its own: the CPU JIT flag is read once)
# ---------------------------------------------------------------------------

XLA_PROGRAM = r'''
import json, sys
import numpy as np, tensorflow as tf, tf1_ema
v1 = tf.compat.v1
VALUES = np.random.default_rng(5).standard_normal((4, 256))
DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)

def program(cls, jit):
    with tf.Graph().as_default() as graph:
        primaries = [v1.get_variable("v_" + t.name, [256], t, v1.zeros_initializer()) for t in DTYPES]
        feeds = [v1.placeholder(t, [256]) for t in DTYPES]
        assign = tf.group(*[v1.assign(p, f) for p, f in zip(primaries, feeds)])
        step = v1.train.get_or_create_global_step()
        with tf.control_dependencies([assign]):
            loss = tf.add_n([tf.reduce_sum(tf.cast(p.read_value(), tf.float32) ** 2) for p in primaries], name="loss")
        ema = cls(0.99, num_updates=step)
        with tf.control_dependencies([assign]):
            op = ema.apply(primaries + [loss])
        with tf.control_dependencies([op]):
            train = v1.assign_add(step, 1)
        config = v1.ConfigProto()
        config.graph_options.optimizer_options.global_jit_level = (
            v1.OptimizerOptions.ON_1 if jit else v1.OptimizerOptions.OFF)
        with v1.Session(config=config) as sess:
            sess.run(v1.global_variables_initializer())
            for i in range(4):
                metadata = v1.RunMetadata()
                sess.run(train, {f: VALUES[i].astype(t.as_numpy_dtype) for f, t in zip(feeds, DTYPES)},
                         options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE), run_metadata=metadata)
            values = sess.run([ema.average(p) for p in primaries + [loss]])
    return {
        "values": [[x.dtype.name, list(x.shape), x.tobytes().hex()] for x in map(np.asarray, values)],  # bits_record
        "clustered": any("cluster" in n.node_name for d in metadata.step_stats.dev_stats for n in d.node_stats),
        "fused": sorted(o.type for o in graph.get_operations() if o.type.startswith("Tf1EmaUpdate")),
    }

out = {}
for mode in ("tf2-graph", "tf1"):
    if mode == "tf1":
        v1.disable_resource_variables()
        v1.disable_control_flow_v2()
    for name, cls in (("stock", v1.train.ExponentialMovingAverage), ("fast", tf1_ema.ExponentialMovingAverage)):
        for jit in (False, True):
            out["%s %s %s" % (mode, name, "jit" if jit else "plain")] = program(cls, jit)
print(json.dumps(out))
'''


def test_xla_auto_clustering_leaves_the_fused_update_exact():
    """With global_jit_level=ON_1 and the CPU JIT on, the fused op runs and its shadows keep TF1's unclustered bits."""
    # Stock TF's own update is compiled by XLA there and may round otherwise (it does for
    # resource variables here), so it is only required to run.
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env.update(TF_XLA_FLAGS="--tf_xla_cpu_global_jit", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", XLA_PROGRAM], capture_output=True, text=True, env=env, cwd=REPO, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for mode in MODES:
        assert not out["%s stock plain" % mode]["clustered"]
        for jit in ("plain", "jit"):
            fast = out["%s fast %s" % (mode, jit)]
            # The four variables' shadows: TF1's unclustered bits from the fused op, else whatever stock's graph gives.
            reference = out["%s stock %s" % (mode, "plain" if fused_update_expected() else jit)]
            assert_bits_equal([from_bits_record(r) for r in reference["values"][:4]],
                              [from_bits_record(r) for r in fast["values"][:4]], path="%s %s" % (mode, jit))
            assert fast["fused"] == ([FUSED_TYPE[mode]] if fused_update_expected() else [])
        assert out["%s stock jit" % mode]["clustered"] == out["%s fast jit" % mode]["clustered"]
    assert out["tf2-graph fast jit"]["clustered"]  # XLA did cluster: the check above means something


# ---------------------------------------------------------------------------
# Whole programs through `tf1-ema run` and `tf1-ema run --reference`
# ---------------------------------------------------------------------------

MODEL_PY = '''\
"""The model that train.py and eval.py share, as cifar10.py was."""
import tensorflow as tf

MOVING_AVERAGE_DECAY = 0.9999


def inference(images):
    init = tf.contrib.layers.xavier_initializer
    with tf.variable_scope("conv1"):
        net = tf.contrib.layers.conv2d(images, 4, [3, 3], weights_initializer=init(seed=1),
                                       weights_regularizer=tf.contrib.layers.l2_regularizer(0.004))
    net = tf.contrib.layers.flatten(tf.contrib.layers.max_pool2d(net, [2, 2]))
    with tf.variable_scope("local3"):
        net = tf.contrib.layers.fully_connected(net, 16, weights_initializer=init(seed=2))
    with tf.variable_scope("softmax_linear"):
        return tf.contrib.layers.fully_connected(net, 4, activation_fn=None, weights_initializer=init(seed=3))
'''

TRAIN_PY = '''\
"""The blog walkthrough, then cifar10_train.py shrunk, then a Keras model with an EMA callback."""
import hashlib
import sys

import numpy as np
import tensorflow as tf

from model import MOVING_AVERAGE_DECAY, inference

# The walkthrough: the step counter as num_updates, every trainable variable averaged.
v1 = tf.Variable(0, dtype=tf.float32, name="v1")
step = tf.Variable(0, trainable=False, name="step")
ema = tf.train.ExponentialMovingAverage(0.99, step)
maintain_averages_op = ema.apply(tf.trainable_variables())
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    print(sess.run([v1, ema.average(v1)]))
    sess.run(tf.assign(v1, 5))
    sess.run(maintain_averages_op)
    print(sess.run([v1, ema.average(v1)]))
    sess.run(tf.assign(step, 10000))
    sess.run(tf.assign(v1, 10))
    sess.run(maintain_averages_op)
    print(sess.run([v1, ema.average(v1)]))
    sess.run(maintain_averages_op)
    print(sess.run([v1, ema.average(v1)]))
print(ema.average_name(v1), ema.average(v1).name, sorted(ema.variables_to_restore()))
graphs = [tf.get_default_graph()]

tf.reset_default_graph()
tf.set_random_seed(1)
rng = np.random.RandomState(0)
IMAGES = rng.rand(40, 8, 8, 3).astype(np.float32)
LABELS = (np.arange(40) % 4).astype(np.int32)


def distorted_inputs():
    image, label = tf.train.slice_input_producer([IMAGES, LABELS], shuffle=False)
    image = tf.image.per_image_standardization(image)
    return tf.train.batch([image, label], batch_size=8, num_threads=1, capacity=32)


def loss(logits, labels):
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    tf.add_to_collection("losses", tf.reduce_mean(cross_entropy, name="cross_entropy"))
    regularization = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
    return tf.add_n(tf.get_collection("losses") + regularization, name="total_loss")


def train(total_loss, global_step):
    lr = tf.train.exponential_decay(0.1, global_step, 5, 0.5, staircase=True)
    loss_averages = tf.train.ExponentialMovingAverage(0.9, name="avg")
    losses = tf.get_collection("losses")
    loss_averages_op = loss_averages.apply(losses + [total_loss])
    for l in losses + [total_loss]:
        tf.summary.scalar(l.op.name + "_raw", l)
        tf.summary.scalar(l.op.name, loss_averages.average(l))
    with tf.control_dependencies([loss_averages_op]):
        opt = tf.train.MomentumOptimizer(lr, 0.9)
        grads = opt.compute_gradients(total_loss)
    apply_gradient_op = opt.apply_gradients(grads, global_step=global_step)
    variable_averages = tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY, global_step)
    with tf.control_dependencies([apply_gradient_op]):
        variables_averages_op = variable_averages.apply(tf.trainable_variables())
    return variables_averages_op, loss_averages


global_step = tf.train.get_or_create_global_step()
images, labels = distorted_inputs()
total_loss = loss(inference(images), labels)
train_op, loss_averages = train(total_loss, global_step)
for v in tf.global_variables():
    print(v.op.name, v.dtype.name, v.get_shape())


class _LoggerHook(tf.train.SessionRunHook):
    def begin(self):
        self._step = -1

    def before_run(self, run_context):
        self._step += 1
        return tf.train.SessionRunArgs([total_loss, loss_averages.average(total_loss)])

    def after_run(self, run_context, run_values):
        print("step %d, loss = %r, averaged %r" % (self._step, *run_values.results))


with tf.train.MonitoredTrainingSession(
        checkpoint_dir=sys.argv[1],
        hooks=[tf.train.StopAtStepHook(last_step=10), tf.train.NanTensorHook(total_loss), _LoggerHook()],
        save_checkpoint_steps=5, save_summaries_steps=None, save_summaries_secs=None,
        log_step_count_steps=None) as mon_sess:
    while not mon_sess.should_stop():
        mon_sess.run(train_op)

reader = tf.train.NewCheckpointReader(tf.train.latest_checkpoint(sys.argv[1]))
for name in sorted(reader.get_variable_to_shape_map()):
    print(name, hashlib.sha256(np.ascontiguousarray(reader.get_tensor(name)).tobytes()).hexdigest()[:16])
graphs.append(tf.get_default_graph())

# A Keras model of the TF 1.x era: fit() in the Keras session, the averages updated by a callback.
tf.reset_default_graph()
K = tf.keras.backend
model = tf.keras.Sequential([
    tf.keras.layers.Dense(5, activation="tanh", input_shape=(4,),
                          kernel_initializer=tf.keras.initializers.glorot_uniform(seed=1)),
    tf.keras.layers.Dense(2, kernel_initializer=tf.keras.initializers.glorot_uniform(seed=2)),
])
model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
keras_ema = tf.train.ExponentialMovingAverage(0.9)
keras_ema_op = keras_ema.apply(model.trainable_weights)
sess = K.get_session()
sess.run(tf.variables_initializer([keras_ema.average(w) for w in model.trainable_weights]))


class EmaCallback(tf.keras.callbacks.Callback):
    def on_batch_end(self, batch, logs=None):
        sess.run(keras_ema_op)


x = rng.standard_normal((32, 4)).astype(np.float32)
y = rng.standard_normal((32, 2)).astype(np.float32)
history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[EmaCallback()])
print("keras losses", history.history["loss"])
for w in model.trainable_weights:
    print(keras_ema.average_name(w), sess.run(keras_ema.average(w)).tolist())
graphs.append(tf.get_default_graph())
for graph in graphs:
    fused = sorted(op.type for op in graph.get_operations() if op.type.startswith("Tf1EmaUpdate"))
    sys.stderr.write("fused update ops: %s\\n" % fused)
'''

EVAL_PY = '''\
"""cifar10_eval.py shrunk: averages restored into the model, the model frozen; then training resumed from .meta."""
import hashlib
import os
import sys

import numpy as np
import tensorflow as tf

from model import MOVING_AVERAGE_DECAY, inference

EVAL_IMAGES = np.random.RandomState(1).rand(12, 8, 8, 3).astype(np.float32)
EVAL_LABELS = (np.arange(12) % 4).astype(np.int32)


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def evaluate(checkpoint_dir, out_dir):
    with tf.Graph().as_default() as g:
        images = tf.placeholder(tf.float32, [None, 8, 8, 3], name="images")
        logits = inference(tf.map_fn(tf.image.per_image_standardization, images))
        probabilities = tf.nn.softmax(logits, name="probabilities")
        top_k_op = tf.nn.in_top_k(logits, EVAL_LABELS, 1)
        variable_averages = tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY)
        variables_to_restore = variable_averages.variables_to_restore()
        for name in sorted(variables_to_restore):
            print("  %s <- %s" % (variables_to_restore[name].op.name, name))
        saver = tf.train.Saver(variables_to_restore)
        with tf.Session() as sess:
            ckpt = tf.train.get_checkpoint_state(checkpoint_dir)
            saver.restore(sess, ckpt.model_checkpoint_path)
            global_step = ckpt.model_checkpoint_path.split("/")[-1].split("-")[-1]
            predictions, probs = sess.run([top_k_op, probabilities], {images: EVAL_IMAGES})
            print("  step %s: precision @ 1 = %.3f, probabilities %s" % (
                global_step, np.sum(predictions) / len(predictions), digest(probs)))
            frozen = tf.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["probabilities"])
        tf.train.write_graph(frozen, out_dir, "frozen.pb", as_text=False)
        constants = sorted((n.name, digest(tf.make_ndarray(n.attr["value"].tensor)))
                           for n in frozen.node if n.op == "Const" and n.name.endswith(("kernel", "bias")))
        print("  frozen: %d nodes, constants %s" % (len(frozen.node), constants))
    with tf.Graph().as_default():
        graph_def = tf.GraphDef()
        with open(os.path.join(out_dir, "frozen.pb"), "rb") as f:
            graph_def.ParseFromString(f.read())
        probabilities, = tf.import_graph_def(graph_def, return_elements=["probabilities:0"], name="frozen")
        with tf.Session() as sess:
            print("  frozen graph probabilities %s" % digest(sess.run(probabilities, {"frozen/images:0": EVAL_IMAGES})))


def resume(checkpoint_dir):
    with tf.Graph().as_default():
        path = tf.train.latest_checkpoint(checkpoint_dir)
        saver = tf.train.import_meta_graph(path + ".meta")
        with tf.Session() as sess:
            saver.restore(sess, path)
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord)
            for _ in range(2):
                sess.run("ExponentialMovingAverage")  # the training step: variables_averages_op
            coord.request_stop()
            coord.join(threads)
            for v in tf.global_variables():
                print("  %s %s" % (v.op.name, digest(sess.run(v))))


for checkpoint_dir, out_dir in zip(sys.argv[1::2], sys.argv[2::2]):
    print("evaluated from the checkpoint of the %s run" % os.path.basename(checkpoint_dir))
    evaluate(checkpoint_dir, out_dir)
    print("training resumed from the .meta and checkpoint of the %s run" % os.path.basename(checkpoint_dir))
    resume(checkpoint_dir)
'''

WALKTHROUGH = """\
[0.0, 0.0]
[5.0, 4.5]
[10.0, 4.555]
[10.0, 4.60945]
v1/ExponentialMovingAverage v1/ExponentialMovingAverage:0 ['step', 'v1/ExponentialMovingAverage']
"""


def _runner_env():
    """The test process's environment without our print-era and log settings (as a user's shell)."""
    from tf1_ema.v1 import NUMPY_PRINT_ENV

    return {k: v for k, v in os.environ.items() if k not in (NUMPY_PRINT_ENV, "TF_CPP_MIN_LOG_LEVEL")}


def _run_both(script, args_by_mode, cwd):
    """Runs ``tf1-ema run [--reference] script ARGS`` for both modes at once; returns {mode: CompletedProcess}."""
    procs = {}
    for mode, args in args_by_mode.items():
        flags = ["--reference"] if mode == "reference" else []
        procs[mode] = subprocess.Popen(
            [sys.executable, "-m", "tf1_ema", "run", *flags, str(script), *map(str, args)],
            cwd=cwd,
            env=_runner_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for mode, proc in procs.items():
        out, err = proc.communicate(timeout=TIMEOUT)
        results[mode] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


@pytest.fixture(scope="module")
def cifar_runs(tmp_path_factory):
    """train.py then eval.py (fed both checkpoints), each run with tf1_ema's EMA ("ours") and stock's ("reference")."""
    root = tmp_path_factory.mktemp("cifar")
    for name, text in (("model.py", MODEL_PY), ("train.py", TRAIN_PY), ("eval.py", EVAL_PY)):
        (root / name).write_text(text)
    train = _run_both(root / "train.py", {"ours": [root / "ours"], "reference": [root / "reference"]}, root)
    for mode in train:
        (root / ("frozen-" + mode)).mkdir()
    checkpoints = [root / "ours", root / "frozen-ours", root / "reference", root / "frozen-reference"]
    evaluation = _run_both(root / "eval.py", {"ours": checkpoints, "reference": checkpoints}, root)
    return train, evaluation


@pytest.mark.slow
def test_cifar10_style_programs_print_the_same_with_either_ema(cifar_runs):
    """train.py and eval.py print the same text with tf1_ema's EMA and stock's, each reading both modes' checkpoints."""
    train, evaluation = cifar_runs
    for runs in (train, evaluation):
        for mode, run in runs.items():
            assert run.returncode == 0, (mode, run.stderr[-3000:])
        assert runs["ours"].stdout == runs["reference"].stdout
    assert train["ours"].stdout.startswith(WALKTHROUGH)
    # The fused ops ran in our training run (walkthrough, cifar10, Keras), not in the reference one.
    fused = [line for line in train["ours"].stderr.splitlines() if line.startswith("fused update ops:")]
    expected = [
        "fused update ops: %s" % (types if fused_update_expected() else [])
        for types in (["Tf1EmaUpdateRef"], ["Tf1EmaUpdateRef"] * 2, ["Tf1EmaUpdateByName"])
    ]
    assert fused == expected
    assert [line for line in train["reference"].stderr.splitlines() if line.startswith("fused")] == [
        "fused update ops: []"
    ] * 3
    # Either checkpoint gives the same evaluation, frozen model and resumed training.
    text = re.sub(r"of the (ours|reference) run", "of the ... run", evaluation["ours"].stdout)
    _, ours, reference = text.split("evaluated from the checkpoint of the ... run\n")
    assert ours == reference
    # The frozen constants are the averages the training run saved.
    saved = dict(line.split() for line in train["ours"].stdout.splitlines() if line.count(" ") == 1)
    frozen = re.search(r"constants (\[.*\])", reference).group(1)
    for name, digest in eval(frozen):  # noqa: S307 -- our own program's printed list
        assert saved[name + "/ExponentialMovingAverage"] == digest
