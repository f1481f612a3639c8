"""DINO (Caron et al. 2021) with ViT-S/16 on ImageNet, following the paper.

facebookresearch/dino `main_dino.py` and its README's ViT-S/16 command: batch 1024, AdamW lr 5e-4 x
B/256 with 10 warmup epochs then cosine, weight decay 0.04, teacher momentum 0.996 -> 1 (cosine), teacher
temperature 0.04 -> 0.07 over the first 30 epochs, student 0.1, centre momentum 0.9, the DINO head
(384 -> 2048 -> 2048 -> 256, GELU, no BN, L2-normalised, a weight-normalised last layer of 65,536
prototypes with its norm frozen), per-tensor gradient clipping at 3.0, the last layer frozen for the
first epoch; multi-crop 2 x 224 px of 40-100% area and 8 x 96 px of 5-40% (`DataAugmentationDINO`:
flip, jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2; blur 1.0 / 0.1 and solarize 0 / 0.2 on the
two global crops, blur 0.5 on the local ones); learnt position embeddings, interpolated for the
96 px crops. Differences: weight decay stays 0.04 (the paper's cosine to 0.4 is not built); no
stochastic depth (drop path 0.1); the learning rate decays to 0 (the paper: 1e-6); jax.image's
bicubic kernel for the interpolation (a = -0.5; PyTorch's a = -0.75).

Presets: (none), 100ep; 300ep.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "imagenet_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_simclr.py"))
_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_imagenet)

_GLOBAL = {"crop_area_range": (0.4, 1.0)}
_LOCAL = {"image_size": 96, "crop_area_range": (0.05, 0.4), "blur_p": 0.5}


def get_config(preset: str = "100ep") -> ml_collections.ConfigDict:
  config = _imagenet.get_config()
  config.method = "dino"
  config.batch_size = 1024
  config.num_epochs = 100
  config.warmup_epochs = 10.0
  config.optimizer = "adamw"
  config.learning_rate = 5e-4
  config.lr_scaling = "linear"
  config.weight_decay = 0.04
  config.clip_grad = 3.0
  config.freeze_prototypes_epochs = 1.0
  config.target = ml_collections.ConfigDict({"base_momentum": 0.996, "final_momentum": 1.0})
  config.dino = ml_collections.ConfigDict({"student_temp": 0.1, "teacher_temp": 0.07, "warmup_teacher_temp": 0.04,
                                           "warmup_teacher_temp_epochs": 30, "center_momentum": 0.9})
  config.model.encoder = ml_collections.ConfigDict({"name": "vit", "variant": "small", "patch_size": 16,
                                                    "posemb": "learn", "pool": "cls", "interpolate_posemb": True,
                                                    "attention_impl": "flax"})
  config.model.head = ml_collections.ConfigDict({
      "num_layers": 3, "hidden_dim": 2048, "hidden_bn": False, "last_bn": False, "last_bias": True,
      "activation": "gelu", "dense_init": "dino"})
  config.model.proj_dim = 256
  config.model.prototypes = ml_collections.ConfigDict({"num_prototypes": 65536, "normalize_weights": True})
  config.augment.jitter = (0.4, 0.4, 0.2, 0.1)
  config.augment.blur_p = 1.0
  config.augment.views = ({**_GLOBAL}, {**_GLOBAL, "blur_p": 0.1, "solarize_p": 0.2}, *[_LOCAL] * 8)
  if preset in ("", "100ep"):
    pass
  elif preset == "300ep":
    config.num_epochs = 300
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_dino.py; use '100ep' or '300ep'.")
  return config
