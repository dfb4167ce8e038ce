"""Each helper of tf1_ema._tf_internal, where TensorFlow internals (and their version differences) live.

These tests run on every TensorFlow the package declares (``make test`` on the
newest, ``make test-oldest`` on the oldest minor), so a release that moves one
of the internals fails here first, by name, instead of somewhere in the EMA.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tensorflow as tf

from tf1_ema import _tf_internal

v1 = tf.compat.v1
REPO = Path(__file__).resolve().parent.parent


def _sharding_of(tensor_or_variable):
    """The serialized XLA sharding of ``tensor_or_variable``, wherever this TensorFlow keeps it, or None."""
    from tensorflow.python.compiler.xla.experimental import xla_sharding  # pylint: disable=g-import-not-at-top

    proto = _tf_internal.xla_sharding(tensor_or_variable)
    if proto is not None:
        return proto.SerializeToString()
    return xla_sharding.get_tensor_sharding(tensor_or_variable)


def _declared_tensorflow_range() -> tuple:
    """pyproject.toml's ``tensorflow>=A.B,<C`` as ``((A, B), C)``."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    low, high = re.search(r'"tensorflow>=(\d+\.\d+),<(\d+)"', text).groups()
    return tuple(int(x) for x in low.split(".")), int(high)


def test_tensorflow_is_in_the_declared_range():
    """The TensorFlow under test is one that pyproject.toml declares."""
    (low_major, low_minor), high_major = _declared_tensorflow_range()
    major, minor = (int(x) for x in tf.__version__.split(".")[:2])
    assert (low_major, low_minor) <= (major, minor) and major < high_major, tf.__version__


def test_make_test_oldest_pins_the_lowest_declared_minor():
    """`make test-oldest` installs exactly the lowest TensorFlow and tf-keras minor that pyproject.toml declares."""
    (major, minor), _ = _declared_tensorflow_range()
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    pins = re.search(r"^OLDEST_PINS\s*:=(.*)$", makefile, re.MULTILINE).group(1).split()
    assert pins == ["'tensorflow==%d.%d.*'" % (major, minor), "'tf-keras==%d.%d.*'" % (major, minor)]


@pytest.mark.parametrize(
    "kind, expected", [("resource", True), ("ref", False), ("tensor", None)], ids=["resource", "ref", "tensor"]
)
def test_use_resource_like_follows_the_primary_kind(graph, kind, expected):
    """use_resource_like is True for a resource variable, False for a ref variable and None for a tensor."""
    if kind == "tensor":
        primary = tf.constant([1.0, 2.0])
    else:
        primary = v1.Variable([1.0, 2.0], use_resource=kind == "resource")
    assert _tf_internal.use_resource_like(primary) is expected


def test_shared_name_is_the_op_name_of_a_plain_variable(graph):
    """shared_name of a variable made under a scope is its op name, without the ':0' suffix."""
    with v1.variable_scope("outer"):
        resource = v1.Variable(1.0, name="w", use_resource=True)
        ref = v1.Variable(1.0, name="r", use_resource=False)
    assert _tf_internal.shared_name(resource) == "outer/w"
    assert _tf_internal.shared_name(ref) == "outer/r"


def test_update_replica_id_is_set_only_inside_an_update_call(graph):
    """update_replica_id is None outside strategy.extended.update and not None inside it."""
    variable = v1.Variable(1.0)
    seen = []

    def update(var):
        seen.append(_tf_internal.update_replica_id())
        return var.assign_add(1.0)

    assert _tf_internal.update_replica_id() is None
    tf.distribute.get_strategy().extended.update(variable, update)
    assert len(seen) == 1 and seen[0] is not None


def test_copy_slice_info_gives_a_part_shadow_the_full_shadow_slice(graph):
    """A slot of a partitioned variable's part gets the slice <full name>/<slot name> at the part's offset."""
    parts = list(v1.get_variable("p", shape=[4, 2], partitioner=v1.fixed_size_partitioner(2)))
    for part in parts:
        slot = v1.Variable(tf.zeros(part.shape), name=part.op.name + "/ExponentialMovingAverage")
        _tf_internal.copy_slice_info(part, slot)
        # pylint: disable-next=protected-access
        part_info, slot_info = part._save_slice_info, slot._save_slice_info
        assert slot_info.full_name == "p/ExponentialMovingAverage"
        assert (slot_info.full_shape, slot_info.var_offset, slot_info.var_shape) == (
            part_info.full_shape, part_info.var_offset, part_info.var_shape,
        )


