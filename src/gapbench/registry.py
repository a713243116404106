"""Name -> entry registries with metadata (measures, bounds, datasets, experiments).

Everything selectable is registered by name with its metadata and reference; the CLI, the README tables and
the common tests iterate the registries. Lookup of an unknown name lists the known ones ("did you mean").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import GapbenchError, unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its metadata."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:      # entry.reference, entry.kind, ...
        try:
            return self.meta[key]
        except KeyError:
            raise AttributeError(key) from None


class Registry(Generic[T]):
    """A named collection; `kind` is used in messages ("Unknown measure 'x'")."""

    def __init__(self, kind: str, required: tuple[str, ...] = ()):
        self.kind = kind
        self.required = required
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register `obj` under `name` with metadata; the required metadata keys must be given."""
        missing = [k for k in self.required if k not in meta]
        if missing:
            raise TypeError(f"{self.kind} '{name}' is missing metadata {missing}")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise GapbenchError(f"{self.kind} '{name}' is registered twice.")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> T:
        return self.register(name, **meta)(obj)

    def get(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries)
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)
