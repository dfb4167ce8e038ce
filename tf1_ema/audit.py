"""Audit a checkpoint before trusting it: what will each variable be restored from?

``tf.train.Saver(ema.variables_to_restore())`` restores each averaged
variable from its shadow's checkpoint key. When that key is missing (the
variable was never averaged in training, or the EMA had another name), or
holds another dtype or shape, the restore fails late and cryptically, or a
raw value is restored where an average was expected. ``audit_checkpoint``
answers the question up front, one row per variable::

    report = audit_checkpoint(ema, "/tmp/model.ckpt-1000")
    print(report)            # aligned text table; a notebook shows HTML
    report.assert_ok()       # in a test: fails listing the bad rows

Statuses: ``average`` (restored from its moving average), ``raw`` (from its
own value), ``missing`` (key not in the checkpoint), ``dtype mismatch`` and
``shape mismatch`` (the Saver would refuse it). The report classes need no
TensorFlow; ``audit_checkpoint`` imports it when called.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

AVERAGE = "average"
RAW = "raw"
MISSING = "missing"
DTYPE_MISMATCH = "dtype mismatch"
SHAPE_MISMATCH = "shape mismatch"
STATUSES = (AVERAGE, RAW, MISSING, DTYPE_MISMATCH, SHAPE_MISMATCH)
PROBLEMS = frozenset({MISSING, DTYPE_MISMATCH, SHAPE_MISMATCH})

# Key that marks an object-based (tf.train.Checkpoint) checkpoint.
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclasses.dataclass(frozen=True)
class AuditRow:
    """What one variable is restored from.

    Attributes:
      variable: the variable's name in the graph (op name, e.g. ``"dense/kernel"``).
      key: the checkpoint key the restore map reads it from.
      status: one of ``STATUSES``.
      detail: a human explanation; empty when there is nothing to add.
    """

    variable: str
    key: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether a Saver would restore this variable."""
        return self.status not in PROBLEMS


