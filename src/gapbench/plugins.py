"""What the user brings: a registered name, a callable by import or file path, or a plugin; and the isolated
evaluation that records a bad one's failure instead of stopping the others.

    from gapbench.plugins import resolve, safe_evaluate
    resolve("bartlett2017_complexity")          # a built-in measure or bound
    resolve("mypkg.bounds:my_bound")            # a callable by import path
    resolve("~/work/my_measure.py:sharpness")   # a callable in a .py file in any directory
    resolve("my_plugin_measure")                # a name a plugin package provides
    resolve("my-plugin-pkg/spectral_product")   # a plugin's name that a built-in takes (built-in wins)
    outcome = safe_evaluate("mypkg.bounds:my_bound", model, data, init)   # Outcome(value | failure)

Plugins are installed packages that declare entry points in the groups ``gapbench.measures`` and
``gapbench.bounds`` (docs/plugins.md), discovered and loaded once by :mod:`gapbench.plugin_packages`; one that
fails to import or has the wrong signature is kept as broken with its message and does not affect the others.

Names: a bare name is a built-in first (so a plugin cannot change what a published name computes), then a
plugin's. A plugin name that a built-in or another plugin also takes is reached as ``<distribution>/<name>``;
``measure/<name>`` and ``bound/<name>`` pick a built-in of that kind (``pacbayes_kl`` is both).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bounds.types import Bound
from .errors import GapbenchError, check_choice, unknown_name
from .plugin_packages import GROUPS, Plugin, dist_key, plugins, reload_plugins
from .quantity import DEFAULT_DELTA, KINDS, Quantity, QuantityError, builtin_quantity, declare, quantity_of

TRACEBACK_FRAMES = 3            # frames of a raised exception kept in a Failure (the innermost ones)


def _builtins(name: str, kind: str | None) -> list[Quantity]:
    from .bounds import BOUNDS
    from .measures import MEASURES
    registries = {"measure": MEASURES, "bound": BOUNDS}
    return [builtin_quantity(registries[k].get(name), k) for k in KINDS
            if (kind is None or kind == k) and name in registries[k]]


def _plugin_quantity(plugin: Plugin) -> Quantity:
    if plugin.quantity is None:
        raise QuantityError(plugin.error, plugin.failure)
    return plugin.quantity


def _one(spec: str, found: list, qualified: list[str]) -> Quantity:
    if len(found) > 1:
        raise GapbenchError(f"'{spec}' names {len(found)} quantities: {', '.join(qualified)}. Give one of these "
                            f"names, or kind='measure' / kind='bound' (--kind).")
    return found[0] if isinstance(found[0], Quantity) else _plugin_quantity(found[0])


def _known_names() -> list[str]:
    from .bounds import BOUNDS
    from .measures import MEASURES
    return sorted({*MEASURES.names(), *BOUNDS.names(), *(p.name for p in plugins()),
                   *(p.qualified for p in plugins())})


def _by_name(spec: str, kind: str | None) -> Quantity:
    qualifier, _, name = spec.rpartition("/")
    if qualifier in KINDS:                      # measure/NAME, bound/NAME: a built-in of that kind
        found = _builtins(name, qualifier)
        if found:
            return found[0]
        raise unknown_name(f"built-in {qualifier}", name, _builtin_names(qualifier))
    if qualifier:                                # DIST/NAME: that distribution's plugin
        found = [p for p in plugins() if p.name == name and dist_key(p.dist) == dist_key(qualifier)
                 and kind in (None, p.kind)]
    else:
        found = _builtins(name, kind) or [p for p in plugins() if p.name == name and kind in (None, p.kind)]
    if not found:
        err = unknown_name("measure or bound name", spec, _known_names())
        raise GapbenchError(f"{err} A callable by import path is written 'module.path:function', one in a "
                            f"file 'path/to/file.py:function'.")
    return _one(spec, found, [f"{q.kind}/{q.name}" if isinstance(q, Quantity) else q.qualified for q in found])


def _builtin_names(kind: str) -> list[str]:
    from .bounds import BOUNDS
    from .measures import MEASURES
    return (MEASURES if kind == "measure" else BOUNDS).names()


def _import_module(target: str, spec: str) -> Any:
    try:
        return importlib.import_module(target)
    except Exception as exc:             # a user's module: any error at import is theirs to fix
        hint = (" Install the package, or add its directory to PYTHONPATH, or give the file: "
                "'path/to/file.py:function'." if isinstance(exc, ModuleNotFoundError) else " Fix the module.")
        raise QuantityError(f"Cannot import the module '{target}' of '{spec}': {type(exc).__name__}: {exc}."
                            f"{hint}", "import") from exc


def _load_file(target: str, spec: str) -> Any:
    """The module of a .py file anywhere, executed once per (path, modification time)."""
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise QuantityError(f"The file '{path}' of '{spec}' does not exist. Give the path of a .py file, "
                            f"relative to the current directory or absolute: 'path/to/file.py:function'.", "import")
    digest = hashlib.sha1(f"{path}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    module_name = f"gapbench_user_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(module_name, path))
    sys.modules[module_name] = module    # before executing: dataclasses and pickling look the module up
    try:
        module.__spec__.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise QuantityError(f"Cannot load '{path}' for '{spec}': {type(exc).__name__}: {exc}. Fix the file "
                            f"(it runs as a module of its own; import its helpers from installed packages).",
                            "import") from exc
    return module


def _by_path(spec: str, kind: str | None) -> Quantity:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise GapbenchError(f"The quantity '{spec}' must be 'module.path:function' or 'path/to/file.py:function'."
                            f" Got an empty module or function name. Example: 'mypkg.bounds:my_bound'.")
    is_file = target.endswith(".py")
    module = _load_file(target, spec) if is_file else _import_module(target, spec)
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            err = unknown_name("function", attr, names, f" in '{target}'")
            raise QuantityError(f"{err} Fix the name after ':' in '{spec}'.", "import")
        fn = getattr(fn, part)
    origin = f"{Path(target).expanduser().resolve()}:{attr}" if is_file else spec
    return quantity_of(fn, name=attr, origin=origin, spec=origin, kind=kind)


def resolve(spec: str, kind: str | None = None) -> Quantity:
    """The Quantity `spec` names: a built-in or plugin name, 'module.path:function' or 'file.py:function'.

    `kind` ('measure' | 'bound') forces the kind of a callable and picks one of two quantities of one name."""
    if not isinstance(spec, str) or not spec.strip():
        raise GapbenchError(f"The 'spec' parameter of resolve() must be a non-empty string: a registered name, "
                            f"'module.path:function' or 'path/to/file.py:function'. Got {spec!r} instead.")
    if kind is not None:
        check_choice(kind, "kind", "resolve()", KINDS)
    spec = spec.strip()
    return _by_path(spec, kind) if ":" in spec else _by_name(spec, kind)


@dataclass(frozen=True)
class Failure:
    """Why a quantity gave no value: `kind` one of quantity.FAILURES, the message naming it and the fix."""

    kind: str
    message: str
    exception: str = ""         # the exception's type, for 'raised'
    traceback: str = ""         # its innermost frames


@dataclass(frozen=True)
class Outcome:
    """One evaluation: a value (and the Bound, for a bound) or a Failure; never both."""

    spec: str
    value: float | None = None
    kind: str | None = None
    bound: Bound | None = None
    failure: Failure | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None

    def as_dict(self) -> dict[str, Any]:
        failure = None if self.failure is None else vars(self.failure)
        return {"spec": self.spec, "value": self.value, "kind": self.kind, "seconds": self.seconds,
                "bound": None if self.bound is None else self.bound.as_dict(), "failure": failure}


def _raised(label: str, exc: BaseException) -> Failure:
    """A raised exception's Failure; a GapbenchError is the quantity refusing this input, with its own fix."""
    frames = traceback.extract_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    tail = "".join(traceback.format_list(frames)).rstrip()
    if isinstance(exc, GapbenchError):
        return Failure("raised", f"{label} does not apply here: {exc}", type(exc).__name__, tail)
    at = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return Failure("raised", f"{label} raised {type(exc).__name__}: {exc}{at}. Fix the function, or raise "
                             f"gapbench.GapbenchError with a message where it does not apply.",
                   type(exc).__name__, tail)


