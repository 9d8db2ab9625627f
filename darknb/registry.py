"""One registry idiom for models, enhancers and datasets (timm's ``register_model`` style).

Each kind keeps a :class:`Registry`; its module exposes ``register_<kind>`` (a decorator),
``list_<kind>s()`` and a ``create``/``build`` function that looks names up through :meth:`get`, so
an unknown name always fails the same way: naming the kind, the name and the registered choices.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from darknb.errors import ConfigError

F = TypeVar("F", bound=Callable)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable] = {}

    def register(self, fn: F | None = None, *, name: str | None = None):
        """Decorator: ``@registry.register`` (the function's name) or ``register(name="x")``."""
        def add(builder: F) -> F:
            key = name or builder.__name__
            if key in self._builders:
                raise ConfigError(f"{self.kind} {key!r} is registered twice")
            self._builders[key] = builder
            return builder
        return add(fn) if fn is not None else add

    def get(self, name: str) -> Callable:
        if name not in self._builders:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered {self.kind}s: {self.names()}")
        return self._builders[name]

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
