"""The beyond-TF1 options of ``ExponentialMovingAverage``, as values.

TF1's class knows a decay, ``num_updates``, ``zero_debias`` and a name. The
options here opt in to more, each left at its default changing nothing in the
graph:

  shadow_dtype  keep shadows of narrower variables in float32 or float64
  half_life     the decay as 0.5 ** (1 / half_life)
  Schedule      start_step (copy until then), update_every (decay ** k),
                power warm-up 1 - (1 + s / inv_gamma) ** -power, min_decay floor
  Rule          per-variable overrides: a decay, "copy" or "skip"

``options_from_arguments`` checks the constructor's keyword arguments and
returns one frozen ``Options`` value, which the class stores whole and hands
out as ``ema.options``; ``Options.policy(var, decay)`` resolves how ``apply()``
treats a variable (a frozen ``Policy``). The formulas are those of the NumPy
oracle ``tf1_ema._math`` (``scheduled_decay``, ``schedule_phase``); the
update ops that use these values are built in ``tf1_ema.ema``.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import tensorflow as tf

from tf1_ema import _math
from tf1_ema import _tf_internal

_v1 = tf.compat.v1

SHADOW_DTYPES = (tf.float32, tf.float64)

# The actions of a rule (a decay means AVERAGE).
AVERAGE = "average"
COPY = "copy"
SKIP = "skip"

# The schedule arguments, as ``_math.scheduled_decay`` takes them.
SCHEDULE_ARGS = ("start_step", "update_every", "inv_gamma", "power", "min_decay")


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _is_number(x) -> bool:
    """A real Python/NumPy number, bools excluded."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_integer(x) -> bool:
    """A Python/NumPy integer, bools excluded."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_shadow_dtype(shadow_dtype) -> Optional[tf.DType]:
    """``shadow_dtype`` as a ``tf.DType`` (float32 or float64), or None."""
    if shadow_dtype is None:
        return None
    try:
        dtype = tf.as_dtype(shadow_dtype)
    except TypeError:
        dtype = None
    if dtype not in SHADOW_DTYPES:
        raise ValueError(
            "shadow_dtype=%r: shadows can be kept in tf.float32 or tf.float64 only; "
            "pass shadow_dtype=tf.float32 to average float16/bfloat16 variables in float32" % (shadow_dtype,)
        )
    return dtype


def _check_count(name: str, value, minimum: int) -> Optional[int]:
    """``value`` as an int >= ``minimum``, or None."""
    if value is None:
        return None
    if not _is_integer(value):
        raise TypeError("%s=%r: expected a Python int (a number of steps)" % (name, value))
    if value < minimum:
        raise ValueError("%s=%r: must be >= %d" % (name, value, minimum))
    return int(value)


def _check_positive(name: str, value) -> float:
    """``value`` as a finite float > 0."""
    if not _is_number(value):
        raise TypeError("%s=%r: expected a Python float" % (name, value))
    if not 0.0 < float(value) < float("inf"):
        raise ValueError("%s=%r: must be > 0 and finite" % (name, value))
    return float(value)


def _check_decay_value(what: str, value) -> float:
    """A Python-number decay, checked to lie in [0, 1]."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError("%s=%r: a decay must lie in [0, 1]" % (what, value))
    return float(value)


def decay_from_half_life(half_life) -> float:
    """The decay 0.5 ** (1 / half_life) of a half-life given in steps.

    Raises:
      TypeError: if ``half_life`` is not a Python number.
      ValueError: if it is not > 0.
    """
    if not _is_number(half_life):
        raise TypeError(
            "half_life=%r: expected a Python number of steps; for a decay held in a tensor pass decay= instead"
            % (half_life,)
        )
    try:
        return _math.decay_from_half_life(half_life)
    except ValueError:
        raise ValueError(
            "half_life=%r: a half-life must be > 0 steps (the number of updates after which a value's "
            "weight in the average has halved; half_life=693 is decay 0.999)" % (half_life,)
        ) from None


# ---------------------------------------------------------------------------
# Rules and per-variable policies
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """One entry of the ``rules`` argument, checked: the first match decides a variable's ``action``.

    index: its position in ``rules``.
    target: as given: a regex (``re.search`` on the name), a scope (a string
      ending in ``/``: the name starts with it), or a predicate callable(var) -> bool.
    action: a decay (float in [0, 1], or a scalar float32 tensor), ``"copy"`` or ``"skip"``.
    matches: ``matches(var, name) -> bool``, built from ``target``.
    """

    index: int
    target: Any
    action: Any
    matches: Callable[[Any, str], bool]

    def __str__(self) -> str:
        return "rules[%d] (%r, %r)" % (self.index, self.target, self.action)


