"""One hook for printing values the way an older era printed them, in ``print`` and Out[].

Old programs print values whose text has changed since: Python 2 printed a byte string
without its ``b''``, NumPy 1.13 printed other digits. Every such difference is a small
*formatter* registered here, and the two places a value becomes text -- ``print`` in user
code and the Jupyter kernel's display of a cell's last expression -- ask this registry
through one function, ``render``. Containers are walked here, once, so a formatter only
ever sees its own leaf type: ``[b'a', np.float32(0.1)]`` gets each element from its own
formatter, and the list's brackets and commas from ``render``.

API:
    ``register(name, types, formatter, tag=None)`` adds (or, under an existing ``name``,
    replaces) a formatter. ``formatter(obj, mode)`` receives an instance of ``types``
    and ``mode``: ``"str"`` (the value printed on its own, as ``print(obj)`` shows it) or
    ``"repr"`` (inside a container or as a displayed value). It returns the text, or
    None to decline, in which case the next matching formatter (the most recently
    registered is asked first) or Python's own ``str``/``repr`` is used.
    ``tag`` gates the formatter: ``None`` means always active; a string means active only
    when the caller passes that tag to ``render`` (``"py2"``: only for code translated
    from Python 2, so Python 3 code keeps Python 3's text). Active tagged formatters are
    asked before untagged ones: the context the caller names is the more specific.

    ``unregister(name)`` removes one.

    ``render(obj, mode="str", tags=())`` returns the text: a registered formatter's for a
    leaf, else for an exact ``list``/``tuple``/``dict``/``set``/``frozenset`` the
    container's own syntax with each element rendered in ``"repr"`` mode (a container
    that holds itself shows ``[...]``/``{...}`` as Python does), else ``str(obj)`` or
    ``repr(obj)``.

    ``era_print(*values, sep, end, file, flush)`` is ``print`` with each value's text from
    ``render(value, "str")`` (no tags): what Python 3 user code gets as ``print`` in an era
    that needs it (NumPy 1.13). Code translated from Python 2 has its own print
    (``py2runtime.py2_print``), which renders with the "py2" tags.

    ``needs_render(obj, tags=())`` says whether ``render`` could differ from Python's own
    text, cheaply (one type lookup per element), so hot paths can skip the walk.

    ``install_ipython(formatter, tags)`` hooks an IPython ``PlainTextFormatter`` (the
    displayed Out[] text): each registered leaf type gets a printer that calls ``render``
    in ``"repr"`` mode with the tags ``tags()`` returns at display time. IPython's pretty
    printer walks containers itself and reaches these printers for their elements.
    Formatters registered later are added to installed IPython formatters too.

Users: ``np113print.era_formatter`` (NumPy 1.13's scalars and arrays, untagged, registered
by ``v1.set_numpy_print("1.13")``) and ``py2runtime`` (bytes as Python 2's ``str``, floats'
12 digits, ``set([...])``, arrays of bytes; tagged "py2").

Example (a formatter for an era's floats)::

    era_repr.register("numpy-1.13", (np.floating,), lambda x, mode: legacy_text(x, mode))
    era_repr.render([np.float32(0.1)])   # '[0.1]' in that era's digits

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable, Collection, Dict, List, Optional, TextIO, Tuple, Union

__all__ = ["Formatter", "register", "unregister", "render", "era_print", "needs_render", "install_ipython"]

#: ``formatter(obj, mode) -> text or None``; ``mode`` is "str" or "repr".
Formatter = Callable[[Any, str], Optional[str]]

# name -> (types, formatter, tag); dict order is registration order.
_REGISTRY: Dict[str, Tuple[Tuple[type, ...], Formatter, Optional[str]]] = {}
# IPython PlainTextFormatters hooked by install_ipython, with their tag callables.
_IPYTHON_TARGETS: List[Tuple[Any, Callable[[], Collection[str]]]] = []

_CONTAINERS = (list, tuple, dict, set, frozenset)


def register(
    name: str, types: Union[type, Tuple[type, ...]], formatter: Formatter, tag: Optional[str] = None
) -> None:
    """Adds ``formatter`` for instances of ``types`` under ``name`` (replacing an earlier one).

    Args:
        name: a unique key, e.g. "py2-bytes"; registering the same name again replaces it.
        types: a class or tuple of classes the formatter handles (subclasses included).
        formatter: ``formatter(obj, mode)`` returning the text, or None to decline.
        tag: None for always-on; otherwise the tag a caller must pass to ``render``.
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


