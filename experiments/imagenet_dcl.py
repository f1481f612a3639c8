"""DCL (Yeh et al. 2022) with ResNet-50 on ImageNet: SimCLR's recipe with the decoupled loss.

As lightly's ImageNet benchmark (benchmarks/imagenet/resnet50/dcl.py, dclw.py): SimCLR's head,
learning-rate scaling and augmentations, DCLLoss(temperature=0.1) / DCLWLoss(temperature=0.1,
sigma=0.5). Everything else is imagenet_simclr.py's recipe (batch 4096, LARS 0.075 x sqrt(B)).

Presets: those of imagenet_simclr.py (100ep, 1000ep); `--config.loss=dclw` for DCLW.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "imagenet_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_simclr.py"))
_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_imagenet)


def get_config(preset: str = "100ep") -> ml_collections.ConfigDict:
  if preset not in ("", "100ep", "1000ep"):
    raise ValueError(f"unknown preset {preset!r} for imagenet_dcl.py; use '100ep' or '1000ep'.")
  config = _imagenet.get_config(preset)
  config.loss = "dcl"
  config.temperature = 0.1
  config.dcl_sigma = 0.5
  return config