def _rule_matcher(index: int, target) -> Callable[[Any, str], bool]:
    """The ``matches(var, name)`` function of a rule's target."""
    if isinstance(target, str):
        if target.endswith("/"):
            return lambda var, name: name.startswith(target)
        try:
            pattern = re.compile(target)
        except re.error as e:
            raise ValueError("rules[%d]: %r is not a valid regular expression (%s)" % (index, target, e)) from None
        return lambda var, name: pattern.search(name) is not None
    if callable(target):
        return lambda var, name: bool(target(var))
    raise TypeError(
        "rules[%d]: the target %r must be a regex string (searched in the variable's name), a scope "
        "string ending in '/', or a callable(var) -> bool (e.g. lambda v: v is my_var)" % (index, target)
    )


def _rule_action(index: int, action):
    """A rule's action, checked: a decay, ``"copy"`` or ``"skip"``."""
    if isinstance(action, str):
        if action not in (COPY, SKIP):
            raise ValueError(
                "rules[%d]: unknown action %r; an action is a decay (a float in [0, 1]), %r (the shadow "
                "tracks the raw value) or %r (no shadow)" % (index, action, COPY, SKIP)
            )
        return action
    if _is_number(action):
        return _check_decay_value("rules[%d] decay" % index, action)
    if isinstance(action, (tf.Tensor, tf.Variable)):
        return action
    raise TypeError(
        "rules[%d]: unknown action %r; an action is a decay (a float in [0, 1]), %r or %r" % (index, action, COPY, SKIP)
    )


def parse_rules(rules) -> Tuple[Rule, ...]:
    """The checked rules: from a sequence of (target, action) pairs, or a dict in insertion order."""
    if rules is None:
        return ()
    if isinstance(rules, Mapping):
        items = list(rules.items())
    elif isinstance(rules, (str, bytes)) or not isinstance(rules, Iterable):
        raise TypeError("rules=%r: expected a list of (target, action) pairs or a dict {target: action}" % (rules,))
    else:
        items = list(rules)
    parsed = []
    for index, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError("rules[%d]=%r: expected a (target, action) pair" % (index, item))
        target, action = item
        parsed.append(Rule(index, target, _rule_action(index, action), _rule_matcher(index, target)))
    return tuple(parsed)


def rule_name(var) -> str:
    """The name rules match: the op name a shadow's name is built from (no replica suffix, no ``:0``)."""
    if isinstance(var, tf.Variable):
        return _tf_internal.shared_name(var)
    return var.op.name


@dataclasses.dataclass(frozen=True)
class Policy:
    """How ``apply()`` treats one variable, resolved from the constructor's arguments.

    action: ``"average"``, ``"copy"`` (shadow = value at every update) or ``"skip"`` (no shadow).
    decay: the decay before schedules, the constructor's or the rule's (None unless averaging).
    shadow_dtype: the shadow's dtype (None when skipped).
    rule: the index in ``rules`` of the rule that decided, or None when none matched.
    """

    action: str
    decay: Any
    shadow_dtype: Optional[tf.DType]
    rule: Optional[int]


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------


class Gates(NamedTuple):
    """The schedule's per-run switches, scalar bool tensors.

    update_now: the moving-average step happens (else the shadow is held).
    copy_now: the shadow becomes the value (None when there is no start_step).
    """

    update_now: tf.Tensor
    copy_now: Optional[tf.Tensor]

    def select(self, average, shadow, value):
        """value where copy_now, else average where update_now, else shadow (all in the shadow's dtype)."""
        new_shadow = tf.where(self.update_now, average, shadow)
        if self.copy_now is not None:
            new_shadow = tf.where(self.copy_now, value, new_shadow)
        return new_shadow


