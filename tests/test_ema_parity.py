"""Our EMA against ``tf.compat.v1.train.ExponentialMovingAverage``, in the same kind of graph.

Every test builds the same model once with each implementation, in fresh
``tf.Graph``s, through the differential harness (``harness.py``: ``differential``,
``assert_same_as_tf1``), or runs the same eager script twice, in two processes, and
asserts that what comes out is identical: values bit for bit (``assert_bits_equal``:
dtype, shape and raw bytes), names, collections, GraphDefs, errors and checkpoints.
Where the reference's behaviour is a known quantity, the tests also pin it
literally, so that two equal but wrong answers cannot pass.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from limits import TIMEOUT
import strategies as S
import tf1_ema
from harness import (
    BUILDS,
    IMPLEMENTATIONS,
    OURS,
    OURS_REFERENCE_GRAPH,
    REFERENCE,
    assert_bits_equal,
    assert_same_as_tf1,
    build_each,
    collections,
    differential,
    fresh_graph,
    from_bits_record,
    initialize,
    normalized_graph_def,
    outcome,
    variable_summary,
)
from tf1_ema import _math

v1 = tf.compat.v1



# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def random_value(rng, dtype, shape):
    """A seeded normal draw of ``shape``, rounded to the TF ``dtype``."""
    shape = [4 if d is None else d for d in shape]
    return (rng.standard_normal(shape) * 3.0).astype(dtype.as_numpy_dtype)


# ---------------------------------------------------------------------------
# Values, bit for bit, over 200 random updates
# ---------------------------------------------------------------------------

VALUE_STEPS = 200
DECAY_CHANGE_STEP = 100  # a decay Variable is reassigned here: the update must re-read it.
VAR_KINDS = ("resource", "ref", "tensor")
VALUE_CASES = [
    (kind, dtype, decay_kind, num_updates, zero_debias)
    for kind in VAR_KINDS
    for dtype in S.FLOAT_DTYPES
    for decay_kind in ("float", "variable", "tensor")
    for num_updates in (False, True)
    for zero_debias in (False, True)
]


def value_case_id(case):
    """``resource-float16-decay_variable-step-debias``: readable and a valid TF name."""
    kind, dtype, decay_kind, num_updates, zero_debias = case
    return "-".join(
        [
            kind,
            dtype,
            "decay_" + decay_kind,
            "step" if num_updates else "no_step",
            "debias" if zero_debias else "biased",
        ]
    )


def _build_value_cases(cls):
    """All VALUE_CASES in the default graph; returns (per-step assign feeds, tensor feeds, update op)."""
    step = v1.Variable(0, dtype=tf.int64, name="step", trainable=False)
    assigns = {"step": (v1.placeholder(tf.int64, []), step)}
    tensor_feeds = {}
    updates = []
    for i, case in enumerate(VALUE_CASES):
        kind, dtype, decay_kind, num_updates, zero_debias = case
        name = value_case_id(case)
        shape = S.SHAPES[i % len(S.SHAPES)]
        tf_dtype = tf.as_dtype(_math.as_dtype(dtype))
        if decay_kind == "variable":
            decay = v1.Variable(0.95, name=name + "_decay", trainable=False)
            assigns[name + "_decay"] = (v1.placeholder(tf.float32, []), decay)
        elif decay_kind == "tensor":
            decay = tf.constant(0.93, tf.float32, name=name + "_decay")
        else:
            decay = 0.97
        if kind == "tensor":
            averaged = v1.placeholder(tf_dtype, shape, name=name)
            tensor_feeds[name] = averaged
        else:
            initial = S.random_sequence(10_000 + i, dtype, shape, 1)[0]
            averaged = v1.Variable(initial, name=name, use_resource=(kind == "resource"))
            assigns[name] = (v1.placeholder(tf_dtype, shape), averaged)
        ema = cls(decay, num_updates=step if num_updates else None, zero_debias=zero_debias)
        updates.append(ema.apply([averaged]))
    assign_ops = {key: v1.assign(var, ph) for key, (ph, var) in assigns.items()}
    return {k: ph for k, (ph, _) in assigns.items()}, assign_ops, tensor_feeds, tf.group(*updates)


def _value_case_inputs(step_index):
    """The inputs of update ``step_index``: {variable or placeholder name: value}."""
    inputs = {"step": step_index}
    for i, case in enumerate(VALUE_CASES):
        name = value_case_id(case)
        shape = S.SHAPES[i % len(S.SHAPES)]
        inputs[name] = S.random_sequence(i, case[1], shape, VALUE_STEPS)[step_index]
        if case[2] == "variable":
            inputs[name + "_decay"] = 0.95 if step_index < DECAY_CHANGE_STEP else 0.8
    return inputs


@pytest.fixture(scope="module")
def value_runs():
    """Both implementations through VALUE_STEPS updates of every case: {impl: {variable name: values per step}}."""
    all_inputs = [_value_case_inputs(t) for t in range(VALUE_STEPS)]

    def program(cls, amv):
        placeholders, assign_ops, tensor_feeds, update = _build_value_cases(cls)
        variables = {v.op.name: v for v in v1.global_variables()}
        history = {name: [] for name in variables}
        with v1.Session() as sess:
            initialize(sess)
            for inputs in all_inputs:
                sess.run(assign_ops, {placeholders[k]: inputs[k] for k in placeholders})
                sess.run(update, {ph: inputs[k] for k, ph in tensor_feeds.items()})
                for name, value in sess.run(variables).items():
                    history[name].append(value)
        return {name: np.stack(values) for name, values in history.items()}

    return build_each(program)


@pytest.mark.slow
def test_value_runs_create_the_same_variables(value_runs):
    """Both implementations create exactly the same set of variable names for the value grid."""
    assert sorted(value_runs[OURS]) == sorted(value_runs[REFERENCE])


@pytest.mark.slow
@pytest.mark.parametrize("case", VALUE_CASES, ids=[value_case_id(c) for c in VALUE_CASES])
def test_values_bit_for_bit_over_200_updates(value_runs, case):
    """Shadow (and biased/local_step) values equal the reference's bit for bit after each of 200 updates."""
    name = value_case_id(case)
    ours, ref = value_runs[OURS], value_runs[REFERENCE]
    mine = sorted(k for k in ref if k.startswith(name + "/"))
    assert name + "/ExponentialMovingAverage" in mine
    if case[0] == "tensor" and case[4]:
        assert name + "/ExponentialMovingAverage/biased" in mine
        assert name + "/ExponentialMovingAverage/local_step" in mine
    for key in mine:
        assert_bits_equal(ref[key], ours[key], path=key)
    # Not a vacuous comparison: the shadow moved.
    shadow = ref[name + "/ExponentialMovingAverage"]
    assert not np.array_equal(shadow[0], shadow[-1])


# ---------------------------------------------------------------------------
# Model shapes: GraphDef, variables, collections, names, restore maps, updates
# ---------------------------------------------------------------------------
#
# Each model builds a small TF1 program with `cls` (an EMA class) and `amv` (an
# assign_moving_average) in the default graph and returns a dict with "emas",
# "averaged" (the variables/tensors given to apply) and "ops" (what one training
# step runs), plus anything it recorded on the way ("before": names before apply).


def model_resource_num_updates(cls, amv):
    """Resource variables of all four dtypes, a global step, apply() with the default var_list."""
    step = v1.train.get_or_create_global_step()
    w = v1.Variable(np.ones((2, 3), np.float32), name="w")
    with tf.device("/device:CPU:0"):
        b = v1.Variable(np.zeros(3, np.float64), name="b")
    with v1.variable_scope("s"):
        h = v1.get_variable("h", [4], tf.float16, initializer=v1.ones_initializer())
        z = v1.get_variable("z", [2], tf.bfloat16, initializer=v1.ones_initializer())
    ema = cls(0.999, num_updates=step)
    before = [ema.average_name(v) for v in (w, b, h, z)]
    with tf.device("/device:CPU:0"):
        op = ema.apply()
    return {"emas": [ema], "averaged": [w, b, h, z], "ops": [op], "before": before}


