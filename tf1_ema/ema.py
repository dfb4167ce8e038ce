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

Beyond TF1, keyword-only constructor arguments opt in to float32 shadows for
low-precision variables, decay schedules (start step, update period with decay
compensation, power warm-up, half-life) and per-variable rules. They are
checked into one frozen value by ``tf1_ema.options`` (which also holds the
rule matching and the schedule tensors); this module stores that value and
hands each shadow's update to the builder as a value (``_build.Pair``).

Shadows and updates are built by ``tf1_ema._build``, the one shadow builder
and update builder of every route. In a TF1 graph it builds them faster than
TF1 does (the same variables, names and initial values with fewer ops; one
fused op of ``tf1_ema._update_op`` updates every plain shadow on a device),
with the same bits. ``TF1_EMA_FAST=0`` in the environment makes it
build TF1's graph op for op; eager mode, functions and distribution strategies
always get that graph.
"""

from __future__ import annotations

import types
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf

from tf1_ema import _build
from tf1_ema import _update_op
from tf1_ema import options as _options
from tf1_ema.options import COPY, SHADOW_DTYPES, SKIP, Options, Policy  # noqa: F401 (SHADOW_DTYPES: re-exported)

_v1 = tf.compat.v1

FLOAT_DTYPES = (tf.bfloat16, tf.float16, tf.float32, tf.float64)
# Marks a decay that was not given (None is a value TF1 accepts until apply()).
_MISSING = object()

# Graphs written by earlier tf1_ema versions (which held its ops) import in any process that
# imported us, when the op library is already built; graphs written now hold stock ops only.
_update_op.load_if_built()


def _strip_output_index(name: str) -> str:
    """``"w/ExponentialMovingAverage:0"`` -> ``"w/ExponentialMovingAverage"``."""
    return name[: -len(":0")]


def _fast_graph() -> bool:
    """Whether ``apply()`` builds the fast graph (see ``tf1_ema._build``, ``tf1_ema._update_op``).

    It does unless ``TF1_EMA_FAST=0``, in eager mode, inside a function, under
    a distribution strategy or with op callbacks installed (asked here, before
    the shadows are lifted out of a function); there it builds TF1's graph op
    for op. ``tf1_ema._build`` also decides per variable.
    """
    return _update_op.fast_path_enabled() and _build.update_blocker() is None


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
    return _build.public_update(_build.Pair(variable, value, decay, debias=zero_debias), name)


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

    Beyond TF1, keyword-only arguments opt in to the features below; each
    left at its default changes nothing in the graph. The decay of one update
    at step s is, in float32 (the two pows in float64, rounded once) and in
    this order (``tf1_ema._math.scheduled_decay``):

        decay_t = min(decay, (1 + n) / (10 + n))                       # TF1 warm-up, if num_updates
        decay_t = min(decay_t, 1 - (1 + s' / inv_gamma) ** -power)     # power warm-up, s' = max(s - start_step, 0)
        decay_t = max(decay_t, min_decay)                              # floor, if min_decay
        decay_t = decay_t ** k,  k = min(update_every, s - start_step + 1)   # if update_every

    and one run of the update op copies (shadow = value) while
    s < start_step, holds the shadow unchanged when s % update_every != 0,
    and otherwise updates it (``tf1_ema._math.schedule_phase``). s is read
    from ``step`` (else ``num_updates``) when the op runs; under the usual
    ``tf.control_dependencies([train_op])`` the first update sees step 1.

    Read-only state, beyond TF1, for ``tf1_ema.swap``, ``audit`` and
    ``introspect``: ``averages`` ({var.ref(): shadow}, skipped variables
    absent), ``decay`` (also when given as ``half_life``), ``num_updates``,
    ``options`` (the checked beyond-TF1 arguments, one frozen
    ``tf1_ema.options.Options``) and ``policy(var)``, a frozen
    ``tf1_ema.options.Policy`` (action ``"average"``/``"copy"``/``"skip"``,
    the variable's ``decay`` before schedules, its ``shadow_dtype``, the
    deciding ``rule`` index), resolved for any variable, applied or not.

    Args:
      decay: float or scalar float32 tensor/variable, the decay rate. Give
        either it or ``half_life``.
      num_updates: optional step counter (any numeric tensor) for TF1's warm-up.
      zero_debias: debias the averages of tensors (never of variables).
      name: the name of the shadows and of the update op's scope.
      shadow_dtype: ``tf.float32`` or ``tf.float64``: keep shadows of
        narrower variables (float16, bfloat16; float32 for float64) in this
        dtype and compute their update in it; wider variables keep their own.
      half_life: the decay as a half-life in steps, > 0:
        decay = 0.5 ** (1 / half_life).
      step: the step counter (integer tensor or variable) the schedules read;
        default ``num_updates``.
      start_step: until this step, shadows copy their variables.
      update_every: update only when step % update_every == 0, with the
        decay raised to the number of steps the update stands for.
      inv_gamma, power: the power warm-up (give both, > 0): the decay is at
        most 1 - (1 + steps since start_step / inv_gamma) ** -power.
      min_decay: a floor in [0, decay] for a warmed-up decay.
      rules: per-variable overrides, a list of (target, action) pairs (or a
        dict): target is a regex searched in the variable's op name, a scope
        (a string ending in ``/``) or a callable(var) -> bool; action is a
        decay, ``"copy"`` (the shadow tracks the raw value, e.g. batch-norm
        statistics) or ``"skip"`` (no shadow). The first matching rule wins;
        other variables use ``decay``. Schedules apply to rule decays too.

    Raises:
      TypeError: for a missing decay or an argument of the wrong type.
      ValueError: for an argument out of range or arguments that do not fit
        together; the message names the fix.
    """

    def __init__(
        self,
        decay=_MISSING,
        num_updates=None,
        zero_debias: bool = False,
        name: str = "ExponentialMovingAverage",
        *,
        shadow_dtype=None,
        half_life: Optional[float] = None,
        step=None,
        start_step: Optional[int] = None,
        update_every: Optional[int] = None,
        inv_gamma: Optional[float] = None,
        power: Optional[float] = None,
        min_decay: Optional[float] = None,
        rules: Union[Sequence[Tuple[Any, Any]], Mapping[Any, Any], None] = None,
    ) -> None:
        if half_life is not None:
            if decay is not _MISSING and decay is not None:
                raise ValueError(
                    "decay=%r and half_life=%r both set the decay; pass only one of them" % (decay, half_life)
                )
            decay = _options.decay_from_half_life(half_life)
        elif decay is _MISSING:
            # TF1 parity: decay is a required argument; Python's own message.
            raise TypeError("ExponentialMovingAverage.__init__() missing 1 required positional argument: 'decay'")
        # TF1 parity: decay=None is accepted here and fails in apply(), in
        # convert_to_tensor, with "None values not supported."
        # Attribute names follow TF1's: some TF1 code reads ema._averages.
        self._decay = decay
        self._num_updates = num_updates
        self._zero_debias = zero_debias
        self._name = name
        self._averages: Dict[Any, tf.Variable] = {}
        # Beyond TF1: one checked value, all None or empty by default (tf1_ema.options).
        self._options = _options.options_from_arguments(
            decay,
            num_updates,
            shadow_dtype=shadow_dtype,
            half_life=half_life,
            step=step,
            start_step=start_step,
            update_every=update_every,
            inv_gamma=inv_gamma,
            power=power,
            min_decay=min_decay,
            rules=rules,
        )
        self._policies: Dict[Any, Policy] = {}  # {var.ref(): policy} of every variable apply() saw

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

        With ``rules``, variables a rule skips get no shadow (and may be of
        any dtype), ``"copy"`` shadows are assigned the value, and the rest
        average with their rule's decay; all updates are still one grouped op.
        With ``start_step`` or ``update_every``, each run of the op copies,
        holds or updates every averaged shadow as the step dictates; a held
        shadow is rewritten with its own value, so skipping the op on steps
        the schedule holds changes nothing and saves the work.

        Args:
          var_list: variables or tensors (half, bfloat16, float or double);
            default ``tf.trainable_variables()``.

        Returns:
          One op, named like this object's ``name`` scope, that updates every
          shadow in ``var_list``.

        Raises:
          TypeError: for a variable of another dtype, or for a tensor in eager mode.
          ValueError: if ``decay`` is a tensor that is not float32, or if a
            rule decides for none of the variables this object has seen.
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
        rule_policies = None
        if self._options.rules:
            # All rules are resolved before any shadow exists, so that a rule
            # deciding for no variable raises with the graph untouched.
            rule_policies = [self.policy(var) for var in var_list]
            self._options.check_rule_targets(var_list, rule_policies + list(self._policies.values()))
        fast = _fast_graph()
        new, bad = {}, None  # {var.ref(): (var, policy)} of the shadows to create; the first bad variable
        for i, var in enumerate(var_list):
            if rule_policies is not None and rule_policies[i].action == SKIP:
                self._policies[var.ref()] = rule_policies[i]  # before the dtype check: any dtype can be skipped
                continue
            if var.dtype.base_dtype not in FLOAT_DTYPES:
                bad = var
                break
            if var.ref() not in self._averages and var.ref() not in new:
                new[var.ref()] = (var, self.policy(var))
        # TF1 parity: the shadows of the variables before a bad one exist when apply() raises.
        zero_debias_shadows = self._create_shadows(list(new.values()), fast)
        if bad is not None:
            raise TypeError("The variables must be half, float, or double: %s" % bad.name)

        with _v1.name_scope(self.name) as scope:
            decay = tf.convert_to_tensor(self._decay, dtype=tf.float32, name="decay")
            warmup_ratio = None
            if self._num_updates is not None:
                num_updates = tf.cast(self._num_updates, tf.float32, name="num_updates")
                warmup_ratio = (1.0 + num_updates) / (10.0 + num_updates)
                decay = tf.minimum(decay, warmup_ratio)
            schedule = self._options.schedule
            schedule_tensors = schedule.tensors(self._num_updates) if schedule.reads_step else None
            gates = None if schedule_tensors is None else schedule_tensors.gates
            decays = {}  # rule index (None: no rule) -> the scheduled decay tensor

            def decay_of(policy: Policy):
                if policy.rule not in decays:
                    if policy.rule is None:
                        decay_t = decay
                    else:
                        decay_t = tf.convert_to_tensor(policy.decay, tf.float32, name="rule%d_decay" % policy.rule)
                        if warmup_ratio is not None:
                            decay_t = tf.minimum(decay_t, warmup_ratio)
                    decays[policy.rule] = schedule.decay(decay_t, schedule_tensors)
                return decays[policy.rule]

            pairs = []
            for var in var_list:
                policy = self._policies[var.ref()]
                if policy.action == SKIP:
                    continue
                avg = self._averages[var.ref()]
                if policy.action == COPY:
                    pairs.append(_build.Pair(avg, var, None, copy=True))
                else:
                    widen = avg.dtype.base_dtype != var.dtype.base_dtype
                    pairs.append(_build.Pair(avg, var, decay_of(policy), avg.ref() in zero_debias_shadows, gates, widen=widen))
            updates = _build.build_updates(pairs, fast)
            return tf.group(*updates, name=scope)

    def _create_shadows(self, new: List[Tuple[Any, Policy]], fast: bool) -> set:
        """Creates and records the shadows of ``new`` ((primary, policy) pairs), in order.

        Returns:
          The refs of the new shadows to debias (tensors' shadows with ``zero_debias``).
        """
        with tf.init_scope():
            dtypes = [policy.shadow_dtype for _, policy in new]
            shadows = _build.create_shadows([var for var, _ in new], self.name, dtypes, fast)
        zero_debias_shadows = set()
        for var, policy in new:
            avg = shadows[var.ref()]
            if isinstance(var, tf.Variable):
                _v1.add_to_collection(_v1.GraphKeys.MOVING_AVERAGE_VARIABLES, var)
            elif self._zero_debias:
                # TF1 parity: debiasing is decided when the shadow is created;
                # a later apply() of the same tensor does not debias.
                zero_debias_shadows.add(avg.ref())
            self._averages[var.ref()] = avg
            self._policies[var.ref()] = policy
        return zero_debias_shadows

    def average(self, var):
        """The shadow variable of ``var``, or None if ``apply()`` never saw it or a rule skips it.

        With ``shadow_dtype``, the shadow of a narrower variable is in that
        dtype: to load it, cast, e.g. ``var.assign(tf.cast(ema.average(var), var.dtype))``.
        """
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

        With ``rules``, variables a rule skips (applied or not) have no shadow
        and are always mapped from their own names.

        With ``shadow_dtype``, a narrower variable is still mapped from its
        shadow's name, but the checkpoint holds the shadow in the wider dtype
        and ``tf.compat.v1.train.Saver`` does not cast on restore ("expected
        dtype half does not equal original dtype float"). To
        evaluate such a model with its averages, restore the shadows
        themselves (build the same EMA in the evaluation graph and restore by
        name) and assign ``tf.cast(ema.average(v), v.dtype)`` to each ``v``.

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
        if self._options.rules:
            moving_avg_variables = [v for v in moving_avg_variables if self.policy(v).action != SKIP]
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

    # -- Beyond TF1: read-only state for swap.py, audit.py and introspect.py -----

    @property
    def options(self) -> Options:
        """The beyond-TF1 options this object was built with: a frozen ``tf1_ema.options.Options``."""
        return self._options

    @property
    def averages(self) -> Mapping[Any, tf.Variable]:
        """A read-only view of ``{var.ref(): shadow}``: every averaged variable or tensor, skipped ones absent."""
        return types.MappingProxyType(self._averages)

    @property
    def decay(self):
        """The decay as given (a float, a tensor or variable; the decay of ``half_life`` when given so)."""
        return self._decay

    @property
    def num_updates(self):
        """The ``num_updates`` counter as given, or None."""
        return self._num_updates

    def policy(self, var) -> Policy:
        """How ``apply()`` treats (or treated) ``var``: a frozen ``tf1_ema.options.Policy``."""
        policy = self._policies.get(var.ref())
        if policy is not None:
            return policy
        return self._options.policy(var, self._decay)


    # -- Beyond TF1: evaluation with the averages, audit, introspection --------
    # Thin delegations; the logic lives in swap.py, audit.py and introspect.py.

    def averaged(self, sess, var_list: Optional[Iterable] = None):
        """Context manager: the variables hold their averages inside, and always get their values back.

        ``with ema.averaged(sess): evaluate()``. While inside, running the EMA
        update (or anything that writes the swapped variables) raises
        RuntimeError. See ``tf1_ema.swap.averaged``.
        """
        from tf1_ema import swap

        return swap.averaged(self, sess, var_list)

    def swap_op(self, var_list: Optional[Iterable] = None, name: Optional[str] = None):
        """An op that exchanges variables and their averages bit for bit; see ``tf1_ema.swap.swap_op``."""
        from tf1_ema import swap

        return swap.swap_op(self, var_list, name)

    def copy_averages_op(self, var_list: Optional[Iterable] = None, name: Optional[str] = None):
        """An op that sets each variable to its average; see ``tf1_ema.swap.copy_averages_op``."""
        from tf1_ema import swap

        return swap.copy_averages_op(self, var_list, name)

    def audit(self, checkpoint_path: str, var_list: Optional[Iterable] = None, averaged_only: bool = False):
        """Per-variable report of what restoring ``checkpoint_path`` would load; see ``tf1_ema.audit``."""
        from tf1_ema import audit

        return audit.audit_checkpoint(self, checkpoint_path, var_list=var_list, averaged_only=averaged_only)

    def describe(self, sess=None, step: Optional[float] = None):
        """Effective decay now, window, half-life and debias factors; see ``tf1_ema.introspect.describe``."""
        from tf1_ema import introspect

        return introspect.describe(self, sess=sess, step=step)

    def lag(self, var_list: Optional[Iterable] = None):
        """``{variable name: ||shadow - var|| / ||var||}`` as fetchable tensors; see ``tf1_ema.introspect``."""
        from tf1_ema import introspect

        return introspect.lag_tensors(self, var_list)
