"""Name -> builder registries filled by class decorators (as timm's ``register_model``): detector and segmenter
backends, search engines. One place says how a name is registered, refused twice, and looked up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sufra.core.errors import SufraError

T = TypeVar("T")


class Registry(dict[str, T]):
    """A dict of name -> builder (usually a class) in registration order, with a decorator to fill it and a lookup
    whose miss is a one-line :class:`SufraError` naming what is known. ``kind`` names the entries in messages
    (``"segmenter backend"``)."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None) -> None:
        super().__init__(entries or {})
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` on a class; the same name for another class is a ValueError
        (two backends would silently shadow each other)."""

        def add(builder: T) -> T:
            if self.get(name, builder) is not builder:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self[name] = builder
            return builder

        return add

    def lookup(self, name: str, known: str | None = None) -> T:
        """The builder registered as ``name``; else one line naming the known ones (``known`` overrides the list)."""
        try:
            return self[name]
        except KeyError:
            raise SufraError(f"unknown {self.kind} '{name}'; use {known or ', '.join(self)}") from None

    def copy(self) -> Registry[T]:
        return Registry(self.kind, dict(self))
