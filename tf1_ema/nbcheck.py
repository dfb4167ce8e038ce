"""Compare a notebook's stored outputs with a fresh run's, numbers within a tolerance.

This is the comparison engine of ``tf1-ema nbcheck``: pure Python on nbformat-style
dictionaries, no TensorFlow and no kernel, so its tests are fast. Running the notebook is
``tf1_ema.nbrun``'s job; the pytest route is ``tf1_ema.nbcheck_pytest``.

A cell's outputs are split by kind:

* **text**: stdout streams and the ``text/plain`` of results without richer data, in order;
  **stderr** streams apart. Each line is cut into number tokens and the text between them.
  The text must match after the era normalizations below; every number pair must agree:
  integers exactly, floats within ``atol + rtol * |stored|`` after both are rounded to the
  digits the shorter one shows (``0.81131822`` equals ``0.8113182``). NaN equals NaN and
  infinities equal by sign.
* **errors**: a stored error passes when the fresh run raises the same exception type.
* **rich outputs** (images, HTML, anything beyond ``text/plain``): counted on both sides,
  never compared.

Era normalizations, applied to both sides: ``b'..'``/``u'..'`` prefixes (for a Python 2
notebook a fresh ``b'x'`` may also stand for a bare ``x``), Python 2 ``10L`` and
``<type 'x'>``, NumPy's spacing and line wrapping inside brackets, ``np.float32(x)`` = ``x``,
``Dimension(3)`` = ``3``, ``float32_ref`` = ``float32``, object addresses, temporary paths,
device strings, runs of spaces, and TensorFlow's own log lines (unless ``tf_log_lines``).
Words, punctuation, line counts, integers and exception types are never normalized.
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import math
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_RTOL",
    "DEFAULT_ATOL",
    "Options",
    "Markers",
    "NumberDiff",
    "CellResult",
    "NotebookResult",
    "is_python2",
    "numpy_era_for",
    "cell_markers",
    "source_text",
    "normalize_lines",
    "compare_lines",
    "compare_cell",
    "format_notebook",
]

DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-8

# How many differing lines the report shows per cell before it summarizes the rest.
_MAX_REPORTED_LINES = 8


@dataclasses.dataclass(frozen=True)
class Options:
    """How outputs are compared.

    Attributes:
        rtol: relative tolerance for floats, against the stored value.
        atol: absolute tolerance for floats.
        python2: the notebook was recorded with Python 2 (a fresh ``b'x'`` may be a bare ``x``).
        tf_log_lines: compare TensorFlow's log lines instead of dropping them.
    """

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    python2: bool = False
    tf_log_lines: bool = False


# ----------------------------------------------------------------------------- eras


def is_python2(metadata: Mapping[str, Any], sources: Iterable[str] = ()) -> bool:
    """Whether a notebook was recorded with Python 2.

    ``language_info.version`` decides when present; else the kernelspec's name or display
    name (``python2``, ``Python 2``). A notebook whose metadata names neither (nbformat 3
    notebooks from IPython 2 and 3) is Python 2 when a cell is Python 2 and not Python 3
    (``tf1_ema.legacy.py2to3.decide``, the kernel's own rule: ``print x`` and the like).

    Args:
        metadata: the notebook's top-level ``metadata``.
        sources: the code cells' sources, consulted only when the metadata says nothing.

    Returns:
        True for a Python 2 notebook.
    """
    info = metadata.get("language_info") or {}
    version = str(info.get("version") or "").strip()
    if version:
        return version.split(".")[0] == "2"
    mode = info.get("codemirror_mode")
    if isinstance(mode, dict) and str(mode.get("version", "")) in ("2", "3"):
        return str(mode["version"]) == "2"
    spec = metadata.get("kernelspec") or {}
    names = "%s %s" % (spec.get("name") or "", spec.get("display_name") or "")
    if names.strip():
        return re.search(r"python\s*2(?!\d)|\bpy2(?!\d)", names, re.IGNORECASE) is not None
    from tf1_ema.legacy.py2to3 import decide

    return any(decide(source) for source in sources)


def numpy_era_for(metadata: Mapping[str, Any], override: Optional[str] = None, sources: Iterable[str] = ()) -> str:
    """The NumPy print era a notebook was recorded in: ``override``, else 1.13 for Python 2, else 1.25.

    Args:
        metadata: the notebook's top-level ``metadata``.
        override: an era named on the command line, or None.
        sources: the code cells' sources (see :func:`is_python2`).

    Returns:
        The era name, as ``TF1_EMA_NUMPY_PRINT`` takes it.
    """
    if override:
        return override
    return "1.13" if is_python2(metadata, sources) else "1.25"


# ----------------------------------------------------------------------------- markers

# nbval's conventions: a comment line in the cell, or a cell tag.
_COMMENT_MARKERS = {
    "NBVAL_IGNORE_OUTPUT": "ignore",
    "PYTEST_VALIDATE_IGNORE_OUTPUT": "ignore",
    "NBVAL_CHECK_OUTPUT": "check",
    "NBVAL_RAISES_EXCEPTION": "raises",
    "NBVAL_SKIP": "skip",
}
_TAG_MARKERS = {
    "nbval-ignore-output": "ignore",
    "nbval-check-output": "check",
    "nbval-raises-exception": "raises",
    "raises-exception": "raises",
    "nbval-skip": "skip",
}


@dataclasses.dataclass(frozen=True)
class Markers:
    """What nbval's markers ask of one cell.

    Attributes:
        skip: do not run the cell (``NBVAL_SKIP``).
        check_output: compare the outputs (False after ``NBVAL_IGNORE_OUTPUT``).
        raises: the cell must raise (``NBVAL_RAISES_EXCEPTION``).
    """

    skip: bool = False
    check_output: bool = True
    raises: bool = False

    def describe(self) -> str:
        """Names the markers in force, for the report ("" when none)."""
        names = [name for name, on in (("NBVAL_SKIP", self.skip), ("NBVAL_IGNORE_OUTPUT", not self.check_output),
                                       ("NBVAL_RAISES_EXCEPTION", self.raises)) if on]
        return ", ".join(names)


def cell_markers(cell: Mapping[str, Any]) -> Markers:
    """Reads nbval's markers from a code cell: tags first, then comment lines (the later wins).

    Args:
        cell: an nbformat code cell.

    Returns:
        The cell's markers.
    """
    found: List[str] = []
    tags = (cell.get("metadata") or {}).get("tags") or []
    if isinstance(tags, list):
        found += [_TAG_MARKERS[tag] for tag in tags if tag in _TAG_MARKERS]
    for line in source_text(cell).splitlines():
        line = line.strip()
        if line.startswith("#"):
            marker = _COMMENT_MARKERS.get(line.lstrip("#").strip())
            if marker:
                found.append(marker)
    check = True
    for marker in found:
        if marker in ("ignore", "check"):
            check = marker == "check"
    return Markers(skip="skip" in found, check_output=check, raises="raises" in found)


def source_text(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat may store a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


# ----------------------------------------------------------------------------- normalizing

# TensorFlow's Python log records (tf.logging / absl), TF 1.x C++ log lines with or without
# the timestamp prefix, absl's C++ format, Keras 2's import banner, and Python warnings raised
# from TensorFlow's files or any installed package's (site-packages, dist-packages).
_TF_LOG_LINE = re.compile(
    r"^(?:(?:INFO|WARNING|ERROR|DEBUG|FATAL|CRITICAL):tensorflow:"
    r"|(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: )?[IWEF] (?:tensorflow|external|third_party)/\S+:\d+\] "
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|Using TensorFlow backend\.\s*$"
    r"|\S*[/\\](?:tensorflow|tensorflow_core|tf_keras|keras|site-packages|dist-packages)[/\\]\S+\.py:\d+: \w*Warning: )"
)
# A deprecation record goes on with "Instructions for updating:" and one line of advice.
_TF_LOG_CONTINUATION = re.compile(r"^Instructions for updating:\s*$")
# TF 1.14/1.15 wrote some records as a bare "WARNING:tensorflow:" and a paragraph up to a blank line.
_TF_LOG_PARAGRAPH = re.compile(r"^(?:INFO|WARNING):tensorflow:\s*$")

_MASKS = (
    # Where a cell's code lives in a warning: <ipython-input-3-5b3c...> then, /tmp/ipykernel_42/123.py now.
    (re.compile(r"<ipython-input-\d+-[0-9a-f]+>|\S*ipykernel_\d+[/\\]\d+\.py"), "<cell>"),
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "0xADDRESS"),
    # TF 1.0-1.3 wrote /job:localhost/replica:0/task:0/cpu:0, later TF /device:CPU:0.
    (re.compile(r"(/job:[\w-]+/replica:\d+/task:\d+)?/(?:device:[A-Za-z_]+|(?:XLA_)?(?:[CGT]PU|[cgt]pu)):\d+"),
     "/device:DEVICE"),
    (re.compile(r"(/private)?(/tmp|/var/folders|/var/tmp)/[^\s'\"]+"), "TMPPATH"),
    # Timings: IPython's %time and %timeit, Keras progress bars.
    (re.compile(r"^(CPU times|Wall time): .*"), r"\1: TIME"),
    (re.compile(r"[\d.,]+ ?\S+ \S [\d.,]+ ?\S+ per loop \(mean \S std\. dev\. of [\d,]+ runs?, [\d,]+ loops? each\)"),
     "TIMEIT"),
    (re.compile(r"\b\d+(?:\.\d+)?(?:us|ms|s)/(?:step|sample|epoch)\b"), "TIME/step"),
    (re.compile(r"(?<= - )\d+(?:\.\d+)?m?s(?= |$)"), "TIME"),
    (re.compile(r"\bETA: [\d:]+s?"), "ETA: TIME"),
    (re.compile(r"\[[\d:]+<[\d:?]+,\s*(?:[\d.]+|\?)\s*(?:it|s|[kMG]?B)/(?:s|it)\]"), "[TIME]"),  # tqdm
    # matplotlib's return values: old reprs were addresses, new ones show contents.
    (re.compile(r"<matplotlib\.text\.(?:Text|Annotation) at 0x\w+>|\bText\(-?[\d.e+-]+, ?-?[\d.e+-]+, ?"
                r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\)"), "<Text>"),
    (re.compile(r"<matplotlib\.axes\.(?:_subplots\.AxesSubplot|_axes\.Axes) at 0x\w+>|<(?:Axes|AxesSubplot): ?[^<>]*>"),
     "<Axes>"),
)
# Era-only spellings, each to the spelling both eras share.
_STRING_PREFIX = re.compile(r"(?<![\w'\"])[bBuU]([rR]?)(?=['\"])")
_NUMPY_SCALAR = re.compile(r"\bnp\.(?:float|int|uint|complex|bool|longdouble|clongdouble)\d*_?\(([^()]*)\)")
_NUMPY_BOOL = re.compile(r"\bnp\.(True|False)_")
_NUMPY_STR = re.compile(r"\bnp\.(?:str|bytes)_\(((?:'[^']*'|\"[^\"]*\"))\)")
_DIMENSION = re.compile(r"\bDimension\((\d+|None|\?)\)")
# TF1 printed an unknown dimension as "?", TF2 as "None": shape=(?, 784).
_UNKNOWN_DIM = re.compile(r"(?<=[(\[])\?(?=[,)\]])|(?<=, )\?(?=[,)\]])")
_REF_DTYPE = re.compile(r"\b(dtype=\w+?)_ref\b")
_PY2_LONG = re.compile(r"(?<![\w.])(\d+)L\b")
_PY2_TYPE = re.compile(r"<type '")
_BYTES_LITERAL = re.compile(r"(?<![\w'\"])b(?:'([^'\\]*(?:\\.[^'\\]*)*)'|\"([^\"\\]*(?:\\.[^\"\\]*)*)\")")
_SPACES = re.compile(r"[ \t]+")
_SPACE_INSIDE_BRACKETS = re.compile(r"(?<=[\[(]) | (?=[\])])")

_NUMBER = re.compile(
    r"(?<![\w.])(?:(?<![)\]])[-+])?"
    r"(?:(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|NaN|inf|Inf|Infinity)"
    r"(?!\w|\.\w)"
)


def _is_tf_log(line: str) -> bool:
    return _TF_LOG_LINE.match(line) is not None


def _drop_tf_log(lines: List[str]) -> List[str]:
    kept: List[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not _is_tf_log(line):
            kept.append(line)
            index += 1
            continue
        index += 1
        if _TF_LOG_PARAGRAPH.match(line):
            while index < len(lines) and lines[index].strip():
                index += 1
        # A Python warning is followed by the indented source line that raised it.
        elif index < len(lines) and "Warning: " in line and lines[index].startswith("  "):
            index += 1
        elif index < len(lines) and _TF_LOG_CONTINUATION.match(lines[index]):
            index += 2
        # TF 1.15 ended its deprecation records with an empty line.
        while index < len(lines) and not lines[index].strip():
            index += 1
    return kept


def _carriage_returns(text: str) -> List[str]:
    """Splits text into lines as a terminal shows them: a bare carriage return restarts the line."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rsplit("\r", 1)[-1] if "\r" in line else line for line in lines]
    return [_backspaces(line) if "\b" in line else line for line in lines]


def _backspaces(line: str) -> str:
    """Applies backspaces as a terminal does (Keras 2 redraws its progress bar with them)."""
    shown: List[str] = []
    for char in line:
        if char == "\b":
            if shown:
                shown.pop()
        else:
            shown.append(char)
    return "".join(shown)


def _join_brackets(lines: List[str]) -> List[str]:
    """Joins lines inside open brackets, so NumPy's era-specific line wrapping is one line.

    A line that leaves a ``[`` open is joined with the following lines until the brackets
    close; if they never close, the lines stay as they were.
    """
    joined: List[str] = []
    index = 0
    while index < len(lines):
        depth = lines[index].count("[") - lines[index].count("]")
        if depth <= 0:
            joined.append(lines[index])
            index += 1
            continue
        end = index
        while depth > 0 and end + 1 < len(lines):
            end += 1
            depth += lines[end].count("[") - lines[end].count("]")
        if depth > 0:
            joined.append(lines[index])
            index += 1
            continue
        joined.append(" ".join(lines[index : end + 1]))
        index = end + 1
    return joined


def _normalize_line(line: str, python2: bool) -> str:
    for regex, replacement in _MASKS:
        line = regex.sub(replacement, line)
    line = _STRING_PREFIX.sub(r"\1", line)
    line = _NUMPY_STR.sub(r"\1", line)
    line = _NUMPY_SCALAR.sub(r"\1", line)
    line = _NUMPY_BOOL.sub(r"\1", line)
    line = _DIMENSION.sub(r"\1", line)
    line = _UNKNOWN_DIM.sub("None", line)
    line = _REF_DTYPE.sub(r"\1", line)
    if python2:
        line = _PY2_LONG.sub(r"\1", line)
        line = _PY2_TYPE.sub("<class '", line)
    line = _SPACES.sub(" ", line).strip()
    return _SPACE_INSIDE_BRACKETS.sub("", line)


def normalize_lines(text: str, options: Options = Options(), bare_bytes: bool = False) -> List[str]:
    """Turns one output text into the lines that are compared.

    Args:
        text: stream text or ``text/plain``.
        options: the comparison options (``python2``, ``tf_log_lines``).
        bare_bytes: print ``b'x'`` as ``x``, as Python 2 printed a ``str`` (fresh side only).

    Returns:
        The normalized lines.
    """
    lines = _carriage_returns(text)
    if not options.tf_log_lines:
        lines = _drop_tf_log(lines)
    lines = _join_brackets(lines)
    if bare_bytes:
        lines = [_BYTES_LITERAL.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), line)
                 for line in lines]
    return [_normalize_line(line, options.python2) for line in lines]


