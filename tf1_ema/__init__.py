"""tf1_ema: TensorFlow 1's ExponentialMovingAverage, bit for bit, on today's TensorFlow.

The public surface is the EMA class and the update function, both mirroring
``tf.compat.v1.train.ExponentialMovingAverage`` and TF1's
``moving_averages.assign_moving_average``. They are imported lazily so that
``import tf1_ema`` (and the TensorFlow-free helpers such as ``tf1_ema._math``)
stays fast and leaves the environment untouched until TensorFlow is needed.
"""

__version__ = "0.1.0"

__all__ = ["ExponentialMovingAverage", "assign_moving_average", "__version__"]


def __getattr__(name: str):
    if name in ("ExponentialMovingAverage", "assign_moving_average"):
        from tf1_ema import ema

        return getattr(ema, name)
    raise AttributeError("module 'tf1_ema' has no attribute %r" % name)


def __dir__():
    return sorted(list(globals()) + ["ExponentialMovingAverage", "assign_moving_average"])
