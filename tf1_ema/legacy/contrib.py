"""A ``tf.contrib`` stand-in: what tutorials use most, mapped; the rest, one clear error.

``tf.contrib`` was deleted in TensorFlow 2.0. Old scripts mostly touched a handful of its
symbols -- regularizers, the Xavier initializer, ``flatten`` and friends from
``tf.contrib.layers``, the RNN cells in ``tf.contrib.rnn`` -- and those are provided here on
top of ``tf.compat.v1``. Everything else stops at the first touch with a message that names
the symbol and what replaced it, instead of an ``AttributeError`` deep inside the script.

The module imports no TensorFlow itself: ``build(tf)`` is handed ``tf.compat.v1``.

Differences from TF1 kept small on purpose and written down where they are:
``fully_connected``/``conv2d`` are ``tf.layers.Dense``/``Conv2D`` underneath, so their
variables are named ``kernel``/``bias`` (contrib said ``weights``/``biases``); checkpoints
written by TF1's contrib layers do not restore into them by name.
"""

import math
import numbers
import types
from typing import Any, Callable, Dict, Optional

from tf1_ema.legacy._stub import StubModule

__all__ = ["build", "REMOVED", "LAYERS_MAPPED", "RNN_MAPPED", "FRAMEWORK_MAPPED"]

_MIGRATE = "https://www.tensorflow.org/guide/migrate"

# tf.contrib.<name>  ->  what to use instead. Data, not code: extend freely.
REMOVED: Dict[str, str] = {
    "slim": "the tf-slim package (pip install tf-slim; import tf_slim as slim)",
    "learn": "tf.keras (for MNIST data, `from tensorflow.examples.tutorials.mnist import input_data` "
    "works under tf1-ema)",
    "estimator": "tf.keras (tf.estimator itself was removed in TensorFlow 2.16)",
    "keras": "tf.keras",
    "seq2seq": "tensorflow-addons' tfa.seq2seq (pip install tensorflow-addons) or Keras layers",
    "legacy_seq2seq": "Keras recurrent layers (tf.keras.layers.LSTM, GRU)",
    "distributions": "TensorFlow Probability (pip install tensorflow-probability; tfp.distributions)",
    "bayesflow": "TensorFlow Probability (pip install tensorflow-probability)",
    "crf": "tensorflow-addons' tfa.text.crf_log_likelihood",
    "image": "tf.image, or tensorflow-addons' tfa.image",
    "metrics": "tf.metrics",
    "losses": "tf.losses",
    "opt": "the tf.train optimizers, or tensorflow-addons' tfa.optimizers",
    "training": "tf.train (and a dict or argparse instead of HParams)",
    "data": "tf.data",
    "summary": "tf.summary",
    "tpu": "tf.distribute.TPUStrategy",
    "eager": "tf.compat.v1 (tf1-ema runs scripts in graph mode)",
    "cudnn_rnn": "tf.keras.layers.LSTM or GRU (they use cuDNN when they can)",
    "nn": "tf.nn",
    "signal": "tf.signal",
    "util": "tf.get_static_value, tf.make_ndarray and tf.make_tensor_proto",
    "predictor": "tf.saved_model.load",
    "quantize": "the TensorFlow Model Optimization Toolkit (pip install tensorflow-model-optimization)",
    "lite": "tf.lite",
    "gan": "TF-GAN (pip install tensorflow-gan)",
    "tensor_forest": "TensorFlow Decision Forests (pip install tensorflow-decision-forests)",
    "boosted_trees": "TensorFlow Decision Forests (pip install tensorflow-decision-forests)",
    "stateless": "tf.random.stateless_uniform and the other tf.random.stateless_* ops",
    "checkpoint": "tf.train.Checkpoint",
    "recurrent": "tf.keras.layers.RNN",
    "integrate": "TensorFlow Probability's tfp.math.ode",
    "graph_editor": "rebuilding the graph (there is no graph editor in TensorFlow 2)",
}

_LAYERS_REMOVED: Dict[str, str] = {
    "batch_norm": "tf.layers.batch_normalization (its moving-average updates land in "
    "tf.GraphKeys.UPDATE_OPS: run them under tf.control_dependencies)",
    "layer_norm": "tf.keras.layers.LayerNormalization",
    "embed_sequence": "tf.nn.embedding_lookup",
    "one_hot_encoding": "tf.one_hot",
    "optimize_loss": "optimizer.minimize(loss)",
    "conv2d_transpose": "tf.layers.conv2d_transpose",
    "separable_conv2d": "tf.layers.separable_conv2d",
    "repeat": "a Python loop",
    "stack": "a Python loop",
    "summarize_tensor": "tf.summary.histogram / tf.summary.scalar",
    "summarize_activation": "tf.summary.histogram",
    "summarize_collection": "tf.summary.histogram",
    "real_valued_column": "tf.feature_column.numeric_column",
    "sparse_column_with_keys": "tf.feature_column.categorical_column_with_vocabulary_list",
}

