"""Tests for tf1_ema.audit and for variables_to_restore(averaged_only=True), which it audits."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from harness import assert_bits_equal, assert_same_as_tf1
from tf1_ema.audit import AuditReport, AuditRow, audit_checkpoint
from tf1_ema.ema import ExponentialMovingAverage

v1 = tf.compat.v1


def build_model(w_dtype=tf.float32, w_shape=(2,)):
    """w and b trainable, a global step; returns them."""
    w = v1.get_variable("w", w_shape, w_dtype, initializer=v1.ones_initializer())
    b = v1.get_variable("b", [1], tf.float32, initializer=v1.zeros_initializer())
    step = v1.train.get_or_create_global_step()
    return w, b, step


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of a run that averaged w (not b) for three steps; returns (prefix, values)."""
    directory = tmp_path_factory.mktemp("ckpt")
    with tf.Graph().as_default():
        w, b, step = build_model()
        ema = ExponentialMovingAverage(0.5, step)
        move = tf.group(w.assign_add([1.0, 2.0]), b.assign_add([3.0]), step.assign_add(1))
        with tf.control_dependencies([move]):
            train = ema.apply([w])
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            prefix = saver.save(sess, str(directory / "model.ckpt"), global_step=step)
            values = dict(zip(["w", "b", "avg"], sess.run([w, b, ema.average(w)])))
    return prefix, values


def restore_with(restore_map, prefix, fetch):
    """Restores ``prefix`` through a Saver built from ``restore_map``, then fetches ``fetch``."""
    saver = v1.train.Saver(restore_map)
    with v1.Session() as sess:
        saver.restore(sess, prefix)
        return sess.run(fetch)


def test_default_map_reports_average_missing_and_raw(checkpoint):
    """TF1's default map: w from its average, never-averaged b missing (with the fix named), step raw."""
    prefix, _ = checkpoint
    with tf.Graph().as_default():
        build_model()
        report = audit_checkpoint(ExponentialMovingAverage(0.5), prefix)
    assert [(r.variable, r.key, r.status) for r in report] == [
        ("b", "b/ExponentialMovingAverage", "missing"),
        ("global_step", "global_step", "raw"),
        ("w", "w/ExponentialMovingAverage", "average"),
    ]
    assert "averaged_only=True" in report["b"].detail and "'b'" in report["b"].detail
    assert not report.ok and report.problems == (report["b"],)


def test_audit_predicts_the_saver(checkpoint):
    """When the report is not ok the Saver fails; when it is, w really receives its saved average."""
    prefix, values = checkpoint
    with tf.Graph().as_default():
        w, b, step = build_model()
        ema = ExponentialMovingAverage(0.5)
        ema.apply([w])
        assert not audit_checkpoint(ema, prefix).ok
        with pytest.raises(tf.errors.NotFoundError):
            restore_with(ema.variables_to_restore(), prefix, w)
        report = audit_checkpoint(ema, prefix, averaged_only=True)
        assert report.ok and report["w"].status == "average" and report["b"].status == "raw"
        got_w, got_b = restore_with(ema.variables_to_restore(averaged_only=True), prefix, [w, b])
    assert_bits_equal(values["avg"], got_w)
    assert_bits_equal(values["b"], got_b)


def test_averaged_only_without_apply_restores_everything_raw_and_says_so(checkpoint):
    """In an eval graph without apply(), averaged_only=True maps all raw; the report points at w's unused average."""
    prefix, _ = checkpoint
    with tf.Graph().as_default():
        build_model()
        report = audit_checkpoint(ExponentialMovingAverage(0.5), prefix, averaged_only=True)
    assert report.ok
    assert report.counts() == {"average": 0, "raw": 3, "missing": 0, "dtype mismatch": 0, "shape mismatch": 0}
    assert report["w"].detail.startswith("the checkpoint also has its average 'w/ExponentialMovingAverage'")
    with pytest.raises(AssertionError, match=r"3 of 3 variables.*\n.*variable.*checkpoint key"):
        report.assert_ok(allow_raw=False)


def test_dtype_mismatch_is_reported_and_the_saver_agrees(checkpoint):
    """A float64 w against a float32 checkpoint is a dtype mismatch, and a Saver indeed refuses it."""
    prefix, _ = checkpoint
    with tf.Graph().as_default():
        w, _, _ = build_model(w_dtype=tf.float64)
        ema = ExponentialMovingAverage(0.5)
        report = audit_checkpoint(ema, prefix, averaged_only=True)
        assert (report["w"].status, report["w"].detail) == (
            "dtype mismatch",
            "checkpoint holds float32, the variable is float64",
        )
        with pytest.raises(tf.errors.InvalidArgumentError):
            restore_with(ema.variables_to_restore(averaged_only=True), prefix, w)