# ----------------------------------------------------------------------------- numbers


@dataclasses.dataclass(frozen=True)
class NumberDiff:
    """Two numbers that differ as text, and whether they agree within the tolerance.

    Attributes:
        line: 1-based line number in the stored output.
        stored: the stored token.
        fresh: the fresh token.
        abs_diff: |stored - fresh| after rounding (inf when not comparable).
        rel_diff: abs_diff / |stored| (inf when stored is 0 and they differ).
        ok: whether they agree.
        stream: "" for the text output, "stderr" for stderr.
    """

    line: int
    stored: str
    fresh: str
    abs_diff: float
    rel_diff: float
    ok: bool
    stream: str = ""

    def describe(self, cell: int) -> str:
        """One report line, e.g. ``cell 4, line 7: 0.02476984 vs 0.02476977 (abs 7.0e-08, rel 2.8e-06) ok``."""
        where = "cell %d, %sline %d" % (cell, self.stream + " " if self.stream else "", self.line)
        if math.isinf(self.abs_diff) and not self.ok:
            detail = "(not comparable)"
        else:
            detail = "(abs %.1e, rel %.1e)" % (self.abs_diff, self.rel_diff)
        return "%s: %s vs %s %s %s" % (where, self.stored, self.fresh, detail, "ok" if self.ok else "FAIL")


