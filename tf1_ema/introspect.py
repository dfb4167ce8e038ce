"""What is the moving average doing right now? ``describe()`` and ``lag_tensors()``.

``describe(ema, sess)`` reads the step counter(s) and the debiasing state and
reports, as text (``print``) and as a dict (``.as_dict()``):

    effective decay  decay_t = min(decay, (1 + n) / (10 + n)), then the schedules
    window           1 / (1 - decay_t)          updates over which values are averaged
    half-life        ln(0.5) / ln(decay_t)      updates after which a value's weight halves
    debias factor    1 - decay_t ** local_step  per zero-debiased shadow: shadow = biased / factor

all computed by the oracle in ``tf1_ema._math`` (the decay in float32, as the
update op computes it). ``lag_tensors(ema)`` builds one fetchable scalar per
variable, the relative distance ||shadow - var|| / ||var|| of its average.

The report classes and ``describe`` without tensors need no TensorFlow; it is
imported only to read tensors and to build ``lag_tensors``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tf1_ema import _math

# ---------------------------------------------------------------------------
# The description
# ---------------------------------------------------------------------------


def window_of(decay: Optional[float]) -> Optional[float]:
    """``_math.window`` extended to the ends: inf for decay 1, NaN outside [0, 1], None for None.

    >>> window_of(0.5), window_of(1.0)
    (2.0, inf)
    """
    if decay is None:
        return None
    decay = float(decay)
    if decay == 1.0:
        return math.inf
    if not 0.0 <= decay < 1.0:
        return math.nan
    return _math.window(decay)


def half_life_of(decay: Optional[float]) -> Optional[float]:
    """``_math.half_life`` extended to the ends: 0 for decay 0, inf for 1, NaN outside [0, 1], None for None.

    >>> half_life_of(0.5), half_life_of(0.0), half_life_of(1.0)
    (1.0, 0.0, inf)
    """
    if decay is None:
        return None
    decay = float(decay)
    if decay == 0.0:
        return 0.0
    if decay == 1.0:
        return math.inf
    if not 0.0 < decay < 1.0:
        return math.nan
    return _math.half_life(decay)


@dataclasses.dataclass(frozen=True)
class DecayNow:
    """One decay and what it means now.

    Attributes:
      label: ``"decay"`` for the constructor's, ``"rules[i] <target>"`` for a rule's.
      decay: the configured decay (None if it is a tensor that could not be read).
      effective_decay: the float32 decay an update would use now, after
        TF1's warm-up and the schedules (None when a counter is unknown).
      window: 1 / (1 - effective_decay), in updates.
      half_life: ln(0.5) / ln(effective_decay), in updates.
      variables: how many averaged variables use this decay.
    """

    label: str
    decay: Optional[float]
    effective_decay: Optional[float]
    window: Optional[float]
    half_life: Optional[float]
    variables: int


@dataclasses.dataclass(frozen=True)
class DebiasNow:
    """The state of one zero-debiased shadow.

    Attributes:
      shadow: the shadow's name.
      local_step: the number of updates so far.
      factor: 1 - decay_t ** local_step with the effective decay now, so
        that shadow = biased / factor when the decay has been constant (as
        TF1, the update divides by the current decay's factor, not by the
        product of past decays). 0 before the first update; None if unknown.
    """

    shadow: str
    local_step: Optional[float]
    factor: Optional[float]


@dataclasses.dataclass(frozen=True)
class Description:
    """A snapshot of an ExponentialMovingAverage's decay, printable and as a dict.

    Attributes:
      name: the EMA's name.
      num_updates: the value of TF1's warm-up counter (None without one or if unknown).
      step: the value of the schedules' step (None without schedules or if unknown).
      phase: ``"update"``, ``"copy"`` or ``"hold"`` (schedules; ``"update"``
        without), or ``"unknown"``.
      decays: the constructor's decay first, then one per rule with a decay.
      copies: how many shadows copy their variable (``"copy"`` rules).
      debias: one entry per zero-debiased shadow.
      averages: the number of shadows.
      notes: what could not be determined and how to fix it.
    """

    name: str
    num_updates: Optional[float]
    step: Optional[float]
    phase: str
    decays: Tuple[DecayNow, ...]
    copies: int
    debias: Tuple[DebiasNow, ...]
    averages: int
    notes: Tuple[str, ...] = ()

    @property
    def effective_decay(self) -> Optional[float]:
        """The constructor decay's effective value now."""
        return self.decays[0].effective_decay

    @property
    def window(self) -> Optional[float]:
        """1 / (1 - effective_decay), in updates."""
        return self.decays[0].window

    @property
    def half_life(self) -> Optional[float]:
        """ln(0.5) / ln(effective_decay), in updates."""
        return self.decays[0].half_life

    def as_dict(self) -> Dict[str, Any]:
        """A plain dict (JSON-ready, with inf/NaN as floats) of every field plus the main decay's values."""
        data = dataclasses.asdict(self)
        data.update(effective_decay=self.effective_decay, window=self.window, half_life=self.half_life)
        data["decays"] = [dataclasses.asdict(d) for d in self.decays]
        data["debias"] = [dataclasses.asdict(d) for d in self.debias]
        data["notes"] = list(self.notes)
        return data

    def __str__(self) -> str:
        debiased = " (%d zero-debiased)" % len(self.debias) if self.debias else ""
        lines = ["ExponentialMovingAverage %r: %d averages%s" % (self.name, self.averages, debiased)]
        if self.num_updates is not None:
            warmup = "(TF1 warm-up: min(decay, (1 + n) / (10 + n)))"
            lines.append("  num_updates      %s   %s" % (_num(self.num_updates), warmup))
        if self.step is not None:
            lines.append("  step             %s   (phase: %s)" % (_num(self.step), self.phase))
        for d in self.decays:
            lines.append(
                "  %-16s %s -> now %s: window %s, half-life %s updates; %d variable%s"
                % (
                    d.label,
                    _num(d.decay),
                    _num(d.effective_decay),
                    _num(d.window),
                    _num(d.half_life),
                    d.variables,
                    "" if d.variables == 1 else "s",
                )
            )
        if self.copies:
            plural = "s" if self.copies != 1 else ""
            lines.append("  copy             %d shadow%s track their variable" % (self.copies, plural))
        for d in self.debias:
            lines.append(
                "  debias factor    %s after %s updates: %s" % (_num(d.factor), _num(d.local_step), d.shadow)
            )
        lines += ["  note: " + note for note in self.notes]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the text, not the dataclass repr
        printer.text(str(self))