def test_copy_slice_info_leaves_an_unpartitioned_slot_alone(graph):
    """copy_slice_info does nothing for a variable that is not part of a partitioned one, or for a tensor."""
    variable = v1.Variable([1.0, 2.0], name="w")
    slot = v1.Variable([0.0, 0.0], name="w/ExponentialMovingAverage")
    _tf_internal.copy_slice_info(variable, slot)
    _tf_internal.copy_slice_info(tf.constant(1.0), slot)
    assert not getattr(slot, "_save_slice_info", None)


def test_xla_sharding_is_none_without_an_annotation(graph):
    """xla_sharding is None for plain resource and ref variables, on TensorFlows with and without the attribute."""
    assert _tf_internal.xla_sharding(v1.Variable(1.0, use_resource=True)) is None
    assert _tf_internal.xla_sharding(v1.Variable(1.0, use_resource=False)) is None


def test_xla_sharding_reads_the_annotation_a_variable_keeps(graph):
    """Where TensorFlow keeps a sharding on the variable object, xla_sharding returns that proto."""
    from tensorflow.compiler.xla import xla_data_pb2  # pylint: disable=g-import-not-at-top

    variable = v1.Variable([1.0, 2.0], use_resource=True)
    if not hasattr(variable, "_set_xla_sharding"):
        assert _tf_internal.xla_sharding(variable) is None  # TF 2.16: the sharding lives on the op only
        return
    proto = xla_data_pb2.OpSharding(type=xla_data_pb2.OpSharding.REPLICATED)
    variable._set_xla_sharding(proto)  # pylint: disable=protected-access
    assert _tf_internal.xla_sharding(variable) == proto


def test_copy_xla_sharding_copies_to_a_same_rank_slot_only(graph):
    """copy_xla_sharding gives a same-rank slot the primary's sharding and leaves another rank's slot alone."""
    from tensorflow.python.compiler.xla.experimental import xla_sharding  # pylint: disable=g-import-not-at-top

    primary = v1.Variable([1.0, 2.0], use_resource=True)
    xla_sharding.replicate(primary)
    same_rank = v1.Variable([0.0, 0.0], use_resource=True)
    other_rank = v1.Variable(0.0, use_resource=True)
    assert _tf_internal.copy_xla_sharding(primary, same_rank) is same_rank
    assert _tf_internal.copy_xla_sharding(primary, other_rank) is other_rank
    assert _sharding_of(primary) is not None
    assert _sharding_of(same_rank) == _sharding_of(primary)
    assert _sharding_of(other_rank) is None


def test_mark_read_records_a_read_where_tensorflow_tracks_one(graph):
    """mark_read sets the read flag where the variable has one and is a harmless no-op elsewhere."""
    resource = v1.Variable(1.0, use_resource=True)
    ref = v1.Variable(1.0, use_resource=False)
    _tf_internal.mark_read(resource)
    _tf_internal.mark_read(ref)
    assert getattr(resource, "_variable_read", True) is True
    assert not hasattr(ref, "_variable_read")


def test_check_same_graph_raises_tf1s_error_for_two_graphs():
    """check_same_graph accepts values of one graph and raises TF1's ValueError for values of two."""
    with tf.Graph().as_default():
        a = tf.constant(1.0)
        b = v1.Variable(2.0)
        _tf_internal.check_same_graph(a, b, 0.5)
    with tf.Graph().as_default():
        c = tf.constant(3.0)
    with pytest.raises(ValueError, match="must be from the same graph"):
        _tf_internal.check_same_graph(a, c)


# ---------------------------------------------------------------------------
# Fast graph construction (tf1_ema._build, tf1_ema._update_op)
# ---------------------------------------------------------------------------


def test_fast_build_blocker_is_none_on_a_declared_tensorflow():
    """Every internal of the fast construction exists on the TensorFlow under test, so the fast path is open."""
    assert _tf_internal.fast_build_blocker() is None


def test_a_missing_internal_blocks_the_fast_path_and_raises_unsupported(monkeypatch):
    """With one internal missing, fast_build_blocker names it, _build's blockers report it, helpers raise Unsupported."""
    from tf1_ema import _build  # pylint: disable=g-import-not-at-top

    monkeypatch.setattr(_tf_internal, "_fast_blocker_state", {})
    monkeypatch.setattr(
        _tf_internal, "_FAST_REQUIREMENTS", (("ops.Graph._gone", lambda: tf.Graph._gone),)  # pylint: disable=protected-access
    )
    reason = _tf_internal.fast_build_blocker()
    assert reason == "this TensorFlow has no ops.Graph._gone"
    with tf.Graph().as_default() as g:
        assert _build.scope_blocker(g) == reason
        assert _build.update_blocker() == reason
        with pytest.raises(_tf_internal.Unsupported, match="TF1_EMA_FAST=0"):
            _tf_internal.create_op(g, "NoOp", [], [])