def model_ref_variables(cls, amv):
    """Ref variables (use_resource=False) with a decay Variable and an int32 step counter."""
    step = v1.Variable(0, name="step", trainable=False)
    decay = v1.Variable(0.9, name="decay", trainable=False, use_resource=False)
    w = v1.Variable(np.ones((2, 3), np.float32), name="w", use_resource=False)
    b = v1.Variable(np.zeros(3, np.float64), name="b", use_resource=False)
    h = v1.Variable(np.zeros(3, np.float16), name="h", use_resource=False)
    ema = cls(decay, num_updates=step)
    op = ema.apply([w, b, h])
    return {"emas": [ema], "averaged": [w, b, h], "ops": [op, v1.assign_add(step, 1)]}


def model_zero_debias_tensors(cls, amv):
    """Debiased averages of tensors computed from placeholders, and a second EMA of the same tensor."""
    x = v1.placeholder(tf.float32, [5, 3], name="x")
    t = tf.reduce_mean(x, 0, name="t")
    u = tf.multiply(x, 2.0, name="u")
    d = tf.cast(x, tf.float64, name="d")
    ema = cls(0.99, zero_debias=True)
    before = [ema.average_name(v) for v in (t, u, d)]
    op = ema.apply([t, u, d])
    other = cls(0.5, zero_debias=True)
    op2 = other.apply([t])
    return {"emas": [ema, other], "averaged": [t, u, d], "ops": [op, op2], "before": before}


def model_unknown_shape_tensors(cls, amv):
    """Tensors of partly and wholly unknown shape (no debiasing, which needs one), and a shapeless variable."""
    x = v1.placeholder(tf.float32, [None, 3], name="x")
    y = v1.placeholder(tf.float64, None, name="y")
    w = v1.Variable(np.ones((2, 3), np.float32), name="w", shape=tf.TensorShape(None))
    ema = cls(0.9)
    op = ema.apply([x, y, w])
    return {"emas": [ema], "averaged": [x, y, w], "ops": [op]}


def model_python_numbers(cls, amv):
    """NumPy decays and Python or float-tensor step counters, the forms TF1 tutorials passed."""
    w = v1.Variable(np.ones(3, np.float32), name="w")
    first = cls(np.float64(0.9), num_updates=5)
    second = cls(np.float32(0.99), num_updates=tf.constant(3.0), name="Float")
    third = cls(1, num_updates=np.int64(7), name="IntDecay")
    ops = [first.apply([w]), second.apply([w]), third.apply([w])]
    return {"emas": [first, second, third], "averaged": [w], "ops": ops}


def model_scopes_and_names(cls, amv):
    """Alike names in scopes, two EMAs with one name, a custom name, apply() twice, apply in a scope."""
    w = v1.Variable(1.0, name="w")
    with v1.variable_scope("a"):
        aw = v1.get_variable("w", [], initializer=v1.ones_initializer())
    with v1.name_scope("a"):
        nw = v1.Variable(2.0, name="w")  # a/w_1
    first = cls(0.9)
    second = cls(0.5)
    custom = cls(0.8, name="Swa")
    before = [first.average_name(v) for v in (w, aw, nw)] + [custom.average_name(w)]
    ops = [first.apply([w, aw, nw]), second.apply([w]), first.apply([w])]
    with v1.variable_scope("eval"), v1.name_scope("inner"):
        ops.append(custom.apply([w, aw]))
    return {"emas": [first, second, custom], "averaged": [w, aw, nw], "ops": ops, "before": before}


def model_training_loop(cls, amv):
    """The TF1 idiom: minimize, then ema.apply under control_dependencies([train_op]), and a restore Saver."""
    x = v1.placeholder(tf.float32, [8, 2], name="x")
    y = tf.reduce_sum(x, 1, keepdims=True) * 0.5 + 1.0
    with v1.variable_scope("linear"):
        kernel = v1.get_variable("kernel", [2, 1], initializer=v1.zeros_initializer())
        bias = v1.get_variable("bias", [1], initializer=v1.zeros_initializer())
    loss = tf.reduce_mean(tf.square(tf.matmul(x, kernel) + bias - y))
    step = v1.train.get_or_create_global_step()
    train = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    ema = cls(0.99, num_updates=step)
    with tf.control_dependencies([train]):
        op = ema.apply(v1.trainable_variables())
    v1.train.Saver(ema.variables_to_restore())
    return {"emas": [ema], "averaged": [kernel, bias], "ops": [op]}


def model_partitioned(cls, amv):
    """The parts of a partitioned variable: shadows carry save-slice info of one full shadow."""
    with v1.variable_scope("p", partitioner=v1.fixed_size_partitioner(2)):
        pv = v1.get_variable("pv", [4, 3], initializer=v1.ones_initializer())
    parts = list(pv)
    ema = cls(0.9)
    with v1.variable_scope("scoped", partitioner=v1.fixed_size_partitioner(3)):
        op = ema.apply(parts)  # a partitioner in the caller's scope must not split shadows
    v1.train.Saver()
    return {"emas": [ema], "averaged": parts, "ops": [op]}


def model_duplicate_debias(cls, amv):
    """The same tensor twice in one debiased apply(), and assign_moving_average twice on one variable."""
    x = v1.placeholder(tf.float32, [3], name="x")
    ema = cls(0.9, zero_debias=True)
    op = ema.apply([x, x])
    with v1.variable_scope("scope1"):
        with v1.variable_scope("scope2"):
            var = v1.get_variable("foo", [3], initializer=v1.zeros_initializer(), trainable=False)
            first = amv(var, x, 0.9)
            second = amv(var, x, 0.8)
    return {"emas": [ema], "averaged": [x], "ops": [op, first, second]}


def model_assign_moving_average(cls, amv):
    """assign_moving_average directly: debiased and not, named, float64 variable with a Python decay."""
    x = v1.placeholder(tf.float32, [3], name="x")
    avg = v1.Variable(np.zeros(3, np.float32), name="avg", trainable=False)
    avg64 = v1.Variable(np.zeros(3, np.float64), name="avg64", trainable=False)
    half = v1.Variable(np.zeros(3, np.float16), name="half", trainable=False, use_resource=False)
    ops = [
        amv(avg, x, 0.9),
        amv(avg64, tf.cast(x, tf.float64), 0.99, zero_debias=False, name="my_avg"),
        amv(half, tf.cast(x, tf.float16), tf.constant(0.7, tf.float64), zero_debias=False),
    ]
    return {"emas": [], "averaged": [], "ops": ops}


def model_tensor_decay_and_ref_tensor(cls, amv):
    """A decay computed from the step, and the raw VariableV2 tensor of a ref variable (colocated shadow)."""
    step = v1.train.get_or_create_global_step()
    decay = 1.0 - 1.0 / (2.0 + tf.cast(step, tf.float32))
    w = v1.Variable(np.ones(3, np.float32), name="w", use_resource=False)
    raw = v1.get_default_graph().get_tensor_by_name("w:0")  # op type VariableV2, dtype float32_ref
    x = v1.placeholder(tf.bfloat16, [2], name="x")
    ema = cls(decay, zero_debias=True)
    op = ema.apply([raw, x])
    return {"emas": [ema], "averaged": [raw, x], "ops": [op, v1.assign_add(step, 1)]}


def model_inside_control_flow(cls, amv):
    """apply() inside a tf.cond branch and a tf.while_loop body: shadows are created outside, once."""
    w = v1.Variable(np.ones(2, np.float32), name="w")
    x = v1.placeholder(tf.float32, [2], name="x")
    pred = v1.placeholder(tf.bool, [], name="pred")
    in_cond = cls(0.9, zero_debias=True)
    in_loop = cls(0.5, name="Loop")

    def branch():
        with tf.control_dependencies([in_cond.apply([w, x])]):
            return tf.identity(w)

    chosen = tf.cond(pred, branch, lambda: tf.identity(w))

    def body(i):
        with tf.control_dependencies([in_loop.apply([w])]):
            return i + 1

    loop = tf.while_loop(lambda i: i < 3, body, [0])[0]
    return {"emas": [in_cond, in_loop], "averaged": [w, x], "ops": [chosen, loop]}


