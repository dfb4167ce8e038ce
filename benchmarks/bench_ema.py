"""Times tf1_ema.ExponentialMovingAverage against TensorFlow's own, in one process.

Both implementations are built in graph mode, each in its own fresh ``tf.Graph``
and session, on the same variables and the same input values. The timed runs of
the two alternate (ours, reference, reference, ours, ...) so that drift in
machine load hits both alike. After timing, the shadows of both are fetched and
compared bit for bit: a fast wrong answer is not a result.

Workloads (see ``WORKLOADS``):

    A            one variable of 64Mi elements: the update is pure memory traffic
    B            10M parameters over 200 variables of mixed sizes: a typical model
    C            2000 variables of 100 elements: per-variable overhead
    build        wall time of ``apply()`` over 2000 variables
    first-N      build ``apply()`` + run the initializer + the first step, N variables

A and B also run in float16 and bfloat16 (``--dtypes``). Per-step workloads are
compared with a NumPy "floor", ``shadow -= (shadow - value) * k`` in float32
over the same number of bytes: each parameter reads the shadow and the value
and writes the shadow, 3 x itemsize = 12 bytes in float32, so memory bandwidth
bounds any implementation from below (see ``_numpy_floor``).

Usage::

    .venv/bin/python benchmarks/bench_ema.py --quick
    .venv/bin/python benchmarks/bench_ema.py --workloads A,B --dtypes float32 --repeats 31
    .venv/bin/python benchmarks/bench_ema.py --smoke --json

Nothing here passes or fails on time. The exit status is 1 only when the two
implementations disagree (values or names), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

# Both must be set before TensorFlow is first imported (it is imported lazily in
# main(), so that the parser and the pure helpers load without it).
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Benchmark the working tree this script lives in, not whatever is installed.
sys.path.insert(0, str(REPO_ROOT))

DECAY = 0.99
CHECK_STEPS = 3  # extra updates after loading fresh values, before comparing shadows
SEED = 20240501
MI = 1 << 20

MODES = ("full", "quick", "smoke")
ALL_DTYPES = ("float32", "float16", "bfloat16")
FLOAT32_ONLY = ("float32",)


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big one workload is, and how often it is timed, in one mode.

    Attributes:
      variables: number of variables.
      params: total number of elements over all variables.
      warmup: untimed runs per implementation before the timed ones.
      repeats: timed runs per implementation.
    """

    variables: int
    params: int
    warmup: int
    repeats: int


@dataclasses.dataclass(frozen=True)
class Workload:
    """One row family of the benchmark.

    Attributes:
      name: what ``--workloads`` selects it by.
      kind: "step" times ``sess.run(ema_op)``; "build" times ``apply()``;
        "first-step" times ``apply()`` + initializer + first ``sess.run``.
      layout: "uniform" (equal sizes) or "mixed" (see ``mixed_sizes``).
      dtypes: the dtypes it runs in (filtered by ``--dtypes``).
      description: one line for the README and ``--list``.
      scales: per mode; a mode without an entry skips the workload.
    """

    name: str
    kind: str
    layout: str
    dtypes: Tuple[str, ...]
    description: str
    scales: Mapping[str, Scale]