def test_a_missing_internal_builds_tf1s_shadows_the_reference_way(monkeypatch):
    """With the fast path blocked by a missing internal, apply() still builds and updates the shadows as TF1 does."""
    import numpy as np  # pylint: disable=g-import-not-at-top

    import tf1_ema  # pylint: disable=g-import-not-at-top

    monkeypatch.setattr(_tf_internal, "_fast_blocker_state", {"reason": "this TensorFlow has no X"})
    results = []
    for ema_class in (tf1_ema.ExponentialMovingAverage, v1.train.ExponentialMovingAverage):
        with tf.Graph().as_default():
            w = v1.Variable([1.0, 2.0], name="w")
            ema = ema_class(0.9)
            update = ema.apply([w])
            with v1.Session() as sess:
                sess.run(v1.global_variables_initializer())
                sess.run(w.assign([3.0, 5.0]))
                sess.run(update)
                results.append((ema.average(w).name, sess.run(ema.average(w))))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_op_callbacks_active_only_while_a_callback_is_installed():
    """op_callbacks_active is False normally and True while tf.debugging-style op callbacks are installed."""
    from tensorflow.python.framework import op_callbacks  # pylint: disable=g-import-not-at-top

    assert _tf_internal.op_callbacks_active() is False
    callback = lambda *args, **kwargs: None  # noqa: E731
    op_callbacks.add_op_callback(callback)
    try:
        assert _tf_internal.op_callbacks_active() is True
    finally:
        op_callbacks.remove_op_callback(callback)


def test_has_variable_creator_only_inside_a_creator_scope(graph):
    """has_variable_creator is True exactly inside tf.variable_creator_scope; a graph without a stack counts as one."""
    assert _tf_internal.has_variable_creator(graph) is False
    with tf.variable_creator_scope(lambda next_creator, **kwargs: next_creator(**kwargs)):
        assert _tf_internal.has_variable_creator(graph) is True
    assert _tf_internal.has_variable_creator(object()) is True


def test_fast_subscope_closing_leaves_counts_as_variable_scope_does(graph):
    """Variable-scope names opened and closed under FastSubscopeClosing are those TF gives without it."""

    def names():
        out = []
        for outer in ("a", "a", "b"):
            with v1.variable_scope(None, default_name=outer) as s:
                out.append(s.name)
                for _ in range(2):
                    with v1.variable_scope(None, default_name="c") as inner:
                        out.append(inner.name)
        return out

    expected = names()
    with tf.Graph().as_default():
        with _tf_internal.FastSubscopeClosing():
            got = names()
        assert "open_variable_scope" not in vars(_tf_internal.variable_scope_store())  # restored on exit
    assert got == expected


def test_guard_uninitialized_reads_other_variables_through_their_initialized_value(graph):
    """guard_uninitialized rewrites a read of another variable in an initial value into a guarded (cond) read."""
    other = v1.Variable(1.0, name="other", use_resource=False)
    value = other.read_value() * 2.0
    guarded = _tf_internal.guard_uninitialized("w/", value)
    assert guarded is not value
    assert any(op.type == "IsVariableInitialized" for op in graph.get_operations())


def test_create_op_builds_the_op_a_wrapper_builds(graph):
    """create_op makes the same NodeDef as the generated wrapper, with and without explicit input types."""
    x = tf.constant([1.0, 2.0], name="x")
    t = v1.AttrValue(type=tf.float32.as_datatype_enum)
    ours = _tf_internal.create_op(graph, "Identity", [x], [tf.float32], name="ours", attrs={"T": t})
    typed = _tf_internal.create_op(
        graph, "Identity", [x], [tf.float32], name="typed", input_types=[tf.float32], attrs={"T": t}
    )
    theirs = tf.identity(x, name="theirs").op
    for op in (ours, typed):
        assert (op.type, [i.name for i in op.inputs], dict(op.node_def.attr)) == (
            theirs.type, [i.name for i in theirs.inputs], dict(theirs.node_def.attr),
        )


def test_graph_container_is_the_enclosing_container(graph):
    """graph_container is "" by default and the name given to tf.compat.v1.container inside one."""
    assert _tf_internal.graph_container(graph) == ""
    with v1.container("box"):
        assert _tf_internal.graph_container(graph) == "box"


def test_variable_kind_predicates(graph):
    """is_ref_variable, is_resource_variable_instance, is_plain_variable, is_uncached_resource_variable tell kinds apart."""
    resource = v1.Variable(1.0, use_resource=True)
    ref = v1.Variable(1.0, use_resource=False)
    with v1.variable_scope("s", caching_device="/cpu:0"):
        cached = v1.get_variable("c", shape=[], use_resource=True)
    tensor = tf.constant(1.0)
    assert [_tf_internal.is_ref_variable(v) for v in (resource, ref, tensor)] == [False, True, False]
    assert [_tf_internal.is_resource_variable_instance(v) for v in (resource, ref, tensor)] == [True, False, False]
    assert [_tf_internal.is_plain_variable(v) for v in (resource, ref, tensor)] == [True, True, False]
    assert [_tf_internal.is_uncached_resource_variable(v) for v in (resource, ref, cached)] == [True, False, False]
    assert _tf_internal.caching_device(cached) == "/cpu:0" and _tf_internal.caching_device(resource) is None


