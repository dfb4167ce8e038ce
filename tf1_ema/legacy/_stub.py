"""A module type whose missing attributes fail with one clear, user-facing message."""

import types
from typing import Any, Callable, Dict, Optional

from tf1_ema.legacy.errors import ContribRemovedError


class StubModule(types.ModuleType):
    """A module that holds the stand-ins it has and explains the ones it has not.

    Args:
        name: the module's dotted name as old code spells it (``tensorflow.contrib``).
        doc: its docstring.
        explain: maps a missing attribute name to the complete message to raise.
        lazy: attributes computed on first access (and then kept), for stand-ins whose
            lookup is costly, such as the tf-keras RNN cells.
    """

    def __init__(
        self,
        name: str,
        doc: str,
        explain: Callable[[str], str],
        lazy: Optional[Dict[str, Callable[[], Any]]] = None,
    ) -> None:
        super().__init__(name, doc)
        self.__dict__["_tf1_ema_explain"] = explain
        self.__dict__["_tf1_ema_lazy"] = dict(lazy or {})

    def __getattr__(self, attr: str):
        lazy = self.__dict__["_tf1_ema_lazy"]
        if attr in lazy:
            value = lazy.pop(attr)()
            setattr(self, attr, value)
            return value
        if attr.startswith("__") and attr.endswith("__"):
            # Protocol probes (__path__, __wrapped__, ...) get the ordinary answer.
            raise AttributeError("module %r has no attribute %r" % (self.__name__, attr))
        raise ContribRemovedError(self.__dict__["_tf1_ema_explain"](attr))

    def __dir__(self):
        names = set(self.__dict__) | set(self.__dict__["_tf1_ema_lazy"])
        return sorted(k for k in names if not k.startswith("_tf1_ema"))