def _num(x) -> str:
    if x is None:
        return "unknown"
    x = float(x)
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return "%d" % x if x == int(x) and abs(x) < 1e15 else "%.6g" % x


# ---------------------------------------------------------------------------
# Reading values
# ---------------------------------------------------------------------------


class _Values:
    """Reads numbers, tensors and variables: directly, eagerly, or all in one ``sess.run``."""

    def __init__(self, sess) -> None:
        self.sess = sess
        self.pending: Dict[str, Any] = {}
        self.known: Dict[str, Optional[float]] = {}
        self.labels: Dict[str, str] = {}

    def want(self, key: str, value, label: Optional[str] = None) -> None:
        """Registers ``value`` (number, tensor, variable or None) under ``key``; ``label`` names it in notes."""
        self.labels[key] = label or key
        if value is None:
            self.known[key] = None
            return
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            self.known[key] = float(value)
            return
        eager = _eager_value(value)
        if eager is not None:
            self.known[key] = eager
            return
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        static = tf.get_static_value(value) if isinstance(value, tf.Tensor) else None
        if static is not None:
            self.known[key] = float(static)
        else:
            self.pending[key] = value

    def read(self) -> None:
        """Evaluates what needs a session, if there is one (else leaves it unknown)."""
        if self.pending and self.sess is not None:
            fetched = self.sess.run(self.pending)
            self.known.update({k: float(v) for k, v in fetched.items()})
            self.pending = {}

    def get(self, key: str) -> Optional[float]:
        return self.known.get(key)

    def unknown(self, key: str) -> bool:
        return key in self.pending

    def unknown_labels(self) -> List[str]:
        return [self.labels[k] for k in self.pending]


