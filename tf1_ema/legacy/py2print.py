"""Translate Python 2 ``print`` statements into Python 3 calls, and nothing else.

TF1 tutorials were often written for Python 2: ``print sess.run(w)``. This module rewrites
exactly those statements, working on tokens so that every other byte of the file (comments,
spacing, string prefixes, line numbers) is left where it was:

    print x, y            ->  print(x, y)
    print x,              ->  print(x, end=" ")
    print                 ->  print()
    print >>f, x          ->  print(x, file=f)
    print (a), b          ->  print((a), b)

Source that already compiles as Python 3 is returned unchanged, byte for byte, and so is
source that says ``from __future__ import print_function``. A statement that is already a
call on its own (``print("x")`` or ``print ("a", b)``) is left alone even in a Python 2
file: converting ``print ("a", b)`` to ``print(("a", b))`` would keep Python 2's tuple output,
but every such script was written to print ``a b``.

The rewrite never adds or removes a line, so tracebacks point at the user's own line numbers.
"""

import ast
import io
import tokenize
from typing import List, NamedTuple, Optional, Tuple

__all__ = ["fix_print"]

_STATEMENT_STARTERS = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
_SKIPPED = (tokenize.NL, tokenize.COMMENT)


class _Edit(NamedTuple):
    start: int  # absolute character offset, inclusive
    end: int  # absolute character offset, exclusive
    text: str


def fix_print(source: str) -> str:
    """Returns ``source`` with its Python 2 print statements turned into calls.

    Args:
        source: the text of a Python module, in Python 2 or Python 3.

    Returns:
        ``source`` itself when it compiles as Python 3 or imports ``print_function`` from
        ``__future__`` (or cannot even be tokenized); otherwise the same text with each
        ``print`` statement rewritten as a call, with the same number of lines. Other
        Python 2 syntax is left as it is, for the compiler to report.
    """
    if _is_python3(source):
        return source
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    significant = [t for t in tokens if t.type not in _SKIPPED]
    if _imports_print_function(significant):
        return source
    offsets = _line_offsets(source)
    depths = _depths(significant)
    edits: List[_Edit] = []
    for index in range(len(significant)):
        if depths[index] == 0 and _starts_print_statement(significant, index):
            edits.extend(_rewrite_statement(source, offsets, significant, tokens, index))
    if not edits:
        return source
    return _apply(source, edits)


