"""Translate Python 2 source into Python 3 that keeps Python 2's meaning.

TF1 teaching code is mostly Python 2. ``translate(source)`` runs fissix (the maintained
fork of lib2to3) with its standard fixers -- print statements, ``dict.iteritems()``,
``has_key``, ``xrange``, ``raw_input``, the renamed modules (``urllib2``, ``cPickle``,
``StringIO``, ``ConfigParser``, ``Queue`` ...), ``unicode``/``basestring``/``long``,
``except E, e``, ``raise E, v``, ``exec``, backticks, ``0777``, ``map``/``filter``/``zip``
used as lists, ``reduce``, ``.next()`` -- and then two passes of our own:

* ``a / b`` becomes ``_tf1_ema_py2.div(a, b)`` and ``a /= b`` becomes
  ``a = _tf1_ema_py2.idiv(a, b)``, which floor when both operands are integers at run
  time, as Python 2 did (``tf1_ema.legacy.py2runtime``), unless the code says
  ``from __future__ import division``. A division by a float literal is left as it is.
* every ``print(...)`` call becomes ``_tf1_ema_py2.print(...)``, which prints byte
  strings as Python 2 printed its ``str``; ``print x,`` passes ``softspace=True``. Calls of
  ``round``, ``file`` and ``str`` go to their Python 2 versions the same way, unless the
  code binds the name itself, and so do ``"..." % x`` and ``"...".format(x)``.

The translation keeps a map from its lines to the user's (``Translation.line_map``);
``Translation.remap(tree)`` puts the user's line numbers into an AST of the translated
text, so tracebacks point at the user's lines even where a fixer added one (``reduce``
adds an import).

``decide(source, force)`` is the rule for when to translate: forced on or off, or else
when the source does not compile as Python 3 but parses as Python 2 (or is valid Python 3
only by accident of a print statement: ``print [x]``). Python 3 source is never
translated unless forced.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
from typing import FrozenSet, Iterable, List, Optional

from fissix import pygram, pytree
from fissix import refactor as _refactor
from fissix.fixer_util import Call, Comma, Name
from fissix.fixes.fix_print import FixPrint as _FissixFixPrint
from fissix.pgen2 import token

__all__ = [
    "HELPER_NAME",
    "PY2_ENV",
    "Translation",
    "resolve_py2",
    "decide",
    "translate",
    "compiles_as_python3",
    "parses_as_python2",
    "future_features",
]

#: The environment variable that forces translation on ("1") or off ("0").
PY2_ENV = "TF1_EMA_PY2"
#: The global name translated code reaches its run-time helpers by (``py2runtime.RUNTIME``).
HELPER_NAME = "_tf1_ema_py2"

# fissix's fixers that change meaning-preserving Python 2 into Python 3. Left out:
# `import` (implicit relative imports; a script's neighbours are top-level modules here),
# `future` (drops __future__ imports, which we read), and the explicit-only ones
# (`buffer`, `idioms`, `set_literal`, `ws_comma`), which are style or change meaning.
_FIXERS = (
    "apply", "asserts", "basestring", "dict", "except", "exec", "execfile", "exitfunc", "filter",
    "funcattrs", "getcwdu", "has_key", "imports", "imports2", "input", "intern", "isinstance",
    "itertools", "itertools_imports", "long", "map", "metaclass", "methodattrs", "ne", "next",
    "nonzero", "numliterals", "operator", "paren", "print", "raise", "raw_input", "reduce",
    "reload", "renames", "repr", "standarderror", "sys_exc", "throw", "tuple_params", "types",
    "unicode", "urllib", "xrange", "xreadlines", "zip",
)  # fmt: skip

_syms = pygram.python_symbols


@dataclasses.dataclass(frozen=True)
class Translation:
    """The Python 3 text of a Python 2 source and how its lines map back.

    Attributes:
        original: the user's source.
        source: the translated source.
        line_map: ``line_map[n]`` is the user's line for line ``n`` (1-based) of ``source``.
    """

    original: str
    source: str
    line_map: List[int]

    def remap(self, tree: ast.AST) -> ast.AST:
        """Gives ``tree`` (parsed from ``source``) the user's line numbers, in place.

        On a line the translation changed, columns are widened to the whole line, so a
        traceback underlines no wrong span of the user's text.

        Args:
            tree: the AST of ``self.source``.

        Returns:
            ``tree``.
        """
        ours = self.source.split("\n")
        theirs = self.original.split("\n")
        last = len(self.line_map) - 1

        def same(line: int) -> bool:
            target = self.line_map[min(line, last)]
            return line <= len(ours) and target <= len(theirs) and ours[line - 1] == theirs[target - 1]

        for node in ast.walk(tree):
            if not hasattr(node, "lineno") or getattr(node, "lineno", None) is None:
                continue
            start, end = node.lineno, getattr(node, "end_lineno", None) or node.lineno
            exact = same(start) and same(end)
            node.lineno = self.line_map[min(start, last)]
            if getattr(node, "end_lineno", None) is not None:
                node.end_lineno = max(node.lineno, self.line_map[min(end, last)])
            if not exact and hasattr(node, "col_offset"):
                node.col_offset = 0
                if getattr(node, "end_col_offset", None) is not None:
                    text = theirs[node.end_lineno - 1] if node.end_lineno <= len(theirs) else ""
                    node.end_col_offset = len(text.rstrip("\r").encode("utf-8"))
        return tree


class _FixPrint(_FissixFixPrint):
    """fissix's print fixer, with ``print x,`` passing ``softspace=True`` for Python 2's space."""

    def add_kwarg(self, l_nodes, s_kwd, n_expr):  # noqa: D102 -- fissix's signature
        if s_kwd == "end":
            # TF1 parity (Python 2): the trailing comma left a pending space, not a written one.
            s_kwd, n_expr = "softspace", Name("True")
        super().add_kwarg(l_nodes, s_kwd, n_expr)


class _Tool(_refactor.RefactoringTool):
    """fissix's RefactoringTool with our print fixer in place of its own."""

    def get_fixers(self):  # noqa: D102 -- fissix's signature
        pre_order, post_order = super().get_fixers()
        swap = lambda fixers: [  # noqa: E731
            _FixPrint(self.options, self.fixer_log) if type(f) is _FissixFixPrint else f for f in fixers
        ]
        return swap(pre_order), swap(post_order)

    def log_error(self, msg, *args, **kwds):  # noqa: D102 -- fissix's signature
        raise SyntaxError(msg % args)