def _eager_value(value) -> Optional[float]:
    """The value of an eager tensor or variable, None for a graph one."""
    try:
        return float(value.numpy())
    except (NotImplementedError, AttributeError, ValueError, TypeError):
        return None


def _policy(ema, var):
    """``(action, decay, rule index)`` of ``var``, from ``ema.policy(var)``."""
    policy = ema.policy(var)
    return policy.action, policy.decay, policy.rule


def _debiased_shadows(ema) -> List[Tuple[Any, Any]]:
    """``(shadow, local_step variable)`` for each zero-debiased shadow, found by TF1's names."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    shadows = list(ema.averages.values())
    if not shadows or tf.executing_eagerly():
        return []
    by_name = {v.op.name: v for v in shadows[0].graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
    found = []
    for shadow in shadows:
        local_step = by_name.get(shadow.op.name + "/local_step")
        if local_step is not None:
            found.append((shadow, local_step))
    return found


def describe(ema, sess=None, step: Optional[float] = None) -> Description:
    """Describes ``ema`` now: effective decay, window, half-life, debias factors.

    Counters and decays held in tensors or variables are read with ``sess``
    (one ``sess.run``); eager values and constants are read directly. Without
    a session, what depends on a graph tensor is reported as unknown, with a
    note saying so.

    Args:
      ema: an ExponentialMovingAverage (``apply()`` not required).
      sess: a ``tf.compat.v1.Session`` to read graph tensors with.
      step: describe at this value of the step counter instead of reading it
        (it stands for both ``num_updates`` and the schedules' ``step``).

    Returns:
      A ``Description``; ``print`` it or call ``.as_dict()``.
    """
    values = _Values(sess)
    rules = ema.options.rules
    schedule = ema.options.schedule.as_kwargs()
    scheduled = any(v is not None for v in schedule.values())
    counter = ema.options.schedule.step
    if counter is None:
        counter = ema.num_updates
    values.want("decay", ema.decay)
    if step is not None:
        values.want("num_updates", None if ema.num_updates is None else step)
        values.want("step", step if scheduled else None)
    else:
        values.want("num_updates", ema.num_updates)
        values.want("step", counter if scheduled else None)
    for rule in rules:
        if not isinstance(rule.action, str):
            values.want("rule%d" % rule.index, rule.action, "the decay of rules[%d]" % rule.index)
    debiased = _debiased_shadows(ema)
    for i, (_, local_step) in enumerate(debiased):
        values.want("local_step%d" % i, local_step, "%s (zero-debias step count)" % local_step.op.name)
    values.read()

    notes = []
    if values.pending:
        notes.append("unknown without a session: %s; pass sess= (or step=)" % ", ".join(values.unknown_labels()))
    num_updates = values.get("num_updates")
    step_value = values.get("step")
    counters_known = not values.unknown("num_updates") and not values.unknown("step")
    phase = "update"
    if scheduled:
        phase = (
            _math.schedule_phase(step_value, schedule["start_step"], schedule["update_every"])
            if step_value is not None
            else "unknown"
        )

    def effective(decay: Optional[float]) -> Optional[float]:
        if decay is None or not counters_known:
            return None
        if scheduled:
            if step_value is None:
                return None
            return float(_math.scheduled_decay(decay, step_value, num_updates, **schedule))
        return float(_math.effective_decay(decay, num_updates))

    # Count the averaged variables per decay (None: the constructor's) and the copies.
    per_rule: Dict[Optional[int], int] = {}
    copies = 0
    for ref in ema.averages:
        action, _, rule = _policy(ema, ref.deref())
        if action == "copy":
            copies += 1
        else:
            per_rule[rule] = per_rule.get(rule, 0) + 1

    def decay_now(label: str, decay: Optional[float], count: int) -> DecayNow:
        eff = effective(decay)
        return DecayNow(label, decay, eff, window_of(eff), half_life_of(eff), count)

    by_rule = {None: decay_now("decay", values.get("decay"), per_rule.get(None, 0))}
    for rule in rules:
        if not isinstance(rule.action, str):
            label = "rules[%d] %r" % (rule.index, rule.target)
            by_rule[rule.index] = decay_now(label, values.get("rule%d" % rule.index), per_rule.get(rule.index, 0))
    decays = list(by_rule.values())

    debias = []
    owner = {s.ref(): r.deref() for r, s in ema.averages.items()}
    for i, (shadow, _) in enumerate(debiased):
        local_step = values.get("local_step%d" % i)
        _, _, rule = _policy(ema, owner[shadow.ref()])
        eff = by_rule[rule].effective_decay
        factor = None
        if eff is not None and local_step is not None:
            dtype = shadow.dtype.base_dtype.name
            factor = float(_math.debias_factor(_math.one_minus_decay(eff, dtype), local_step, dtype))
        debias.append(DebiasNow(shadow.op.name, local_step, factor))

    return Description(
        name=ema.name,
        num_updates=num_updates,
        step=step_value,
        phase=phase,
        decays=tuple(decays),
        copies=copies,
        debias=tuple(debias),
        averages=len(ema.averages),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# Lag tensors
# ---------------------------------------------------------------------------


def _key(var) -> str:
    """``"w"`` for a variable ``w:0``; a tensor's name keeps its output index unless it is 0."""
    return var.name[: -len(":0")] if var.name.endswith(":0") else var.name


def lag_tensors(ema, var_list: Optional[Sequence] = None) -> Dict[str, Any]:
    """One scalar tensor per averaged variable: ||shadow - var|| / ||var||, the average's relative lag.

    Norms are Euclidean over all elements, computed in float32 (float64 if
    the variable or the shadow is float64) after casting both, so float16
    values cannot overflow. For ||var|| = 0 the lag is 0 if the shadow is zero
    too and +inf otherwise. Inside ``tf1_ema.swap.averaged()`` the two are
    swapped, so the lag is measured relative to the average instead.

    Args:
      ema: an ExponentialMovingAverage on which ``apply()`` has been called.
      var_list: variables (or tensors) with a shadow; default every averaged
        variable (tensors are left out: fetching one would run its graph).

    Returns:
      ``{name: scalar tensor}``, keyed by the variable's op name, in
      ``var_list`` (or ``apply()``) order; in eager mode, the values now.

    Raises:
      RuntimeError: before ``ema.apply()``.
      ValueError: for an entry of ``var_list`` that has no shadow.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    averages = ema.averages
    if not averages:
        raise RuntimeError(
            "ExponentialMovingAverage %r has no moving averages yet: call ema.apply(var_list) first." % ema.name
        )
    if var_list is None:
        pairs = [(r.deref(), s) for r, s in averages.items() if isinstance(r.deref(), tf.Variable)]
    else:
        pairs = []
        for var in var_list:
            shadow = ema.average(var)
            if shadow is None:
                raise ValueError(
                    "%r has no moving average in ExponentialMovingAverage %r; averaged: %s"
                    % (_key(var), ema.name, sorted(_key(r.deref()) for r in averages))
                )
            pairs.append((var, shadow))
    if not pairs:
        return {}
    graph_mode = not tf.executing_eagerly()
    lags = {}
    with (pairs[0][1].graph.as_default() if graph_mode else _null()), tf.control_dependencies(None):
        with tf.name_scope(ema.name + "_lag"):
            for var, shadow in pairs:
                wide = tf.float64 if tf.float64 in (var.dtype.base_dtype, shadow.dtype.base_dtype) else tf.float32
                value = tf.cast(tf.convert_to_tensor(var), wide)
                diff = tf.norm(tf.reshape(tf.cast(tf.convert_to_tensor(shadow), wide) - value, [-1]))
                norm = tf.norm(tf.reshape(value, [-1]))
                # 0/0 -> 0 (both zero); x/0 -> inf.
                lag = tf.where(
                    tf.equal(norm, 0.0),
                    tf.where(tf.equal(diff, 0.0), tf.zeros([], wide), tf.constant(np.inf, wide)),
                    diff / tf.where(tf.equal(norm, 0.0), tf.ones([], wide), norm),
                )
                lags[_key(var)] = tf.identity(lag, name=_key(var).replace(":", "_"))
    return lags


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
