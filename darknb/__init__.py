"""darknb: action recognition in dark videos with knowledge distillation (DL-KDD).

Submodules are imported lazily so that ``import darknb`` stays cheap:
``darknb.config``, ``darknb.files``, ``darknb.registry``, ``darknb.video``, ``darknb.framecache``,
``darknb.synthetic``, ``darknb.data``, ``darknb.loader``, ``darknb.enhance``, ``darknb.models``,
``darknb.distill``, ``darknb.train``, ``darknb.inference``, ``darknb.pretrain``, ``darknb.study``,
``darknb.experiments``, ``darknb.stats``, ``darknb.flops``, ``darknb.reports``, ``darknb.widgets``,
``darknb.pipeline``, ``darknb.protocol``, ``darknb.cli``.

``darknb.predict(video, checkpoint)`` classifies your own videos (:func:`darknb.inference.predict`).
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "cli", "config", "data", "distill", "enhance", "errors", "experiments", "files", "flops",
    "framecache", "inference", "loader", "models", "pipeline", "pretrain", "protocol", "registry", "reports",
    "stats", "study", "synthetic", "train", "video", "widgets",
}


def __getattr__(name):
    if name == "predict":
        return importlib.import_module("darknb.inference").predict
    if name in _SUBMODULES:
        return importlib.import_module(f"darknb.{name}")
    raise AttributeError(f"module 'darknb' has no attribute {name!r}")
