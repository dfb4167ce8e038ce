"""Tests of benchmarks/bench_ema.py: its pure helpers, its check, and one real smoke run.

No test here looks at a timing; they pin that the script runs, reports what it
promises, and refuses to call a wrong implementation identical.
"""

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from limits import TIMEOUT

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ema.py"


def _load_bench():
    """Imports benchmarks/bench_ema.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_ema", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ema"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_mixed_sizes_sum_exactly_and_spread_widely():
    """The B size mix is deterministic, positive, sums to the total and spans over three decades."""
    sizes = bench.mixed_sizes(200, 10_000_000)
    assert sizes == bench.mixed_sizes(200, 10_000_000)
    assert len(sizes) == 200 and sum(sizes) == 10_000_000 and min(sizes) >= 1
    assert max(sizes) / min(sizes) > 1000


def test_mixed_sizes_rejects_fewer_params_than_variables():
    """Asking for fewer parameters than variables is an error, not a zero-sized variable."""
    with pytest.raises(ValueError):
        bench.mixed_sizes(10, 9)


def test_uniform_sizes_spread_the_remainder():
    """Uniform sizes differ by at most one and sum to the total."""
    assert bench.variable_sizes("uniform", 3, 10) == [4, 3, 3]


def test_first_step_group_depends_on_mode():
    """'first-step' expands to 200/2000/10000 variables in full mode and to 200 only in quick mode."""
    assert [w.name for w in bench.select_workloads("first-step", "full")] == [
        "first-200", "first-2000", "first-10000"
    ]
    assert [w.name for w in bench.select_workloads("first-step", "quick")] == ["first-200"]


def test_unknown_workload_is_a_usage_error():
    """An unknown workload name exits with status 2 before TensorFlow is imported."""
    with pytest.raises(SystemExit) as excinfo:
        bench.main(["--workloads", "A,Z"])
    assert excinfo.value.code == 2


def test_same_bits_is_stricter_than_equality():
    """same_bits tells 0.0 from -0.0 and accepts an identical NaN, unlike ==."""
    assert not bench.same_bits(np.array([0.0], np.float32), np.array([-0.0], np.float32))
    assert bench.same_bits(np.array([np.nan], np.float32), np.array([np.nan], np.float32))
    assert not bench.same_bits(np.zeros(2, np.float32), np.zeros(2, np.float16))


@pytest.mark.slow
def test_check_catches_a_wrong_implementation():
    """A per-step run whose 'ours' uses a slightly different decay reports bit_identical False."""
    import tensorflow as tf

    stock = tf.compat.v1.train.ExponentialMovingAverage

    def wrong(decay, num_updates=None):
        return stock(decay - 1e-3, num_updates=num_updates)

    runner = bench._Bench(tf, wrong, stock, ref_variables=False, num_updates=False)
    workload = bench.select_workloads("A", "smoke")[0]
    result = runner.run_step(workload, workload.scales["smoke"], "float32", repeats=1)
    assert result["check"]["bit_identical"] is False
    assert result["check"]["names_identical"] is True


@pytest.mark.slow
def test_smoke_run_emits_json_with_passing_check():
    """`bench_ema.py --smoke --json --workloads C,build` exits 0 with complete JSON and a passed check."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", "--workloads", "C,build"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["meta"]["mode"] == "smoke"
    assert {"tensorflow", "ours", "reference", "date", "load_average_start"} <= set(report["meta"])
    assert report["checks_passed"] is True
    rows = {r["workload"]: r for r in report["results"]}
    assert set(rows) == {"C", "build"}
    for row in rows.values():
        assert {"median", "min", "q1", "q3", "iqr", "samples"} <= set(row["ours"])
        assert set(row["ours"]) == set(row["reference"])
        assert row["ratio"] > 0
    assert rows["C"]["check"]["bit_identical"] is True
    assert rows["C"]["floor"]["median"] > 0
    assert rows["build"]["check"] == {"bit_identical": None, "names_identical": True, "detail": ""}