@functools.lru_cache(maxsize=1)
def _tool() -> _Tool:
    return _Tool(["fissix.fixes.fix_" + name for name in _FIXERS])


def future_features(source: str) -> FrozenSet[str]:
    """The ``from __future__ import`` names at the top of ``source``.

    Args:
        source: Python source.

    Returns:
        The feature names, e.g. {"division", "print_function"}.
    """
    try:
        return frozenset(_refactor._detect_future_features(source))
    except Exception:  # untokenizable: no features
        return frozenset()


def compiles_as_python3(source: str) -> bool:
    """Whether ``source`` compiles as Python 3 (NUL bytes count as "not ours to judge").

    Args:
        source: Python source.

    Returns:
        True when Python 3 accepts it.
    """
    try:
        compile(source, "<source>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError:
        return False
    except ValueError:
        return True
    return True


def _parse(source: str, futures: Iterable[str]) -> Optional[pytree.Node]:
    """fissix's tree of ``source`` (Python 2 grammar first), or None when it does not parse."""
    tool = _tool()
    grammars = [pygram.python_grammar_no_print_statement]
    if "print_function" not in futures:
        grammars.insert(0, tool.grammar)
    for grammar in grammars:
        tool.driver.grammar = grammar
        try:
            return tool.driver.parse_string(source)
        except Exception:  # fissix's ParseError, TokenError, IndentationError
            continue
        finally:
            tool.driver.grammar = tool.grammar
    return None


def parses_as_python2(source: str) -> bool:
    """Whether fissix parses ``source`` as Python 2.

    Args:
        source: Python source.

    Returns:
        True when it parses.
    """
    return _parse(_with_final_newline(source.replace("\r\n", "\n")), future_features(source)) is not None


def resolve_py2(flag: Optional[bool] = None) -> Optional[bool]:
    """Whether translation is forced: ``flag``, else ``$TF1_EMA_PY2``, else None (detect).

    Args:
        flag: an explicit choice (``--py2``/``--no-py2``), or None.

    Returns:
        True (always translate), False (never) or None (translate Python 2 only).

    Raises:
        ValueError: ``$TF1_EMA_PY2`` is set to something other than 1, 0 or empty.
    """
    if flag is not None:
        return flag
    value = os.environ.get(PY2_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value == "":
        return None
    raise ValueError(
        "%s=%r is not understood; set it to 1 (translate from Python 2), 0 (never translate), "
        "or unset it (translate files that are Python 2 only)" % (PY2_ENV, os.environ[PY2_ENV])
    )


def decide(source: str, force: Optional[bool] = None) -> bool:
    """Whether ``source`` should be translated.

    Args:
        source: a module's or a cell's text.
        force: True or False to decide regardless of the text; None to detect.

    Returns:
        ``force`` when given; else True when ``source`` parses as Python 2 and either does
        not compile as Python 3 or uses ``print`` as only Python 2 could mean it
        (``print [x]``, ``print -1``, ``print >>f, x``, ``print (a), b``, a bare ``print``:
        valid Python 3 syntax, but a no-op or a TypeError there).
    """
    if force is not None:
        return force
    if compiles_as_python3(source) and not _python2_print_statement(source):
        return False
    return parses_as_python2(source)


def _print_head(expr: ast.AST) -> bool:
    """Whether ``expr`` is ``print`` followed by an operator: ``print -1``, ``print [x]``."""
    while isinstance(expr, (ast.BinOp, ast.Compare, ast.Subscript)):
        expr = expr.value if isinstance(expr, ast.Subscript) else expr.left
    return isinstance(expr, ast.Name) and expr.id == "print"


def _python2_print_statement(source: str) -> bool:
    """Whether valid Python 3 ``source`` has an expression statement that is a Python 2 print."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Expr):
            continue
        value = node.value
        if _print_head(value):
            return True
        if isinstance(value, ast.Tuple) and value.elts:
            first = value.elts[0]
            called = isinstance(first, ast.Call) and isinstance(first.func, ast.Name) and first.func.id == "print"
            if called or _print_head(first):
                return True
    return False


def _with_final_newline(source: str) -> str:
    return source if source.endswith("\n") else source + "\n"


def translate(source: str, futures: Iterable[str] = ()) -> Optional[Translation]:
    """Translates Python 2 ``source`` into Python 3 with Python 2's meaning.

    Args:
        source: the Python 2 text (a Python 3 text works too: its prints and divisions
            are still rewritten, which is what a notebook declared Python 2 needs).
        futures: ``__future__`` features already in effect (a kernel's earlier cells),
            on top of the ones ``source`` imports itself.

    Returns:
        The translation, or None when fissix cannot parse ``source``.
    """
    text = source.replace("\r\n", "\n")
    futures = frozenset(futures) | future_features(text)
    parsed = _with_final_newline(text)
    tree = _parse(parsed, futures)
    if tree is None:
        return None
    tree.future_features = futures
    tool = _tool()
    try:
        tool.refactor_tree(tree, "<source>")
    except Exception:  # a fixer that cannot handle this text: leave it to the compiler
        return None
    finally:
        del tool.fixer_log[:]  # fixers' notes ("you may need to...") nobody reads; keep none
    if "division" not in futures:
        _rewrite_division(tree)
    _rewrite_formatting(tree)
    _rewrite_builtins(tree)
    result = str(tree)
    if _tab_error(result):
        _expand_indentation_tabs(tree)
        result = str(tree)
    line_map = _line_map(tree, result)
    if not text.endswith("\n") and result.endswith("\n"):
        result = result[:-1]
    return Translation(original=text, source=result, line_map=line_map)


def _tab_error(source: str) -> bool:
    try:
        compile(source, "<source>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except TabError:
        return True
    except (SyntaxError, ValueError):
        return False
    return False


def _expand_indentation_tabs(tree: pytree.Node) -> None:
    """Indentation tabs -> spaces, to the next multiple of 8 as Python 2 counted them.

    Python 2 accepted a block indented with a tab in one line and spaces in the next;
    Python 3 raises TabError. String contents are left alone.
    """
    at_line_start = True
    for leaf in tree.leaves():
        pieces = leaf.prefix.split("\n")
        for index, piece in enumerate(pieces):
            if index or at_line_start:
                indent = len(piece) - len(piece.lstrip(" \t"))
                pieces[index] = piece[:indent].expandtabs(8) + piece[indent:]
        leaf.prefix = "\n".join(pieces)
        if leaf.type == token.INDENT:
            leaf.value = leaf.value.expandtabs(8)
            at_line_start = False
        elif leaf.value:
            at_line_start = leaf.value.endswith("\n")


def _helper(name: str) -> pytree.Leaf:
    # One NAME leaf holding a dotted name: the tree is only ever turned back into text.
    return Name("%s.%s" % (HELPER_NAME, name))


def _is_float_literal(node: pytree.Base) -> bool:
    if node.type != token.NUMBER:
        return False
    value = node.value.lower()
    return not value.startswith("0x") and ("." in value or "e" in value or value.endswith("j"))


def _detach(node: pytree.Node) -> List[pytree.Base]:
    children = list(node.children)
    for child in children:
        child.remove()
    return children


def _rewrite_division(tree: pytree.Node) -> None:
    """``a / b`` -> ``div(a, b)``, ``a /= b`` -> ``a = idiv(a, b)``; innermost first."""
    for node in list(tree.post_order()):
        if node.type == _syms.term and any(c.type == token.SLASH for c in node.children):
            _rewrite_term(node)
        elif node.type == _syms.expr_stmt and len(node.children) == 3 and node.children[1].type == token.SLASHEQUAL:
            target, op, value = _detach(node)
            source = target.clone()
            source.prefix = ""
            call = Call(_helper("idiv"), [source, Comma(), value], prefix=value.prefix)
            value.prefix = " "
            for child in (target, pytree.Leaf(token.EQUAL, "=", prefix=op.prefix), call):
                node.append_child(child)


def _is_string_literal(node: pytree.Base) -> bool:
    if node.type == token.STRING:
        return True
    # Implicit concatenation: "a" "b".
    return node.type == _syms.atom and all(child.type == token.STRING for child in node.children)


def _rewrite_formatting(tree: pytree.Node) -> None:
    """``"..." % x`` -> ``mod("...", x)``, ``"...".format(x)`` -> ``format("...", x)``."""
    for node in list(tree.post_order()):
        if node.type == _syms.term and len(node.children) == 3 and node.children[1].type == token.PERCENT:
            if _is_string_literal(node.children[0]):
                left, _, right = _detach(node)
                prefix, left.prefix = left.prefix, ""
                right.prefix = " "
                node.append_child(Call(_helper("mod"), [left, Comma(), right], prefix=prefix))
        elif (
            node.type == _syms.power
            and len(node.children) >= 3
            and _is_string_literal(node.children[0])
            and node.children[1].type == _syms.trailer
            and [c.value for c in node.children[1].children] == [".", "format"]
            and node.children[2].type == _syms.trailer
            and node.children[2].children[0].value == "("
        ):
            children = _detach(node)
            literal, call, rest = children[0], children[2], children[3:]
            prefix, literal.prefix = literal.prefix, ""
            inner = _detach(call)[1:-1]
            args = [literal]
            for argument in inner:
                pieces = _detach(argument) if argument.type == _syms.arglist else [argument]
                if pieces:
                    pieces[0].prefix = " "
                    args += [Comma()] + pieces
            node.append_child(Call(_helper("format"), args, prefix=prefix))
            for child in rest:
                node.append_child(child)


def _rewrite_term(node: pytree.Node) -> None:
    children = _detach(node)
    acc = [children[0]]
    for op, operand in zip(children[1::2], children[2::2]):
        if op.type != token.SLASH or _is_float_literal(acc[-1]) or _is_float_literal(operand):
            acc += [op, operand]
            continue
        left = acc[0] if len(acc) == 1 else pytree.Node(_syms.term, acc)
        prefix, left.prefix = left.prefix, ""
        operand.prefix = " " + operand.prefix.lstrip(" ") if "\n" not in operand.prefix else operand.prefix
        acc = [Call(_helper("div"), [left, Comma(), operand], prefix=prefix)]
    if len(acc) == 1:
        node.append_child(acc[0])  # a term of one child prints the same as the child
    else:
        for child in acc:
            node.append_child(child)


# Builtins whose Python 2 meaning lives in py2runtime; `print` always, the others only where
# the code does not use the name for something of its own.
_RUNTIME_BUILTINS = ("print", "round", "file", "str")


def _is_call(leaf: pytree.Leaf) -> bool:
    parent = leaf.parent
    return (
        parent is not None
        and parent.type == _syms.power
        and parent.children[0] is leaf
        and len(parent.children) > 1
        and parent.children[1].type == _syms.trailer
        and parent.children[1].children[0].value == "("
    )


def _rewrite_builtins(tree: pytree.Node) -> None:
    """Calls of ``print``, ``round``, ``file`` -> ``_tf1_ema_py2.print(...)`` and so on."""
    leaves = [leaf for leaf in tree.leaves() if leaf.type == token.NAME and leaf.value in _RUNTIME_BUILTINS]
    calls = [leaf for leaf in leaves if _is_call(leaf)]
    # `round = ...`, `def file(...)`, `for file in ...`: a name of the user's own.
    owned = {leaf.value for leaf in leaves if _binds(leaf)} - {"print"}
    for leaf in calls:
        if leaf.value not in owned:
            leaf.value = "%s.%s" % (HELPER_NAME, leaf.value)


_BINDING_KEYWORDS = ("def", "class", "as", "for", "global", "import", "nonlocal")
_PARAMETER_LISTS = (_syms.parameters, _syms.typedargslist, _syms.varargslist, _syms.tname, _syms.import_as_names)


def _binds(leaf: pytree.Leaf) -> bool:
    """Whether this occurrence of a name binds it (assignment, def, import, parameter, loop)."""
    previous, following, parent = leaf.prev_sibling, leaf.next_sibling, leaf.parent
    if previous is not None and getattr(previous, "value", None) in _BINDING_KEYWORDS:
        return True
    if parent is None:
        return False
    if parent.type == _syms.expr_stmt and following is not None and following.type in (token.EQUAL,) + _AUGMENTED:
        return True
    if parent.type in _PARAMETER_LISTS:
        return not (previous is not None and previous.type == token.EQUAL)  # a default value is a use
    return parent.type == _syms.exprlist and parent.parent is not None and parent.parent.type == _syms.for_stmt


_AUGMENTED = tuple(
    getattr(token, name)
    for name in ("PLUSEQUAL", "MINEQUAL", "STAREQUAL", "SLASHEQUAL", "PERCENTEQUAL", "DOUBLESLASHEQUAL")
)


def _line_map(tree: pytree.Node, text: str) -> List[int]:
    """``map[n]``: the user's line for line ``n`` of ``text`` (``str(tree)``)."""
    lines = text.count("\n") + 1
    found = [0] * (lines + 2)
    line = 1
    for leaf in tree.leaves():
        line += leaf.prefix.count("\n")
        if leaf.lineno:
            for offset in range(leaf.value.count("\n") + 1):
                if line + offset < len(found) and not found[line + offset]:
                    found[line + offset] = leaf.lineno + offset
        line += leaf.value.count("\n")
    # Lines holding only new text (an added import) take the user's line before them.
    previous = next((n for n in found if n), 1)
    for index in range(1, len(found)):
        if found[index]:
            previous = found[index]
        else:
            found[index] = previous
    found[0] = found[1]
    return found
