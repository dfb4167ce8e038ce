"""One hook for printing values the way an older era printed them, in ``print`` and Out[].

Minimal version, written on the np113 branch so NumPy 1.13 printing can land on its own;
the issue-13 branch builds the full module with this same API (``register``,
``unregister``, ``render``, ``install_ipython``), and the two merge into one.

Some values cannot be re-routed at their type: NumPy scalars' ``repr`` is fixed in C. So
the two places a value becomes text in user code -- ``print`` and the Jupyter kernel's
display of a cell's value -- ask registered *formatters* through ``render``, which walks
exact ``list``/``tuple``/``dict``/``set`` containers itself, so a formatter only ever sees
its own leaf types.

A formatter is ``formatter(obj, mode) -> Optional[str]``; ``mode`` is "str" (the value
printed on its own) or "repr" (inside a container, or displayed); None declines. This
module imports only the standard library.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable, Collection, Dict, List, Optional, TextIO, Tuple, Union

__all__ = ["Formatter", "register", "unregister", "render", "era_print", "install_ipython"]

Formatter = Callable[[Any, str], Optional[str]]

# name -> (types, formatter, tag), in registration order; the latest is asked first.
_REGISTRY: Dict[str, Tuple[Tuple[type, ...], Formatter, Optional[str]]] = {}
_IPYTHON_TARGETS: List[Tuple[Any, Callable[[], Collection[str]]]] = []
_CONTAINERS = (list, tuple, dict, set, frozenset)


def register(name: str, types: Union[type, Tuple[type, ...]], formatter: Formatter, tag: Optional[str] = None) -> None:
    """Adds ``formatter`` for instances of ``types`` under ``name``, replacing an earlier one.

    Args:
        name: a unique key, e.g. "numpy-1.13".
        types: the classes it handles (subclasses included).
        formatter: ``formatter(obj, mode)`` returning the text or None.
        tag: None for always on; else active only when ``render`` gets this tag.
    """
    types = types if isinstance(types, tuple) else (types,)
    _REGISTRY.pop(name, None)
    _REGISTRY[name] = (types, formatter, tag)
    for target, tags in _IPYTHON_TARGETS:
        _hook_ipython_types(target, types, tags)


def unregister(name: str) -> None:
    """Removes the formatter registered as ``name``; unknown names are ignored.

    Args:
        name: the key given to ``register``.
    """
    _REGISTRY.pop(name, None)


def _leaf(obj: Any, mode: str, tags: Collection[str]) -> Optional[str]:
    for types, formatter, tag in reversed(list(_REGISTRY.values())):
        if isinstance(obj, types) and (tag is None or tag in tags):
            text = formatter(obj, mode)
            if text is not None:
                return text
    return None


def render(obj: Any, mode: str = "str", tags: Collection[str] = ()) -> str:
    """The era's text for ``obj``: a formatter's, else containers walked, else Python's own.

    Args:
        obj: the value.
        mode: "str" for a value printed on its own, "repr" for one shown as a repr.
        tags: tags that switch on tagged formatters.

    Returns:
        The text.
    """
    if mode not in ("str", "repr"):
        raise ValueError("mode must be 'str' or 'repr', not %r" % (mode,))
    if not _REGISTRY:
        return str(obj) if mode == "str" else repr(obj)
    return _render(obj, mode, tags, set())


def _render(obj: Any, mode: str, tags: Collection[str], active: set) -> str:
    text = _leaf(obj, mode, tags)
    if text is not None:
        return text
    kind = type(obj)
    if kind not in _CONTAINERS:
        return str(obj) if mode == "str" else repr(obj)
    if id(obj) in active:
        return "[...]" if kind is list else "{...}"
    active.add(id(obj))
    try:
        if kind is dict:
            return "{%s}" % ", ".join(
                "%s: %s" % (_render(k, "repr", tags, active), _render(v, "repr", tags, active)) for k, v in obj.items()
            )
        items = [_render(item, "repr", tags, active) for item in obj]
    finally:
        active.discard(id(obj))
    if kind is list:
        return "[%s]" % ", ".join(items)
    if kind is tuple:
        return "(%s,)" % items[0] if len(items) == 1 else "(%s)" % ", ".join(items)
    if not items:
        return repr(obj)
    body = "{%s}" % ", ".join(items)
    return body if kind is set else "frozenset(%s)" % body


def era_print(
    *values: Any,
    sep: Optional[str] = " ",
    end: Optional[str] = "\n",
    file: Optional[TextIO] = None,
    flush: bool = False,
) -> None:
    """``print`` for user code: each value's text comes from ``render(value, "str")``.

    Args:
        *values: what to print.
        sep: as for ``print``.
        end: as for ``print``.
        file: as for ``print``.
        flush: as for ``print``.
    """
    builtins.print(*(render(value, "str") for value in values), sep=sep, end=end, file=file, flush=flush)


def _hook_ipython_types(target: Any, types: Tuple[type, ...], tags: Callable[[], Collection[str]]) -> None:
    for kind in types:
        try:
            previous = target.lookup_by_type(kind)
        except KeyError:
            previous = None

        def printer(obj, p, cycle, _previous=previous):
            text = _leaf(obj, "repr", tags())
            if text is not None:
                p.text(text)
            elif _previous is not None:
                _previous(obj, p, cycle)
            else:
                p.text(repr(obj))

        target.for_type(kind, printer)


def install_ipython(formatter: Any, tags: Callable[[], Collection[str]] = tuple) -> None:
    """Makes an IPython ``PlainTextFormatter`` show registered types through their formatters.

    IPython's pretty printer walks containers itself and reaches these printers for
    their elements.

    Args:
        formatter: ``shell.display_formatter.formatters["text/plain"]``.
        tags: called at display time; returns the tags in effect.
    """
    _IPYTHON_TARGETS.append((formatter, tags))
    for types, _, _ in list(_REGISTRY.values()):
        _hook_ipython_types(formatter, types, tags)