def _formatters_for(obj: Any, tags: Collection[str]) -> List[Formatter]:
    """Active formatters for ``obj``: tagged ones first, then untagged, each latest first."""
    found = [
        (tag is None, formatter)
        for types, formatter, tag in reversed(list(_REGISTRY.values()))
        if isinstance(obj, types) and (tag is None or tag in tags)
    ]
    return [formatter for _, formatter in sorted(found, key=lambda pair: pair[0])]


def _leaf(obj: Any, mode: str, tags: Collection[str]) -> Optional[str]:
    for formatter in _formatters_for(obj, tags):
        text = formatter(obj, mode)
        if text is not None:
            return text
    return None


def needs_render(obj: Any, tags: Collection[str] = ()) -> bool:
    """Whether ``render(obj)`` may differ from Python's own text for it.

    Args:
        obj: any value.
        tags: the tags ``render`` would get.

    Returns:
        True when ``obj`` or an element of an exact container in it has an active
        formatter.
    """
    seen = set()
    pending = [obj]
    while pending:
        item = pending.pop()
        if _formatters_for(item, tags):
            return True
        if type(item) in _CONTAINERS and id(item) not in seen:
            seen.add(id(item))
            pending.extend(item.items() if type(item) is dict else item)
    return False


def render(obj: Any, mode: str = "str", tags: Collection[str] = ()) -> str:
    """Returns the era's text for ``obj``.

    Args:
        obj: the value.
        mode: "str" for a value printed on its own, "repr" for one shown as a repr.
        tags: the tags that switch on tagged formatters (e.g. {"py2"}).

    Returns:
        The text ``print`` (mode "str") or the display (mode "repr") should show.
    """
    if mode not in ("str", "repr"):
        raise ValueError("mode must be 'str' or 'repr', not %r" % (mode,))
    if not _REGISTRY:
        return str(obj) if mode == "str" else repr(obj)
    return _render(obj, mode, tags, set())


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


def _render(obj: Any, mode: str, tags: Collection[str], active: set) -> str:
    text = _leaf(obj, mode, tags)
    if text is not None:
        return text
    kind = type(obj)
    if kind not in _CONTAINERS:
        return str(obj) if mode == "str" else repr(obj)
    if id(obj) in active:  # a container inside itself, as Python shows it
        return "[...]" if kind is list else "{...}"
    if not needs_render(obj, tags):
        return repr(obj)
    active.add(id(obj))
    try:
        if kind is dict:
            body = ", ".join(
                "%s: %s" % (_render(k, "repr", tags, active), _render(v, "repr", tags, active)) for k, v in obj.items()
            )
            return "{%s}" % body
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


def _hook_ipython_types(target: Any, types: Tuple[type, ...], tags: Callable[[], Collection[str]]) -> None:
    for kind in types:
        previous = target.lookup_by_type(kind) if _has_printer(target, kind) else None

        def printer(obj, p, cycle, _previous=previous):
            text = _leaf(obj, "repr", tags())
            if text is not None:
                p.text(text)
            elif _previous is not None:
                _previous(obj, p, cycle)
            else:
                _ipython_default(obj, p, cycle)

        target.for_type(kind, printer)


def _ipython_default(obj: Any, p: Any, cycle: bool) -> None:
    """What IPython's pretty printer shows for ``obj`` when no formatter claims it."""
    from IPython.lib import pretty

    # IPython keeps its built-in printers (sorted sets, dicts ...) in this private table.
    builtin = getattr(pretty, "_type_pprinters", {})
    for kind in type(obj).__mro__:
        if kind in builtin:
            builtin[kind](obj, p, cycle)
            return
    pretty._default_pprint(obj, p, cycle)


def _has_printer(target: Any, kind: type) -> bool:
    try:
        target.lookup_by_type(kind)
    except KeyError:
        return False
    return True


def install_ipython(formatter: Any, tags: Callable[[], Collection[str]] = tuple) -> None:
    """Makes an IPython ``PlainTextFormatter`` show registered types through ``render``.

    Args:
        formatter: ``shell.display_formatter.formatters["text/plain"]``.
        tags: called at display time; returns the tags in effect (e.g. {"py2"} while a
            cell translated from Python 2 runs).
    """
    _IPYTHON_TARGETS.append((formatter, tags))
    for types, _, _ in list(_REGISTRY.values()):
        _hook_ipython_types(formatter, types, tags)