@dataclasses.dataclass(frozen=True)
class AuditReport:
    """The audit of one checkpoint against one restore map: a row per variable.

    Printable (``str`` is an aligned table, ``_repr_html_`` an HTML table for
    notebooks) and testable (``ok``, ``assert_ok``, ``report["w"].status``).

    Attributes:
      checkpoint: the checkpoint file prefix that was read.
      rows: one ``AuditRow`` per variable, sorted by variable name.
    """

    checkpoint: str
    rows: Tuple[AuditRow, ...]

    @property
    def ok(self) -> bool:
        """True when every variable can be restored (no missing key, no mismatch)."""
        return all(row.ok for row in self.rows)

    @property
    def problems(self) -> Tuple[AuditRow, ...]:
        """The rows a Saver would fail on."""
        return tuple(row for row in self.rows if not row.ok)

    def counts(self) -> Dict[str, int]:
        """The number of rows per status, every status present (zero if none)."""
        return {status: sum(row.status == status for row in self.rows) for status in STATUSES}

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[AuditRow]:
        return iter(self.rows)

    def __getitem__(self, variable: str) -> AuditRow:
        """The row of the variable named ``variable`` (op name, ``":0"`` optional)."""
        name = variable[:-2] if variable.endswith(":0") else variable
        for row in self.rows:
            if row.variable == name:
                return row
        raise KeyError("no variable %r in the audit of %s" % (variable, self.checkpoint))

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: checkpoint, ok, counts and the rows as dicts."""
        return {
            "checkpoint": self.checkpoint,
            "ok": self.ok,
            "counts": self.counts(),
            "rows": [dataclasses.asdict(row) for row in self.rows],
        }

    def assert_ok(self, allow_raw: bool = True) -> None:
        """Fails, listing the offending rows, unless every variable can be restored.

        Args:
          allow_raw: if False, a variable restored from its raw value fails
            too (for a check that everything comes from an average).

        Raises:
          AssertionError: with the table of the offending rows.
        """
        bad = [row for row in self.rows if not row.ok or (not allow_raw and row.status == RAW)]
        if bad:
            raise AssertionError(
                "%d of %d variables would not be restored as expected from %s:\n%s"
                % (len(bad), len(self.rows), self.checkpoint, _table(bad))
            )

    def summary(self) -> str:
        """One line: the checkpoint, the counts per status and OK or PROBLEMS."""
        counts = ", ".join("%d %s" % (n, s) for s, n in self.counts().items() if n)
        return "Checkpoint audit of %s: %s: %s" % (
            self.checkpoint,
            counts or "no variables",
            "OK" if self.ok else "PROBLEMS",
        )

    def __str__(self) -> str:
        return self.summary() + ("\n" + _table(self.rows) if self.rows else "")

    def _repr_html_(self) -> str:
        colors = {AVERAGE: "#1a7f37", RAW: "#57606a"}
        cells = []
        for row in self.rows:
            color = colors.get(row.status, "#cf222e")
            cells.append(
                "<tr><td><code>%s</code></td><td><code>%s</code></td>"
                '<td style="color:%s;font-weight:bold">%s</td><td>%s</td></tr>'
                % tuple(html.escape(x) for x in (row.variable, row.key, color, row.status, row.detail))
            )
        return (
            "<div><p>%s</p><table><thead><tr><th>variable</th><th>checkpoint key</th>"
            "<th>status</th><th>detail</th></tr></thead><tbody>%s</tbody></table></div>"
            % (html.escape(self.summary()), "".join(cells))
        )


def _table(rows: Sequence[AuditRow]) -> str:
    """Rows as a left-aligned text table with a header."""
    header = ("variable", "checkpoint key", "status", "detail")
    lines = [header] + [(r.variable, r.key, r.status, r.detail) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths)) + ("  " + line[3] if line[3] else "")
        for line in lines
    ).rstrip()


# ---------------------------------------------------------------------------
# The audit
# ---------------------------------------------------------------------------


def _resolve(checkpoint_path: str):
    """``(path, reader)`` for a checkpoint prefix or a directory holding checkpoints."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    path = str(checkpoint_path)
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError("No checkpoint in directory %r." % path)
        path = latest
    try:
        return path, tf.train.load_checkpoint(path)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise FileNotFoundError("Cannot read a checkpoint at %r: %s" % (path, str(e).splitlines()[0])) from e


def _shape_str(shape) -> str:
    """``[2, ?]`` for a list of dims (None unknown), ``<unknown rank>`` for None."""
    if shape is None:
        return "<unknown rank>"
    return "[%s]" % ", ".join("?" if d is None else str(d) for d in shape)


