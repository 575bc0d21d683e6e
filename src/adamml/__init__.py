"""adamml: adaptive multi-modal video recognition (AdaMML, Panda et al., ICCV 2021).

The Python API, as a notebook uses it (names load on first use, so ``import adamml`` is instant)::

    import adamml

    adamml.prepare_store("videos/", "store")                      # frames, audio, flow, manifest
    cfg = adamml.load_config("tiny", ["model.num_classes=8"])      # a preset with overrides
    model = adamml.build_model(cfg.model)                          # an untrained AdaMML (or baseline)
    trained = adamml.load_trained("run/best.pt")          # a Checkpoint: .model (eval mode), .config, .stage, .classes
    point = adamml.calibrate("run/best.pt", "store", "val")           # the threshold, chosen and recorded
    report = adamml.evaluate("run/best.pt", "store", "test", out=None)  # an `EvalReport`, at that threshold
    predictor = adamml.load_predictor("run/best.pt")
    prediction, _inputs = predictor("clip.mp4")                     # top-k, decisions, GFLOPs of one video

The command line (`adamml ...`) is built on these; `docs/api.md` lists them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API: dict[str, str] = {
    "load_config": "adamml.config",
    "Config": "adamml.config",
    "build_model": "adamml.models.build",
    "load_trained": "adamml.inference.checkpoint",
    "Checkpoint": "adamml.inference.checkpoint",
    "evaluate": "adamml.inference.evaluation",
    "EvalReport": "adamml.inference.results",
    "calibrate": "adamml.inference.calibration",
    "OperatingPoint": "adamml.inference.operating_point",
    "load_predictor": "adamml.inference.prediction",
    "Predictor": "adamml.inference.prediction",
    "VideoPrediction": "adamml.inference.prediction",
    "prepare_store": "adamml.prepare.runner",
    "PrepareSettings": "adamml.prepare.worker",
    "train_stage": "adamml.train.trainer",
    "UserError": "adamml.errors",
}
__all__ = ["__version__", *_API]


# names whose function is called otherwise in its module
_DEFINED_AS = {"train_stage": "train"}


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'adamml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _DEFINED_AS.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