LAYERS_MAPPED = (
    "l1_regularizer", "l2_regularizer", "l1_l2_regularizer", "sum_regularizer", "apply_regularization",
    "xavier_initializer", "xavier_initializer_conv2d", "variance_scaling_initializer",
    "flatten", "fully_connected", "linear", "conv2d", "convolution2d", "max_pool2d", "avg_pool2d", "dropout",
)  # fmt: skip
RNN_MAPPED = (
    "RNNCell", "BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell", "MultiRNNCell",
    "DropoutWrapper", "ResidualWrapper", "DeviceWrapper", "LSTMStateTuple",
)  # fmt: skip
_RNN_FUNCTIONS = ("static_rnn", "static_bidirectional_rnn", "static_state_saving_rnn")
FRAMEWORK_MAPPED = ("get_or_create_global_step", "get_global_step")


def _removed(name: str, replacement: Optional[str]) -> str:
    if replacement is None:
        return (
            "tf.contrib.%s was removed in TensorFlow 2.0 and tf1-ema has no stand-in for it; "
            "the migration guide lists its replacement: %s" % (name, _MIGRATE)
        )
    return "tf.contrib.%s was removed in TensorFlow 2.0; use %s instead." % (name, replacement)


def _explain_contrib(attr: str) -> str:
    return _removed(attr, REMOVED.get(attr))


def _explain_layers(attr: str) -> str:
    replacement = _LAYERS_REMOVED.get(
        attr, "tf.layers / tf.keras.layers, or tf_slim's slim.%s (pip install tf-slim)" % attr
    )
    return _removed("layers." + attr, replacement)


def _explain_rnn(attr: str) -> str:
    return _removed("rnn." + attr, "tf.nn.rnn_cell or tf.keras.layers (e.g. tf.keras.layers.%s)" % attr)


def _explain_framework(attr: str) -> str:
    return _removed("framework." + attr, "tf.train / tf.compat.v1, or tf_slim (pip install tf-slim)")


def build(tf: Any) -> types.ModuleType:
    """Returns a fresh ``tensorflow.contrib`` stand-in built on ``tf``.

    Args:
        tf: the ``tf.compat.v1`` module (the real one; nothing is written to it).

    Returns:
        A module with ``layers``, ``rnn`` and ``framework`` stand-ins; any other
        ``tf.contrib.X`` raises ``ContribRemovedError`` naming ``X``'s replacement.
    """
    contrib = StubModule("tensorflow.contrib", "TF1's tf.contrib, as far as tutorials need it.", _explain_contrib)
    contrib.layers = _build_layers(tf)
    contrib.rnn = _build_rnn(tf)
    contrib.framework = _build_framework(tf)
    return contrib


def _build_rnn(tf: Any) -> types.ModuleType:
    def lookup(path: str) -> Callable[[], Any]:
        def resolve() -> Any:
            value = tf
            for part in path.split("."):
                value = getattr(value, part)
            return value

        return resolve

    lazy = {name: lookup("nn.rnn_cell." + name) for name in RNN_MAPPED}
    lazy.update({name: lookup("nn." + name) for name in _RNN_FUNCTIONS})
    return StubModule("tensorflow.contrib.rnn", "tf.contrib.rnn: the tf.nn.rnn_cell classes.", _explain_rnn, lazy)


def _build_framework(tf: Any) -> types.ModuleType:
    framework = StubModule("tensorflow.contrib.framework", "tf.contrib.framework: global-step helpers.", _explain_framework)
    for name in FRAMEWORK_MAPPED:
        setattr(framework, name, getattr(tf.train, name))
    return framework


# --------------------------------------------------------------------------- tf.contrib.layers