def test_variable_ref_is_the_ref_tensor(graph):
    """variable_ref of a ref variable is its VariableV2 op's ref-typed output."""
    ref = v1.Variable(1.0, use_resource=False)
    tensor = _tf_internal.variable_ref(ref)
    assert tensor.op is ref.op and tensor.dtype.name == "float32_ref"


def test_save_slice_info_only_for_a_partitioned_part(graph):
    """save_slice_info is set for a part of a partitioned variable and None for a plain variable."""
    parts = list(v1.get_variable("p", shape=[4], partitioner=v1.fixed_size_partitioner(2)))
    assert _tf_internal.save_slice_info(parts[0]).full_name == "p"
    assert _tf_internal.save_slice_info(v1.Variable(1.0)) is None


def test_stock_assign_moving_average_is_tensorflows_own():
    """stock_assign_moving_average is the function TF's moving_averages module (and TF1 user code) calls."""
    import sys  # pylint: disable=g-import-not-at-top

    assign = _tf_internal.stock_assign_moving_average()
    assert assign is sys.modules["tensorflow.python.training.moving_averages"].assign_moving_average
    assert assign.__module__ == "tensorflow.python.training.moving_averages"


def test_stored_variables_is_get_variables_store(graph):
    """stored_variables holds what get_variable created, by name, and a name recorded there makes get_variable refuse it."""
    w = v1.get_variable("w", shape=[2])
    store = _tf_internal.stored_variables()
    assert store["w"] is w
    store["x"] = w
    with pytest.raises(ValueError, match="already exists"):
        v1.get_variable("x", shape=[2])


def test_shadow_sync_agg_trainable_is_get_variables_default_for_a_slot(graph):
    """shadow_sync_agg_trainable gives AUTO synchronization, no aggregation and not trainable."""
    assert _tf_internal.shadow_sync_agg_trainable("w/") == (
        tf.VariableSynchronization.AUTO, v1.VariableAggregation.NONE, False,
    )


def test_ref_dtype_is_the_reference_type():
    """ref_dtype of float32 is float32_ref, whose base dtype is float32."""
    assert _tf_internal.ref_dtype(tf.float32).name == "float32_ref"
    assert _tf_internal.ref_dtype(tf.float32).base_dtype == tf.float32


def _variable_state(variable):
    """What a slot variable's Python object says about itself (its ops aside)."""
    return (
        type(variable), variable.name, variable.trainable, variable.synchronization, variable.aggregation,
        variable.constraint, variable.dtype, variable.shape.as_list(), variable.initializer.name,
        variable.op.name, variable.value().op.type,
        _tf_internal.caching_device(variable), _tf_internal.save_slice_info(variable),
    )


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_variable_from_ops_matches_get_variable(use_resource):
    """fast _build's variable objects (resource_variable_from_ops / ref_variable_from_ops) say what get_variable's say."""
    import numpy as np  # pylint: disable=g-import-not-at-top

    from tf1_ema import _build  # pylint: disable=g-import-not-at-top

    states = []
    for fast in (True, False):
        with tf.Graph().as_default() as g:
            if fast:
                new = _build._new_resource_variable if use_resource else _build._new_ref_variable  # pylint: disable=protected-access
                variable = new(g, "s/", tf.constant([1.0, 2.0]), tf.float32)
            else:
                with v1.variable_scope("s"):
                    variable = v1.get_variable(
                        "", initializer=tf.constant([1.0, 2.0]), trainable=False, use_resource=use_resource
                    )
            assert g.get_collection(v1.GraphKeys.GLOBAL_VARIABLES) == [variable]
            with v1.Session() as sess:
                sess.run(variable.initializer)
                np.testing.assert_array_equal(sess.run(variable), [1.0, 2.0])
            states.append(_variable_state(variable))
    assert states[0] == states[1]


def test_attr_scope_sets_an_attribute_on_ops_built_inside(graph):
    """attr_scope gives ops created inside it the attribute (as Variable.__init__'s _class scope does)."""
    attr = v1.AttrValue(list=v1.AttrValue.ListValue(s=[b"loc:@w"]))
    with _tf_internal.attr_scope(graph, {"_class": attr}):
        inside = tf.constant(1.0)
    outside = tf.constant(2.0)
    assert list(inside.op.get_attr("_class")) == [b"loc:@w"]
    assert "_class" not in outside.op.node_def.attr
