"""Regenerates ``tf1_ema/legacy/tf1_log_messages.json``: the log lines TF 1.x's own Python sources emit.

Facts only: for each TF 1.x minor, every ``logging.<level>(...)`` and ``print(...)`` call
with a literal message in the modules whose output TF1 users saw (graph freezing, Saver,
Supervisor, MonitoredTrainingSession and its hooks, Estimator), as ``{minor: [[file,
kind, template], ...]}``. ``kind`` is the log level, or ``print``. Non-literal parts of a
message become ``%s``.

Usage (one folder per version, 1.0.0 ... 1.14.0, each holding that version's wheel from the
registry; read only, never installed)::

    pip download tensorflow==1.0.0 --no-deps --python-version 3.6 \\
        --platform manylinux1_x86_64 --only-binary :all: -d WHEELS/1.4.0
    python tests/golden/extract_tf1_messages.py WHEELS > tf1_ema/legacy/tf1_log_messages.json

TF 1.15 is no longer served by the registry; 1.14 stands for it (the table in
``tf1_ema.legacy.tflog`` treats 1.15 as 1.14).
"""

import ast
import json
import os
import sys
import zipfile
from typing import Dict, List, Optional

FILES = (
    "framework/graph_util_impl.py",
    "tools/freeze_graph.py",
    "training/saver.py",
    "training/checkpoint_management.py",
    "training/supervisor.py",
    "training/session_manager.py",
    "training/monitored_session.py",
    "training/basic_session_run_hooks.py",
    "training/queue_runner_impl.py",
    "training/coordinator.py",
    "estimator/estimator.py",
    "estimator/training.py",
)
LEVELS = ("debug", "info", "warning", "warn", "error", "fatal")


def _template(node: ast.AST) -> Optional[str]:
    """The message a call's first argument formats, with non-literal parts as %s."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _template(node.left)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        if left is None and right is None:
            return None
        return (left if left is not None else "%s") + (right if right is not None else "%s")
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "%s" for v in node.values)
    return None


def messages(source: str) -> List[List[str]]:
    """Every literal log/print message in ``source`` as [kind, template]."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in LEVELS and isinstance(func.value, ast.Name):
            if func.value.id != "logging":
                continue
            kind = "warning" if func.attr == "warn" else func.attr
        elif isinstance(func, ast.Name) and func.id == "print":
            kind = "print"
        else:
            continue
        template = _template(node.args[0])
        if template is not None:
            found.append([kind, template])
    return found


def main(wheels: str) -> Dict[str, List[List[str]]]:
    table = {}
    for version in sorted(os.listdir(wheels), key=lambda v: tuple(int(p) for p in v.split("."))):
        folder = os.path.join(wheels, version)
        wheel = next(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".whl"))
        minor = ".".join(version.split(".")[:2])
        rows = []
        with zipfile.ZipFile(wheel) as archive:
            names = {n.split("/tensorflow/python/", 1)[-1]: n for n in archive.namelist() if "/tensorflow/python/" in n}
            for relative in FILES:
                if relative in names:
                    source = archive.read(names[relative]).decode("utf-8")
                    rows += [[relative] + row for row in messages(source)]
        table[minor] = rows
    return table


if __name__ == "__main__":
    json.dump(main(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
