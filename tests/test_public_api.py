"""The flat public namespace: no public name of `gapbench` is shadowed by a submodule of the same name."""

import importlib
import pkgutil

import gapbench as gb


def submodule_names() -> set[str]:
    """Every module under gapbench, as its last dotted component ('certificate', 'heldout', ...)."""
    return {info.name.rsplit(".", 1)[-1] for info in pkgutil.walk_packages(gb.__path__, "gapbench.")}


def test_no_lazy_public_name_is_a_submodule_name():
    names = submodule_names()
    assert {"certificate", "bounds", "api"} <= names          # the walk sees the package (and is not empty)
    assert sorted(set(gb._LAZY) & names) == []


def test_public_functions_stay_callable_after_every_submodule_is_imported():
    for info in pkgutil.walk_packages(gb.__path__, "gapbench."):
        if info.name != "gapbench.__main__":      # running it would start the CLI
            importlib.import_module(info.name)
    for name in gb._LAZY:
        assert not isinstance(getattr(gb, name), type(gb)), f"gb.{name} is a module"
    assert callable(gb.certify) and callable(gb.bound) and callable(gb.fit)
