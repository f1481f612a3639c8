"""NNCLR (Dwibedi et al. 2021) with ResNet-50 on ImageNet, following the paper.

The paper (section 4, "Implementation details"): projection MLP 2048 -> 2048 -> 2048 -> 256 (BN
after every layer, ReLU after the hidden ones), prediction MLP 256 -> 4096 -> 256, a support set
of 98,304, temperature 0.1, batch 4096, LARS lr 4.8 (0.3 x B/256), weight decay 1e-6, 1000
epochs, 10 warmup epochs then cosine; BYOL's views. Headline: 75.4% linear top-1. Difference:
the support set's size is a multiple of the global batch (98,304 = 24 x 4096, as the paper's).

Presets: (none), 1000ep.
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
  if preset not in ("", "1000ep"):
    raise ValueError(f"unknown preset {preset!r} for imagenet_nnclr.py; use '1000ep'.")
  config = _imagenet.get_config()
  config.method = "nnclr"
  config.temperature = 0.1
  config.nnclr = ml_collections.ConfigDict({"queue_size": 98304})
  config.batch_size = 4096
  config.num_epochs = 1000
  config.warmup_epochs = 10.0
  config.optimizer = "lars"
  config.learning_rate = 0.3
  config.lr_scaling = "linear"
  config.weight_decay = 1e-6
  config.trust_coefficient = 1e-3
  _base.three_layer_projector(config, 2048, 256)
  config.model.head.last_bn = True
  _base.torch_heads(config)
  config.model.predictor = _base.predictor(2, 4096)
  _base.byol_views(config)
  return config
