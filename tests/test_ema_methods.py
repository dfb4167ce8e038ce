"""The EMA's convenience methods reach the swap, audit and introspection modules."""

import numpy as np
import tensorflow as tf

import tf1_ema
from harness import assert_bits_equal

v1 = tf.compat.v1


def _model(session):
    """w averaged by decay 0.5 once, from [1, 2] towards [3, 4]: the shadow is [2, 3]; returns (w, ema, update)."""
    w = v1.Variable([1.0, 2.0], name="w")
    ema = tf1_ema.ExponentialMovingAverage(0.5)
    update = ema.apply([w])
    session.run(v1.global_variables_initializer())
    session.run(w.assign([3.0, 4.0]))
    session.run(update)
    return w, ema, update


def test_averaged_method_swaps_in_and_back(session):
    """ema.averaged(sess) shows the averages inside the block and the raw values after it."""
    w, ema, _ = _model(session)
    with ema.averaged(session):
        assert_bits_equal(np.float32([2.0, 3.0]), session.run(w))
    assert_bits_equal(np.float32([3.0, 4.0]), session.run(w))


def test_averaged_method_guards_the_update(session):
    """Running the EMA update inside ema.averaged(sess) raises RuntimeError."""
    _, ema, update = _model(session)
    with ema.averaged(session):
        try:
            session.run(update)
        except RuntimeError as err:
            assert "Refusing to run" in str(err)
        else:
            raise AssertionError("the update ran while the averages were swapped in")


def test_swap_and_copy_op_methods(session):
    """ema.swap_op() exchanges values and ema.copy_averages_op() copies the averages in."""
    w, ema, _ = _model(session)
    session.run(ema.swap_op())
    assert_bits_equal([np.float32([2.0, 3.0]), np.float32([3.0, 4.0])], session.run([w, ema.average(w)]))
    session.run(ema.swap_op())
    session.run(ema.copy_averages_op())
    assert_bits_equal(np.float32([2.0, 3.0]), session.run(w))


def test_audit_describe_and_lag_methods(session, tmp_path):
    """ema.audit(path), ema.describe(sess) and ema.lag() return the modules' reports and tensors."""
    w, ema, _ = _model(session)
    path = v1.train.Saver().save(session, str(tmp_path / "model"))
    report = ema.audit(path)
    assert report.ok and report["w"].status == "average"
    assert ema.describe(session).as_dict()["effective_decay"] is not None
    lag = session.run(ema.lag())["w"]
    np.testing.assert_allclose(lag, np.linalg.norm([1.0, 1.0]) / np.linalg.norm([3.0, 4.0]), rtol=1e-6)