# One-shot workloads (build, first-step) need a fresh graph per timed run and
# cost seconds each, hence their few repeats and no per-workload warm-up: the
# process is warmed once, on a tiny graph, before anything is timed.
WORKLOADS: Tuple[Workload, ...] = (
    Workload(
        "A", "step", "uniform", ALL_DTYPES,
        "one variable, 64Mi elements: bandwidth-bound elementwise update",
        {
            "full": Scale(1, 64 * MI, warmup=3, repeats=15),
            "quick": Scale(1, 4 * MI, warmup=2, repeats=9),
            "smoke": Scale(1, 4096, warmup=1, repeats=3),
        },
    ),
    Workload(
        "B", "step", "mixed", ALL_DTYPES,
        "10M parameters over 200 variables of mixed sizes: a typical model",
        {
            "full": Scale(200, 10_000_000, warmup=3, repeats=15),
            "quick": Scale(40, 1_000_000, warmup=2, repeats=9),
            "smoke": Scale(8, 10_000, warmup=1, repeats=3),
        },
    ),
    Workload(
        "C", "step", "uniform", FLOAT32_ONLY,
        "2000 variables of 100 elements: per-variable overhead per step",
        {
            "full": Scale(2000, 200_000, warmup=3, repeats=21),
            "quick": Scale(100, 10_000, warmup=2, repeats=9),
            "smoke": Scale(20, 2_000, warmup=1, repeats=3),
        },
    ),
    Workload(
        "build", "build", "uniform", FLOAT32_ONLY,
        "wall time of apply() over 2000 variables of 100 elements",
        {
            "full": Scale(2000, 200_000, warmup=0, repeats=3),
            "quick": Scale(100, 10_000, warmup=0, repeats=3),
            "smoke": Scale(20, 2_000, warmup=0, repeats=1),
        },
    ),
    Workload(
        "first-200", "first-step", "uniform", FLOAT32_ONLY,
        "apply() + global_variables_initializer + first step, 200 variables",
        {
            "full": Scale(200, 20_000, warmup=0, repeats=3),
            "quick": Scale(200, 20_000, warmup=0, repeats=3),
            "smoke": Scale(20, 2_000, warmup=0, repeats=1),
        },
    ),
    Workload(
        "first-2000", "first-step", "uniform", FLOAT32_ONLY,
        "apply() + global_variables_initializer + first step, 2000 variables",
        {
            "full": Scale(2000, 200_000, warmup=0, repeats=1),
        },
    ),
    Workload(
        "first-10000", "first-step", "uniform", FLOAT32_ONLY,
        "apply() + global_variables_initializer + first step, 10000 variables",
        {
            "full": Scale(10_000, 1_000_000, warmup=0, repeats=1),
        },
    ),
)

# Names --workloads accepts besides the workload names themselves.
GROUPS: Mapping[str, Tuple[str, ...]] = {
    "first-step": tuple(w.name for w in WORKLOADS if w.kind == "first-step"),
    "all": tuple(w.name for w in WORKLOADS),
}


# ---------------------------------------------------------------------------
# Pure helpers (no TensorFlow)
# ---------------------------------------------------------------------------


def mixed_sizes(count: int, total: int) -> List[int]:
    """Deterministic variable sizes of widely varying magnitude that sum to ``total``.

    Size i is proportional to 2 ** (i % 16), a 1 : 32768 spread like a model's
    weight matrices next to its biases; every size is at least 1 and rounding
    is absorbed by the largest variable.

    >>> mixed_sizes(4, 100)
    [6, 13, 26, 55]

    Args:
      count: number of variables.
      total: number of parameters over all of them; at least ``count``.

    Returns:
      ``count`` positive sizes summing to ``total``.

    Raises:
      ValueError: if ``total < count``.
    """
    if total < count:
        raise ValueError("need at least one parameter per variable: %d < %d" % (total, count))
    weights = [2 ** (i % 16) for i in range(count)]
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    largest = sizes.index(max(sizes))
    sizes[largest] += total - sum(sizes)
    return sizes


def variable_sizes(layout: str, count: int, total: int) -> List[int]:
    """Sizes of ``count`` variables holding ``total`` parameters in the given layout.

    Args:
      layout: "uniform" (as equal as possible) or "mixed" (``mixed_sizes``).
      count: number of variables.
      total: number of parameters over all of them.

    Returns:
      A list of ``count`` positive sizes summing to ``total``.
    """
    if layout == "mixed":
        return mixed_sizes(count, total)
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def select_workloads(spec: str, mode: str) -> List[Workload]:
    """The workloads named in a comma-separated ``spec`` that exist in ``mode``, in table order.

    Args:
      spec: e.g. "A,B,first-step"; group names from ``GROUPS`` expand.
      mode: one of ``MODES``.

    Returns:
      The selected workloads, without duplicates.

    Raises:
      ValueError: for an unknown name.
    """
    known = {w.name for w in WORKLOADS}
    wanted = set()
    for name in (part.strip() for part in spec.split(",")):
        if not name:
            continue
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in known:
            wanted.add(name)
        else:
            raise ValueError(
                "unknown workload %r; choose from %s" % (name, ", ".join(sorted(known | set(GROUPS))))
            )
    return [w for w in WORKLOADS if w.name in wanted and mode in w.scales]


def summarize(samples: Sequence[float]) -> Dict[str, Any]:
    """Median, min, quartiles and IQR of timing samples (seconds).

    Args:
      samples: at least one duration.

    Returns:
      A dict with median, min, max, q1, q3, iqr and the samples themselves.
    """
    ordered = sorted(samples)
    if len(ordered) > 1:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "samples": list(samples),
    }


