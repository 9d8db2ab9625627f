"""darknb: action recognition in dark videos with knowledge distillation (DL-KDD).

Submodules are imported lazily so that ``import darknb`` stays cheap:
``darknb.enhance``, ``darknb.models``, ``darknb.distill``, ``darknb.data``, ``darknb.video``,
``darknb.train``, ``darknb.experiments``, ``darknb.reports``, ``darknb.flops``, ``darknb.stats``,
``darknb.widgets``.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "cli", "config", "data", "distill", "enhance", "errors", "experiments", "flops", "models",
    "pipeline", "reports", "stats", "train", "video", "widgets",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"darknb.{name}")
    raise AttributeError(f"module 'darknb' has no attribute {name!r}")