def _is_python3(source: str) -> bool:
    try:
        compile(source, "<source>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError:
        return False
    except ValueError:  # NUL bytes: not ours to fix
        return True
    return True


def _imports_print_function(significant: List[tokenize.TokenInfo]) -> bool:
    for index in range(len(significant) - 2):
        first, second = significant[index], significant[index + 1]
        if first.string == "from" and second.string == "__future__":
            for token in significant[index + 2 :]:
                if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                    break
                if token.string == "print_function":
                    return True
    return False


def _depths(significant: List[tokenize.TokenInfo]) -> List[int]:
    """Bracket depth before each token; Python 2 print statements only occur at depth 0."""
    depths = []
    depth = 0
    for token in significant:
        depths.append(depth)
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
    return depths


def _line_offsets(source: str) -> List[int]:
    # tokenize numbers rows by what StringIO.readline returns, i.e. split on "\n" only.
    offsets = [0, 0]  # rows are 1-based
    for line in io.StringIO(source):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _offset(offsets: List[int], position: Tuple[int, int]) -> int:
    row, col = position
    return offsets[row] + col


def _starts_print_statement(significant: List[tokenize.TokenInfo], index: int) -> bool:
    token = significant[index]
    if token.type != tokenize.NAME or token.string != "print":
        return False
    if index > 0:
        previous = significant[index - 1]
        at_start = previous.type in _STATEMENT_STARTERS or (
            previous.type == tokenize.OP and previous.string in (";", ":")
        )
        if not at_start:
            return False
    following = significant[index + 1]
    if following.type == tokenize.OP and following.string == "(":
        close = _matching_close(significant, index + 1)
        # A call on its own (``print(x)``) is already Python 3; leave it.
        return close is None or not _ends_statement(significant[close + 1])
    # ``print = f`` or ``print.x`` is not a statement in any Python.
    return not (following.type == tokenize.OP and following.string in ("=", ".", ":"))


def _matching_close(significant: List[tokenize.TokenInfo], open_index: int) -> Optional[int]:
    depth = 0
    for index in range(open_index, len(significant)):
        token = significant[index]
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
            if depth == 0:
                return index
    return None


def _ends_statement(token: tokenize.TokenInfo) -> bool:
    return token.type in (tokenize.NEWLINE, tokenize.ENDMARKER) or (
        token.type == tokenize.OP and token.string == ";"
    )


def _rewrite_statement(source, offsets, significant, tokens, index) -> List[_Edit]:
    """Edits turning the print statement whose ``print`` is ``significant[index]`` into a call."""
    print_token = significant[index]
    # Split the rest of the statement into comma-separated groups at bracket depth 0.
    groups: List[List[tokenize.TokenInfo]] = [[]]
    commas: List[tokenize.TokenInfo] = []
    depth = 0
    for token in significant[index + 1 :]:
        if depth == 0 and _ends_statement(token):
            break
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        if depth == 0 and token.type == tokenize.OP and token.string == ",":
            commas.append(token)
            groups.append([])
        else:
            groups[-1].append(token)
    trailing_comma = bool(commas) and not groups[-1]
    if trailing_comma or groups == [[]]:
        groups.pop()

    file_expr = None
    first = groups[0] if groups else []
    if first and first[0].type == tokenize.OP and first[0].string == ">>":
        file_expr = first[1:]
        groups = groups[1:]
        if not file_expr:  # ``print >>`` alone: leave the syntax error to the compiler
            return []

    at = lambda position: _offset(offsets, position)  # noqa: E731
    edits: List[_Edit] = []
    print_end = at(print_token.end)
    if file_expr is not None:
        # Drop ``>>f,`` (keeping its newlines, which stay legal inside the new parentheses)
        # and re-add it as ``file=f`` at the end.
        if groups:
            drop_end = at(groups[0][0].start)
        else:
            drop_end = at(commas[-1].end) if trailing_comma else at(file_expr[-1].end)
        dropped = source[print_end:drop_end]
        edits.append(_Edit(print_end, drop_end, "(" + "\n" * dropped.count("\n")))
        file_text = source[at(file_expr[0].start) : at(file_expr[-1].end)]
        file_text = " ".join(file_text.replace("\\\n", " ").split())
        extras = ["file=" + file_text]
    else:
        gap_end = at(first[0].start) if first else print_end
        gap = source[print_end:gap_end]
        # ``print x`` -> ``print(x``: swallow the blank between, unless it hides a line break.
        edits.append(_Edit(print_end, gap_end if gap.strip() == "" and "\n" not in gap else print_end, "("))
        extras = []
    if trailing_comma:
        # TF1 parity: Python 2's trailing comma suppressed the newline and left one space.
        extras.insert(0, 'end=" "')
    if groups:
        last_end = at(commas[-1].end) if trailing_comma else at(groups[-1][-1].end)
        if trailing_comma:
            # ``x,`` -> ``x, end=" "``: the comma we keep now separates the keyword argument.
            edits.append(_Edit(last_end, last_end, " " + ", ".join(extras) + ")"))
        else:
            tail = (", " + ", ".join(extras)) if extras else ""
            edits.append(_Edit(last_end, last_end, tail + ")"))
    else:
        edits.append(_Edit(edits[-1].end, edits[-1].end, ", ".join(extras) + ")"))
    return edits


def _apply(source: str, edits: List[_Edit]) -> str:
    pieces = []
    cursor = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        pieces.append(source[cursor : edit.start])
        pieces.append(edit.text)
        cursor = edit.end
    pieces.append(source[cursor:])
    return "".join(pieces)