def time_interleaved(
    subjects: Mapping[str, Callable[[], Callable[[], object]]], repeats: int, warmup: int
) -> Dict[str, List[float]]:
    """Times each subject ``warmup + repeats`` times, alternating their order every round.

    Each subject is a ``prepare`` callable that does the untimed set-up and
    returns the callable to time (for a per-step workload it returns the same
    closure every time; for a one-shot workload it builds a fresh graph). Round
    i runs the subjects in table order when i is even and in reverse when odd,
    so neither side is systematically first after a pause. The garbage
    collector is off during each timed call, as in ``timeit``.

    Args:
      subjects: name -> prepare callable.
      repeats: timed rounds.
      warmup: untimed rounds before them.

    Returns:
      name -> list of ``repeats`` durations in seconds.
    """
    names = list(subjects)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            run = subjects[name]()
            gc.disable()
            try:
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
            finally:
                gc.enable()
            if round_index >= warmup:
                samples[name].append(elapsed)
    return samples


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; imports nothing heavy.

    Returns:
      An ``argparse.ArgumentParser`` for this script.
    """
    parser = argparse.ArgumentParser(
        prog="bench_ema.py",
        description=(
            "Time sess.run(ema_op) and apply() of tf1_ema.ExponentialMovingAverage against "
            "tf.compat.v1.train.ExponentialMovingAverage, and check they agree bit for bit."
        ),
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_const", dest="mode", const="quick",
        help="reduced sizes and repeats, under a minute on 2 cores (labelled as such)",
    )
    size.add_argument(
        "--smoke", action="store_const", dest="mode", const="smoke",
        help="tiny sizes, one or three repeats: only proves the script runs (used by tests)",
    )
    parser.set_defaults(mode="full")
    parser.add_argument(
        "--workloads", default="all", metavar="LIST",
        help="comma-separated: %s, or the groups %s (default: all)"
        % (", ".join(w.name for w in WORKLOADS), ", ".join(GROUPS)),
    )
    parser.add_argument(
        "--dtypes", default=",".join(ALL_DTYPES), metavar="LIST",
        help="dtypes for A and B, comma-separated (default: %(default)s); others run float32",
    )
    parser.add_argument(
        "--repeats", type=_positive_int, default=None, metavar="N",
        help="timed runs per implementation for every workload (default: per workload and mode)",
    )
    parser.add_argument(
        "--variables", choices=("resource", "ref"), default="resource",
        help="variable kind: resource (tf.compat.v1 default under TF2) or ref (TF1 graphs; "
        "also turns control flow v2 off, as TF1 ran)",
    )
    parser.add_argument(
        "--num-updates", action="store_true",
        help="pass a global-step variable as num_updates (adds the min(decay, ...) ops)",
    )
    parser.add_argument(
        "--ours", choices=("tf1_ema", "stock"), default="tf1_ema",
        help="'stock' benchmarks the stock class against itself: an A/A run that shows the noise",
    )
    parser.add_argument("--json", action="store_true", help="print JSON results instead of the tables")
    parser.add_argument("--list", action="store_true", help="list the workloads and their sizes, then exit")
    return parser


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %d" % value)
    return value


def _parse_dtypes(spec: str) -> Tuple[str, ...]:
    """The dtypes named in a comma-separated ``spec``, validated, in canonical order."""
    names = {part.strip() for part in spec.split(",") if part.strip()}
    unknown = names - set(ALL_DTYPES)
    if unknown or not names:
        raise ValueError("--dtypes takes a list from %s, got %r" % (", ".join(ALL_DTYPES), spec))
    return tuple(d for d in ALL_DTYPES if d in names)


# ---------------------------------------------------------------------------
# TensorFlow side
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Model:
    """One implementation's graph: the variables, the EMA object and, once built, its ops."""

    graph: Any
    variables: List[Any]
    ema: Any
    update_op: Any = None
    session: Any = None
    loader: Any = None  # (placeholders, assign op), built on first use

    def close(self) -> None:
        """Closes the session, if any."""
        if self.session is not None:
            self.session.close()
            self.session = None


