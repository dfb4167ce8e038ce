"""Step time of one EMA update: TF1's ops vs tf1_ema's fused op vs its graph path vs a memory floor.

Workloads (issue #6):
  A   one float32 variable of 64M elements
  B   10M float32 parameters in 200 variables
  C   2000 float32 variables of 100 elements
  and the same in float16 and bfloat16 (A at 16M elements there).

Methods, each updating its own shadows in the same graph and session, timed
interleaved (one run of each in turn), medians reported:
  stock   tf.compat.v1.train.ExponentialMovingAverage(decay).apply(vars)
  fused   tf1_ema._build.plain_updates (one Tf1EmaUpdate op)
  graph   the same with TF1_EMA_FAST=0 (TF1's Sub, Mul, AssignSubVariableOp per variable)
  floor   NumPy ``a += b`` over the same bytes (read shadow, read variable,
          write shadow), single-threaded as in the issue; ``floor2`` the same
          on two threads (each half of every array); ``noop`` is Session.run
          of a NoOp.

Peak memory is how far the CPU allocator's peak rises above its level before
one update (``tf.config.experimental.get_memory_info``), i.e. the temporaries
an update allocates.
After timing, the shadows of the three methods are compared bit for bit.

Prints ratios against stock; never passes or fails on time. The machine is
shared and noisy: compare ratios, not absolute times.

Usage: python benchmarks/bench_update_op.py [--quick] [--repeats N] [--only A,B16]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf1_ema import _build, _update_op  # noqa: E402

v1 = tf.compat.v1
DECAY = 0.999

WORKLOADS = {
    "A": (tf.float32, [64 * 2**20]),
    "B": (tf.float32, [50_000] * 200),
    "C": (tf.float32, [100] * 2000),
    "A16": (tf.float16, [16 * 2**20]),
    "B16": (tf.float16, [50_000] * 200),
    "C16": (tf.float16, [100] * 2000),
    "Abf16": (tf.bfloat16, [16 * 2**20]),
    "Bbf16": (tf.bfloat16, [50_000] * 200),
    "Cbf16": (tf.bfloat16, [100] * 2000),
}
QUICK = ("A", "B", "C")


def _peak_growth_mib(fn) -> float:
    """MiB by which the CPU allocator's peak in-use bytes exceed its level before ``fn()`` (NaN if unknown)."""
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        fn()
        return (tf.config.experimental.get_memory_info("CPU:0")["peak"] - before) / 2**20
    except (ValueError, RuntimeError, tf.errors.OpError):
        return float("nan")


def _build(dtype, sizes, rng):
    """Variables, three sets of shadows and the update op of each method, in the current graph."""
    init = [rng.standard_normal(n).astype(dtype.as_numpy_dtype) for n in sizes]
    variables = [v1.get_variable("w%d" % i, initializer=x, use_resource=True) for i, x in enumerate(init)]
    ops = {}
    t0 = time.perf_counter()
    ema = v1.train.ExponentialMovingAverage(DECAY)
    ops["stock"] = ema.apply(variables)
    build_stock = time.perf_counter() - t0
    shadows = {"stock": [ema.average(v) for v in variables]}
    for method, fast in (("fused", "1"), ("graph", "0")):
        shadows[method] = [
            v1.get_variable("%s/w%d" % (method, i), initializer=x, use_resource=True, trainable=False)
            for i, x in enumerate(init)
        ]
        os.environ[_update_op.FAST_ENV] = fast
        t0 = time.perf_counter()
        with v1.name_scope("ExponentialMovingAverage_" + method):
            decay = tf.convert_to_tensor(DECAY, tf.float32)
            ops[method] = _build.plain_updates(shadows[method], variables, 1.0 - decay, name=method)
        if method == "fused":
            build_fused = time.perf_counter() - t0
    os.environ.pop(_update_op.FAST_ENV)
    ops["noop"] = tf.no_op()
    return ops, shadows, (build_stock, build_fused)