def test_shape_mismatch_is_reported_where_the_saver_may_load_it_silently(checkpoint):
    """A w of shape [3] against a [2] checkpoint is a shape mismatch; the Saver refuses it or loads the wrong shape."""
    prefix, _ = checkpoint
    with tf.Graph().as_default():
        w, _, _ = build_model(w_shape=(3,))
        ema = ExponentialMovingAverage(0.5)
        report = audit_checkpoint(ema, prefix, averaged_only=True)
        assert (report["w"].status, report["w"].detail) == (
            "shape mismatch",
            "checkpoint holds [2], the variable is [3]",
        )
        try:
            value = restore_with(ema.variables_to_restore(averaged_only=True), prefix, w)
        except tf.errors.InvalidArgumentError:
            return
        assert value.shape != tuple(w.shape)


def test_var_list_and_restore_map_select_what_is_audited(checkpoint):
    """var_list limits the rows; a custom restore_map is audited as given; an unmapped variable is an error."""
    prefix, _ = checkpoint
    with tf.Graph().as_default():
        w, b, step = build_model()
        extra = v1.Variable(1.0, name="extra", trainable=False, collections=[])
        ema = ExponentialMovingAverage(0.5)
        assert [r.variable for r in audit_checkpoint(ema, prefix, var_list=[w])] == ["w"]
        c = v1.get_variable("c", [1])
        report = audit_checkpoint(ema, prefix, restore_map={"w/ExponentialMovingAverage": w, "b": c})
        assert [(r.variable, r.status) for r in report] == [("c", "raw"), ("w", "average")]
        assert report["c"].detail == "read from another variable's key"
        with pytest.raises(ValueError, match="extra"):
            audit_checkpoint(ema, prefix, var_list=[extra])


def test_checkpoint_directory_and_bad_paths(checkpoint, tmp_path):
    """A directory means its latest checkpoint; a path without a checkpoint raises FileNotFoundError."""
    prefix, _ = checkpoint
    with tf.Graph().as_default():
        build_model()
        ema = ExponentialMovingAverage(0.5)
        assert audit_checkpoint(ema, os.path.dirname(prefix)).checkpoint == prefix
        with pytest.raises(FileNotFoundError, match="No checkpoint in directory"):
            audit_checkpoint(ema, str(tmp_path))
        with pytest.raises(FileNotFoundError, match="Cannot read a checkpoint"):
            audit_checkpoint(ema, str(tmp_path / "nope.ckpt"))


def test_object_based_checkpoint_is_recognised(tmp_path):
    """A tf.train.Checkpoint file gives missing rows whose detail says it is object-based."""
    path = tf.train.Checkpoint(w=tf.Variable([1.0, 2.0])).write(str(tmp_path / "obj"))
    with tf.Graph().as_default():
        build_model()
        report = audit_checkpoint(ExponentialMovingAverage(0.5), path, averaged_only=True)
    assert report["w"].status == "missing"
    assert "object-based" in report["w"].detail


def test_missing_key_suggests_close_names(checkpoint):
    """A key absent from the checkpoint lists similar checkpoint keys, as after a scope rename."""
    prefix, _ = checkpoint
    with tf.Graph().as_default():
        with v1.variable_scope("model"):
            w, _, _ = build_model()
        report = audit_checkpoint(ExponentialMovingAverage(0.5), prefix, var_list=[w], averaged_only=True)
    assert report["model/w"].status == "missing"
    assert "close keys: w" in report["model/w"].detail


# ---------------------------------------------------------------------------
# The report, without TensorFlow
# ---------------------------------------------------------------------------


def sample_report():
    return AuditReport(
        checkpoint="/ckpt/model.ckpt-3",
        rows=(
            AuditRow("dense/kernel", "dense/kernel/ExponentialMovingAverage", "average"),
            AuditRow("b", "b/ExponentialMovingAverage", "missing", "not in the checkpoint"),
            AuditRow("x<y>", "x<y>", "raw", "a & b"),
        ),
    )


def test_report_text_is_an_aligned_table():
    """str(report) is a summary line and a table whose columns start at the same offsets on every row."""
    lines = str(sample_report()).splitlines()
    assert lines[0] == "Checkpoint audit of /ckpt/model.ckpt-3: 1 average, 1 raw, 1 missing: PROBLEMS"
    header, rows = lines[1], lines[2:]
    for column, first in [("checkpoint key", "dense/kernel/Exp"), ("status", "average")]:
        assert header.index(column) == rows[0].index(first)
    assert rows[1].index("b/Exp") == rows[0].index("dense/kernel/Exp")
    assert rows[1].endswith("missing  not in the checkpoint")


