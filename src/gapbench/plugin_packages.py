"""The installed plugin packages: entry points in the groups ``gapbench.measures`` and ``gapbench.bounds``
(docs/plugins.md), each entry point's name the quantity's name and its value the function.

They are loaded lazily, once (:func:`plugins`; :func:`reload_plugins` after installing one), when
``gapbench list`` or :func:`gapbench.plugins.resolve` first needs them; one that fails to import or has the
wrong signature is kept as broken with its message and does not affect the others. How a name reaches a
plugin (built-ins first, ``<distribution>/<name>`` on a clash) is :mod:`gapbench.plugins`'s.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
from dataclasses import dataclass

from .quantity import Quantity, QuantityError, quantity_of

GROUPS = {"gapbench.measures": "measure", "gapbench.bounds": "bound"}


@dataclass(frozen=True)
class Plugin:
    """One entry point of an installed package: its Quantity, or why it is broken."""

    name: str                   # the entry point's name: the quantity's name
    kind: str                   # 'measure' | 'bound', from the group
    dist: str                   # distribution name and version
    version: str
    target: str                 # the entry point's value, 'module:attr'
    quantity: Quantity | None   # None: broken
    error: str = ""             # why it is broken
    failure: str = ""           # 'import' | 'signature'

    @property
    def qualified(self) -> str:
        return f"{self.dist}/{self.name}"


def dist_key(dist: str) -> str:
    """A distribution name compared as packaging does: case-insensitive, runs of -_. equal."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def _load_entry_point(ep: importlib.metadata.EntryPoint, kind: str) -> Plugin:
    dist = ep.dist.name if ep.dist is not None else "unknown"
    version = ep.dist.version if ep.dist is not None else "?"
    origin = f"plugin {dist} {version}"
    where = f"{kind} '{ep.name}' ({origin}, entry point '{ep.name} = {ep.value}' in group '{ep.group}')"
    try:
        fn = ep.load()
    except Exception as exc:         # any error in the plugin's import: isolate it
        return Plugin(ep.name, kind, dist, version, ep.value, None,
                      f"{where} failed to import: {type(exc).__name__}: {exc}. Fix or reinstall the package "
                      f"'{dist}' (the other quantities are unaffected).", "import")
    try:
        quantity = quantity_of(fn, name=ep.name, origin=origin, spec=f"{dist}/{ep.name}", kind=kind,
                               kind_from="registered")
    except QuantityError as err:
        return Plugin(ep.name, kind, dist, version, ep.value, None, f"{err} (entry point in '{dist}').",
                      err.failure)
    return Plugin(ep.name, kind, dist, version, ep.value, quantity)


@functools.cache
def plugins() -> tuple[Plugin, ...]:
    """Every installed plugin quantity, loaded once (sorted by name, then distribution)."""
    seen, found = set(), []
    for group, kind in GROUPS.items():
        for ep in importlib.metadata.entry_points(group=group):
            key = (group, ep.name, dist_key(ep.dist.name) if ep.dist is not None else "")
            if key not in seen:                 # one distribution seen twice on sys.path counts once
                seen.add(key)
                found.append(_load_entry_point(ep, kind))
    return tuple(sorted(found, key=lambda p: (p.name, dist_key(p.dist), p.kind)))


def reload_plugins() -> tuple[Plugin, ...]:
    """Forget the loaded plugins and discover them again (after installing one in this process)."""
    plugins.cache_clear()
    importlib.invalidate_caches()
    return plugins()