def run(name: str, repeats: int, rng) -> dict:
    """Times one workload; returns medians in ms, peak-RSS growth in MiB and the bit check."""
    dtype, sizes = WORKLOADS[name]
    graph = tf.Graph()
    with graph.as_default():
        ops, shadows, builds = _build(dtype, sizes, rng)
        total = sum(sizes)
        itemsize = dtype.size
        # The floor: one read-modify-write pass over shadow and variable bytes.
        floor_dtype = np.float32 if itemsize == 4 else np.uint16
        floor_a = [np.ones(n, floor_dtype) for n in sizes]
        floor_b = [np.ones(n, floor_dtype) for n in sizes]

        def floor():
            for a, b in zip(floor_a, floor_b):
                a += b

        # The same on both cores (NumPy releases the GIL): each thread takes one half of every array.
        halves = [
            [(a[: len(a) // 2], b[: len(b) // 2]) for a, b in zip(floor_a, floor_b)],
            [(a[len(a) // 2 :], b[len(b) // 2 :]) for a, b in zip(floor_a, floor_b)],
        ]

        def add_pairs(pairs):
            for a, b in pairs:
                a += b

        pool = concurrent.futures.ThreadPoolExecutor(2)

        def floor2():
            list(pool.map(add_pairs, halves))

        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            timed = {m: (lambda op=op: sess.run(op)) for m, op in ops.items()}
            timed["floor"] = floor
            timed["floor2"] = floor2
            times = {m: [] for m in timed}
            for fn in timed.values():  # warm-up
                fn()
            for _ in range(repeats):
                for m, fn in timed.items():
                    t0 = time.perf_counter()
                    fn()
                    times[m].append(time.perf_counter() - t0)
            peaks = {m: _peak_growth_mib(timed[m]) for m in ("stock", "fused", "graph")}
            values = sess.run(shadows)
        pool.shutdown()
    same = {
        m: all(np.array_equal(a.view(np.uint8), b.view(np.uint8)) for a, b in zip(values["stock"], values[m]))
        for m in ("fused", "graph")
    }
    medians = {m: 1e3 * statistics.median(t) for m, t in times.items()}
    return {"total": total, "vars": len(sizes), "ms": medians, "peak": peaks, "same": same, "build": builds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="workloads A, B, C only, 5 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 15, quick 5)")
    parser.add_argument("--only", default=None, help="comma-separated workload names, e.g. A,B16")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else (QUICK if args.quick else list(WORKLOADS))
    repeats = args.repeats or (5 if args.quick else 15)
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    lib = _update_op.load_library()
    print("Tf1EmaUpdate library: %s (loaded or built in %.1f s)" % (
        "unavailable" if lib is None else _update_op.library_path(), time.perf_counter() - t0))
    print("TensorFlow %s, %d CPUs, median of %d interleaved runs; times in ms, ratios vs stock"
          % (tf.__version__, os.cpu_count(), repeats))
    header = "%-6s %10s %5s | %8s %8s %8s %8s %8s %7s | %6s %6s %6s %6s | %s | %s | %s"
    print(header % ("work", "params", "vars", "stock", "fused", "graph", "floor", "floor2", "noop",
                    "fused", "graph", "floor", "floor2", "peak MiB stock/fused/graph", "bits", "build s stock/fused"))
    for name in names:
        r = run(name, repeats, rng)
        ms = r["ms"]
        print(
            "%-6s %10d %5d | %8.2f %8.2f %8.2f %8.2f %8.2f %7.3f | %6.3f %6.3f %6.3f %6.3f | %6.0f %6.0f %6.0f        "
            "| %s | %.2f / %.2f"
            % (
                name, r["total"], r["vars"], ms["stock"], ms["fused"], ms["graph"], ms["floor"], ms["floor2"],
                ms["noop"], ms["fused"] / ms["stock"], ms["graph"] / ms["stock"], ms["floor"] / ms["stock"],
                ms["floor2"] / ms["stock"],
                r["peak"]["stock"], r["peak"]["fused"], r["peak"]["graph"],
                "same" if all(r["same"].values()) else "DIFF %s" % r["same"],
                r["build"][0], r["build"][1],
            )
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