class ScheduleTensors(NamedTuple):
    """The step-dependent tensors of the schedules, built once per ``apply()``.

    gates: the update/copy switches (None without start_step and update_every).
    steps_per_update: k of decay ** k as float64 (None without update_every).
    warmup_step: max(step - start_step, 0) as float64 (None without power warm-up).
    """

    gates: Optional[Gates]
    steps_per_update: Optional[tf.Tensor]
    warmup_step: Optional[tf.Tensor]


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """The decay schedules, checked; all None is TF1's behaviour.

    step: the step counter the schedules read (a tensor or variable), None for ``num_updates``.
    start_step: until this step, shadows copy their variables.
    update_every: update only when step % update_every == 0, with decay ** k.
    inv_gamma, power: the power warm-up, decay <= 1 - (1 + s / inv_gamma) ** -power.
    min_decay: a floor for a warmed-up decay.
    """

    step: Any = None
    start_step: Optional[int] = None
    update_every: Optional[int] = None
    inv_gamma: Optional[float] = None
    power: Optional[float] = None
    min_decay: Optional[float] = None

    @property
    def reads_step(self) -> bool:
        """Whether a schedule reads the step counter (start_step, update_every, power warm-up)."""
        return any(v is not None for v in (self.start_step, self.update_every, self.inv_gamma))

    def as_kwargs(self) -> Dict[str, Any]:
        """``{start_step, update_every, inv_gamma, power, min_decay}``, as ``_math.scheduled_decay`` takes them."""
        return {k: getattr(self, k) for k in SCHEDULE_ARGS}

    def tensors(self, num_updates) -> ScheduleTensors:
        """Builds the step-dependent tensors (under ``schedule``), reading ``step`` else ``num_updates``."""
        with _v1.name_scope("schedule"):
            counter = num_updates if self.step is None else self.step
            step = tf.identity(tf.cast(counter, tf.int64), name="step")
            start = 0 if self.start_step is None else self.start_step
            copy_now = None
            if self.start_step is not None:
                copy_now = tf.less(step, self.start_step, name="copy_now")
            gates = None
            if self.update_every is not None:
                update_now = tf.equal(tf.math.floormod(step, self.update_every), 0)
                if copy_now is not None:
                    update_now = tf.logical_and(tf.logical_not(copy_now), update_now)
                gates = Gates(tf.identity(update_now, name="update_now"), copy_now)
            elif copy_now is not None:
                gates = Gates(tf.logical_not(copy_now, name="update_now"), copy_now)
            steps_per_update = None
            if self.update_every is not None:
                # _math.steps_per_update: min(update_every, s - start_step + 1), at least 1.
                k = tf.clip_by_value(step - start + 1, 1, self.update_every)
                steps_per_update = tf.cast(k, tf.float64, name="steps_per_update")
            warmup_step = None
            if self.inv_gamma is not None:
                warmup_step = tf.cast(tf.maximum(step - start, 0), tf.float64, name="warmup_step")
            return ScheduleTensors(gates, steps_per_update, warmup_step)

    def decay(self, decay, tensors: Optional[ScheduleTensors]):
        """The schedules applied to a float32 decay tensor (already TF1-warmed), as ``_math.scheduled_decay``."""
        if self.inv_gamma is not None:
            # Precision: the pow in float64, rounded once (see _math.power_warmup_decay).
            term = 1.0 - tf.pow(1.0 + tensors.warmup_step / self.inv_gamma, -self.power)
            floor = 0.0 if self.min_decay is None else self.min_decay
            decay = tf.maximum(tf.minimum(tf.cast(term, tf.float32), decay), floor)
        elif self.min_decay is not None:
            decay = tf.maximum(decay, self.min_decay)
        if self.update_every is not None:
            decay = tf.cast(tf.pow(tf.cast(decay, tf.float64), tensors.steps_per_update), tf.float32)
        return decay


# ---------------------------------------------------------------------------
# All options together
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Options:
    """Everything beyond TF1 that an ``ExponentialMovingAverage`` was built with, checked.

    shadow_dtype: float32/float64 for the shadows of narrower variables, or None.
    half_life: the half-life the decay was given as, or None.
    schedule: the ``Schedule`` (all None: none).
    rules: the checked ``Rule`` s, in order (empty: none).
    """

    shadow_dtype: Optional[tf.DType] = None
    half_life: Optional[float] = None
    schedule: Schedule = Schedule()
    rules: Tuple[Rule, ...] = ()

    def policy(self, var, decay) -> Policy:
        """How ``apply()`` treats ``var`` given the constructor's ``decay``: the first matching rule decides."""
        name = rule_name(var)
        rule = next((r for r in self.rules if r.matches(var, name)), None)
        action = decay if rule is None else rule.action
        index = None if rule is None else rule.index
        if isinstance(action, str) and action == SKIP:
            return Policy(SKIP, None, None, index)
        dtype = var.dtype.base_dtype
        if self.shadow_dtype is not None and dtype.is_floating and dtype.size < self.shadow_dtype.size:
            dtype = self.shadow_dtype
        if isinstance(action, str) and action == COPY:
            return Policy(COPY, None, dtype, index)
        return Policy(AVERAGE, action, dtype, index)

    def check_rule_targets(self, var_list: List, policies: Iterable[Policy]) -> None:
        """Raises ValueError if a rule decides for none of ``policies`` (those of every variable seen)."""
        decided = {p.rule for p in policies}
        unused = [r for r in self.rules if r.index not in decided]
        if unused:
            names = sorted({rule_name(v) for v in var_list})
            raise ValueError(
                "%s matches none of the %d variables given to apply() (or an earlier rule takes all it "
                "matches): fix the target (a string is a regex searched in the op name, a string ending "
                "in '/' a scope) or remove the rule. Names: %s"
                % (unused[0], len(names), ", ".join(names[:10]) + (", ..." if len(names) > 10 else ""))
            )