def _is_integer(token: str) -> bool:
    return re.fullmatch(r"[-+]?\d+", token) is not None


def _special(token: str) -> Optional[float]:
    bare = token.lstrip("+-").lower()
    if bare == "nan":
        return math.nan
    if bare in ("inf", "infinity"):
        return -math.inf if token.startswith("-") else math.inf
    return None


def _quantum(token: str) -> decimal.Decimal:
    """The value of one unit in the last digit the token shows (``1.25e-3`` -> ``1e-5``)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return decimal.Decimal(1).scaleb(int(exponent or 0) - decimals)


def compare_numbers(stored: str, fresh: str, options: Options) -> Tuple[float, float, bool]:
    """Compares two number tokens.

    Integers must be equal. Floats are rounded to the coarser of the two last shown digits,
    then must satisfy ``|stored - fresh| <= atol + rtol * |stored|``. NaN equals NaN,
    infinities equal by sign; an integer never equals a float token.

    Args:
        stored: the stored token.
        fresh: the fresh token.
        options: the tolerances.

    Returns:
        ``(abs_diff, rel_diff, ok)``.
    """
    if _is_integer(stored) or _is_integer(fresh):
        if _is_integer(stored) and _is_integer(fresh):
            diff = abs(int(stored) - int(fresh))
            rel = 0.0 if diff == 0 else (diff / abs(int(stored)) if int(stored) else math.inf)
            return float(diff), rel, diff == 0
        return math.inf, math.inf, False
    special_s, special_f = _special(stored), _special(fresh)
    if special_s is not None or special_f is not None:
        if special_s is not None and special_f is not None:
            same = (math.isnan(special_s) and math.isnan(special_f)) or special_s == special_f
            return (0.0, 0.0, True) if same else (math.inf, math.inf, False)
        return math.inf, math.inf, False
    try:
        quantum = max(_quantum(stored), _quantum(fresh))
        context = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
        a = decimal.Decimal(stored).quantize(quantum, context=context)
        b = decimal.Decimal(fresh).quantize(quantum, context=context)
        s_value, diff = float(a), float(abs(a - b))
    except (decimal.InvalidOperation, ValueError):
        s_value = float(stored)
        diff = abs(s_value - float(fresh))
    rel = 0.0 if diff == 0 else (diff / abs(s_value) if s_value else math.inf)
    return diff, rel, diff <= options.atol + options.rtol * abs(s_value)


def _split(line: str) -> Tuple[str, List[str]]:
    """A line's skeleton (numbers replaced by a marker) and its number tokens."""
    numbers = _NUMBER.findall(line)
    return _NUMBER.sub("\x00", line), numbers


