"""VICReg (Bardes et al. 2022) with ResNet-50 on ImageNet, following the paper.

The paper (section 4.1, appendix C) and facebookresearch/vicreg `main_vicreg.py`: expander
2048 -> 8192 -> 8192 -> 8192 (Linear - BN - ReLU, twice, then Linear), lambda / mu / nu 25 / 25 /
1 (the branches' variance terms averaged), batch 2048, LARS (trust coefficient 1e-3; biases and BN
excluded), lr 0.2 (x B/256), weight decay 1e-6, 1000 epochs, 10 warmup epochs then cosine; BYOL's
views. Headline: 73.2% linear top-1. Difference: the cosine ends at 0 (the authors' at 1/1000).

Presets: (none), 1000ep; 100ep.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "imagenet_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_simclr.py"))
_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_imagenet)
_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "1000ep") -> ml_collections.ConfigDict:
  config = _imagenet.get_config()
  config.method = "vicreg"
  config.vicreg = ml_collections.ConfigDict({"sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0})
  config.batch_size = 2048
  config.num_epochs = 1000
  config.warmup_epochs = 10.0
  config.optimizer = "lars"
  config.learning_rate = 0.2
  config.lr_scaling = "linear"
  config.weight_decay = 1e-6
  config.trust_coefficient = 1e-3
  _base.three_layer_projector(config, 8192, 8192)
  _base.torch_heads(config)
  _base.byol_views(config)
  if preset in ("", "1000ep"):
    pass
  elif preset == "100ep":
    config.num_epochs = 100
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_vicreg.py; use '1000ep' or '100ep'.")
  return config
