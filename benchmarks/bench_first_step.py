"""Time to first step of ``ExponentialMovingAverage.apply`` for large models (issue 7).

For each number of variables, each implementation runs in its own fresh Python
process, on a model whose variables already exist (created before timing):

    build   ``op = ema.apply(var_list)``
    init    ``sess.run(tf.compat.v1.global_variables_initializer())``
            (the model's own variables included, as in a real first run)
    step    the first ``sess.run(op)``

Implementations (``--impls``):

    stock        ``tf.compat.v1.train.ExponentialMovingAverage``
    ours         ``tf1_ema.ExponentialMovingAverage`` as it builds by default:
                 fast shadows (``tf1_ema._build``) and the fused update op
                 (``tf1_ema._update_op``, compiled before timing)
    ours-ref     ``tf1_ema.ExponentialMovingAverage`` with ``TF1_EMA_FAST=0``:
                 TF1's graph op for op

Workloads (``--workload``): ``variables`` averages N resource variables of
mixed small shapes; ``debias`` averages N tensors with ``zero_debias=True``
(TF1 then creates ``biased``/``local_step`` per tensor). ``--tf1`` switches
TensorFlow to TF1 behaviour first (ref variables, v1 control flow), as
``tf1-ema run`` does.

Wall and CPU seconds are printed; the machine may be shared, so compare the
ratios of one run. After the first step a checksum of every shadow's bytes
and name is printed per row: rows of one size must agree, else the exit
status is 1 (a fast wrong answer is not a result). Nothing passes or fails on
time.

Usage::

    .venv/bin/python benchmarks/bench_first_step.py                     # 200 and 2000
    .venv/bin/python benchmarks/bench_first_step.py --sizes 10000 --impls ours,ours-ref
    .venv/bin/python benchmarks/bench_first_step.py --workload debias --tf1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

IMPLS = ("stock", "ours", "ours-ref")
SHAPES = ((4, 4), (16,), (3, 3, 2, 2), (8, 8), ())
DECAY = 0.99


def _clock():
    """(wall, cpu) seconds; cpu counts every thread of the process."""
    return time.perf_counter(), time.process_time()


def _since(start) -> Dict[str, float]:
    wall, cpu = _clock()
    return {"wall": wall - start[0], "cpu": cpu - start[1]}


def run_row(impl: str, size: int, workload: str, tf1: bool) -> Dict:
    """Builds, initializes and steps one model in this process; returns the timings."""
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    if tf1:
        v1.disable_v2_behavior()
    if impl == "ours-ref":
        os.environ["TF1_EMA_FAST"] = "0"
    if impl != "stock":
        import tf1_ema
        from tf1_ema import _update_op

        _update_op.load_library()  # compile/load before timing
    ema_class = v1.train.ExponentialMovingAverage if impl == "stock" else tf1_ema.ExponentialMovingAverage
    graph = tf.Graph()
    with graph.as_default():
        variables = [
            v1.get_variable(
                "layer%d/w" % i, shape=SHAPES[i % len(SHAPES)], initializer=v1.random_normal_initializer(seed=i)
            )
            for i in range(size)
        ]
        primaries = variables if workload == "variables" else [tf.identity(v) * 0.5 for v in variables]
        ema = ema_class(DECAY, zero_debias=(workload == "debias"))
        start = _clock()
        op = ema.apply(primaries)
        build = _since(start)
        init_op = v1.global_variables_initializer()
        with v1.Session(graph=graph) as sess:
            start = _clock()
            sess.run(init_op)
            init = _since(start)
            start = _clock()
            sess.run(op)
            step = _since(start)
            shadows = [ema.average(p) for p in primaries]
            values = sess.run(shadows)
        digest = hashlib.sha256()
        for shadow, value in zip(shadows, values):
            digest.update(shadow.name.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        globals_ = [v.name for v in v1.global_variables()]
        digest.update("\n".join(globals_).encode())
    return {
        "impl": impl,
        "size": size,
        "workload": workload,
        "tf1": tf1,
        "build": build,
        "init": init,
        "step": step,
        "checksum": digest.hexdigest()[:16],
    }


def _row_in_subprocess(impl: str, size: int, workload: str, tf1: bool, timeout: float) -> Dict:
    cmd = [sys.executable, __file__, "--row", impl, str(size), workload, str(int(tf1))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return {"impl": impl, "size": size, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(t: Dict[str, float]) -> str:
    return "%7.2f /%7.2f" % (t["wall"], t["cpu"])


def print_table(rows: List[Dict]) -> int:
    """Prints wall/cpu per phase and each impl's total as a fraction of stock's; returns the exit status."""
    status = 0
    print("%-11s %6s  %-16s %-16s %-16s %-16s %s" % ("impl", "vars", "build wall/cpu", "init wall/cpu",
                                                     "step wall/cpu", "total wall/cpu", "vs stock (wall, cpu)"))
    by_size: Dict[int, Dict[str, Dict]] = {}
    for row in rows:
        by_size.setdefault(row["size"], {})[row["impl"]] = row
    for size in sorted(by_size):
        stock = by_size[size].get("stock")
        sums = set()
        for impl in IMPLS:
            row = by_size[size].get(impl)
            if row is None:
                continue
            if "error" in row:
                print("%-11s %6d  error: %s" % (impl, size, row["error"]))
                status = 1
                continue
            total = {k: row["build"][k] + row["init"][k] + row["step"][k] for k in ("wall", "cpu")}
            row["total"] = total
            ratio = ""
            if stock is not None and "total" in stock:
                ratio = "%.3f, %.3f" % (total["wall"] / stock["total"]["wall"], total["cpu"] / stock["total"]["cpu"])
            print("%-11s %6d  %s %s %s %s %s" % (impl, size, _fmt(row["build"]), _fmt(row["init"]),
                                                 _fmt(row["step"]), _fmt(total), ratio))
            sums.add(row["checksum"])
        if len(sums) > 1:
            print("  MISMATCH: shadows or names differ between implementations at %d variables" % size)
            status = 1
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000", help="comma-separated numbers of variables")
    parser.add_argument("--impls", default="stock,ours", help="comma-separated, from: " + ", ".join(IMPLS))
    parser.add_argument("--workload", choices=("variables", "debias"), default="variables")
    parser.add_argument("--tf1", action="store_true", help="TF1 behaviour: ref variables, v1 control flow")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per row")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--row", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        impl, size, workload, tf1 = args.row
        print(json.dumps(run_row(impl, int(size), workload, bool(int(tf1)))))
        return 0
    impls = [i for i in args.impls.split(",") if i]
    unknown = set(impls) - set(IMPLS)
    if unknown:
        parser.error("unknown impls: %s" % ", ".join(sorted(unknown)))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for impl in impls:
            rows.append(_row_in_subprocess(impl, size, args.workload, args.tf1, args.timeout))
            print("  done: %s %d" % (impl, size), file=sys.stderr, flush=True)
    print("workload=%s tf1=%s  (seconds; total = build + init + first step)" % (args.workload, args.tf1))
    status = print_table(rows)
    if args.json:
        print(json.dumps(rows))
    return status


if __name__ == "__main__":
    sys.exit(main())
