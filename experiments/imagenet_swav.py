"""SwAV (Caron et al. 2020) with ResNet-50 on ImageNet, following the paper's batch-256 command.

facebookresearch/swav `main_swav.py` and its README's single-node command (8 GPUs x 32 = batch 256):
multi-crop 2 x 224 px of 14-100% area and 6 x 96 px of 5-14% (`--nmb_crops 2 6 --min_scale_crops 0.14
0.05 --max_scale_crops 1. 0.14`), codes from the two large crops, temperature 0.1, epsilon 0.05, 3
Sinkhorn iterations, projector 2048 -> 2048 -> 128 (Linear - BN - ReLU - Linear), 3000 prototypes
L2-normalised at every step, a queue of 3840 from epoch 15 (`--queue_length 3840 --epoch_queue_starts
15`), the prototypes frozen for the first 5005 iterations (one epoch at 256), LARS (apex LARC, trust
coefficient 1e-3) lr 0.6 at batch 256, final 6e-4, no warmup, weight decay 1e-6; colour distortion of
strength 1 (jitter 0.8, 0.8, 0.8, 0.2 p 0.8, grayscale 0.2), blur p 0.5 and flips on every crop.
Differences: the learning rate decays to 0 (the paper: 6e-4); LARS is SimCLR's (trust ratio on
g + wd w; biases and BN excluded) where apex's LARC adapts every parameter; the queue joins the
Sinkhorn once full, as the paper's `use_the_queue`.

Presets: (none), 100ep; 800ep (the paper's longest schedule at this batch).
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
  config.method = "swav"
  config.batch_size = 256              # --batch_size 32 on 8 GPUs
  config.num_epochs = 100
  config.warmup_epochs = 0.0           # --warmup_epochs 0
  config.optimizer = "lars"
  config.learning_rate = 0.6           # --base_lr 0.6 at batch 256
  config.lr_scaling = "linear"
  config.weight_decay = 1e-6           # --wd 0.000001
  config.trust_coefficient = 1e-3      # LARC(trust_coefficient=0.001)
  config.swav = ml_collections.ConfigDict({"temperature": 0.1, "iterations": 3, "epsilon": 0.05,
                                           "queue_size": 3840, "queue_start_epoch": 15.0})
  config.freeze_prototypes_epochs = 1.0  # --freeze_prototypes_niters 5005
  config.model.head.num_layers = 2     # --hidden_mlp 2048 --feat_dim 128
  config.model.head.hidden_dim = 2048
  config.model.head.last_bn = False
  config.model.head.last_bias = True
  config.model.head.dense_init = "torch"
  config.model.proj_dim = 128
  config.model.prototypes = ml_collections.ConfigDict({"num_prototypes": 3000})  # --nmb_prototypes 3000
  config.augment.jitter_strength = 1.0
  config.augment.blur_p = 0.5
  config.augment.views = _imagenet.MULTICROP_VIEWS  # 2 x 224 (0.14, 1) + 6 x 96 (0.05, 0.14)
  if preset in ("", "100ep"):
    pass
  elif preset == "800ep":
    config.num_epochs = 800
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_swav.py; use '100ep' or '800ep'.")
  return config
