"""Name -> entry registries with metadata (measures, bounds, datasets, experiments).

Everything selectable is registered by name with its metadata and reference; the CLI, the README tables and
the common tests iterate the registries. Lookup of an unknown name lists the known ones ("did you mean").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
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
    """A named collection; `kind` is used in messages ("Unknown measure 'x'").

    `required`: metadata keys every entry must give; `choices`: metadata keys whose value must be one of the
    given ones (a measure's 'kind'). :meth:`register` is the one way in."""

    def __init__(self, kind: str, required: tuple[str, ...] = (), choices: dict[str, tuple[Any, ...]] | None = None):
        self.kind = kind
        self.required = required
        self.choices = choices or {}
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T | None = None, **meta: Any) -> Any:
        """Register `obj` under `name` with metadata and return it; without `obj`, a decorator that does."""
        missing = [k for k in self.required if k not in meta]
        if missing:
            raise TypeError(f"{self.kind} '{name}' is missing metadata {missing}")
        for key, allowed in self.choices.items():
            if meta.get(key) not in allowed:
                raise TypeError(f"{self.kind} '{name}': {key} {meta.get(key)!r} is not one of {allowed}")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise GapbenchError(f"{self.kind} '{name}' is registered twice.")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj

        return decorator if obj is None else decorator(obj)

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


def keyword_params(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword-only parameters of a registered function: what the caller's ``**params`` may hold."""
    return {p.name: p for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


def takes_any_keyword(fn: Callable[..., Any]) -> bool:
    """Whether fn takes ``**kwargs`` (it then checks their names itself)."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def check_params(params: Mapping[str, Any], accepted: Mapping[str, Any], where: str, *,
                 required: tuple[str, ...] | list[str] = (), open_ended: bool = False) -> None:
    """The one check of a registered function's keyword parameters: every given one is accepted (unless
    `open_ended`: the function takes ``**kwargs`` and checks them), every required one is given; the messages
    list the accepted ones."""
    listed = ", ".join(sorted(accepted)) or "none"
    unknown = sorted(set(params) - set(accepted))
    if unknown and not open_ended:
        raise GapbenchError(f"The parameter(s) {unknown} of {where} are not accepted. Accepted parameters: "
                            f"{listed}. Remove or rename them.")
    missing = [p for p in required if p not in params]
    if missing:
        raise GapbenchError(f"{where} needs the parameter(s) {missing}. Accepted parameters: {listed}.")