def test_report_html_escapes_and_colours():
    """_repr_html_ is a table with escaped names and the problem status in red."""
    page = sample_report()._repr_html_()
    assert "<code>x&lt;y&gt;</code>" in page and "a &amp; b" in page
    assert 'color:#cf222e;font-weight:bold">missing' in page


def test_report_dict_lookup_and_assert_ok():
    """to_dict is JSON-ready, report['name'] finds a row (':0' optional), assert_ok lists the bad rows."""
    report = sample_report()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["counts"]["missing"] == 1
    assert data["rows"][1] == {"variable": "b", "key": "b/ExponentialMovingAverage", "status": "missing",
                               "detail": "not in the checkpoint"}
    assert report["b:0"] is report.rows[1]
    with pytest.raises(KeyError, match="nope"):
        report["nope"]
    with pytest.raises(AssertionError, match=r"1 of 3 variables.*\n.*\n.*b/ExponentialMovingAverage +missing"):
        report.assert_ok()
    AuditReport("c", report.rows[:1]).assert_ok(allow_raw=False)
    assert str(AuditReport("c", ())) == "Checkpoint audit of c: no variables: OK"


def test_report_modules_import_without_tensorflow():
    """tf1_ema.audit and tf1_ema.introspect import without loading TensorFlow."""
    code = "import sys, tf1_ema.audit, tf1_ema.introspect; sys.exit('tensorflow' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# variables_to_restore(averaged_only=True)
# ---------------------------------------------------------------------------


def restore_names(ema, **kwargs):
    """``ema.variables_to_restore(**kwargs)`` as {checkpoint key: variable op name}."""
    return {key: var.op.name for key, var in ema.variables_to_restore(**kwargs).items()}


def test_variables_to_restore_default_matches_tf1_including_the_wart():
    """By default the map equals TF1's, mapping the never-averaged trainable b from a shadow name."""

    def program(cls, amv):
        w, b, step = build_model()
        ema = cls(0.5)
        ema.apply([w])
        return restore_names(ema)

    status, names = assert_same_as_tf1(program)
    assert status == "ok"
    assert names["b/ExponentialMovingAverage"] == "b"


def test_variables_to_restore_averaged_only_maps_only_real_averages():
    """averaged_only=True maps averaged and MOVING_AVERAGE_VARIABLES variables from shadows, the rest raw."""
    with tf.Graph().as_default():
        w, b, step = build_model()
        c = v1.get_variable("c", [1])
        ema = ExponentialMovingAverage(0.5)
        ema.apply([w])
        ExponentialMovingAverage(0.9, name="Other").apply([c])  # adds c to MOVING_AVERAGE_VARIABLES
        names = restore_names(ema, averaged_only=True)
        assert names == {
            "w/ExponentialMovingAverage": "w",
            "c/ExponentialMovingAverage": "c",
            "b": "b",
            "global_step": "global_step",
            "c/Other": "c/Other",
        }
        assert restore_names(ema, averaged_only=True, moving_avg_variables=[b])["b/ExponentialMovingAverage"] == "b"


HAS_SHADOW_DTYPE = "shadow_dtype" in __import__("inspect").signature(ExponentialMovingAverage).parameters


@pytest.mark.skipif(not HAS_SHADOW_DTYPE, reason="this ExponentialMovingAverage has no shadow_dtype")
def test_wider_shadows_are_flagged_and_the_suggested_route_works(tmp_path):
    """A float32 average of a float16 variable is a dtype mismatch with a fix that restores by name and swaps."""
    from tf1_ema import swap

    def model():
        w = v1.get_variable("w", [3], tf.float16, initializer=v1.ones_initializer())
        return w, ExponentialMovingAverage(0.5, shadow_dtype=tf.float32)

    with tf.Graph().as_default():
        w, ema = model()
        with tf.control_dependencies([w.assign_add(tf.constant([0.001, 0.002, 0.003], tf.float16))]):
            train = ema.apply([w])
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(3):
                sess.run(train)
            prefix = v1.train.Saver().save(sess, str(tmp_path / "m"))
            raw, avg = sess.run([w, ema.average(w)])
    with tf.Graph().as_default():
        w, ema = model()
        ema.apply([w])
        row = audit_checkpoint(ema, prefix)["w"]
        assert row.status == "dtype mismatch" and "averaged(ema, sess)" in row.detail
        by_name = {v.op.name: v for v in v1.global_variables()}
        assert audit_checkpoint(ema, prefix, restore_map=by_name).ok
        saver = v1.train.Saver(by_name)
        with v1.Session() as sess:
            saver.restore(sess, prefix)
            with swap.averaged(ema, sess):
                assert_bits_equal(avg.astype(np.float16), sess.run(w))
            assert_bits_equal(raw, sess.run(w))