# ----------------------------------------------------------------------------- lines


@dataclasses.dataclass
class _LineComparison:
    problems: List[str] = dataclasses.field(default_factory=list)
    tolerated: List[NumberDiff] = dataclasses.field(default_factory=list)
    failed_numbers: List[NumberDiff] = dataclasses.field(default_factory=list)


def _py2_tuple_print(line: str) -> Optional[str]:
    """How Python 3 prints what Python 2 printed as a tuple: ``('loss', 0.5)`` -> ``loss 0.5``.

    Python 2 read ``print("loss", x)`` as printing one tuple. Returns None unless the line is
    a parenthesized, comma-separated sequence at its top level.
    """
    if not (line.startswith("(") and line.endswith(")")):
        return None
    items: List[str] = []
    current: List[str] = []
    depth, quote, index, body = 0, "", 0, line[1:-1]
    while index < len(body):
        char = body[index]
        if quote:
            if char == "\\" and index + 1 < len(body):
                current.append(body[index : index + 2])
                index += 2
                continue
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            index += 1
            continue
        current.append(char)
        index += 1
    if quote or depth:
        return None
    items.append("".join(current).strip())
    if items and items[-1] == "":
        items.pop()  # a 1-tuple's trailing comma
    if len(items) < 2 and not (items and line.rstrip(")").rstrip().endswith(",")):
        return "" if not items else None
    words = [item[1:-1] if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"" else item for item in items]
    return " ".join(words)