def _check_min_decay(min_decay, decay, num_updates, inv_gamma, rules: Tuple[Rule, ...]) -> float:
    """``min_decay`` checked against the decays it floors."""
    if not _is_number(min_decay):
        raise TypeError("min_decay=%r: expected a Python float" % (min_decay,))
    min_decay = _check_decay_value("min_decay", min_decay)
    if num_updates is None and inv_gamma is None:
        raise ValueError(
            "min_decay=%r floors a warmed-up decay, but there is no warm-up: pass inv_gamma= and power= "
            "(or num_updates=), or drop min_decay" % (min_decay,)
        )
    if _is_number(decay) and min_decay > float(decay):
        raise ValueError(
            "min_decay=%r is above decay=%r: the floor must not exceed the decay; lower min_decay" % (min_decay, decay)
        )
    for rule in rules:
        if _is_number(rule.action) and min_decay > rule.action:
            raise ValueError(
                "min_decay=%r is above the decay of %s: the floor must not exceed any decay" % (min_decay, rule)
            )
    return min_decay


def _check_step(schedule: Schedule, num_updates) -> None:
    """The schedules that read a step have one, and a given ``step`` is read."""
    readers = [
        arg
        for arg, value in (
            ("start_step", schedule.start_step),
            ("update_every", schedule.update_every),
            ("inv_gamma/power", schedule.inv_gamma),
        )
        if value is not None
    ]
    if readers and schedule.step is None and num_updates is None:
        raise ValueError(
            "%s need(s) a step counter: pass step=tf.compat.v1.train.get_or_create_global_step() "
            "(or num_updates=, which also turns on TF1's warm-up)" % " and ".join(readers)
        )
    if schedule.step is not None and not readers:
        raise ValueError(
            "step= is read only by start_step=, update_every= and the power warm-up (inv_gamma=, power=); "
            "for TF1's warm-up pass the counter as num_updates= instead"
        )
    if isinstance(schedule.step, (bool, float)):
        raise TypeError("step=%r: expected an integer tensor or variable (e.g. the global step)" % (schedule.step,))


def options_from_arguments(
    decay,
    num_updates,
    *,
    shadow_dtype=None,
    half_life=None,
    step=None,
    start_step=None,
    update_every=None,
    inv_gamma=None,
    power=None,
    min_decay=None,
    rules=None,
) -> Options:
    """The constructor's beyond-TF1 keyword arguments, checked, as one ``Options``.

    ``decay`` is the constructor's (after ``half_life``) and ``num_updates``
    TF1's counter; both are needed to check ``min_decay`` and ``step``.

    Raises:
      TypeError: for an argument of the wrong type.
      ValueError: for an argument out of range or arguments that do not fit
        together; the message names the fix.
    """
    shadow_dtype = _check_shadow_dtype(shadow_dtype)
    start_step = _check_count("start_step", start_step, minimum=0)
    update_every = _check_count("update_every", update_every, minimum=1)
    if (inv_gamma is None) != (power is None):
        raise ValueError(
            "inv_gamma=%r, power=%r: the power warm-up needs both (inv_gamma=1.0, power=2/3 is a common "
            "choice for long runs, power=3/4 for short ones)" % (inv_gamma, power)
        )
    inv_gamma = None if inv_gamma is None else _check_positive("inv_gamma", inv_gamma)
    power = None if power is None else _check_positive("power", power)
    parsed_rules = parse_rules(rules)
    if min_decay is not None:
        min_decay = _check_min_decay(min_decay, decay, num_updates, inv_gamma, parsed_rules)
    schedule = Schedule(step, start_step, update_every, inv_gamma, power, min_decay)
    _check_step(schedule, num_updates)
    return Options(shadow_dtype, half_life, schedule, parsed_rules)