def audit_checkpoint(
    ema,
    checkpoint_path: str,
    var_list: Optional[Sequence] = None,
    averaged_only: bool = False,
    restore_map: Optional[Mapping[str, Any]] = None,
) -> AuditReport:
    """Reports, per variable, what restoring ``checkpoint_path`` would put in it.

    The restore map audited is ``ema.variables_to_restore(averaged_only=...)``
    in the graph of the EMA's shadows (or the default graph before
    ``apply()``), i.e. what ``tf.train.Saver(ema.variables_to_restore())``
    would use; pass ``restore_map`` to audit another one. A row's status is

    * ``average``: its key is the variable's shadow name and the checkpoint
      holds it with the variable's dtype and a compatible shape;
    * ``raw``: likewise, read from its own name (or another key);
    * ``missing``: the key is not in the checkpoint (the detail says when the
      other of raw/average is there, and suggests close keys);
    * ``dtype mismatch``: the Saver would refuse the checkpoint's tensor;
    * ``shape mismatch``: the Saver refuses it for a ref variable, but loads
      it into a resource variable as is, which then holds a value of another
      shape than it declares (TensorFlow 2.21) - the worse outcome.

    Args:
      ema: the ExponentialMovingAverage of the evaluation graph.
      checkpoint_path: a checkpoint prefix (``.../model.ckpt-1000``) or a
        directory, whose latest checkpoint is read.
      var_list: only report these variables (they must be in the map).
      averaged_only: passed to ``ema.variables_to_restore``.
      restore_map: a ``{checkpoint key: variable}`` map to audit instead.

    Returns:
      An ``AuditReport``, rows sorted by variable name.

    Raises:
      FileNotFoundError: if no checkpoint can be read at ``checkpoint_path``.
      ValueError: if a variable of ``var_list`` is not in the restore map.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    path, reader = _resolve(checkpoint_path)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    if restore_map is None:
        shadows = list(ema.averages.values())
        graph = shadows[0].graph if shadows else tf.compat.v1.get_default_graph()
        with graph.as_default():
            restore_map = ema.variables_to_restore(averaged_only=averaged_only)
    entries = [(key, var) for key, var in restore_map.items()]
    if var_list is not None:
        wanted = {v.ref() for v in var_list}
        unknown = wanted - {var.ref() for _, var in entries}
        if unknown:
            raise ValueError(
                "Not in the restore map, so never restored: %s" % sorted(r.deref().op.name for r in unknown)
            )
        entries = [(key, var) for key, var in entries if var.ref() in wanted]
    object_based = _OBJECT_GRAPH_KEY in shapes
    rows = []
    for key, var in entries:
        with var.graph.as_default():  # average_name() reads the default graph
            rows.append(_row(ema, key, var, shapes, dtypes, object_based))
    return AuditReport(checkpoint=path, rows=tuple(sorted(rows, key=lambda r: (r.variable, r.key))))


def _close_keys(key: str, keys) -> List[str]:
    """Checkpoint keys that look like ``key``: same name under another scope, or a near spelling."""
    rescoped = sorted(k for k in keys if key.endswith("/" + k) or k.endswith("/" + key))
    similar = difflib.get_close_matches(key, list(keys), n=3, cutoff=0.6)
    return (rescoped + [k for k in similar if k not in rescoped])[:3]


def _row(ema, key: str, var, shapes, dtypes, object_based: bool) -> AuditRow:
    """The audit row of one restore-map entry."""
    name = var.op.name
    is_average = key != name and (key == ema.average_name(var) or key.startswith(name + "/"))
    status = AVERAGE if is_average else RAW
    shadow_key = ema.average_name(var)
    if key not in shapes:
        if is_average and name in shapes:
            detail = (
                "the checkpoint has the raw value %r but no average: the variable was not averaged in "
                "training (restore it raw with averaged_only=True) or the EMA had another name" % name
            )
        elif not is_average and shadow_key in shapes:
            detail = "the checkpoint has its average %r but not the raw value" % shadow_key
        else:
            close = _close_keys(key, shapes)
            detail = "not in the checkpoint"
            if close:
                detail += "; close keys: " + ", ".join(close)
            if object_based:
                detail += "; this is an object-based (tf.train.Checkpoint) checkpoint, keyed by object paths"
        return AuditRow(name, key, MISSING, detail)
    want_dtype = var.dtype.base_dtype
    if dtypes[key] != want_dtype:
        detail = "checkpoint holds %s, the variable is %s" % (dtypes[key].name, want_dtype.name)
        if is_average and dtypes[key].is_floating and dtypes[key].size > want_dtype.size:
            detail += (
                "; the average was kept wider (shadow_dtype) and the Saver does not cast: restore the "
                "shadows under their own names (same EMA applied in this graph), then evaluate inside "
                "tf1_ema.swap.averaged(ema, sess)"
            )
        return AuditRow(name, key, DTYPE_MISMATCH, detail)
    if not var.shape.is_compatible_with(shapes[key]):
        return AuditRow(
            name,
            key,
            SHAPE_MISMATCH,
            "checkpoint holds %s, the variable is %s"
            % (_shape_str(shapes[key]), _shape_str(var.shape.as_list() if var.shape.rank is not None else None)),
        )
    detail = ""
    if status == RAW and key == name and shadow_key in shapes:
        detail = "the checkpoint also has its average %r (restored only if this EMA averages the variable)" % (
            shadow_key
        )
    elif status == RAW and key != name:
        detail = "read from another variable's key"
    return AuditRow(name, key, status, detail)
