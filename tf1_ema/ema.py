"""TF1's ExponentialMovingAverage, rebuilt on public ``tf.compat.v1`` graph ops.

``ExponentialMovingAverage`` and ``assign_moving_average`` here are drop-in
replacements for ``tf.compat.v1.train.ExponentialMovingAverage`` and TF1's
``moving_averages.assign_moving_average``: same shadow values bit for bit,
same variable and op names, same collections, same errors. The update is

    decay_t         = min(decay, (1 + num_updates) / (10 + num_updates))   # float32
    one_minus_decay = cast(1 - decay_t, var.dtype)
    shadow         -= (shadow - var) * one_minus_decay

with zero-debiasing (tensors only) as in ``tf1_ema._math``, the NumPy oracle
this module is tested against. Every TF1 quirk kept on purpose is marked with a
``# TF1 parity:`` comment.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

import tensorflow as tf

from tf1_ema import _tf_internal

_v1 = tf.compat.v1

FLOAT_DTYPES = (tf.bfloat16, tf.float16, tf.float32, tf.float64)
_VARIABLE_OP_TYPES = ("Variable", "VariableV2", "VarHandleOp")


def _strip_output_index(name: str) -> str:
    """``"w/ExponentialMovingAverage:0"`` -> ``"w/ExponentialMovingAverage"``."""
    return name[: -len(":0")]


def _name_scope() -> str:
    """The current name scope, in graph and eager mode alike."""
    return tf.get_current_name_scope()


# ---------------------------------------------------------------------------
# The update op
# ---------------------------------------------------------------------------


def assign_moving_average(variable, value, decay, zero_debias: bool = True, name: Optional[str] = None):
    """Updates ``variable`` towards ``value``: variable -= (variable - value) * (1 - decay).

    The exact counterpart of TF1's ``moving_averages.assign_moving_average``.
    ``1 - decay`` is computed once, in the dtype of ``decay`` (float32 for a
    Python float), and only then cast to the variable's dtype.

    With ``zero_debias=True`` the variable instead receives the debiased
    average biased / (1 - decay ** t) of a hidden ``biased`` accumulator that
    starts at zero, where t counts updates in a hidden ``local_step``; both are
    created under the variable's name (``<var>/biased``, ``<var>/local_step``)
    in the variable's dtype.

    Under a ``tf.distribute`` strategy, called in replica context, the values
    of the replicas are averaged (MEAN) before the update, as in TF1.

    Args:
      variable: the moving-average variable to update.
      value: a tensor with the same shape and dtype as ``variable``.
      decay: a float or scalar float tensor; typically close to 1.
      zero_debias: whether to debias as described above.
      name: name of the returned op; default ``"AssignMovingAvg"``.

    Returns:
      The updated value of ``variable`` (a tensor, or the assign op's output).
    """
    with _v1.name_scope(name, "AssignMovingAvg", [variable, value, decay]) as scope:
        # TF1 parity: `1.0 - decay` happens before the cast, in decay's own dtype.
        one_minus_decay = tf.convert_to_tensor(1.0 - decay, name="decay")
        if one_minus_decay.dtype != variable.dtype.base_dtype:
            one_minus_decay = tf.cast(one_minus_decay, variable.dtype.base_dtype)

        def update_fn(v, value):
            # TF1 parity: `v - (v - value) * k`, not `decay * v + k * value`;
            # the two round differently.
            return _v1.assign_sub(v, (v - value) * one_minus_decay, name=scope)

        def update(strategy, v, value):
            if zero_debias:
                return _zero_debias(strategy, v, value, one_minus_decay)
            return _update(strategy, v, update_fn, args=(value,))

        replica_context = tf.distribute.get_replica_context()
        if replica_context:

            def merge_fn(strategy, v, value):
                value = strategy.extended.reduce_to(tf.distribute.ReduceOp.MEAN, value, v)
                return update(strategy, v, value)

            return replica_context.merge_call(merge_fn, args=(variable, value))
        return update(tf.distribute.get_strategy(), variable, value)


def _update(strategy, var, update_fn, args):
    """Runs ``update_fn(var, *args)`` on every copy of ``var`` (cross-replica context only)."""
    if not tf.distribute.in_cross_replica_context():
        raise RuntimeError("tf1_ema internal error: _update needs a cross-replica context")
    if _tf_internal.update_replica_id() is not None:
        return update_fn(var, *args)
    return strategy.extended.update(var, update_fn, args)


def _unique_in_scope(name: str) -> str:
    """``name``, or ``name_1``, ``name_2``... so that it is new in the current variable scope.

    TF1 parity: a second debiased average of the same variable name gets
    ``biased_1`` / ``local_step_1`` rather than reusing the first one's.
    """
    scope = _v1.get_variable_scope()
    if scope.reuse:
        return name
    taken = {v.op.name for v in scope.global_variables()}
    full_name = scope.name + "/" + name
    if full_name not in taken:
        return name
    idx = 1
    while full_name + "_%d" % idx in taken:
        idx += 1
    return name + "_%d" % idx


def _zero_debias(strategy, unbiased_var, value, one_minus_decay):
    """Assigns the zero-debiased average of ``value`` to ``unbiased_var``.

    biased     <- biased - (biased - value) * one_minus_decay
    local_step <- local_step + 1
    unbiased   <- biased / (1 - (1 - one_minus_decay) ** local_step)
    """
    with _v1.variable_scope(_strip_output_index(unbiased_var.name), values=[unbiased_var, value, one_minus_decay]):
        with tf.init_scope():
            biased_initializer = _v1.zeros_initializer()
            local_step_initializer = _v1.zeros_initializer()
        with strategy.extended.colocate_vars_with(unbiased_var):
            # TF1 parity: both hidden variables take the shadow's dtype, so a
            # float16 local_step stops counting at 2048.
            biased_var = _v1.get_variable(
                _unique_in_scope("biased"),
                initializer=biased_initializer,
                shape=unbiased_var.get_shape(),
                dtype=unbiased_var.dtype,
                trainable=False,
            )
            local_step = _v1.get_variable(
                _unique_in_scope("local_step"),
                shape=[],
                dtype=unbiased_var.dtype,
                initializer=local_step_initializer,
                trainable=False,
            )

    def update_fn(v, value, biased_var, local_step):
        update_biased = _v1.assign_sub(biased_var, (biased_var - value) * one_minus_decay)
        update_local_step = local_step.assign_add(1)
        bias_factor = 1 - tf.pow(1.0 - one_minus_decay, update_local_step)
        return _v1.assign(v, update_biased / bias_factor, name=_name_scope() + "/")

    return _update(strategy, unbiased_var, update_fn, args=(value, biased_var, local_step))


# ---------------------------------------------------------------------------
# Shadow variables
# ---------------------------------------------------------------------------


def _slot_variable(primary, initial_value, validate_shape: bool, shape=None, dtype=None):
    """Creates one shadow of ``primary`` under the current variable scope, as TF1's slot creator does."""
    scope = _v1.get_variable_scope()
    # TF1 parity: a partitioner in the user's scope must not split the shadow.
    partitioner = scope.partitioner
    scope.set_partitioner(None)
    try:
        slot = _v1.get_variable(
            "",
            initializer=initial_value,
            trainable=False,
            use_resource=_tf_internal.use_resource_like(primary),
            shape=shape if callable(initial_value) else None,
            dtype=dtype,
            validate_shape=validate_shape,
        )
    finally:
        scope.set_partitioner(partitioner)
    _tf_internal.copy_slice_info(primary, slot)
    return _tf_internal.copy_xla_sharding(primary, slot)


def _create_shadow(primary, name: str, colocate: bool, initial_value, validate_shape: bool, shape=None, dtype=None):
    """Creates the shadow ``<primary>/<name>`` (uniquified like any variable scope)."""
    if isinstance(primary, tf.Variable):
        prefix = _tf_internal.shared_name(primary)
    else:
        prefix = primary.op.name
    with _v1.variable_scope(None, prefix + "/" + name):
        if colocate:
            with tf.distribute.get_strategy().extended.colocate_vars_with(primary):
                return _slot_variable(primary, initial_value, validate_shape, shape, dtype)
        return _slot_variable(primary, initial_value, validate_shape, shape, dtype)


def _shadow_of_variable(var, name: str):
    """A shadow that starts from the variable's value: its current one if initialized, else its initial one."""
    with tf.device(var.device):
        # TF1 parity: a variable that was initialized and changed before
        # apply() hands its *current* value to the shadow's initializer.
        initialized_value = _v1.cond(
            _v1.is_variable_initialized(var), var.read_value, lambda: var.initial_value
        )
    return _create_shadow(
        var, name, True, initialized_value, validate_shape=initialized_value.get_shape().is_fully_defined()
    )


def _shadow_of_tensor(tensor, name: str):
    """A zero-initialized shadow for a tensor, colocated with it only when it reads a variable op."""
    colocate = tensor.op.type in _VARIABLE_OP_TYPES
    shape = tensor.get_shape()
    if shape.is_fully_defined():
        return _create_shadow(
            tensor, name, colocate, _v1.zeros_initializer(), validate_shape=True, shape=shape, dtype=tensor.dtype
        )
    zeros = tf.zeros(tf.shape(tensor), dtype=tensor.dtype)
    return _create_shadow(tensor, name, colocate, zeros, validate_shape=False)


# ---------------------------------------------------------------------------
# The class
# ---------------------------------------------------------------------------


class ExponentialMovingAverage:
    """Maintains moving averages of variables, exactly as TF1's class of the same name.

    ``apply(var_list)`` creates one shadow variable per variable (named
    ``<var>/ExponentialMovingAverage`` by default, non-trainable, in
    ``GLOBAL_VARIABLES``) and returns one grouped op that updates them all:

        shadow -= (shadow - var) * (1 - decay)

    When ``num_updates`` is given, the decay used is
    min(decay, (1 + num_updates) / (10 + num_updates)), so that early averages
    move quickly. Shadows of variables start from the variable's value; shadows
    of tensors start at zero and, with ``zero_debias=True``, are debiased.

    Typical use::

        ema = ExponentialMovingAverage(0.999, global_step)
        with tf.control_dependencies([train_op]):
            train_op = ema.apply(tf.trainable_variables())
        ...
        saver = tf.train.Saver(ema.variables_to_restore())  # evaluate with averages

    Args:
      decay: float or scalar float32 tensor/variable, the decay rate.
      num_updates: optional step counter (any numeric tensor) for the warm-up.
      zero_debias: debias the averages of tensors (never of variables).
      name: the name of the shadows and of the update op's scope.
    """

    def __init__(
        self,
        decay,
        num_updates=None,
        zero_debias: bool = False,
        name: str = "ExponentialMovingAverage",
    ) -> None:
        # Attribute names follow TF1's: some TF1 code reads ema._averages.
        self._decay = decay
        self._num_updates = num_updates
        self._zero_debias = zero_debias
        self._name = name
        self._averages: Dict[Any, tf.Variable] = {}

    @property
    def name(self) -> str:
        """The name of this ExponentialMovingAverage object."""
        return self._name

    def apply(self, var_list: Optional[Iterable] = None):
        """Creates shadows for the variables in ``var_list`` and returns their update op.

        Shadows are created once per variable; a later ``apply()`` with the same
        variable reuses its shadow and adds another update for it. Shadows are
        created outside any enclosing control-dependency or function scope, so
        ``apply()`` composes with ``tf.control_dependencies([train_op])``.

        Args:
          var_list: variables or tensors (half, bfloat16, float or double);
            default ``tf.trainable_variables()``.

        Returns:
          One op, named like this object's ``name`` scope, that updates every
          shadow in ``var_list``.

        Raises:
          TypeError: for a variable of another dtype, or for a tensor in eager mode.
          ValueError: if ``decay`` is a tensor that is not float32.
        """
        if var_list is None:
            var_list = _v1.trainable_variables()
        # Deliberate fix: TF1 iterates var_list twice, so a generator silently
        # produced no averages there; a list behaves the same in both.
        var_list = list(var_list)
        for v in var_list:
            if isinstance(v, tf.Tensor) and _v1.executing_eagerly_outside_functions():
                raise TypeError(
                    "tf.train.ExponentialMovingAverage does not support non-Variable"
                    " tensors when eager execution is enabled."
                )
        zero_debias_shadows = set()
        for var in var_list:
            if var.dtype.base_dtype not in FLOAT_DTYPES:
                raise TypeError("The variables must be half, float, or double: %s" % var.name)
            if var.ref() in self._averages:
                continue
            with tf.init_scope():
                if isinstance(var, tf.Variable):
                    avg = _shadow_of_variable(var, self.name)
                    _v1.add_to_collection(_v1.GraphKeys.MOVING_AVERAGE_VARIABLES, var)
                else:
                    avg = _shadow_of_tensor(var, self.name)
                    # TF1 parity: debiasing is decided when the shadow is
                    # created; a later apply() of the same tensor does not debias.
                    if self._zero_debias:
                        zero_debias_shadows.add(avg.ref())
            self._averages[var.ref()] = avg

        with _v1.name_scope(self.name) as scope:
            decay = tf.convert_to_tensor(self._decay, dtype=tf.float32, name="decay")
            if self._num_updates is not None:
                num_updates = tf.cast(self._num_updates, tf.float32, name="num_updates")
                decay = tf.minimum(decay, (1.0 + num_updates) / (10.0 + num_updates))
            updates = []
            for var in var_list:
                avg = self._averages[var.ref()]
                updates.append(assign_moving_average(avg, var, decay, avg.ref() in zero_debias_shadows))
            return tf.group(*updates, name=scope)

    def average(self, var):
        """The shadow variable of ``var``, or None if ``apply()`` never saw it."""
        return self._averages.get(var.ref(), None)

    def average_name(self, var) -> str:
        """The name of the shadow of ``var``, before or after ``apply()``.

        After ``apply()`` it is the shadow's op name. Before, it is the name
        ``apply()`` would give it now, ``<var op name>/<ema name>`` made unique
        in the graph; that is the name to use in a checkpoint written by a
        graph built the same way.
        """
        if var.ref() in self._averages:
            return _strip_output_index(self._averages[var.ref()].name)
        return _v1.get_default_graph().unique_name(
            _strip_output_index(var.name) + "/" + self.name, mark_as_used=False
        )

    def variables_to_restore(self, moving_avg_variables=None, averaged_only: bool = False) -> Dict[str, Any]:
        """A ``{checkpoint name: variable}`` map that restores shadows into their variables.

        Give it to ``tf.train.Saver`` in an evaluation graph to load the moving
        averages in place of the raw values. Each variable in
        ``moving_avg_variables`` (default: the trainable variables plus the
        ``MOVING_AVERAGE_VARIABLES`` collection) is mapped from
        ``average_name(v)``; every other global variable from its own name.

        TF1 parity: by default a trainable variable that was never averaged is
        still mapped from a shadow name, which a checkpoint does not contain
        (TF issues 3684, 11839). ``averaged_only=True`` maps only variables
        this object averaged (or that are in ``MOVING_AVERAGE_VARIABLES``) from
        their shadows and the rest from their own names.

        Args:
          moving_avg_variables: the variables to restore from their averages.
          averaged_only: opt-in fix of the wart above; default False as in TF1.

        Returns:
          A dict from checkpoint names to variables.
        """
        name_map = {}
        if moving_avg_variables is None:
            if averaged_only:
                moving_avg_variables = _v1.moving_average_variables() + [
                    v for v in _v1.global_variables() if v.ref() in self._averages
                ]
            else:
                moving_avg_variables = _v1.trainable_variables()
                moving_avg_variables += _v1.moving_average_variables()
        # TF1 parity: iterate a set of references, as the reference does, so
        # that the dict comes out in the same order.
        moving_avg_variables = set(v.ref() for v in moving_avg_variables)
        for v in moving_avg_variables:
            name_map[self.average_name(v.deref())] = v.deref()
        moving_avg_variable_names = set(v.deref().name for v in moving_avg_variables)
        for v in list(set(_v1.global_variables())):
            if v.name not in moving_avg_variable_names and v.op.name not in name_map:
                name_map[v.op.name] = v
        return name_map
