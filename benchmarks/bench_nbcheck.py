"""What ``tf1-ema nbcheck`` costs next to nbval, on our five notebooks, in one run (issue 11).

Three commands check notebooks/ in the tf1-ema kernel, each in a fresh process, taking
turns round after round so that the machine's load falls on all of them alike:

    nbval           pytest --nbval --nbval-kernel-name tf1-ema --nbval-sanitize-with ... NOTEBOOKS
    nbcheck         python -m tf1_ema nbcheck NOTEBOOKS
    pytest-nbcheck  pytest --nbcheck NOTEBOOKS          (the plugin route)

It prints each command's wall times, their medians, and each nbcheck route's median
divided by nbval's; the target is at most 1.10. It also times the comparison alone (every
stored cell against itself, no kernel), which is all that nbcheck adds to executing the
cells. The exit status is 1 only if a command fails on the notebooks, since a timing of
a failing check means nothing; nothing passes or fails on time.

Usage::

    .venv/bin/python benchmarks/bench_nbcheck.py                 # 3 rounds
    .venv/bin/python benchmarks/bench_nbcheck.py --rounds 5 --json
    .venv/bin/python benchmarks/bench_nbcheck.py --rounds 1      # a quick look
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NOTEBOOKS = sorted(str(path.relative_to(REPO)) for path in (REPO / "notebooks").glob("*.ipynb"))
LIMIT = 1.10


def commands(notebooks: Sequence[str]) -> Dict[str, List[str]]:
    """The three checks, as argv lists run from the repository root."""
    registered = any(ep.value == "tf1_ema.nbcheck_pytest" for ep in importlib.metadata.entry_points(group="pytest11"))
    plugin = [] if registered else ["-p", "tf1_ema.nbcheck_pytest"]
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    return {
        "nbval": pytest + ["--nbval", "--nbval-kernel-name", "tf1-ema",
                           "--nbval-sanitize-with", "tf1_ema/nbval_sanitize.cfg", *notebooks],
        "nbcheck": [sys.executable, "-m", "tf1_ema", "nbcheck", *notebooks],
        "pytest-nbcheck": pytest + plugin + ["--nbcheck", *notebooks],
    }


def time_command(argv: List[str]) -> float:
    """Runs one command to completion and returns its wall time in seconds.

    Raises:
        RuntimeError: the command failed (its output tail is in the message).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError("%s exited %d:\n%s" % (" ".join(argv[2:5]), proc.returncode, tail))
    return elapsed


def comparison_seconds(notebooks: Sequence[str], repeats: int = 5) -> float:
    """Seconds the comparison engine alone takes over all code cells of the notebooks (best of repeats)."""
    import nbformat

    from tf1_ema.nbcheck import Options, cell_markers, compare_cell

    cells = []
    for path in notebooks:
        nb = nbformat.read(str(REPO / path), as_version=4)
        cells += [cell for cell in nb.cells if cell.cell_type == "code"]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for index, cell in enumerate(cells):
            compare_cell(index, cell.outputs, cell.outputs, Options(), cell_markers(cell))
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the rounds and prints the table (or JSON); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three commands (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    runs = commands(NOTEBOOKS)
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        # Rotate the order each round so no command always runs first on a cold cache.
        names = list(runs)[round_ % len(runs):] + list(runs)[: round_ % len(runs)]
        for name in names:
            try:
                times[name].append(time_command(runs[name]))
            except RuntimeError as err:
                print("bench_nbcheck: %s" % err, file=sys.stderr)
                return 1
            print("round %d  %-15s %6.1f s" % (round_ + 1, name, times[name][-1]), file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: medians[name] / medians["nbval"] for name in runs if name != "nbval"}
    compare = comparison_seconds(NOTEBOOKS)
    result = {"notebooks": NOTEBOOKS, "rounds": args.rounds, "seconds": times, "median": medians,
              "ratio_to_nbval": ratios, "limit": LIMIT, "comparison_only_seconds": compare}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("%d notebooks, %d round(s), wall seconds per full check" % (len(NOTEBOOKS), args.rounds))
    for name, values in times.items():
        print("  %-15s median %6.1f   runs %s" % (name, medians[name], " ".join("%.1f" % v for v in values)))
    for name, ratio in ratios.items():
        verdict = "met" if ratio <= LIMIT else "NOT met"
        print("  %-15s / nbval = %.3f  (target <= %.2f: %s)" % (name, ratio, LIMIT, verdict))
    print("  comparison alone (no kernel): %.1f ms for all code cells" % (compare * 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