class _Bench:
    """Builds and times the workloads for one pair of EMA classes.

    Args:
      tf: the imported ``tensorflow`` module (graph mode already on).
      ours: our EMA class.
      reference: the stock EMA class.
      ref_variables: build ref variables instead of resource variables.
      num_updates: give the EMA a global-step variable as ``num_updates``.
    """

    def __init__(self, tf: Any, ours: type, reference: type, ref_variables: bool, num_updates: bool) -> None:
        self.tf = tf
        self.classes = {"ours": ours, "reference": reference}
        self.ref_variables = ref_variables
        self.num_updates = num_updates

    # -- graph building ----------------------------------------------------

    def new_model(self, impl: str, sizes: Sequence[int], dtype: str) -> _Model:
        """A fresh graph holding zero-initialized variables and an (unapplied) EMA."""
        tf = self.tf
        graph = tf.Graph()
        with graph.as_default():
            variables = [
                tf.compat.v1.Variable(
                    tf.zeros([n], dtype=dtype), name="v%d" % i, use_resource=not self.ref_variables
                )
                for i, n in enumerate(sizes)
            ]
            step = None
            if self.num_updates:
                step = tf.compat.v1.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            ema = self.classes[impl](DECAY, num_updates=step)
        return _Model(graph, variables, ema)

    def apply(self, model: _Model) -> None:
        """Builds the update op (``ema.apply``) in the model's graph."""
        with model.graph.as_default():
            model.update_op = model.ema.apply(model.variables)

    def start(self, model: _Model) -> None:
        """Opens a session and runs ``global_variables_initializer``."""
        with model.graph.as_default():
            init = self.tf.compat.v1.global_variables_initializer()
        model.session = self.tf.compat.v1.Session(graph=model.graph)
        model.session.run(init)

    def load(self, model: _Model, values: Sequence[Any]) -> None:
        """Assigns ``values`` (float32 arrays, cast in the graph) to the variables, not the shadows."""
        tf = self.tf
        if model.loader is None:
            with model.graph.as_default():
                placeholders = [tf.compat.v1.placeholder(tf.float32, v.shape) for v in model.variables]
                assign = tf.group(*[
                    v.assign(tf.cast(p, v.dtype.base_dtype)) for v, p in zip(model.variables, placeholders)
                ])
            model.loader = (placeholders, assign)
        placeholders, assign = model.loader
        model.session.run(assign, feed_dict=dict(zip(placeholders, values)))

    def step_model(self, impl: str, sizes: Sequence[int], dtype: str, values: Sequence[Any]) -> _Model:
        """A model ready to step: applied, initialized, variables loaded with ``values``."""
        model = self.new_model(impl, sizes, dtype)
        self.apply(model)
        self.start(model)
        self.load(model, values)
        return model

    # -- measurements --------------------------------------------------------

    def alloc_bytes_per_step(self, model: _Model) -> Optional[int]:
        """Bytes the allocator hands out during one traced ``sess.run(update_op)``.

        These are the step's temporaries (e.g. ``shadow - value``); reads of
        variables alias their buffers and cost nothing here. The traced run is
        one more update, made on both sides alike. None if TF reports nothing.
        """
        tf = self.tf
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        metadata = tf.compat.v1.RunMetadata()
        model.session.run(model.update_op, options=options, run_metadata=metadata)
        total, seen = 0, False
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                for memory in node.memory:
                    total += memory.total_bytes
                    seen = True
        return total if seen else None

    def compare(self, models: Mapping[str, _Model], values: Optional[Sequence[Any]]) -> Dict[str, Any]:
        """Checks that both implementations hold the same shadows, bit for bit, under the same names.

        With ``values``, both models first get them loaded and take
        ``CHECK_STEPS`` more updates, so that the shadows differ from the
        variables and rounding is exercised. Without, only names are compared.

        Returns:
          {"bit_identical": bool or None (not run), "names_identical": bool,
          "detail": str}.
        """
        names = {
            impl: [(m.ema.average_name(v), m.ema.average(v).op.name) for v in m.variables]
            for impl, m in models.items()
        }
        names_identical = names["ours"] == names["reference"]
        details = []
        if not names_identical:
            pairs = [(a, b) for a, b in zip(names["ours"], names["reference"]) if a != b]
            details.append("names differ, first: ours %s vs reference %s" % pairs[0] if pairs
                           else "shadow counts differ")
        if values is None:
            return {"bit_identical": None, "names_identical": names_identical, "detail": "; ".join(details)}
        fetched = {}
        for impl, model in models.items():
            self.load(model, values)
            for _ in range(CHECK_STEPS):
                model.session.run(model.update_op)
            fetched[impl] = model.session.run([model.ema.average(v) for v in model.variables])
        mismatches = [
            i for i, (a, b) in enumerate(zip(fetched["ours"], fetched["reference"])) if not same_bits(a, b)
        ]
        if mismatches:
            details.append("%d of %d shadows differ, first: %s" % (
                len(mismatches), len(fetched["ours"]), models["reference"].variables[mismatches[0]].op.name))
        return {"bit_identical": not mismatches, "names_identical": names_identical, "detail": "; ".join(details)}

    # -- workloads -----------------------------------------------------------

    def run_step(self, workload: Workload, scale: Scale, dtype: str, repeats: int) -> Dict[str, Any]:
        """Times ``sess.run(ema_op)`` for both implementations and the NumPy floor."""
        sizes = variable_sizes(workload.layout, scale.variables, scale.params)
        values = _input_values(sizes)
        models = {impl: self.step_model(impl, sizes, dtype, values) for impl in self.classes}
        floor_step, floor_dtype = _numpy_floor(self.tf, dtype, values)
        subjects = {
            impl: (lambda m=m: (lambda: m.session.run(m.update_op))) for impl, m in models.items()
        }
        subjects["floor"] = lambda: floor_step
        samples = time_interleaved(subjects, repeats=repeats, warmup=scale.warmup)
        alloc = {impl: self.alloc_bytes_per_step(m) for impl, m in models.items()}
        check = self.compare(models, values)
        for model in models.values():
            model.close()
        result = _result(workload, scale, dtype, repeats, samples, check)
        for impl in self.classes:
            result[impl]["alloc_bytes_per_step"] = alloc[impl]
        result["floor"] = dict(summarize(samples["floor"]), dtype=floor_dtype)
        result["traffic_bytes_per_step"] = 3 * _itemsize(self.tf, dtype) * scale.params
        return result

    def run_build(self, workload: Workload, scale: Scale, repeats: int) -> Dict[str, Any]:
        """Times ``apply()`` on fresh graphs; checks shadow names on the last pair."""
        sizes = variable_sizes(workload.layout, scale.variables, scale.params)
        last: Dict[str, _Model] = {}

        def prepare(impl: str) -> Callable[[], None]:
            model = last[impl] = self.new_model(impl, sizes, "float32")
            return lambda: self.apply(model)

        subjects = {impl: (lambda impl=impl: prepare(impl)) for impl in self.classes}
        samples = time_interleaved(subjects, repeats=repeats, warmup=scale.warmup)
        check = self.compare(last, values=None)
        return _result(workload, scale, "float32", repeats, samples, check)

    def run_first_step(self, workload: Workload, scale: Scale, repeats: int) -> Dict[str, Any]:
        """Times apply() + initializer + first step on fresh graphs; checks the last pair fully."""
        tf = self.tf
        sizes = variable_sizes(workload.layout, scale.variables, scale.params)
        last: Dict[str, _Model] = {}

        def prepare(impl: str) -> Callable[[], None]:
            if impl in last:
                last[impl].close()
            model = last[impl] = self.new_model(impl, sizes, "float32")
            model.session = tf.compat.v1.Session(graph=model.graph)

            def first_step() -> None:
                with model.graph.as_default():
                    model.update_op = model.ema.apply(model.variables)
                    init = tf.compat.v1.global_variables_initializer()
                model.session.run(init)
                model.session.run(model.update_op)

            return first_step

        subjects = {impl: (lambda impl=impl: prepare(impl)) for impl in self.classes}
        samples = time_interleaved(subjects, repeats=repeats, warmup=scale.warmup)
        check = self.compare(last, _input_values(sizes))
        for model in last.values():
            model.close()
        return _result(workload, scale, "float32", repeats, samples, check)

    def warm_process(self) -> None:
        """Builds, initializes and steps a two-variable graph per implementation, untimed.

        Pays the process's one-time costs (lazy imports, first session, kernel
        registration) before any one-shot workload is timed.
        """
        for impl in self.classes:
            model = self.step_model(impl, [3, 5], "float32", _input_values([3, 5]))
            model.session.run(model.update_op)
            model.close()


