"""A tiny name -> object registry filled by a decorator (the timm ``register_model`` pattern).

Every open set in arx (datasets, regimes, attacks, CAM methods, evaluation groups) is a ``Registry``.
Members live one per module inside a package; ``Registry.populate()`` imports every module of that
package once, so adding a member is one new file and never an edit of a central list.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


from trainables.errors import ArxError


class UnknownNameError(ArxError, ValueError):
    """A user asked for a name that is not registered; the message lists the valid names."""


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._populated = package is None

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def populate(self, rescan: bool = False) -> None:
        """Import every module of the registry's package so their decorators run (``rescan``: again, for
        modules added since, e.g. a process that outlived the first scan)."""
        if self._populated and not rescan or self.package is None:
            return
        self._populated = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> T:
        self.populate()
        if name not in self._items:
            self.populate(rescan=True)
        if name not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self.populate()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self.populate()
        return name in self._items
