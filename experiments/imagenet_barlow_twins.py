"""Barlow Twins (Zbontar et al. 2021) with ResNet-50 on ImageNet, following the paper.

The paper (section 4, appendix) and facebookresearch/barlowtwins `main.py`: projector 2048 ->
8192 -> 8192 -> 8192 (Linear - BN - ReLU, twice, then Linear), lambda 0.0051, batch 2048, LARS
(trust coefficient 1e-3; biases and BN excluded from weight decay and adaptation), lr 0.2
(x B/256), weight decay 1.5e-6, 1000 epochs, 10 warmup epochs then cosine; BYOL's views.
Headline: 73.2% linear top-1. Differences: biases and BN train at the weights' rate (the paper
gives them 0.0048); the cosine ends at 0 (the paper's at 1/1000 of the peak).

Presets: (none), 1000ep; 300ep.
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
  config.method = "barlow_twins"
  config.barlow_twins = ml_collections.ConfigDict({"lambda_": 0.0051, "scale_loss": 1.0})
  config.batch_size = 2048
  config.num_epochs = 1000
  config.warmup_epochs = 10.0
  config.optimizer = "lars"
  config.learning_rate = 0.2
  config.lr_scaling = "linear"
  config.weight_decay = 1.5e-6
  config.trust_coefficient = 1e-3
  _base.three_layer_projector(config, 8192, 8192)
  _base.torch_heads(config)
  _base.byol_views(config)
  if preset in ("", "1000ep"):
    pass
  elif preset == "300ep":
    config.num_epochs = 300
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_barlow_twins.py; use '1000ep' or '300ep'.")
  return config