def model_caller_variable_scope(cls, amv):
    """apply() in a caller's variable scope with its own dtype, initializer, use_resource=False and custom getter."""

    def renaming_getter(getter, name, *args, **kwargs):
        return getter(name + "_g", *args, **kwargs)

    w = v1.Variable(np.ones(2, np.float32), name="w")
    t = tf.identity(w * 2.0, name="t")
    ema = cls(0.9, zero_debias=True)
    with v1.variable_scope(
        "caller", dtype=tf.float16, initializer=v1.ones_initializer(), use_resource=False,
        custom_getter=renaming_getter,
    ):
        op = ema.apply([w, t])
    return {"emas": [ema], "averaged": [w, t], "ops": [op]}


MODELS = {
    fn.__name__[len("model_"):]: fn
    for fn in (
        model_resource_num_updates,
        model_ref_variables,
        model_zero_debias_tensors,
        model_unknown_shape_tensors,
        model_scopes_and_names,
        model_training_loop,
        model_partitioned,
        model_duplicate_debias,
        model_assign_moving_average,
        model_tensor_decay_and_ref_tensor,
        model_inside_control_flow,
        model_python_numbers,
        model_caller_variable_scope,
    )
}
MODEL_STEPS = 6


def _summarize(graph, result):
    """Everything comparable about a built model, as plain data."""
    return {
        "variables": [variable_summary(v) for v in v1.global_variables() + v1.local_variables()],
        "collections": collections(graph),
        "averages": [
            [
                (None if ema.average(v) is None else ema.average(v).name, ema.average_name(v))
                for v in result["averaged"]
            ]
            for ema in result["emas"]
        ],
        "restore": [
            {
                "default": sorted((k, v.name) for k, v in ema.variables_to_restore().items()),
                "given": sorted((k, v.name) for k, v in ema.variables_to_restore(result["averaged"][:1]).items()),
            }
            for ema in result["emas"]
        ],
        "ops": [(op.name, op.type, sorted(c.name for c in op.control_inputs)) for op in map(_as_op, result["ops"])],
        "before": result.get("before"),
        "slices": [
            (v.name, v._save_slice_info.spec if v._save_slice_info else None)  # pylint: disable=protected-access
            for v in v1.global_variables()
        ],
    }


def _as_op(x):
    """The operation of a tensor, or the operation itself."""
    return x if isinstance(x, tf.Operation) else x.op


def _run_model(sess, graph, ops):
    """Runs MODEL_STEPS steps: random float variables and placeholders, then each op in turn; returns all values."""
    rng = np.random.default_rng(123)
    placeholders = sorted(
        (op for op in graph.get_operations() if op.type == "Placeholder" and not op.name.startswith("perturb")),
        key=lambda op: op.name,
    )
    trainable = [v for v in v1.trainable_variables() if v.dtype.base_dtype.is_floating]
    with tf.name_scope("perturb"):
        perturb = [(v, v1.placeholder(v.dtype.base_dtype, v.shape)) for v in trainable]
        perturb_ops = [v1.assign(v, ph) for v, ph in perturb]
    feeds = []
    for _ in range(MODEL_STEPS):
        feed = {}
        for op in placeholders:
            out = op.outputs[0]
            shape = out.shape.as_list() if out.shape.rank is not None else [3]
            feed[out] = random_value(rng, out.dtype, shape)
        feeds.append(feed)
    initialize(sess, feeds[0])  # a shadow of a tensor of unknown shape takes its shape from the feed
    variables = {v.op.name: v for v in v1.global_variables()}
    history = []
    for feed in feeds:
        sess.run(perturb_ops, {ph: random_value(rng, ph.dtype, _known_shape(v)) for v, ph in perturb})
        for op in ops:  # one run each: two updates of one variable in one run would race
            sess.run(op, feed)
        history.append(sess.run(variables))
    return history


def _known_shape(var):
    """The variable's shape, or its initial value's if the variable was made shapeless."""
    shape = var.shape if var.shape.rank is not None else var.initial_value.shape
    return shape.as_list()


@functools.lru_cache(maxsize=None)
def built_model(name):
    """{implementation: {"graph_def", "summary", "history"}} for one model, built and run once per session."""

    def program(cls, amv):
        g = v1.get_default_graph()
        result = MODELS[name](cls, amv)
        graph_def = normalized_graph_def(g)
        summary = _summarize(g, result)
        with v1.Session(graph=g) as sess:
            history = _run_model(sess, g, result["ops"])
        return {"graph_def": graph_def, "summary": summary, "history": history}

    return build_each(program, BUILDS)


@pytest.mark.parametrize("model", list(MODELS))
def test_reference_graph_switch_builds_the_reference_graph(model):
    """With TF1_EMA_FAST=0 the GraphDef built with our class equals the reference's, up to cond uids."""
    built = built_model(model)
    assert built[OURS_REFERENCE_GRAPH]["graph_def"] == built[REFERENCE]["graph_def"]
    assert_same_histories(built[OURS_REFERENCE_GRAPH]["history"], built[REFERENCE]["history"])




@pytest.mark.parametrize("model", list(MODELS))
def test_variables_equal_the_reference(model):
    """Variable names, dtypes, shapes, trainability, kind (resource/ref), colocation and devices match."""
    built = built_model(model)
    assert built[OURS]["summary"]["variables"] == built[REFERENCE]["summary"]["variables"]
    assert built[OURS]["summary"]["slices"] == built[REFERENCE]["summary"]["slices"]


@pytest.mark.parametrize("model", list(MODELS))
def test_collections_equal_the_reference(model):
    """Every graph collection (GLOBAL, TRAINABLE, MOVING_AVERAGE_VARIABLES, ...) holds the same names in order."""
    built = built_model(model)
    assert built[OURS]["summary"]["collections"] == built[REFERENCE]["summary"]["collections"]


@pytest.mark.parametrize("model", list(MODELS))
def test_average_names_equal_the_reference(model):
    """average() and average_name() agree for every averaged object, before and after apply()."""
    built = built_model(model)
    for key in ("averages", "before"):
        assert built[OURS]["summary"][key] == built[REFERENCE]["summary"][key]


@pytest.mark.parametrize("model", list(MODELS))
def test_variables_to_restore_equals_the_reference(model):
    """variables_to_restore(), default and with moving_avg_variables given, maps the same names alike."""
    built = built_model(model)
    assert built[OURS]["summary"]["restore"] == built[REFERENCE]["summary"]["restore"]


@pytest.mark.parametrize("model", list(MODELS))
def test_update_ops_equal_the_reference(model):
    """apply() and assign_moving_average return ops of the same names and types (and, TF1_EMA_FAST=0, control inputs)."""
    built = built_model(model)
    assert built[OURS_REFERENCE_GRAPH]["summary"]["ops"] == built[REFERENCE]["summary"]["ops"]
    names_and_types = [op[:2] for op in built[REFERENCE]["summary"]["ops"]]
    assert [op[:2] for op in built[OURS]["summary"]["ops"]] == names_and_types


@pytest.mark.parametrize("model", list(MODELS))
def test_model_runs_bit_for_bit_like_the_reference(model):
    """Six steps of random variables and feeds leave every variable of the graph bit-identical."""
    built = built_model(model)
    assert_same_histories(built[OURS]["history"], built[REFERENCE]["history"])


def assert_same_histories(ours, ref):
    """Asserts two ``_run_model`` histories hold the same variables with the same bits at every step."""
    assert_bits_equal(ref, ours, path="history")


# ---------------------------------------------------------------------------
# Names, pinned literally
# ---------------------------------------------------------------------------


