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


def _byol_views(config: ml_collections.ConfigDict) -> None:
  """BYOL's views T and T': jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, blur 1.0 / 0.1, solarize 0 / 0.2."""
  config.augment.jitter = (0.4, 0.4, 0.2, 0.1)
  config.augment.multiplicative_brightness = True
  config.augment.blur_p = 1.0
  config.augment.views = ({}, {"blur_p": 0.1, "solarize_p": 0.2})


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
  config.model.head.num_layers = 3
  config.model.head.hidden_dim = 2048
  config.model.proj_dim = 256
  config.model.head.last_bn = True
  config.model.head.dense_init = "torch"
  config.model.predictor = ml_collections.ConfigDict({
      "num_layers": 2, "hidden_dim": 4096, "hidden_bn": True, "last_bn": False, "last_bias": True,
      "dense_init": "torch"})
  _byol_views(config)
  return config