def _build_layers(tf: Any) -> types.ModuleType:
    layers = StubModule("tensorflow.contrib.layers", "tf.contrib.layers, mapped onto tf.layers.", _explain_layers)
    relu = _DefaultRelu(tf)

    def l1_regularizer(scale: float, scope: Optional[str] = None) -> Callable:
        """TF1's ``tf.contrib.layers.l1_regularizer``: ``weights -> scale * sum(|weights|)``."""
        if _is_zero_scale(scale):
            return lambda _: None

        def l1(weights):
            with tf.name_scope(scope, "l1_regularizer", [weights]) as name:
                my_scale = tf.convert_to_tensor(scale, dtype=weights.dtype.base_dtype, name="scale")
                return tf.multiply(my_scale, tf.reduce_sum(tf.abs(weights)), name=name)

        return l1

    def l2_regularizer(scale: float, scope: Optional[str] = None) -> Callable:
        """TF1's ``tf.contrib.layers.l2_regularizer``: ``weights -> scale * sum(weights**2) / 2``."""
        if _is_zero_scale(scale):
            return lambda _: None

        def l2(weights):
            with tf.name_scope(scope, "l2_regularizer", [weights]) as name:
                my_scale = tf.convert_to_tensor(scale, dtype=weights.dtype.base_dtype, name="scale")
                return tf.multiply(my_scale, tf.nn.l2_loss(weights), name=name)

        return l2

    def sum_regularizer(regularizer_list, scope: Optional[str] = None) -> Optional[Callable]:
        """TF1's ``tf.contrib.layers.sum_regularizer``: the sum of the given penalties."""
        regularizers = [r for r in regularizer_list if r is not None]
        if not regularizers:
            return None

        def sum_reg(weights):
            with tf.name_scope(scope, "sum_regularizer", [weights]) as name:
                penalties = [p for p in (r(weights) for r in regularizers) if p is not None]
                return tf.add_n(penalties, name=name) if penalties else None

        return sum_reg

    def l1_l2_regularizer(scale_l1: float = 1.0, scale_l2: float = 1.0, scope: Optional[str] = None) -> Callable:
        """TF1's ``tf.contrib.layers.l1_l2_regularizer``: L1 plus L2."""
        if _is_zero_scale(scale_l1) and _is_zero_scale(scale_l2):
            return lambda _: None
        return sum_regularizer(
            [l1_regularizer(scale_l1), l2_regularizer(scale_l2)], scope=scope or "l1_l2_regularizer"
        )

    def apply_regularization(regularizer: Callable, weights_list=None):
        """TF1's ``tf.contrib.layers.apply_regularization``: sums penalties into REGULARIZATION_LOSSES."""
        if not weights_list:
            weights_list = tf.get_collection(tf.GraphKeys.WEIGHTS)
        if not weights_list:
            raise ValueError("No weights to regularize.")
        with tf.name_scope("get_regularization_penalty", values=weights_list) as scope:
            penalties = [regularizer(w) for w in weights_list]
            penalties = [p if p is not None else tf.constant(0.0) for p in penalties]
            for p in penalties:
                if p.get_shape().ndims != 0:
                    raise ValueError("regularizer must return a scalar Tensor instead of a Tensor with rank %d." % p.get_shape().ndims)
            total = tf.add_n(penalties, name=scope)
            tf.add_to_collection(tf.GraphKeys.REGULARIZATION_LOSSES, total)
            return total

    def variance_scaling_initializer(
        factor: float = 2.0, mode: str = "FAN_IN", uniform: bool = False, seed: Optional[int] = None, dtype=tf.float32
    ) -> Callable:
        """TF1's ``tf.contrib.layers.variance_scaling_initializer`` (He init by default).

        With ``n`` the fan chosen by ``mode`` (FAN_IN, FAN_OUT or FAN_AVG = (in + out) / 2):
        uniform draws from [-sqrt(3 * factor / n), sqrt(3 * factor / n)], otherwise a
        truncated normal with stddev sqrt(1.3 * factor / n).
        """
        if not dtype.is_floating:
            raise TypeError("Cannot create initializer for non-floating point type.")
        if mode not in ("FAN_IN", "FAN_OUT", "FAN_AVG"):
            raise TypeError("Unknown mode %s [FAN_IN, FAN_OUT, FAN_AVG]" % mode)
        return _VarianceScaling(tf, factor, mode, uniform, seed, dtype)

    def xavier_initializer(uniform: bool = True, seed: Optional[int] = None, dtype=tf.float32) -> Callable:
        """TF1's ``tf.contrib.layers.xavier_initializer``: variance scaling, factor 1, FAN_AVG."""
        return variance_scaling_initializer(factor=1.0, mode="FAN_AVG", uniform=uniform, seed=seed, dtype=dtype)

    def flatten(inputs, outputs_collections=None, scope: Optional[str] = None):
        """``tf.contrib.layers.flatten``: keeps the batch dimension, flattens the rest (tf.layers.Flatten)."""
        return _collect(tf, outputs_collections, tf.layers.Flatten(name=scope).apply(inputs))

    def weights_and_biases(normalizer_fn, weights_initializer, weights_regularizer, biases_initializer,
                           biases_regularizer, trainable, reuse) -> dict:  # fmt: skip
        """The layer arguments contrib's fully_connected and conv2d share: no bias under a normalizer, Xavier."""
        return dict(
            use_bias=normalizer_fn is None and biases_initializer is not None,
            kernel_initializer=weights_initializer or xavier_initializer(),
            bias_initializer=tf.zeros_initializer() if biases_initializer in (None, _DEFAULT) else biases_initializer,
            kernel_regularizer=weights_regularizer,
            bias_regularizer=biases_regularizer,
            trainable=trainable,
            _reuse=reuse,
        )

    def fully_connected(
        inputs, num_outputs: int, activation_fn=relu, normalizer_fn=None, normalizer_params=None,
        weights_initializer=None, weights_regularizer=None, biases_initializer=_DEFAULT,
        biases_regularizer=None, reuse=None, variables_collections=None, outputs_collections=None,
        trainable: bool = True, scope: Optional[str] = None,
    ):  # fmt: skip
        """``tf.contrib.layers.fully_connected`` on ``tf.layers.Dense``: relu and Xavier by default.

        The kernel joins ``tf.GraphKeys.WEIGHTS`` and the bias ``BIASES``, as in TF1, so
        ``apply_regularization`` finds them. Variables are named ``kernel``/``bias``.
        """
        layer = tf.layers.Dense(
            num_outputs,
            activation=None,
            name=scope or "fully_connected",
            **weights_and_biases(normalizer_fn, weights_initializer, weights_regularizer, biases_initializer,
                                 biases_regularizer, trainable, reuse),  # fmt: skip
        )
        return _finish_layer(tf, layer, inputs, activation_fn, normalizer_fn, normalizer_params,
                             variables_collections, outputs_collections)  # fmt: skip

    def conv2d(
        inputs, num_outputs: int, kernel_size, stride=1, padding: str = "SAME", data_format=None, rate=1,
        activation_fn=relu, normalizer_fn=None, normalizer_params=None, weights_initializer=None,
        weights_regularizer=None, biases_initializer=_DEFAULT, biases_regularizer=None, reuse=None,
        variables_collections=None, outputs_collections=None, trainable: bool = True, scope: Optional[str] = None,
    ):  # fmt: skip
        """``tf.contrib.layers.conv2d`` on ``tf.layers.Conv2D``: SAME padding, relu, Xavier by default."""
        layer = tf.layers.Conv2D(
            num_outputs,
            kernel_size,
            strides=stride,
            padding=padding,
            data_format=_channels(data_format),
            dilation_rate=rate,
            name=scope or "Conv",
            **weights_and_biases(normalizer_fn, weights_initializer, weights_regularizer, biases_initializer,
                                 biases_regularizer, trainable, reuse),  # fmt: skip
        )
        return _finish_layer(tf, layer, inputs, activation_fn, normalizer_fn, normalizer_params,
                             variables_collections, outputs_collections)  # fmt: skip

    def max_pool2d(inputs, kernel_size, stride=2, padding="VALID", data_format="NHWC", outputs_collections=None, scope=None):
        """``tf.contrib.layers.max_pool2d`` on ``tf.layers.MaxPooling2D``."""
        layer = tf.layers.MaxPooling2D(kernel_size, stride, padding=padding, data_format=_channels(data_format), name=scope)
        out = layer.apply(inputs)
        return _collect(tf, outputs_collections, out)

    def avg_pool2d(inputs, kernel_size, stride=2, padding="VALID", data_format="NHWC", outputs_collections=None, scope=None):
        """``tf.contrib.layers.avg_pool2d`` on ``tf.layers.AveragePooling2D``."""
        layer = tf.layers.AveragePooling2D(kernel_size, stride, padding=padding, data_format=_channels(data_format), name=scope)
        out = layer.apply(inputs)
        return _collect(tf, outputs_collections, out)

    def dropout(inputs, keep_prob=0.5, noise_shape=None, is_training=True, outputs_collections=None, scope=None, seed=None):
        """``tf.contrib.layers.dropout``: keeps ``keep_prob`` of the units (tf.layers.Dropout)."""
        layer = tf.layers.Dropout(rate=1 - keep_prob, noise_shape=noise_shape, seed=seed, name=scope)
        out = layer.apply(inputs, training=is_training)
        return _collect(tf, outputs_collections, out)

    for function in (
        l1_regularizer, l2_regularizer, l1_l2_regularizer, sum_regularizer, apply_regularization,
        variance_scaling_initializer, xavier_initializer, flatten, fully_connected, conv2d,
        max_pool2d, avg_pool2d, dropout,
    ):  # fmt: skip
        function.__module__ = "tensorflow.contrib.layers"
        setattr(layers, function.__name__, function)
    layers.xavier_initializer_conv2d = xavier_initializer
    layers.convolution2d = conv2d
    layers.linear = lambda inputs, num_outputs, **kwargs: fully_connected(inputs, num_outputs, activation_fn=None, **kwargs)
    return layers