def test_shadow_names_follow_the_variable_and_are_uniquified():
    """Shadows are <var>/<name>, with _1 for a second EMA of one name, alike names in scopes kept apart."""

    def model(cls, amv):
        w = v1.Variable(1.0, name="w")
        with v1.variable_scope("a"):
            aw = v1.get_variable("w", [], initializer=v1.ones_initializer())
        with v1.name_scope("a"):
            nw = v1.Variable(2.0, name="w")
        first, second, custom = cls(0.9), cls(0.5), cls(0.8, name="Swa")
        first.apply([w, aw, nw])
        second.apply([w])
        custom.apply([w])
        return [first.average(v).name for v in (w, aw, nw)] + [second.average(w).name, custom.average(w).name]

    assert assert_same_as_tf1(model) == (
        "ok",
        [
            "w/ExponentialMovingAverage:0",
            "a/w/ExponentialMovingAverage:0",
            "a_1/w/ExponentialMovingAverage:0",  # name_scope("a") after variable_scope("a") is a_1
            "w/ExponentialMovingAverage_1:0",
            "w/Swa:0",
        ],
    )


def test_apply_returns_a_grouped_op_named_like_the_reference():
    """apply() returns a NoOp named after the EMA (ExponentialMovingAverage, then _1); a second apply adds no shadow."""

    def model(cls, amv):
        w = v1.Variable([1.0, 2.0], name="w")
        ema = cls(0.9)
        first = ema.apply([w])
        count = len(v1.global_variables())
        again = ema.apply([w])
        custom = cls(0.9, name="Swa").apply([w])
        return [(op.name, op.type) for op in (first, again, custom)], count == len(v1.global_variables()) - 1

    assert assert_same_as_tf1(model) == (
        "ok",
        ([("ExponentialMovingAverage", "NoOp"), ("ExponentialMovingAverage_1", "NoOp"), ("Swa", "NoOp")], True),
    )


def test_biased_and_local_step_names_including_the_1_suffix():
    """Debiasing creates <shadow>/biased and /local_step; a second debiased update of one shadow gets _1."""

    def model(cls, amv):
        x = v1.placeholder(tf.float32, [2], name="x")
        cls(0.9, zero_debias=True).apply([x, x])
        with v1.variable_scope("scope1"), v1.variable_scope("scope2"):
            var = v1.get_variable("foo", [])
            updates = [amv(var, 0.0, 1.0), amv(var, 0.0, 0.9)]
        return [v.name for v in v1.global_variables()], [u.name for u in updates]

    names, updates = assert_same_as_tf1(model)[1]
    assert names == [
        "x/ExponentialMovingAverage:0",
        "x/ExponentialMovingAverage/biased:0",
        "x/ExponentialMovingAverage/local_step:0",
        "x/ExponentialMovingAverage/biased_1:0",
        "x/ExponentialMovingAverage/local_step_1:0",
        "scope1/scope2/foo:0",
        # The reference's docstring example: the variable scope is entered again inside itself.
        "scope1/scope2/scope1/scope2/foo/biased:0",
        "scope1/scope2/scope1/scope2/foo/local_step:0",
        "scope1/scope2/scope1/scope2/foo/biased_1:0",
        "scope1/scope2/scope1/scope2/foo/local_step_1:0",
    ]
    assert updates == ["scope1/scope2/AssignMovingAvg", "scope1/scope2/AssignMovingAvg_1"]


def test_average_name_before_and_after_apply():
    """average_name() predicts the graph-unique name before apply() and reports the shadow's name after it."""

    def model(cls, amv):
        w = v1.Variable(1.0, name="w")
        t = tf.identity(w, name="t")
        with v1.name_scope("w/ExponentialMovingAverage"):
            tf.constant(0.0)  # takes the name in the graph, but not in the variable scope store
        ema = cls(0.9)
        before = [ema.average_name(w), ema.average_name(t), cls(0.9, name="Swa").average_name(w)]
        ema.apply([w, t])
        return before, [ema.average_name(w), ema.average_name(t)]

    # TF1 parity: the prediction says _1 (the name scope took the name), apply() does not.
    assert assert_same_as_tf1(model) == (
        "ok",
        (
            ["w/ExponentialMovingAverage_1", "t/ExponentialMovingAverage", "w/Swa"],
            ["w/ExponentialMovingAverage", "t/ExponentialMovingAverage"],
        ),
    )


def _restore_model(cls):
    """w averaged, v trainable never averaged, n untrainable, m untrainable but averaged, and a step."""
    step = v1.train.get_or_create_global_step()
    w = v1.Variable(1.0, name="w")
    v = v1.Variable(2.0, name="v")
    n = v1.Variable(3.0, name="n", trainable=False)
    m = v1.Variable(4.0, name="m", trainable=False)
    ema = cls(0.9, num_updates=step)
    ema.apply([w, m])
    return ema, w


def test_variables_to_restore_maps_shadow_names_to_variables():
    """variables_to_restore() maps shadows to their variables, and (TF1 wart) a never-averaged trainable one too."""

    def model(cls, amv):
        ema, w = _restore_model(cls)
        default = sorted((k, v.name) for k, v in ema.variables_to_restore().items())
        given = sorted((k, v.name) for k, v in ema.variables_to_restore([w]).items())
        return default, given

    default, given = assert_same_as_tf1(model)[1]
    assert default == [
        ("global_step", "global_step:0"),
        ("m/ExponentialMovingAverage", "m:0"),
        ("n", "n:0"),
        ("v/ExponentialMovingAverage", "v:0"),  # no checkpoint has it: TF issues 3684, 11839
        ("w/ExponentialMovingAverage", "w:0"),
    ]
    assert given == [
        ("global_step", "global_step:0"),
        ("m", "m:0"),
        ("m/ExponentialMovingAverage", "m/ExponentialMovingAverage:0"),
        ("n", "n:0"),
        ("v", "v:0"),
        ("w/ExponentialMovingAverage", "w:0"),
    ]


def test_variables_to_restore_averaged_only_maps_only_averaged_variables():
    """Our opt-in averaged_only=True maps a never-averaged trainable variable from its own name."""
    with fresh_graph():
        ema, _ = _restore_model(tf1_ema.ExponentialMovingAverage)
        got = sorted((k, v.name) for k, v in ema.variables_to_restore(averaged_only=True).items())
        assert sorted(ema.variables_to_restore(averaged_only=False)) == sorted(ema.variables_to_restore())
    assert got == [
        ("global_step", "global_step:0"),
        ("m/ExponentialMovingAverage", "m:0"),
        ("n", "n:0"),
        ("v", "v:0"),
        ("w/ExponentialMovingAverage", "w:0"),
    ]


def test_collections_hold_what_the_reference_puts_there():
    """Shadows are global and untrainable; MOVING_AVERAGE_VARIABLES gets the variable once per shadow, never tensors."""

    def model(cls, amv):
        w = v1.Variable(1.0, name="w")
        x = v1.placeholder(tf.float32, [], name="x")
        cls(0.9).apply([w, x])
        cls(0.5).apply([w])
        keys = (v1.GraphKeys.GLOBAL_VARIABLES, v1.GraphKeys.TRAINABLE_VARIABLES, v1.GraphKeys.MOVING_AVERAGE_VARIABLES)
        return {key: [v.name for v in v1.get_collection(key)] for key in keys}

    assert assert_same_as_tf1(model) == (
        "ok",
        {
            "variables": [
                "w:0", "w/ExponentialMovingAverage:0", "x/ExponentialMovingAverage:0", "w/ExponentialMovingAverage_1:0"
            ],
            "trainable_variables": ["w:0"],
            "moving_average_variables": ["w:0", "w:0"],
        },
    )