def safe_evaluate(quantity: Quantity | str, model: Any, data: Any = None, init: Any = None, *,
                  delta: float = DEFAULT_DELTA, **params: Any) -> Outcome:
    """Evaluate `quantity` (or resolve the spec first) and return its value, or the Failure: import error,
    wrong signature, raised exception, non-finite result, wrong return type. Never raises for the quantity's
    faults, so a loop over many quantities records each failure and goes on."""
    spec = quantity if isinstance(quantity, str) else quantity.spec or quantity.name
    start = time.perf_counter()
    try:
        if isinstance(quantity, str):
            quantity = resolve(quantity)
    except QuantityError as err:
        return Outcome(spec, failure=Failure(err.failure, str(err)))
    except GapbenchError as err:                 # an unknown or ambiguous name
        return Outcome(spec, failure=Failure("import", str(err)))
    try:
        result = quantity.run(model, data, init, delta=delta, **params)
    except QuantityError as err:
        return Outcome(spec, kind=quantity.kind, failure=Failure(err.failure, str(err)),
                       seconds=time.perf_counter() - start)
    except Exception as exc:                     # the quantity's own fault, isolated
        return Outcome(spec, kind=quantity.kind, failure=_raised(quantity.label, exc),
                       seconds=time.perf_counter() - start)
    return Outcome(spec, result.value, result.kind, result.bound, seconds=time.perf_counter() - start)


def catalogue_rows(kind: str) -> list[tuple[str, str]]:
    """(name, one line) for each plugin quantity of `kind`, for ``gapbench list``: its package and version, or
    BROKEN with the message. A name that a built-in or another plugin takes shows as <distribution>/<name>."""
    taken = set(_builtin_names(kind))
    rows = []
    for plugin in (p for p in plugins() if p.kind == kind):
        clash = plugin.name in taken or sum(p.name == plugin.name and p.kind == kind for p in plugins()) > 1
        name = plugin.qualified if clash else plugin.name
        if plugin.quantity is None:
            rows.append((name, f"BROKEN [plugin {plugin.dist} {plugin.version}] {plugin.error}"))
            continue
        reference = plugin.quantity.meta.get("reference") or plugin.target
        note = f" (the name '{plugin.name}' is taken: use {name})" if clash else ""
        rows.append((name, f"[plugin {plugin.dist} {plugin.version}] {reference}{note}"))
    return rows


__all__ = ["GROUPS", "Failure", "Outcome", "Plugin", "Quantity", "QuantityError", "catalogue_rows", "declare",
           "plugins", "reload_plugins", "resolve", "safe_evaluate"]