_DEFAULT = object()  # "argument not given", where None has its own meaning


class _DefaultRelu:
    """The default ``activation_fn``; resolved at call time so building needs no tf.nn access."""

    def __init__(self, tf: Any) -> None:
        self._tf = tf

    def __call__(self, features, name=None):
        return self._tf.nn.relu(features, name=name)

    def __repr__(self) -> str:
        return "tf.nn.relu"


def _is_zero_scale(scale: Any) -> bool:
    """Validates a regularizer scale like TF1 did; True when the penalty is switched off."""
    if isinstance(scale, numbers.Integral):
        raise ValueError("scale cannot be an integer: %s" % (scale,))
    if isinstance(scale, numbers.Real):
        if scale < 0.0:
            raise ValueError("Setting a scale less than 0 on a regularizer: %g" % scale)
        return scale == 0.0
    return False


def _channels(data_format: Optional[str]) -> str:
    if data_format in (None, "NHWC", "channels_last"):
        return "channels_last"
    if data_format in ("NCHW", "channels_first"):
        return "channels_first"
    raise ValueError("data_format has to be either NCHW or NHWC, got %r" % (data_format,))


def _collect(tf: Any, collections, output):
    if collections:
        tf.add_to_collections(collections, output)
    return output


def _finish_layer(tf, layer, inputs, activation_fn, normalizer_fn, normalizer_params, variables_collections,
                  outputs_collections):  # fmt: skip
    outputs = layer.apply(inputs)
    # TF1 parity: contrib layers registered their weights in WEIGHTS / BIASES.
    for variable, key in ((layer.kernel, tf.GraphKeys.WEIGHTS), (getattr(layer, "bias", None), tf.GraphKeys.BIASES)):
        if variable is None:
            continue
        for collection in [key] + list(variables_collections or []):
            if variable not in tf.get_collection(collection):
                tf.add_to_collection(collection, variable)
    # TF1 parity: the normalizer and activation ops live in the layer's scope (Conv/Relu).
    with tf.name_scope(outputs.op.name.rpartition("/")[0] + "/"):
        if normalizer_fn is not None:
            outputs = normalizer_fn(outputs, **(normalizer_params or {}))
        if activation_fn is not None:
            outputs = activation_fn(outputs)
    return _collect(tf, outputs_collections, outputs)