def test_shadows_follow_the_variable_kind_and_colocate_with_it():
    """Shadows are resource/ref like their variable, untrainable, colocated with variables but not with placeholders."""

    def model(cls, amv):
        res = v1.Variable(1.0, name="res")
        ref = v1.Variable(1.0, name="ref", use_resource=False)
        raw = v1.get_default_graph().get_tensor_by_name("ref:0")
        x = v1.placeholder(tf.float32, [], name="x")
        ema = cls(0.9, name="A")
        ema.apply([res, ref, x])
        other = cls(0.9, name="B")
        other.apply([raw])
        shadows = [ema.average(res), ema.average(ref), ema.average(x), other.average(raw)]
        return [(s.name, s.op.type, s.trainable, [c.decode() for c in s.op.colocation_groups()]) for s in shadows]

    assert assert_same_as_tf1(model) == (
        "ok",
        [
            ("res/A:0", "VarHandleOp", False, ["loc:@res"]),
            ("ref/A:0", "VariableV2", False, ["loc:@ref"]),
            ("x/A:0", "VarHandleOp", False, ["loc:@x/A"]),
            # A tensor's shadow takes the default kind (resource), but colocates with the VariableV2 op.
            ("ref/B:0", "VarHandleOp", False, ["loc:@ref"]),
        ],
    )


# ---------------------------------------------------------------------------
# Initial values and control dependencies
# ---------------------------------------------------------------------------


def _initial_values(cls, amv):
    """Shadow values right after initialization in the four ways a TF1 program can get there."""
    out = {}
    w = v1.Variable([1.0, 2.0], name="w")
    x = v1.placeholder(tf.float64, [3], name="x")
    ema = cls(0.9)
    ema.apply([w, x])
    # Initialized, assigned, THEN averaged: only the new shadow is initialized.
    late = v1.Variable([1.0, 2.0], name="late")
    late_ema = cls(0.9, name="Late")
    with v1.Session() as sess:
        sess.run(late.initializer)
        sess.run(v1.assign(late, [5.0, 6.0]))
        late_ema.apply([late])
        sess.run(late_ema.average(late).initializer)
        out["assigned_before_apply"] = sess.run(late_ema.average(late)).tolist()
        out["variable_after"] = sess.run(late).tolist()
    with v1.Session() as sess:
        # The variable itself never initialized: the shadow takes its initial value.
        sess.run(ema.average(w).initializer)
        out["uninitialized_variable"] = sess.run(ema.average(w)).tolist()
        out["variable_still_uninitialized"] = [b.decode() for b in sess.run(v1.report_uninitialized_variables([w]))]
    with v1.Session() as sess:
        initialize(sess)
        out["variable"] = sess.run(ema.average(w)).tolist()
        out["tensor"] = sess.run(ema.average(x)).tolist()
    return out


def test_shadow_initial_values():
    """A shadow starts at its variable's value (the current one if already initialized), a tensor's at zeros."""
    assert assert_same_as_tf1(_initial_values) == (
        "ok",
        {
            "assigned_before_apply": [5.0, 6.0],
            "variable_after": [5.0, 6.0],
            "uninitialized_variable": [1.0, 2.0],
            "variable_still_uninitialized": ["w"],
            "variable": [1.0, 2.0],
            "tensor": [0.0, 0.0, 0.0],
        },
    )


def _control_ancestors(op):
    """The ops ``op`` waits for through its control inputs, transitively."""
    seen, pending = set(), list(op.control_inputs)
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending += current.control_inputs
    return seen


def test_apply_under_control_dependencies_creates_shadows_outside_them():
    """Shadows made under control_dependencies([train_op]) initialize without train_op; the update runs after it."""

    def model(cls, amv):
        w = v1.Variable(1.0, name="w")
        train = v1.assign_add(w, 1.0, name="train")
        with tf.control_dependencies([train]):
            update = cls(0.9).apply([w])
        shadow = [v for v in v1.global_variables() if v.name == "w/ExponentialMovingAverage:0"][0]
        with tf.control_dependencies([update]):  # the update op composes as a dependency too
            read_after_update = [tf.identity(w), tf.identity(shadow)]
        with v1.Session() as sess:
            initialize(sess)
            after_init = sess.run([w, shadow])
            after_update = sess.run(read_after_update)
        return {
            "initializer_control_inputs": [op.name for op in shadow.initializer.control_inputs],
            "update_runs_after_train_op": _as_op(train) in _control_ancestors(update),
            "after_init": [float(x) for x in after_init],
            "after_update": [float(x) for x in after_update],
        }

    result = assert_same_as_tf1(model)[1]
    assert result["initializer_control_inputs"] == []
    assert result["update_runs_after_train_op"]
    assert result["after_init"] == [1.0, 1.0]
    expected = _math.ema_step(np.float32(1.0), np.float32(2.0), _math.one_minus_decay(0.9))
    assert result["after_update"] == [2.0, float(expected)]


def test_ref_variables_break_global_variables_initializer_in_both():
    """TF 2.21 quirk, shared: with ref variables, global_variables_initializer() fails on the shadow's cond in both."""

    def model(cls, amv):
        w = v1.Variable([1.0, 2.0], name="w", use_resource=False)
        cls(0.9).apply([w])
        with v1.Session() as sess:
            try:
                sess.run(v1.global_variables_initializer())
            except tf.errors.FailedPreconditionError as e:
                return type(e).__name__, "uninitialized value w" in e.message
            return "no error", None

    assert assert_same_as_tf1(model) == ("ok", ("FailedPreconditionError", True))


# ---------------------------------------------------------------------------
# Errors: same type, same message, raised at the same point
# ---------------------------------------------------------------------------


def _error_int_variable(cls, amv):
    cls(0.9).apply([v1.Variable(1.0, name="ok"), v1.Variable(1, name="count")])


def _error_int_tensor(cls, amv):
    cls(0.9).apply([tf.constant([1, 2], name="ints")])


def _error_float64_decay(cls, amv):
    cls(tf.constant(0.9, tf.float64)).apply([v1.Variable(1.0, name="w")])


def _error_int32_decay(cls, amv):
    cls(tf.constant(1, tf.int32)).apply([v1.Variable(1.0, name="w")])


def _error_string_decay(cls, amv):
    cls("0.9").apply([v1.Variable(1.0, name="w")])


def _error_zero_debias_unknown_shape(cls, amv):
    cls(0.9, zero_debias=True).apply([v1.placeholder(tf.float32, [None, 3], name="x")])


def _error_single_variable_not_a_list(cls, amv):
    cls(0.9).apply(v1.Variable([1.0, 2.0], name="w"))


def _error_python_float_in_var_list(cls, amv):
    cls(0.9).apply([1.0])


def _error_reuse_scope_without_shadow(cls, amv):
    w = v1.Variable(1.0, name="w")
    with v1.variable_scope("s", reuse=True):
        cls(0.9).apply([w])


def _error_shadow_name_taken_by_an_op(cls, amv):
    w = v1.Variable(1.0, name="w")
    tf.constant(0.0, name="w/ExponentialMovingAverage")
    cls(0.9).apply([w])


def _error_assign_moving_average_shape_mismatch(cls, amv):
    amv(v1.Variable(np.zeros(3, np.float32), name="avg"), tf.ones([4]), 0.9, zero_debias=False)


def _error_assign_moving_average_dtype_mismatch(cls, amv):
    amv(v1.Variable(np.zeros(3, np.float32), name="avg"), tf.ones([3], tf.float64), 0.9)


def _error_assign_moving_average_int_variable_debiased(cls, amv):
    amv(v1.Variable([0, 0], name="count"), tf.constant([1, 2]), 0.9)


