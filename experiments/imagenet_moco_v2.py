"""MoCo v2 (Chen, Fan, Girshick, He 2020, "Improved Baselines with Momentum Contrastive Learning") on ImageNet.

The paper and facebookresearch/moco (`main_moco.py`, README): ResNet-50, batch 256, SGD lr
0.03 (x B/256), momentum 0.9, weight decay 1e-4 on every parameter, cosine schedule without
warmup, 200 epochs (67.5% linear top-1; 800 epochs: 71.1%), a queue of K = 65,536 keys,
momentum m = 0.999 (constant), temperature 0.2, MLP head 2048 -> 128 without BN, one
direction (query view 1, key view 2); augmentation: crops of 20-100% area, jitter (0.4,
0.4, 0.4, 0.1) p 0.8, grayscale 0.2, blur 0.5, flip. Differences: shuffle-BN is replaced by
synchronised BN over every device (the issue's design for all targets), and the host-side
crop of variable-size images takes 8-100% of the area.

Presets: (none), 200ep: 200 epochs; 800ep.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "imagenet_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_simclr.py"))
_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_imagenet)


def get_config(preset: str = "200ep") -> ml_collections.ConfigDict:
  config = _imagenet.get_config()
  config.method = "moco_v2"
  config.batch_size = 256
  config.num_epochs = 200
  config.warmup_epochs = 0.0
  config.optimizer = "sgd"
  config.learning_rate = 0.03
  config.lr_scaling = "linear"
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.temperature = 0.2
  config.moco = ml_collections.ConfigDict({"queue_size": 65536, "symmetric": False})
  config.target = ml_collections.ConfigDict({"base_momentum": 0.999, "final_momentum": 0.999})
  config.model.head.hidden_dim = 2048
  config.model.head.dense_init = "torch"  # the official code is PyTorch: nn.Linear default init
  config.model.proj_dim = 128
  config.model.head.hidden_bn = False
  config.model.head.last_bn = False
  config.augment.jitter = (0.4, 0.4, 0.4, 0.1)
  config.augment.multiplicative_brightness = True
  config.augment.crop_area_range = (0.2, 1.0)
  config.augment.blur_p = 0.5
  if preset in ("", "200ep"):
    pass
  elif preset == "800ep":
    config.num_epochs = 800
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_moco_v2.py; use '200ep' or '800ep'.")
  return config
