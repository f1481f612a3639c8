"""DCL (Yeh et al. 2022, "Decoupled Contrastive Learning") on CIFAR-10: SimCLR with the DCL loss.

DCL is SimCLR's method with the positive left out of NT-Xent's denominator (config.loss = "dcl";
"dclw" adds the von Mises-Fisher weight of width dcl_sigma 0.5). As lightly's DCL / DCLW
benchmarks (benchmarks/imagenet/resnet50/dcl.py, dclw.py: "DCL uses SimCLR head", "SimCLR's
learning rate scaling scheme", "SimCLR augmentations"), everything else is our SimCLR CIFAR-10
recipe (cifar10_simclr.py), with lightly's DCLLoss temperature 0.1 where SimCLR's CIFAR recipe
uses 0.5.

Presets: those of cifar10_simclr.py ((none), cpu, test, gpu200); `--config.loss=dclw` for DCLW.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_dcl.py")
  config.loss = "dcl"                 # simclr's loss: dcl or dclw (methods/simclr.py)
  config.temperature = 0.1            # lightly DCLLoss(temperature=0.1)
  config.dcl_sigma = 0.5              # lightly DCLWLoss(sigma=0.5), for dclw
  return config