ERRORS = {fn.__name__[len("_error_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("_error_")}
ERROR_TYPES = {
    "assign_moving_average_dtype_mismatch": "TypeError",
    "assign_moving_average_int_variable_debiased": "TypeError",
    "assign_moving_average_shape_mismatch": "ValueError",
    "float64_decay": "ValueError",
    "int32_decay": "ValueError",
    "int_tensor": "TypeError",
    "int_variable": "TypeError",
    "python_float_in_var_list": "AttributeError",
    "reuse_scope_without_shadow": "ValueError",
    "shadow_name_taken_by_an_op": "ValueError",
    "single_variable_not_a_list": "OperatorNotAllowedInGraphError",
    "string_decay": "TypeError",
    "zero_debias_unknown_shape": "ValueError",
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_match_the_reference(case):
    """Bad input raises the same exception type and message as the reference, leaving the same graph behind."""
    result = assert_same_as_tf1(ERRORS[case])
    assert result[:2] == ("raises", ERROR_TYPES[case]), result


def test_missing_decay_error_matches_the_reference():
    """ExponentialMovingAverage() without a decay raises the reference's TypeError and message."""
    assert assert_same_as_tf1(lambda cls, amv: cls()) == (
        "raises", "TypeError", "ExponentialMovingAverage.__init__() missing 1 required positional argument: 'decay'"
    )


def test_none_decay_fails_in_apply_like_the_reference():
    """ExponentialMovingAverage(None) constructs, and apply() raises ValueError: None values not supported."""

    def model(cls, amv):
        ema = cls(None)
        name = ema.name  # the constructor accepted it
        ema.apply([v1.Variable(1.0, name="w")])
        return name

    assert assert_same_as_tf1(model) == ("raises", "ValueError", "None values not supported.")


def test_int_variable_error_names_the_variable():
    """An int variable raises TypeError: The variables must be half, float, or double: <name>."""
    assert assert_same_as_tf1(_error_int_variable) == (
        "raises", "TypeError", "The variables must be half, float, or double: count:0"
    )


def test_tensor_in_eager_mode_raises_type_error():
    """In eager mode a tensor in var_list raises the reference's TypeError before anything is created."""
    assert tf.executing_eagerly()
    results = {
        label: outcome(lambda: cls(0.9).apply([tf.constant(1.0)])) for label, (cls, _) in IMPLEMENTATIONS.items()
    }
    assert_bits_equal(results[REFERENCE], results[OURS])
    assert results[OURS] == (
        "raises",
        "TypeError",
        "tf.train.ExponentialMovingAverage does not support non-Variable tensors when eager execution is enabled.",
    )


def test_generator_var_list_is_the_one_deliberate_difference():
    """Deliberate fix: a generator var_list gets shadows here; TF1 iterated it twice and silently averaged nothing."""

    def model(cls, amv):
        w = v1.Variable(1.0, name="w")
        op = cls(0.9).apply(v for v in [w])
        return [v.name for v in v1.global_variables()], len(op.control_inputs)

    results = differential(model, builds=(REFERENCE, OURS))
    assert results[REFERENCE].outcome == ("ok", (["w:0"], 0))
    assert results[OURS].outcome == ("ok", (["w:0", "w/ExponentialMovingAverage:0"], 1))


# ---------------------------------------------------------------------------
# assign_moving_average directly
# ---------------------------------------------------------------------------

AMV_STEPS = 50
AMV_DECAYS = {
    "python_float": lambda: 0.99,
    "float32_tensor": lambda: tf.constant(0.99, tf.float32),
    "float64_tensor": lambda: tf.constant(0.99, tf.float64),
}
AMV_CASES = [
    (dtype, decay_kind, zero_debias, kind)
    for dtype in S.FLOAT_DTYPES
    for decay_kind in AMV_DECAYS
    for zero_debias in (False, True)
    for kind in ("resource", "ref")
]


def amv_case_id(case):
    """``resource-float16-decay_python_float-debias``: readable and a valid TF name."""
    dtype, decay_kind, zero_debias, kind = case
    return "-".join([kind, dtype, "decay_" + decay_kind, "debias" if zero_debias else "biased"])


@pytest.fixture(scope="module")
def amv_runs():
    """Both assign_moving_average through AMV_STEPS updates of every AMV case: {impl: {variable: values}}."""

    def program(cls, amv):
        feeds, updates = {}, []
        for i, case in enumerate(AMV_CASES):
            dtype, decay_kind, zero_debias, kind = case
            name = amv_case_id(case)
            initial = S.random_sequence(300 + i, dtype, (3,), 1)[0]
            var = v1.Variable(initial, name=name, trainable=False, use_resource=(kind == "resource"))
            feeds[name] = v1.placeholder(var.dtype.base_dtype, [3])
            updates.append(amv(var, feeds[name], AMV_DECAYS[decay_kind](), zero_debias=zero_debias))
        variables = {v.op.name: v for v in v1.global_variables()}
        history = {name: [] for name in variables}
        with v1.Session() as sess:
            initialize(sess)
            for t in range(AMV_STEPS):
                feed = {
                    ph: S.random_sequence(i, AMV_CASES[i][0], (3,), AMV_STEPS)[t]
                    for i, ph in enumerate(feeds.values())
                }
                sess.run(updates, feed)  # each update touches only its own variables
                for name, value in sess.run(variables).items():
                    history[name].append(value)
        return {name: np.stack(values) for name, values in history.items()}

    return build_each(program)


@pytest.mark.parametrize("case", AMV_CASES, ids=[amv_case_id(c) for c in AMV_CASES])
def test_assign_moving_average_bit_for_bit(amv_runs, case):
    """assign_moving_average leaves the variable (and biased/local_step) as the reference's, over 50 steps."""
    name = amv_case_id(case)
    ours, ref = amv_runs[OURS], amv_runs[REFERENCE]
    assert sorted(ours) == sorted(ref)
    mine = sorted(k for k in ref if k == name or k.startswith(name + "/"))
    assert len(mine) == (3 if case[2] else 1)
    for key in mine:
        assert_bits_equal(ref[key], ours[key], path=key)


@pytest.mark.parametrize(
    "dtype, decay, expected",
    [
        # 1 - 0.99 is taken in Python (float64), converted to float32, then cast to the variable's dtype.
        ("float64", 0.99, np.float64(np.float32(1.0 - 0.99))),
        ("float32", 0.99, np.float32(1.0 - 0.99)),
        # A float64 decay tensor: 1 - decay in float64, then cast down to float32.
        ("float32", "float64_tensor", np.float32(np.float64(1.0) - np.float64(0.99))),
    ],
    ids=["float64_var-python_decay", "float32_var-python_decay", "float32_var-float64_decay_tensor"],
)
def test_assign_moving_average_decay_cast(dtype, decay, expected):
    """The first update of 0 towards 1 exposes one_minus_decay exactly as the reference casts it."""

    def model(cls, amv):
        var = v1.Variable(np.zeros((), dtype), name="avg")
        d = tf.constant(0.99, tf.float64) if decay == "float64_tensor" else decay
        update = amv(var, tf.ones((), dtype), d, zero_debias=False)
        with v1.Session() as sess:
            initialize(sess)
            sess.run(update)
            return sess.run(var)

    status, got = assert_same_as_tf1(model)
    assert status == "ok"
    assert_bits_equal(np.asarray(expected, dtype), got)


# ---------------------------------------------------------------------------
# Random problems, ours against theirs
# ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(S.ema_problems(max_steps=10), st.booleans(), st.sampled_from(["resource", "ref", "tensor"]))
def test_random_problems_match_the_reference(problem, zero_debias, kind):
    """For random dtype, shape, decay, step counters and values, every variable is bit-identical to the reference's."""

    def program(cls, amv):
        dtype = tf.as_dtype(problem["initial"].dtype)
        value = v1.placeholder(dtype, problem["shape"], name="value")
        if kind == "tensor":
            averaged, assign = value, tf.no_op()
        else:
            averaged = v1.Variable(problem["initial"], name="w", use_resource=(kind == "resource"))
            assign = v1.assign(averaged, value)
        step = v1.Variable(0, dtype=tf.int64, trainable=False, name="step")
        step_in = v1.placeholder(tf.int64, [])
        set_step = v1.assign(step, step_in)
        with_step = problem["num_updates"] is not None
        ema = cls(problem["decay"], num_updates=step if with_step else None, zero_debias=zero_debias)
        update = ema.apply([averaged])
        variables = {v.op.name: v for v in v1.global_variables()}
        history = []
        with v1.Session() as sess:
            initialize(sess)
            for i, x in enumerate(problem["values"]):
                sess.run([assign, set_step], {value: x, step_in: problem["num_updates"][i] if with_step else 0})
                sess.run(update, {value: x})
                history.append(sess.run(variables))
        return history

    results = build_each(program)
    assert_bits_equal(results[REFERENCE], results[OURS], path="history")


# ---------------------------------------------------------------------------
# Eager mode (TF2), one fresh process per implementation
# ---------------------------------------------------------------------------

# Eager variable names are uniquified process-wide, so each implementation runs
# the same script in its own process; the script prints one JSON line.
EAGER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tf1_ema

    if sys.argv[1] == "ours":
        cls, amv = tf1_ema.ExponentialMovingAverage, tf1_ema.assign_moving_average
    else:
        cls, amv = tf.compat.v1.train.ExponentialMovingAverage, tf.__internal__.train.assign_moving_average
    assert tf.executing_eagerly()

    def dump(x):
        x = np.asarray(x)
        return [x.dtype.name, list(x.shape), x.tobytes().hex()]

    out = {"values": [], "names": {}}
    rng = np.random.default_rng(0)
    dtypes = [np.float16, "bfloat16", np.float32, np.float64]
    shapes = [(), (3,), (2, 3), (2,)]
    variables = [
        tf.Variable(np.ones(s, np.float32), dtype=tf.as_dtype(d), name="v%d" % i)
        for i, (d, s) in enumerate(zip(dtypes, shapes))
    ]
    step = tf.Variable(0, dtype=tf.int64, name="step")
    decay = tf.Variable(0.95, name="decay")
    ema = cls(decay, num_updates=step)
    ema.apply(variables)
    for t in range(60):
        for v in variables:
            v.assign(tf.cast(rng.standard_normal(v.shape.as_list()) * 3.0, v.dtype))
        step.assign_add(1)
        if t == 30:
            decay.assign(0.8)
        ema.apply(variables)
        out["values"].append([dump(ema.average(v).numpy()) for v in variables])
    out["names"]["shadows"] = [ema.average(v).name for v in variables]
    out["names"]["average_name"] = [ema.average_name(v) for v in variables]
    out["names"]["trainable"] = [ema.average(v).trainable for v in variables]

    # apply() inside a tf.function: shadows are created on the first trace.
    x = tf.Variable(np.zeros(4), name="x")
    swa = cls(0.8, name="Swa")

    @tf.function
    def train_step(value):
        x.assign(value)
        swa.apply([x])
        return swa.average(x).read_value()

    for t in range(10):
        out["values"].append(dump(train_step(tf.constant(rng.standard_normal(4)))))
    out["names"]["function_shadow"] = swa.average(x).name

    # assign_moving_average with debiasing: record the hidden variables it creates.
    created = []

    def record(next_creator, **kwargs):
        var = next_creator(**kwargs)
        created.append(var.name)
        return var

    avg = tf.Variable(np.zeros(3, np.float32), name="avg")
    avg64 = tf.Variable(np.zeros(3, np.float64), name="avg64")
    with tf.variable_creator_scope(record):
        for t in range(10):
            value = rng.standard_normal(3)
            amv(avg, tf.constant(value.astype(np.float32)), 0.7, zero_debias=True)
            amv(avg64, tf.constant(value), 0.99, zero_debias=False)
            out["values"].append([dump(avg.numpy()), dump(avg64.numpy())])
    out["names"]["debias_variables"] = created
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def eager_runs():
    """{implementation: JSON output of EAGER_SCRIPT}; the two processes run concurrently."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    procs = {
        label: subprocess.Popen(
            [sys.executable, "-c", EAGER_SCRIPT, label], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env,
        )
        for label in IMPLEMENTATIONS
    }
    runs = {}
    for label, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, stderr[-3000:]
        runs[label] = json.loads(stdout.strip().splitlines()[-1])
    return runs


def _arrays(dumped):
    """The script's output with every ``dump`` (a [dtype, shape, hex] bits record) decoded into its array."""
    if isinstance(dumped, list) and len(dumped) == 3 and isinstance(dumped[0], str) and isinstance(dumped[2], str):
        return from_bits_record(dumped)
    return [_arrays(x) for x in dumped] if isinstance(dumped, list) else dumped


@pytest.mark.slow
def test_eager_values_equal_the_reference(eager_runs):
    """In eager mode shadows of tf.Variables (all four dtypes, step counter, decay Variable) match bit for bit."""
    ours, ref = eager_runs[OURS]["values"], eager_runs[REFERENCE]["values"]
    assert len(ours) == len(ref) == 80
    assert_bits_equal(_arrays(ref), _arrays(ours), path="eager values")


@pytest.mark.slow
def test_eager_names_equal_the_reference(eager_runs):
    """In eager mode shadow names, average_name(), and debias variable names match the reference's."""
    assert eager_runs[OURS]["names"] == eager_runs[REFERENCE]["names"]
    names = eager_runs[REFERENCE]["names"]
    assert names["shadows"][0] == "v0/ExponentialMovingAverage:0"
    assert names["trainable"] == [False] * 4
    assert names["function_shadow"] == "x/Swa:0"
    # Shared wart: eagerly, every debiased call makes fresh zero biased/local_step variables.
    assert names["debias_variables"] == ["avg/biased:0", "avg/local_step:0"] * 10


# ---------------------------------------------------------------------------
# Checkpoints interoperate both ways
# ---------------------------------------------------------------------------

CHECKPOINT_STEPS = 30
DIRECTIONS = [(REFERENCE, OURS), (OURS, REFERENCE)]
DIRECTION_IDS = ["stock_to_ours", "ours_to_stock"]


def _checkpoint_model(cls):
    """A TF1 training graph: resource and ref variables of three dtypes, a step, a debiased tensor average."""
    step = v1.train.get_or_create_global_step()
    w = v1.Variable(np.ones((2, 3), np.float32), name="w")
    b = v1.Variable(np.zeros(3, np.float64), name="b", use_resource=False)
    with v1.variable_scope("layer"):
        h = v1.get_variable("h", [4], tf.float16, initializer=v1.ones_initializer())
    x = v1.placeholder(tf.float32, [3], name="x")
    loss = tf.reduce_sum(x * 2.0, name="loss")
    ema = cls(0.99, num_updates=step, zero_debias=True)
    update = ema.apply([w, b, h, loss])
    placeholders = [v1.placeholder(v.dtype.base_dtype, v.shape) for v in (w, b, h)]
    return {
        "variables": [w, b, h],
        "x": x,
        "ema": ema,
        "update": update,
        "assigns": [v1.assign(v, ph) for v, ph in zip((w, b, h), placeholders)],
        "placeholders": placeholders,
        "increment": v1.assign_add(step, 1),
    }


def _train(sess, model, steps, seed):
    """Runs ``steps`` random training steps: new variable values, averages, step + 1."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        feed = {ph: random_value(rng, ph.dtype, ph.shape.as_list()) for ph in model["placeholders"]}
        sess.run(model["assigns"], feed)
        sess.run(model["update"], {model["x"]: random_value(rng, tf.float32, [3])})
        sess.run(model["increment"])


def _train_and_save(cls, path):
    """Trains the checkpoint model with ``cls`` and saves every variable; returns {var name: its shadow's value}."""
    with fresh_graph() as g:
        model = _checkpoint_model(cls)
        with v1.Session(graph=g) as sess:
            initialize(sess)
            _train(sess, model, CHECKPOINT_STEPS, seed=1)
            v1.train.Saver().save(sess, str(path))
            return {v.op.name: sess.run(model["ema"].average(v)) for v in model["variables"]}


def _restore_averages(cls, path):
    """An evaluation graph: loads the averages into the raw variables through cls.variables_to_restore()."""
    with fresh_graph() as g:
        step = v1.train.get_or_create_global_step()
        w = v1.Variable(np.zeros((2, 3), np.float32), name="w")
        b = v1.Variable(np.ones(3, np.float64), name="b", use_resource=False)
        with v1.variable_scope("layer"):
            h = v1.get_variable("h", [4], tf.float16, initializer=v1.zeros_initializer())
        ema = cls(0.99, num_updates=step)
        saver = v1.train.Saver(ema.variables_to_restore())
        with v1.Session(graph=g) as sess:
            saver.restore(sess, str(path))
            return {v.op.name: sess.run(v) for v in (w, b, h)}, int(sess.run(step))


@pytest.mark.parametrize("writer, reader", DIRECTIONS, ids=DIRECTION_IDS)
def test_checkpoint_averages_restore_into_variables(tmp_path, writer, reader):
    """A checkpoint written with one EMA loads its shadows into the variables via the other's variables_to_restore()."""
    shadows = _train_and_save(IMPLEMENTATIONS[writer][0], tmp_path / "model.ckpt")
    restored, step = _restore_averages(IMPLEMENTATIONS[reader][0], tmp_path / "model.ckpt")
    assert step == CHECKPOINT_STEPS
    assert sorted(restored) == ["b", "layer/h", "w"]
    assert_bits_equal(shadows, restored, path="restored")


def test_checkpoints_hold_the_same_keys_and_values(tmp_path):
    """Saving the same trained model with either EMA writes the same checkpoint keys, shapes and values."""
    contents = {}
    for label, (cls, _) in IMPLEMENTATIONS.items():
        _train_and_save(cls, tmp_path / label)
        reader = tf.train.load_checkpoint(str(tmp_path / label))
        keys = sorted(tf.train.list_variables(str(tmp_path / label)))
        contents[label] = (keys, {k: reader.get_tensor(k) for k, _ in keys})
    assert contents[OURS][0] == contents[REFERENCE][0]
    assert "loss/ExponentialMovingAverage/biased" in contents[OURS][1]
    assert_bits_equal(contents[REFERENCE][1], contents[OURS][1], path="checkpoint")


@pytest.mark.parametrize("writer, reader", DIRECTIONS, ids=DIRECTION_IDS)
def test_training_resumes_from_the_other_implementations_checkpoint(tmp_path, writer, reader):
    """Training resumed with one EMA from the other's checkpoint (biased/local_step included) continues bit for bit."""
    _train_and_save(IMPLEMENTATIONS[writer][0], tmp_path / "model.ckpt")
    finals = {}
    for label in (writer, reader):
        with fresh_graph() as g:
            model = _checkpoint_model(IMPLEMENTATIONS[label][0])
            with v1.Session(graph=g) as sess:
                v1.train.Saver().restore(sess, str(tmp_path / "model.ckpt"))
                _train(sess, model, 10, seed=2)
                finals[label] = {v.op.name: sess.run(v) for v in v1.global_variables()}
    assert_bits_equal(finals[writer], finals[reader], path="after resuming")


# ---------------------------------------------------------------------------
# tf.distribute.MirroredStrategy, two logical CPUs, graph mode
# ---------------------------------------------------------------------------

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, re
    import numpy as np
    import tensorflow as tf
    import tf1_ema

    v1 = tf.compat.v1
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    IMPLEMENTATIONS = {
        "ours": (tf1_ema.ExponentialMovingAverage, tf1_ema.assign_moving_average),
        "reference": (v1.train.ExponentialMovingAverage, tf.__internal__.train.assign_moving_average),
    }

    def local(strategy, sess, x):
        return [sess.run(v).tolist() for v in strategy.experimental_local_results(x)]

    out = {}
    for label, (cls, amv) in IMPLEMENTATIONS.items():
        with tf.Graph().as_default() as g:
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            with strategy.scope():
                step = v1.train.get_or_create_global_step()
                w = tf.Variable([1.0, 2.0], name="w")
                ema = cls(0.9, num_updates=step)
                cross_replica = ema.apply([w])  # cross-replica context
                avg = tf.Variable([0.0, 0.0], name="avg", trainable=False, aggregation=tf.VariableAggregation.MEAN)
                debiased = tf.Variable([0.0, 0.0], name="debiased", trainable=False,
                                       aggregation=tf.VariableAggregation.MEAN)

            def replica_fn():
                ctx = tf.distribute.get_replica_context()
                value = tf.cast(ctx.replica_id_in_sync_group, tf.float32) * tf.constant([1.0, 3.0]) + 1.0
                # In replica context the replicas' values are averaged (MEAN) before the update.
                return [amv(avg, value, 0.5, zero_debias=False), amv(debiased, value, 0.5), ema.apply([w])]

            with strategy.scope():
                per_replica = strategy.run(replica_fn)
            fetch = [strategy.experimental_local_results(x) for x in per_replica]
            shadow = ema.average(w)
            gd = g.as_graph_def()
            gd.ClearField("library")
            result = {
                "graph_def": re.sub(r"_(true|false)_[0-9]+", r"_\\1", str(gd)),
                "variables": [v.name for v in v1.global_variables()],
                "shadow": [type(shadow).__name__, shadow.name,
                           [(v.name, v.device) for v in strategy.experimental_local_results(shadow)]],
                "values": [],
            }
            with v1.Session() as sess:
                sess.run(v1.global_variables_initializer())
                for t in range(5):
                    sess.run(w.assign(w * 1.5 + 0.25))
                    sess.run(cross_replica)
                    sess.run(fetch)
                    sess.run(step.assign_add(1))
                    result["values"].append([local(strategy, sess, x) for x in (shadow, avg, debiased)])
            out[label] = result
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_matches_the_reference():
    """Under MirroredStrategy (2 CPUs, graph mode) shadows, MEAN-reduced updates, names and GraphDefs match."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    if proc.returncode != 0 and "MirroredStrategy" in proc.stderr and "not supported" in proc.stderr:
        pytest.skip("MirroredStrategy cannot run in graph mode here: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, ref = out[OURS], out[REFERENCE]
    assert ours["graph_def"] == ref["graph_def"]
    assert ours["variables"] == ref["variables"]
    assert ours["shadow"] == ref["shadow"]
    assert ref["shadow"][0] == "MirroredVariable" and len(ref["shadow"][2]) == 2
    assert_bits_equal(ref["values"], ours["values"], path="values")
    # Both replicas hold the same average, and the replica-context update used the MEAN of the values.
    shadow, avg, _ = ref["values"][0]
    assert shadow[0] == shadow[1] and avg[0] == avg[1] == [0.75, 1.25]


# ---------------------------------------------------------------------------
# Numeric corners shared with the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, value", [("float32", 2e-38), ("float64", 3e-308), ("bfloat16", 2e-38)])
def test_subnormal_results_flush_to_zero_in_both(dtype, value):
    """A shadow update landing in the subnormal range gives 0 in both (TF's CPU kernels flush to zero)."""

    def model(cls, amv):
        var = v1.Variable(np.zeros((), _math.as_dtype(dtype)), name="w")
        ema = cls(0.5)
        update = ema.apply([var])
        with v1.Session() as sess:
            initialize(sess)
            sess.run(v1.assign(var, np.asarray(value, _math.as_dtype(dtype))))
            sess.run(update)
            return float(sess.run(ema.average(var)))

    assert assert_same_as_tf1(model) == ("ok", 0.0)


def test_bfloat16_debiasing_with_decay_near_one_is_nan_in_both():
    """bfloat16 rounds 1 - 0.001 to 1, so the debias divisor 1 - 1 ** t is 0: NaN/inf shadows in both."""

    def model(cls, amv):
        x = v1.placeholder(tf.bfloat16, [2], name="x")
        ema = cls(0.999, zero_debias=True)
        update = ema.apply([x])
        with v1.Session() as sess:
            initialize(sess)
            sess.run(update, {x: np.array([0.0, 1.0], _math.as_dtype("bfloat16"))})
            return [str(v) for v in sess.run(ema.average(x)).astype(np.float32)]

    assert assert_same_as_tf1(model) == ("ok", ["nan", "inf"])
