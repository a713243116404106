"""gapbench: measures, valid bounds and paper experiments for the generalization gap of deep networks.

    import gapbench as gb
    cfg = gb.RunConfig(data=gb.DataConfig("mnist", n_train=1000, n_val=2000), model=..., train=...)
    data = gb.load_data(cfg.data)
    run = gb.fit(cfg, data)
    gb.measure("spectral_product", run.model)
    gb.bound("heldout_binomial", run.model, data.test, delta=0.05, family_size=1, run=run)
    gb.certify(run.model, data.val, delta=0.05, run=run)      # run=: refuses points it was trained on
    gb.resolve("mypkg.bounds:my_bound")(run.model, data.train)  # your own measure or bound (docs/plugins.md)

Submodules load lazily so that ``import gapbench`` stays cheap and has no side effects.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

from .config import DataConfig, ModelConfig, RunConfig, Runtime, TrainConfig, signature  # noqa: E402
from .errors import GapbenchError  # noqa: E402

_LAZY = {
    "load_data": ("data", "load_data"),
    "fit": ("api", "fit"),
    "run_experiment": ("api", "run_experiment"),
    "list_experiments": ("api", "list_experiments"),
    "measure": ("measures", "measure"),
    "list_measures": ("measures", "list_measures"),
    "bound": ("bounds", "bound"),
    "list_bounds": ("bounds", "list_bounds"),
    "certify": ("certificate", "certify"),
    "gap_decomposition": ("analysis.theorem7", "gap_decomposition"),
    "build_model": ("models", "build_model"),
    "Bound": ("bounds.types", "Bound"),
    "Run": ("trained", "Run"),
    "resolve": ("plugins", "resolve"),
    "safe_evaluate": ("plugins", "safe_evaluate"),
    "declare": ("quantity", "declare"),
    "evaluate": ("evaluation", "evaluate"),
    "save_checkpoint": ("checkpoint", "save"),
    "load_checkpoint": ("checkpoint", "load"),
    "build_zoo": ("zoo", "build_zoo"),
    "load_zoo": ("zoo", "load_zoo"),
    "export_zoo": ("zoo", "export_zoo"),
    "import_zoo": ("zoo", "import_zoo"),
}

_SUBPACKAGES = ("pacbayes",)        # gb.pacbayes.certify(...): imported on first use


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'gapbench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY) + list(_SUBPACKAGES))


__all__ = ["DataConfig", "GapbenchError", "ModelConfig", "RunConfig", "Runtime", "TrainConfig", "signature",
           *_LAZY]