def _input_values(sizes: Sequence[int]) -> List[Any]:
    """Deterministic float32 standard-normal values, one array per variable."""
    import numpy as np

    flat = np.random.default_rng(SEED).standard_normal(sum(sizes), dtype=np.float32)
    return np.split(flat, np.cumsum(sizes)[:-1])


def _itemsize(tf: Any, dtype: str) -> int:
    """Bytes per element of a TensorFlow dtype name."""
    return tf.as_dtype(dtype).size


def _numpy_floor(tf: Any, dtype: str, values: Sequence[Any]) -> Tuple[Callable[[], None], str]:
    """NumPy's ``shadow -= (shadow - value) * k`` over one flat buffer of the same bytes.

    This is the memory-traffic floor: per parameter it reads the shadow and the
    value and writes the shadow, 3 x itemsize bytes. Three choices keep it a
    floor rather than a NumPy benchmark:

    * one flat array, not one per variable: a Python loop over 2000 arrays
      would time the interpreter, not memory;
    * the temporary ``shadow - value`` lives in a preallocated scratch buffer:
      a fresh multi-MiB temporary per call costs page faults every time,
      which TensorFlow's pooled allocator does not pay;
    * 16-bit dtypes are timed as float32 over the same number of *bytes*
      (half the elements): NumPy's float16 (and ml_dtypes' bfloat16)
      arithmetic is scalar code that would time the conversions instead.

    Returns:
      The step callable and the NumPy dtype name it runs in.
    """
    import numpy as np

    itemsize = tf.as_dtype(dtype).size
    flat = np.concatenate(values).astype(np.float32)
    # Same bytes: a 2-byte dtype becomes half as many float32 elements.
    value = flat[: max(1, flat.size * itemsize // 4)].copy()
    shadow = np.zeros_like(value)
    scratch = np.empty_like(value)
    k = np.float32(1.0 - DECAY)

    def floor_step() -> None:
        np.subtract(shadow, value, out=scratch)
        np.multiply(scratch, k, out=scratch)
        np.subtract(shadow, scratch, out=shadow)

    return floor_step, value.dtype.name


def same_bits(a: Any, b: Any) -> bool:
    """Whether two arrays have the same dtype, shape and bytes (so -0.0 != 0.0, NaN == same NaN).

    Args:
      a: an array.
      b: another array.

    Returns:
      True when they are bit-for-bit identical.
    """
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    unsigned = np.dtype("u%d" % a.dtype.itemsize)
    return bool(np.array_equal(a.view(unsigned), b.view(unsigned)))


def _result(workload: Workload, scale: Scale, dtype: str, repeats: int,
            samples: Mapping[str, Sequence[float]], check: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON record of one workload row."""
    ours, ref = summarize(samples["ours"]), summarize(samples["reference"])
    return {
        "workload": workload.name,
        "kind": workload.kind,
        "dtype": dtype,
        "variables": scale.variables,
        "params": scale.params,
        "warmup": scale.warmup,
        "repeats": repeats,
        "ours": ours,
        "reference": ref,
        "ratio": ours["median"] / ref["median"],
        "floor": None,
        "traffic_bytes_per_step": None,
        "check": check,
    }


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load_average() -> Optional[List[float]]:
    """The 1/5/15-minute load averages, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _fmt_time(seconds: float, unit: str) -> str:
    """A duration in ms or s with three significant-ish digits."""
    value = seconds * 1e3 if unit == "ms" else seconds
    return "%.3g" % value if value < 100 else "%.0f" % value


def _fmt_stats(stats: Mapping[str, float], unit: str) -> str:
    """'median (min, IQR)' in ``unit``."""
    return "%s (%s, %s)" % tuple(_fmt_time(stats[k], unit) for k in ("median", "min", "iqr"))


def _fmt_check(check: Mapping[str, Any]) -> str:
    """'ok', 'names ok' (values not compared) or what failed."""
    if check["names_identical"] and check["bit_identical"]:
        return "ok"
    if check["names_identical"] and check["bit_identical"] is None:
        return "names ok"
    failed = [what for what, key in (("VALUES", "bit_identical"), ("NAMES", "names_identical"))
              if check[key] is False]
    return " + ".join(failed) + " DIFFER"


def _fmt_params(n: int) -> str:
    """1048576 -> '1Mi', 10000000 -> '10M', 200000 -> '200k', 96 -> '96'."""
    for div, suffix in ((MI, "Mi"), (1000 * 1000, "M"), (1024, "Ki"), (1000, "k")):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, suffix)
    return "%.3gM" % (n / 1e6) if n >= 1e6 else str(n)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table, first column left-aligned and the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def format_report(report: Mapping[str, Any]) -> str:
    """The human-readable tables for a report as produced by ``main``.

    Args:
      report: the JSON-able dict with "meta" and "results".

    Returns:
      Multi-line text.
    """
    meta = report["meta"]
    lines = []
    if meta["mode"] != "full":
        lines.append(
            "*** %s MODE: reduced sizes and repeats; indicative only, not comparable with full runs ***"
            % meta["mode"].upper()
        )
    lines.append(
        "tf1_ema benchmark, %s  |  TF %s, NumPy %s, Python %s  |  %s, %s CPUs  |  load avg %s -> %s"
        % (meta["date"], meta["tensorflow"], meta["numpy"], meta["python"], meta["cpu"], meta["cpus"],
           meta["load_average_start"], meta["load_average_end"])
    )
    lines.append(
        "ours = %s  |  reference = %s  |  decay %s, %s variables, control flow %s, num_updates %s"
        % (meta["ours"], meta["reference"], meta["decay"], meta["variables"],
           "v2" if meta["control_flow_v2"] else "v1", "on" if meta["num_updates"] else "off")
    )
    steps = [r for r in report["results"] if r["kind"] == "step"]
    if steps:
        lines += ["", "Per step: sess.run(ema_op), ms as median (min, IQR); ratio = median ours / median reference"]
        rows = []
        for r in steps:
            gbps = "/".join(
                "%.1f" % (r["traffic_bytes_per_step"] / r[side]["median"] / 1e9)
                for side in ("ours", "reference", "floor")
            )
            alloc = "/".join(
                "-" if r[side]["alloc_bytes_per_step"] is None else "%.3g" % (r[side]["alloc_bytes_per_step"] / MI)
                for side in ("ours", "reference")
            )
            rows.append([
                r["workload"], r["dtype"], r["variables"], _fmt_params(r["params"]), r["repeats"],
                _fmt_stats(r["ours"], "ms"), _fmt_stats(r["reference"], "ms"), "%.3f" % r["ratio"],
                _fmt_time(r["floor"]["median"], "ms"), gbps, alloc, _fmt_check(r["check"]),
            ])
        lines.append(_table(
            ["workload", "dtype", "vars", "params", "n", "ours ms", "reference ms", "ours/ref",
             "floor ms", "GB/s ours/ref/floor", "alloc MiB ours/ref", "check"],
            rows,
        ))
    shots = [r for r in report["results"] if r["kind"] != "step"]
    if shots:
        lines += ["", "One-shot, fresh graph each run: s as median (min, IQR); ratio = median ours / median reference"]
        rows = [
            [r["workload"], r["kind"], r["variables"], r["repeats"], _fmt_stats(r["ours"], "s"),
             _fmt_stats(r["reference"], "s"), "%.3f" % r["ratio"], _fmt_check(r["check"])]
            for r in shots
        ]
        lines.append(_table(
            ["workload", "what", "vars", "n", "ours s", "reference s", "ours/ref", "check"], rows
        ))
    lines += [
        "",
        "floor: NumPy shadow -= (shadow - value) * k in float32 over the same bytes (one flat buffer); an update "
        "moves 3 x itemsize bytes per parameter (12 in float32), GB/s counts those.",
        "check: shadows fetched after the timed runs (+%d updates on fresh values) are bit-identical "
        "and named alike; 'names ok' = build only, values not run." % CHECK_STEPS,
        "peak RSS of the whole process: %.0f MiB" % meta["peak_rss_mib"],
    ]
    if not report["checks_passed"]:
        lines.append("CHECK FAILED: the implementations disagree; the timings above are meaningless.")
    return "\n".join(lines)


def _print_list() -> None:
    """Prints the workload table with the sizes of every mode."""
    for w in WORKLOADS:
        sizes = "; ".join(
            "%s: %d vars, %s params, %d runs" % (mode, s.variables, _fmt_params(s.params), s.repeats)
            for mode, s in w.scales.items()
        )
        print("%-12s %s [%s]\n             %s" % (w.name, w.description, ",".join(w.dtypes), sizes))


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the selected workloads and prints the tables (or JSON).

    Args:
      argv: command-line arguments without the program name; default sys.argv[1:].

    Returns:
      0 when every check passed, 1 when the implementations disagree, 2 on a
      usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        _print_list()
        return 0
    try:
        workloads = select_workloads(args.workloads, args.mode)
        dtypes = _parse_dtypes(args.dtypes)
    except ValueError as error:
        parser.error(str(error))
    if not workloads:
        parser.error("no selected workload runs in %s mode (see --list)" % args.mode)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_start = _load_average()
    started = time.perf_counter()
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    if args.variables == "ref":
        # TF1 graphs ran control flow v1. Under v2 the `cond` that picks a
        # shadow's initial value reads the (not yet initialized) ref variable,
        # and global_variables_initializer fails in both implementations alike.
        tf.compat.v1.disable_control_flow_v2()
    reference = tf.compat.v1.train.ExponentialMovingAverage
    if args.ours == "stock":
        ours, ours_label = reference, "stock tf.compat.v1 class (A/A run)"
    else:
        try:
            from tf1_ema.ema import ExponentialMovingAverage as ours
        except ImportError as error:
            log("cannot import tf1_ema.ema (%s); use --ours stock for an A/A run" % error)
            return 2
        ours_label = "tf1_ema %s (%s)" % (_tf1_ema_version(), sys.modules[ours.__module__].__file__)

    bench = _Bench(tf, ours, reference, ref_variables=args.variables == "ref", num_updates=args.num_updates)
    log("bench_ema: %s mode, %d workload(s); warming up" % (args.mode, len(workloads)))
    bench.warm_process()
    results = []
    for workload in workloads:
        scale = workload.scales[args.mode]
        repeats = args.repeats or scale.repeats
        # --dtypes picks among a workload's dtype variants; single-dtype workloads always run.
        run_dtypes = [d for d in workload.dtypes if d in dtypes] if len(workload.dtypes) > 1 else workload.dtypes
        for dtype in run_dtypes:
            t0 = time.perf_counter()
            log("  %-11s %-8s %5d vars %9s params, %d+%d runs ..."
                % (workload.name, dtype, scale.variables, _fmt_params(scale.params), scale.warmup, repeats))
            if workload.kind == "step":
                result = bench.run_step(workload, scale, dtype, repeats)
            elif workload.kind == "build":
                result = bench.run_build(workload, scale, repeats)
            else:
                result = bench.run_first_step(workload, scale, repeats)
            log("    ratio %.3f, check %s, %.1f s" % (result["ratio"], _fmt_check(result["check"]),
                                                      time.perf_counter() - t0))
            results.append(result)

    checks_passed = all(
        r["check"]["names_identical"] and r["check"]["bit_identical"] is not False for r in results
    )
    report = {
        "meta": {
            "mode": args.mode,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "tensorflow": tf.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": _load_average(),
            "ours": ours_label,
            "reference": "tf.compat.v1.train.ExponentialMovingAverage",
            "decay": DECAY,
            "variables": args.variables,
            "control_flow_v2": args.variables != "ref",
            "num_updates": args.num_updates,
            "check_steps": CHECK_STEPS,
            # Settings that change what runs: tf1_ema's own switches and TF's threading/oneDNN.
            "env": {k: v for k, v in sorted(os.environ.items())
                    if k.startswith("TF1_EMA") or k in ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS")},
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wall_s": round(time.perf_counter() - started, 1),
            "command": " ".join(["bench_ema.py"] + list(sys.argv[1:] if argv is None else argv)),
        },
        "results": results,
        "checks_passed": checks_passed,
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
    return 0 if checks_passed else 1


def _tf1_ema_version() -> str:
    """tf1_ema's version plus the git commit of the checkout, '+dirty' if tf1_ema/ has changes.

    The implementation moves fast; a result is only worth keeping if it says
    which code produced it.
    """
    import subprocess

    import tf1_ema

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = "+dirty" if git("status", "--porcelain", "--", "tf1_ema") else ""
    except (OSError, subprocess.SubprocessError):
        return tf1_ema.__version__
    return "%s, git %s%s" % (tf1_ema.__version__, commit, dirty)


if __name__ == "__main__":
    sys.exit(main())
