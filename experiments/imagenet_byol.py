"""BYOL (Grill et al. 2020) with ResNet-50 on ImageNet, following the paper.

The paper (section 3.3, appendix B) and deepmind-research `byol/configs/byol.py`: batch 4096,
LARS (trust coefficient 1e-3; no weight decay or adaptation on biases and BN), lr 0.2
(x B/256) for 1000 epochs (0.3 for 300), weight decay 1.5e-6 (1e-6 for 300), 10 warmup
epochs then cosine, target momentum 0.996 -> 1 on the cosine schedule (0.99 for 300),
projector and predictor Linear 4096 - BN - ReLU - Linear 256; views T and T': crops of
8-100% area, flip, jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, blur 1.0 / 0.1,
solarize 0 / 0.2. Headline: 74.3% linear top-1 at 1000 epochs. Difference: the target
starts as a copy of the online network (solo-learn, MoCo), not from its own random init.

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
  config.method = "byol"
  config.batch_size = 4096
  config.num_epochs = 1000
  config.warmup_epochs = 10.0
  config.optimizer = "lars"
  config.learning_rate = 0.2
  config.lr_scaling = "linear"
  config.weight_decay = 1.5e-6
  config.target = ml_collections.ConfigDict({"base_momentum": 0.996, "final_momentum": 1.0})
  config.model.head.hidden_dim = 4096
  config.model.proj_dim = 256
  config.model.head.last_bn = False
  config.model.predictor = _base.predictor(2, 4096)  # Linear - BN - ReLU - Linear
  # BYOL\'s Haiku heads: truncated-normal kernels of std 1/sqrt(fan_in), zero biases; of the two
  # inits offered, "torch" (U(+-1/sqrt(fan_in))) is the nearer.
  config.model.head.dense_init = "torch"
  _base.byol_views(config)
  if preset in ("", "1000ep"):
    pass
  elif preset == "300ep":
    config.num_epochs = 300
    config.learning_rate = 0.3
    config.weight_decay = 1e-6
    config.target.base_momentum = 0.99
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_byol.py; use '1000ep' or '300ep'.")
  return config
