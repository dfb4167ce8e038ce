"""``tf1_ema.options``: the beyond-TF1 arguments as one frozen value, and the accessors that hand it out.

The behaviour of each option is pinned against the oracle in ``test_features.py``;
here only the shape of the values and that no module reads the class's private state.
"""

import dataclasses
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf

from harness import fresh_graph
from tf1_ema import ExponentialMovingAverage, options

v1 = tf.compat.v1
REPO = pathlib.Path(__file__).resolve().parent.parent


def test_defaults_are_one_empty_options_value():
    """Without beyond-TF1 arguments the object holds an Options with no dtype, no schedule and no rules."""
    ema = ExponentialMovingAverage(0.9)
    assert isinstance(ema.options, options.Options)
    assert (ema.options.shadow_dtype, ema.options.half_life, ema.options.rules) == (None, None, ())
    assert ema.options.schedule.as_kwargs() == dict.fromkeys(options.SCHEDULE_ARGS)
    assert not ema.options.schedule.reads_step


def test_arguments_are_checked_into_frozen_values():
    """The constructor's keyword arguments end up, checked, in a frozen Options with a Schedule and Rules."""
    with fresh_graph():
        step = v1.train.get_or_create_global_step()
        ema = ExponentialMovingAverage(
            half_life=10, step=step, start_step=5, update_every=2, inv_gamma=1.0, power=0.75, min_decay=0.5,
            shadow_dtype="float32", rules=[("bn/", "copy"), ("bias", 0.9)],
        )  # fmt: skip
    opts = ema.options
    assert opts.shadow_dtype == tf.float32 and opts.half_life == 10 and ema.decay == 0.5 ** (1 / 10)
    assert opts.schedule.as_kwargs() == dict(start_step=5, update_every=2, inv_gamma=1.0, power=0.75, min_decay=0.5)
    assert opts.schedule.step is step and opts.schedule.reads_step
    assert [(r.index, r.target, r.action) for r in opts.rules] == [(0, "bn/", "copy"), (1, "bias", 0.9)]
    for value in (opts, opts.schedule, opts.rules[0]):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.index = 3  # any field name: frozen dataclasses refuse every assignment


def test_policy_and_averages_are_public_and_read_only():
    """policy(var) resolves rules before apply(); averages is a live, read-only view of the shadows."""
    with fresh_graph():
        w = v1.Variable(np.ones(2, np.float16), name="w")
        b = v1.Variable(np.ones(2, np.float32), name="bn/mean")
        ema = ExponentialMovingAverage(0.9, shadow_dtype=tf.float32, rules=[("bn/", "copy")])
        assert ema.policy(w) == options.Policy("average", 0.9, tf.float32, None)
        assert ema.policy(b) == options.Policy("copy", None, tf.float32, 0)
        view = ema.averages
        assert len(view) == 0
        ema.apply([w, b])
        assert set(view) == {w.ref(), b.ref()} and view[w.ref()] is ema.average(w)
        with pytest.raises(TypeError):
            view[w.ref()] = None


@pytest.mark.parametrize("module", ["swap", "audit", "introspect"])
def test_helpers_read_no_private_state_of_the_class(module):
    """swap.py, audit.py and introspect.py use the public accessors, never ``ema._<name>``."""
    source = (REPO / "tf1_ema" / (module + ".py")).read_text(encoding="utf-8")
    assert not re.findall(r"\bema\._\w+", source)
