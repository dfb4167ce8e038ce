"""Our EMA inside ``tf.distribute.MirroredStrategy`` in graph mode, on two logical CPUs.

Logical devices must be configured before TensorFlow initializes, which the
pytest process has done long ago; so this file doubles as the script that
builds and runs the graphs: the module fixture runs it once in a subprocess
(``python tests/test_distribute.py OUT.npz``) and the tests compare what it
saved. Each configuration is run five ways on the same value sequence: on a
single device, and under the strategy with ``apply()`` called in
cross-replica context and in replica context (``merge_call``), with our class
and, for TF1's own arguments, the reference's.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from limits import TIMEOUT
from harness import assert_bits_equal

STEPS = 8

# name -> (constructor kwargs; "STEP" is the global step), whether the reference can run it too.
CONFIGS = {
    "tf1": (dict(decay=0.9, num_updates="STEP"), True),
    "tf1_debias": (dict(decay=0.9, num_updates="STEP", zero_debias=True), True),
    "features": (
        dict(
            decay=0.9,
            step="STEP",
            shadow_dtype="float32",
            start_step=2,
            update_every=2,
            inv_gamma=1.0,
            power=2 / 3,
            rules=[("bn/", "copy"), ("frozen", "skip"), ("dense/", 0.5)],
        ),
        False,
    ),
    "features_debias": (dict(half_life=3.0, step="STEP", start_step=3, shadow_dtype="float32", zero_debias=True), False),
}
MODES = ("single", "cross_replica", "replica")
VARIABLES = {  # name -> (dtype, initial value)
    "dense/kernel": ("float16", [1.0, -2.0]),
    "bn/moving_mean": ("float32", [0.5, 0.25]),
    "frozen": ("float32", [3.0, 3.0]),
    "w64": ("float64", [0.1, 0.2]),
}


def values_at(step: int, name: str, dtype: str) -> np.ndarray:
    """The value every variable is given before the update at ``step``: deterministic, changing each step."""
    base = np.asarray(VARIABLES[name][1], np.float64)
    return (base * 1.5 ** (step + 1) + 0.1 * step).astype(dtype)


def run(out_path: str) -> None:
    """Builds and runs every configuration in every mode; saves {config/impl/mode/var/replica: shadows} to out_path."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from harness import IMPLEMENTATIONS, OURS, REFERENCE, fresh_graph

    v1 = tf.compat.v1
    results = {}

    def build_and_run(config, impl, mode):
        kwargs, _ = CONFIGS[config]
        ema_class = IMPLEMENTATIONS[impl][0]
        debias = kwargs.get("zero_debias", False)
        with fresh_graph():
            strategy = tf.distribute.get_strategy() if mode == "single" else tf.distribute.MirroredStrategy(
                ["/cpu:0", "/cpu:1"]
            )
            with strategy.scope():
                step = v1.train.get_or_create_global_step()
                variables = {
                    n: v1.Variable(np.asarray(x, d), name=n, trainable=not n.startswith("bn/"))
                    for n, (d, x) in VARIABLES.items()
                }
                args = {k: step if v == "STEP" else v for k, v in kwargs.items()}
                if "shadow_dtype" in args:
                    args["shadow_dtype"] = tf.as_dtype(args["shadow_dtype"])
                ema = ema_class(**args)
                feeds = {n: v1.placeholder(v.dtype, v.shape) for n, v in variables.items()}
                step_in = v1.placeholder(tf.int64, [])
                assign = [v.assign(feeds[n]) for n, v in variables.items()] + [step.assign(step_in)]

                def averaged():
                    # TF1 cannot average tensors in replica context (replica 1's tensor has another name);
                    # debiasing only ever applies to tensors, so those configurations use cross-replica context.
                    if debias:
                        return [tf.identity(v, name=n.replace("/", "_") + "_t") for n, v in variables.items()]
                    return list(variables.values())

                if mode == "replica":
                    inputs = list(variables.values())
                    update = strategy.group(strategy.extended.call_for_each_replica(lambda: ema.apply(averaged())))
                else:
                    inputs = averaged()
                    update = ema.apply(inputs)
            averages = {n: ema.average(x) for n, x in zip(variables, inputs) if ema.average(x) is not None}
            shadows = {n: list(strategy.experimental_local_results(a)) for n, a in averages.items()}
            with v1.Session() as sess:
                sess.run(v1.global_variables_initializer())
                observed = {(n, r): [] for n, parts in shadows.items() for r in range(len(parts))}
                for s in range(STEPS):
                    feed = {feeds[n]: values_at(s, n, d) for n, (d, _) in VARIABLES.items()}
                    feed[step_in] = s
                    sess.run(assign, feed)
                    sess.run(update)
                    for (n, r), seen in observed.items():
                        seen.append(sess.run(shadows[n][r]))
        for (n, r), seen in observed.items():
            results["%s|%s|%s|%s|%d" % (config, impl, mode, n, r)] = np.stack(seen)
        results["%s|%s|%s|types" % (config, impl, mode)] = np.asarray(sorted({type(a).__name__ for a in averages.values()}))

    for config, (kwargs, reference_too) in CONFIGS.items():
        for mode in MODES:
            if mode == "replica" and kwargs.get("zero_debias"):
                continue
            build_and_run(config, OURS, mode)
            if reference_too:
                build_and_run(config, REFERENCE, mode)
    np.savez(out_path, **results)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs this file as a script in a fresh process and loads what it saved."""
    out = str(tmp_path_factory.mktemp("distribute") / "runs.npz")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, __file__, out], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(out) as data:
        return dict(data)


def shadows(runs, config, impl, mode):
    """{(variable, replica): shadows over the steps} of one run."""
    prefix = "%s|%s|%s|" % (config, impl, mode)
    found = {}
    for key, value in runs.items():
        if key.startswith(prefix) and not key.endswith("|types"):
            name, replica = key[len(prefix) :].rsplit("|", 1)
            found[(name, int(replica))] = value
    return found


CASES = [
    (config, mode)
    for config, (kwargs, _) in CONFIGS.items()
    for mode in MODES[1:]
    if not (mode == "replica" and kwargs.get("zero_debias"))
]


@pytest.mark.slow
@pytest.mark.parametrize("config,mode", CASES, ids=["%s-%s" % c for c in CASES])
def test_mirrored_shadows_equal_single_device_shadows(runs, config, mode):
    """Under MirroredStrategy both replicas' shadows equal the single-device shadows, bit for bit, at every step."""
    single = shadows(runs, config, "ours", "single")
    mirrored = shadows(runs, config, "ours", mode)
    assert single and {n for n, _ in mirrored} == {n for n, _ in single}
    assert {r for _, r in mirrored} == {0, 1}
    assert set(runs["%s|ours|%s|types" % (config, mode)]) == {"MirroredVariable"}
    for (name, replica), seen in mirrored.items():
        assert_bits_equal(single[(name, 0)], seen, path="%s replica %d" % (name, replica))


@pytest.mark.slow
@pytest.mark.parametrize("config,mode", [c for c in CASES if CONFIGS[c[0]][1]], ids=lambda c: c)
def test_mirrored_shadows_equal_the_reference_under_the_strategy(runs, config, mode):
    """With TF1's arguments, our shadows under the strategy equal tf.compat.v1's, replica by replica."""
    assert_bits_equal(shadows(runs, config, "reference", mode), shadows(runs, config, "ours", mode), path="shadows")


@pytest.mark.slow
def test_rules_and_float32_shadows_hold_under_the_strategy(runs):
    """Under the strategy a skipped variable has no shadow, a float16 one has a float32 shadow, a copy copies."""
    mirrored = shadows(runs, "features", "ours", "replica")
    assert ("frozen", 0) not in mirrored
    assert mirrored[("dense/kernel", 0)].dtype == np.float32
    expected = np.stack([values_at(s, "bn/moving_mean", "float32") for s in range(STEPS)])
    assert_bits_equal(expected, mirrored[("bn/moving_mean", 1)])


if __name__ == "__main__":
    run(sys.argv[1])