class _VarianceScaling:
    """The contrib variance-scaling initializer, as a ``tf.compat.v1`` initializer callable."""

    def __init__(self, tf: Any, factor: float, mode: str, uniform: bool, seed: Optional[int], dtype: Any) -> None:
        self._tf = tf
        self.factor, self.mode, self.uniform, self.seed, self.dtype = factor, mode, uniform, seed, dtype

    def __call__(self, shape, dtype=None, partition_info=None):
        tf = self._tf
        dtype = tf.as_dtype(dtype) if dtype is not None else self.dtype
        if partition_info is not None:
            shape = partition_info.full_shape
        shape = [int(d) for d in shape]
        if shape:
            fan_in = float(shape[-2]) if len(shape) > 1 else float(shape[-1])
            fan_out = float(shape[-1])
        else:
            fan_in = fan_out = 1.0
        for dim in shape[:-2]:
            fan_in *= dim
            fan_out *= dim
        n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "FAN_AVG": (fan_in + fan_out) / 2.0}[self.mode]
        if self.uniform:
            limit = math.sqrt(3.0 * self.factor / n)
            return tf.random_uniform(shape, -limit, limit, dtype, seed=self.seed)
        # TF1 parity: contrib used 1.3 (not the truncation-corrected 1/0.8796^2) here.
        stddev = math.sqrt(1.3 * self.factor / n)
        return tf.truncated_normal(shape, 0.0, stddev, dtype, seed=self.seed)

    def get_config(self) -> Dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode, "uniform": self.uniform, "seed": self.seed,
                "dtype": self.dtype.name}  # fmt: skip
