"""MoCo v3 (Chen, Xie, He 2021) with ResNet-50 on ImageNet.

facebookresearch/moco-v3 (`main_moco.py`, `moco/builder.py`, and the README's "Reference
Setups" table): batch 4096, LARS (trust coefficient 1e-3, no weight decay or adaptation on
biases and BN), lr (x B/256) 0.45 for 100 epochs, 0.3 for 300 (72.8% linear top-1) and 1000
(74.8%), weight decay 1e-6 (1.5e-6 at 1000 epochs), 10 warmup epochs then cosine,
temperature 1.0, momentum 0.99 -> 1 on the cosine schedule (0.996 at 1000 epochs), projector 2048 -> 4096 -> 256 and predictor 256 -> 4096 -> 256, all
Linear without bias, BN on the hidden layers and a BN without scale or offset on the
projector's output, zero-initialised last BN of each residual block; BYOL's augmentations
with crops of 20-100% area (the host crop of variable-size images takes 8-100%).

Presets: (none), 100ep; 300ep; 1000ep.

ViT presets (facebookresearch/moco-v3 `CONFIG.md`, "ViT Models", and `main_moco.py` defaults):
300 epochs, batch 4096, AdamW lr 1.5e-4 (x B/256) with weight decay 0.1 on every parameter, 40
warmup epochs then cosine, temperature 0.2, momentum 0.99 -> 1 (`--moco-m-cos`), the random
patch projection kept frozen (`--stop-grad-conv1`), fixed 2-D sine-cosine position embeddings
and a class token (`vits.py`), a 3-layer projector and a 2-layer predictor (`moco/builder.py`
MoCo_ViT), crops of 8-100% area (`--crop-min` default), bfloat16 compute.
  vit_small   ViT-S/16: 73.2% linear top-1 (CONFIG.md).
  vit_base    ViT-B/16: 76.7%.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "imagenet_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_simclr.py"))
_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_imagenet)


def get_config(preset: str = "100ep") -> ml_collections.ConfigDict:
  config = _imagenet.get_config()
  config.method = "moco_v3"
  config.batch_size = 4096
  config.num_epochs = 100
  config.warmup_epochs = 10.0
  config.optimizer = "lars"
  config.learning_rate = 0.45
  config.lr_scaling = "linear"
  config.weight_decay = 1e-6
  config.temperature = 1.0
  config.target = ml_collections.ConfigDict({"base_momentum": 0.99, "final_momentum": 1.0})
  config.model.encoder.zero_init_residual = True
  config.model.head.hidden_dim = 4096
  config.model.proj_dim = 256
  config.model.head.last_bn_scale = False
  config.model.predictor = ml_collections.ConfigDict({  # Linear - BN - ReLU - Linear
      "num_layers": 2, "hidden_dim": 4096, "hidden_bn": True, "last_bn": False, "last_bias": False,
      "dense_init": "torch"})
  # the official code is PyTorch: nn.Linear default init
  config.model.head.dense_init = "torch"
  _byol_views(config)
  config.augment.crop_area_range = (0.2, 1.0)
  if preset in ("", "100ep"):
    pass
  elif preset in ("vit_small", "vit_base"):
    config.num_epochs = 300
    config.warmup_epochs = 40.0
    config.optimizer = "adamw"
    config.learning_rate = 1.5e-4
    config.weight_decay = 0.1
    config.temperature = 0.2
    config.augment.crop_area_range = (0.08, 1.0)
    config.model.encoder = ml_collections.ConfigDict({"name": "vit", "variant": preset[4:], "patch_size": 16,
                                                      "posemb": "sincos2d", "pool": "cls",
                                                      "frozen_patch_embed": True, "attention_impl": "flax"})
    for field in ("width", "depth", "num_heads"):  # None: the variant's
      config.model.encoder[field] = ml_collections.FieldReference(None, field_type=int)
    config.model.head.num_layers = 3
  elif preset in ("300ep", "1000ep"):
    config.num_epochs = int(preset[:-2])
    config.learning_rate = 0.3
    if preset == "1000ep":
      config.weight_decay = 1.5e-6
      config.target.base_momentum = 0.996
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_moco_v3.py; use '100ep', '300ep', '1000ep', "
                     "'vit_small' or 'vit_base'.")
  return config


def _byol_views(config: ml_collections.ConfigDict) -> None:
  config.augment.jitter = (0.4, 0.4, 0.2, 0.1)
  config.augment.multiplicative_brightness = True
  config.augment.blur_p = 1.0
  config.augment.views = ({}, {"blur_p": 0.1, "solarize_p": 0.2})