def _compare_pair(number: int, stored: str, fresh_variants: Sequence[str], options: Options,
                  stream: str) -> Tuple[bool, List[NumberDiff]]:
    """Compares one stored line with a fresh line, trying each spelling of either."""
    best: Optional[Tuple[bool, List[NumberDiff]]] = None
    stored_variants = [stored]
    if options.python2:
        as_args = _py2_tuple_print(stored)
        if as_args is not None:
            stored_variants.append(as_args)
    for s_line in stored_variants:
        s_skeleton, s_numbers = _split(s_line)
        for fresh in fresh_variants:
            f_skeleton, f_numbers = _split(fresh)
            if f_skeleton != s_skeleton:
                if best is None:
                    best = (False, [])
                continue
            diffs = []
            for s_token, f_token in zip(s_numbers, f_numbers):
                if s_token == f_token:
                    continue
                abs_diff, rel_diff, ok = compare_numbers(s_token, f_token, options)
                diffs.append(NumberDiff(number, s_token, f_token, abs_diff, rel_diff, ok, stream))
            result = (all(d.ok for d in diffs), diffs)
            if result[0]:
                return result
            if best is None or not best[1]:
                best = result
    assert best is not None
    return best


def compare_lines(stored: Sequence[str], fresh: Sequence[Sequence[str]], options: Options,
                  stream: str = "") -> Tuple[List[str], List[NumberDiff]]:
    """Compares normalized stored lines with fresh ones.

    Equal line counts pair line by line; otherwise the lines are aligned on their text
    (numbers masked) and the unpaired ones are reported missing or extra.

    Args:
        stored: the stored lines.
        fresh: per fresh line, its spellings (the first is the main one).
        options: the tolerances.
        stream: "" or "stderr", for the report.

    Returns:
        ``(problems, number_diffs)``: report lines for what fails, and every number that
        differs as text (ok or not).
    """
    problems: List[str] = []
    numbers: List[NumberDiff] = []
    where = stream + " " if stream else ""

    def pair(i: int, j: int) -> None:
        ok, diffs = _compare_pair(i + 1, stored[i], fresh[j], options, stream)
        numbers.extend(diffs)
        if not ok:
            problems.append("%sline %d: stored  %s" % (where, i + 1, stored[i]))
            problems.append("%s%sfresh   %s" % (" " * len(where), " " * len("line %d: " % (i + 1)), fresh[j][0]))

    if len(stored) == len(fresh):
        for i in range(len(stored)):
            pair(i, i)
        return problems, numbers
    matcher = difflib.SequenceMatcher(
        None, [_split(line)[0] for line in stored], [_split(line[0])[0] for line in fresh], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        common = min(i2 - i1, j2 - j1)
        for k in range(common):
            pair(i1 + k, j1 + k)
        for i in range(i1 + common, i2):
            problems.append("%sline %d: missing in the fresh run: %s" % (where, i + 1, stored[i]))
        for j in range(j1 + common, j2):
            problems.append("%sextra line after stored line %d: %s" % (where, i1 + common, fresh[j][0]))
    return problems, numbers


# ----------------------------------------------------------------------------- cells


@dataclasses.dataclass
class _Outputs:
    text: List[str]
    stderr: List[str]
    rich: int
    error: Optional[Tuple[str, str]]


def _output_texts(outputs: Iterable[Mapping[str, Any]]) -> Tuple[str, str, int, Optional[Tuple[str, str]]]:
    text, stderr, rich, error = [], [], 0, None
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            chunk = _joined(output.get("text", ""))
            (stderr if output.get("name") == "stderr" else text).append(chunk)
        elif kind in ("execute_result", "display_data"):
            data = output.get("data") or {}
            if any(mime != "text/plain" for mime in data):
                rich += 1
            elif "text/plain" in data:
                plain = _joined(data["text/plain"])
                text.append(plain if plain.endswith("\n") else plain + "\n")
        elif kind == "error" and error is None:
            error = (str(output.get("ename", "")), str(output.get("evalue", "")))
    return "".join(text), "".join(stderr), rich, error


def _joined(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _prepare(outputs: Iterable[Mapping[str, Any]], options: Options, fresh: bool) -> Tuple[list, list, int, Any]:
    text, stderr, rich, error = _output_texts(outputs)
    if not fresh:
        return normalize_lines(text, options), normalize_lines(stderr, options), rich, error

    def variants(blob: str) -> List[List[str]]:
        main = normalize_lines(blob, options)
        if not options.python2:
            return [[line] for line in main]
        bare = normalize_lines(blob, options, bare_bytes=True)
        if len(bare) != len(main):
            return [[line] for line in main]
        return [[a] if a == b else [a, b] for a, b in zip(main, bare)]

    return variants(text), variants(stderr), rich, error


@dataclasses.dataclass
class CellResult:
    """The verdict on one code cell.

    Attributes:
        index: the cell's position among the notebook's code cells, from 0 (nbval's "Cell N").
        status: "ok", "fail", "skipped" or "ignored" (ran, outputs not compared).
        problems: report lines saying what differs (empty unless status is "fail").
        numbers: every number that differs as text, within tolerance or not.
        rich: images/HTML outputs present (stored, fresh), not compared.
        note: a short remark for the report ("NBVAL_SKIP", "raised ValueError as stored").
    """

    index: int
    status: str
    problems: List[str] = dataclasses.field(default_factory=list)
    numbers: List[NumberDiff] = dataclasses.field(default_factory=list)
    rich: Tuple[int, int] = (0, 0)
    note: str = ""

    @property
    def passed(self) -> bool:
        """Whether the cell passes (skipped and ignored cells do)."""
        return self.status != "fail"

    def report(self) -> List[str]:
        """The cell's report lines: its verdict, its diff, and the numbers it compared."""
        head = "cell %d: %s" % (self.index, "FAIL" if self.status == "fail" else self.status)
        if self.note:
            head += " (%s)" % self.note
        lines = [head]
        shown = self.problems[: _MAX_REPORTED_LINES * 2]
        lines += ["  " + line for line in shown]
        if len(self.problems) > len(shown):
            lines.append("  ... %d more report lines" % (len(self.problems) - len(shown)))
        failing = [n for n in self.numbers if not n.ok]
        tolerated = [n for n in self.numbers if n.ok]
        for diff in failing[:_MAX_REPORTED_LINES]:
            lines.append("  " + diff.describe(self.index))
        if len(failing) > _MAX_REPORTED_LINES:
            lines.append("  ... %d more numbers beyond tolerance" % (len(failing) - _MAX_REPORTED_LINES))
        if tolerated:
            largest = max(tolerated, key=lambda n: (n.rel_diff, n.abs_diff))
            lines.append("  %d number(s) differ within tolerance, largest: %s"
                         % (len(tolerated), largest.describe(self.index)))
        return lines


def compare_cell(index: int, stored: Sequence[Mapping[str, Any]], fresh: Sequence[Mapping[str, Any]],
                 options: Options, markers: Markers = Markers()) -> CellResult:
    """Compares one code cell's stored outputs with its fresh ones.

    Args:
        index: the cell's position among the code cells (for the report).
        stored: the outputs saved in the notebook.
        fresh: the outputs of the fresh run.
        options: tolerances and era.
        markers: the cell's nbval markers.

    Returns:
        The cell's verdict.
    """
    s_text, s_err, s_rich, s_error = _prepare(stored, options, fresh=False)
    f_text, f_err, f_rich, f_error = _prepare(fresh, options, fresh=True)
    problems: List[str] = []
    numbers: List[NumberDiff] = []
    note = ""
    if s_error and f_error:
        if s_error[0] != f_error[0]:
            problems.append("stored error %s, fresh error %s: %s" % (s_error[0], f_error[0], _short(f_error[1])))
        else:
            note = "raised %s as stored" % f_error[0]
    elif s_error:
        problems.append("stored error %s, the fresh run raised nothing" % s_error[0])
    elif f_error:
        if markers.raises:
            note = "raised %s (NBVAL_RAISES_EXCEPTION)" % f_error[0]
        else:
            problems.append("the fresh run raised %s: %s (no error stored)" % (f_error[0], _short(f_error[1])))
    if markers.raises and not f_error:
        problems.append("NBVAL_RAISES_EXCEPTION, but the fresh run raised nothing")
    if not markers.check_output:
        return CellResult(index, "fail" if problems else "ignored", problems, [], (s_rich, f_rich),
                          note or "NBVAL_IGNORE_OUTPUT")
    for stream, s_lines, f_lines in (("", s_text, f_text), ("stderr", s_err, f_err)):
        if not s_lines and f_lines:
            problems.append("%soutput where none was stored: %s" % (stream + " " if stream else "", f_lines[0][0]))
            continue
        found, diffs = compare_lines(s_lines, f_lines, options, stream)
        problems += found
        numbers += diffs
    if s_rich != f_rich:
        problems.append("images/HTML outputs: %d stored, %d fresh" % (s_rich, f_rich))
    return CellResult(index, "fail" if problems or not all(n.ok for n in numbers) else "ok",
                      problems, numbers, (s_rich, f_rich), note)


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


# ----------------------------------------------------------------------------- notebooks


@dataclasses.dataclass
class NotebookResult:
    """The verdict on one notebook.

    Attributes:
        path: the notebook, as named on the command line.
        era: e.g. "Python 2, NumPy 1.13".
        options: the comparison options used.
        cells: one result per code cell, in order.
        aborted: why the run stopped early ("" if it did not).
    """

    path: str
    era: str
    options: Options
    cells: List[CellResult] = dataclasses.field(default_factory=list)
    aborted: str = ""

    @property
    def passed(self) -> bool:
        """Whether every cell passed and the run finished."""
        return not self.aborted and all(cell.passed for cell in self.cells)


def format_notebook(result: NotebookResult, verbose: bool = False) -> str:
    """The report for one notebook: the cells that differ (or drift within tolerance), then a summary.

    Args:
        result: the notebook's verdict.
        verbose: also list cells that match exactly.

    Returns:
        The report text, ending in a newline.
    """
    opts = result.options
    lines = ["%s  (%s; rtol %g, atol %g)" % (result.path, result.era, opts.rtol, opts.atol)]
    for cell in result.cells:
        if verbose or cell.status in ("fail", "skipped") or cell.numbers:
            lines += ["  " + line for line in cell.report()]
    if result.aborted:
        lines.append("  run stopped: %s" % result.aborted)
    counts: Dict[str, int] = {}
    for cell in result.cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    stored_rich = sum(cell.rich[0] for cell in result.cells)
    summary = "  %d code cells: %d match, %d differ" % (len(result.cells), counts.get("ok", 0), counts.get("fail", 0))
    for status in ("ignored", "skipped"):
        if counts.get(status):
            summary += ", %d %s" % (counts[status], status)
    if stored_rich:
        summary += "; %d images/HTML outputs present, not compared" % stored_rich
    lines.append(summary)
    lines.append("  %s" % ("ok" if result.passed else "FAIL"))
    return "\n".join(lines) + "\n"
