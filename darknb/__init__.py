"""darknb: action recognition in dark videos with knowledge distillation (DL-KDD).

The names a researcher uses are importable from ``darknb`` itself, as ``timm.create_model`` is
timm's; each is loaded on first use, so ``import darknb`` stays light (no torch)::

    import darknb
    model = darknb.create_model("vit_bert_tiny", num_classes=9)
    darknb.predict("my_dark_video.mp4", "reports/demo/student_s0.ckpt")

The package's folders are its architecture; lower ones never import higher ones:

- top level: ``config``, ``errors``, ``files``, ``registry``, ``provenance``, ``paper``
  (import no subpackage); ``pipeline`` and ``cli`` (may import anything);
- ``data``: lists, sampling, the clip dataset, named datasets, the frame cache, the loader, video
  reading, the synthetic set, the data protocol (imports only the top level);
- ``models``: classifiers, enhancers, zero-reference fitting (imports only the top level);
- ``engine``: build, checkpoint, loop, evaluate, distill, teacher, stages, records, pretrain,
  inference, jobs (imports data, models);
- ``study``: arms, stats, flops, experiments (may import the engine; never report);
- ``report``: tables, figures, widgets (reads dicts and JSON; never the engine or the study).
"""

import importlib

__version__ = "0.1.0"

# the façade: public name -> the module that defines it
_FACADE = {
    "predict": "darknb.engine.inference",
    "create_model": "darknb.models.classifiers",
    "list_models": "darknb.models.classifiers",
    "build_enhancer": "darknb.models.enhancers",
    "ZeroDCE": "darknb.models.enhancers",
    "ZeroDCEPP": "darknb.models.enhancers",
    "kd_loss": "darknb.engine.distill",
    "make_synthetic_dark": "darknb.data.synthetic",
    "VideoListDataset": "darknb.data.dataset",
    "build_datasets": "darknb.data.splits",
    "count_flops": "darknb.study.flops",
    "frame_comparison": "darknb.report.widgets",
    "train_teacher": "darknb.engine.stages",
    "train_student": "darknb.engine.stages",
    "evaluate": "darknb.engine.evaluate",
    "RunConfig": "darknb.config",
}
_SUBPACKAGES = {"cli", "config", "data", "engine", "errors", "files", "models", "paper", "pipeline",
                "provenance", "registry", "report", "study"}

__all__ = sorted(_FACADE)


def __getattr__(name):
    if name in _FACADE:
        return getattr(importlib.import_module(_FACADE[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"darknb.{name}")
    raise AttributeError(f"module 'darknb' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_FACADE) | _SUBPACKAGES)
