"""SimCLR on ImageNet (ILSVRC-2012), following the published recipe.

Chen et al. 2020 / google-research/simclr: ResNet-50 (1x), batch 4096, LARS with
learning rate 0.075 × sqrt(B) (= 4.8 at B = 4096), weight decay 1e-6 (TF2
default), 10 warmup epochs then cosine, temperature 0.1, colour-jitter strength
1.0, Gaussian blur p = 0.5, 224 px crops taken on the host (variable-size
images). Linear evaluation: 90 epochs, SGD + Nesterov, lr 0.1 × B / 256.

Presets (`--config experiments/imagenet_simclr.py:<preset>`):
  (none), 100ep   100 epochs: about 64.5% linear top-1 (SimCLR repository note).
  1000ep          1000 epochs: 69.3% (paper), 69.1% (repository README).
  v2              SimCLR v2 head (3 layers), 800 epochs: 71.7% (v2 README).
  multicrop       100 epochs with SwAV's multi-crop (Caron et al. 2020): 2 x 224 px crops of area
                  (0.14, 1) and 6 x 96 px crops of area (0.05, 0.14), cut on the host; every crop a
                  positive of the other crops of its image. No published SimCLR figure to match.
"""

import ml_collections

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "cifar10_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_simclr.py"))
_cifar = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cifar)


MULTICROP_VIEWS = (
    *[{"crop_area_range": (0.14, 1.0)}] * 2,
    *[{"image_size": 96, "crop_area_range": (0.05, 0.14)}] * 6,
)


def get_config(preset: str = "100ep") -> ml_collections.ConfigDict:
  if preset == "multicrop":
    config = get_config("100ep")
    config.augment.views = MULTICROP_VIEWS
    return config
  config = _cifar.get_config()  # the shared field layout; every recipe value is set below
  config.batch_size = 4096
  config.num_epochs = 100
  config.warmup_epochs = 10.0
  config.learning_rate = 0.075
  config.lr_scaling = "sqrt"
  config.weight_decay = 1e-6
  config.temperature = 0.1
  config.loss_chunk_size = 0

  config.model.encoder.depth = 50
  config.model.encoder.width_multiplier = 1
  config.model.encoder.base_width = 64
  config.model.encoder.cifar_stem = False
  config.model.encoder.conv_impl = "auto"  # Winograd / im2col GEMMs on CPUs (docs/performance.md), XLA convs elsewhere
  config.model.head.num_layers = 2
  config.model.dtype = "bfloat16"

  config.augment.preset = "imagenet"
  config.augment.image_size = 224
  config.augment.jitter_strength = 1.0
  config.augment.blur_p = 0.5

  config.data.dataset = "imagenet2012"
  config.data.host_crop = True
  config.data.test_split = "validation"

  config.checkpoint_every_steps = 2500
  config.log_every_steps = 100

  config.eval.linear_epochs = 90
  config.eval.linear_batch_size = 4096
  config.eval.linear_weight_decay = 1e-6
  config.eval.feature_batch_size = 1024
  config.eval.baselines = False
  config.eval.finetune_fractions = (0.01, 0.1)

  if preset in ("", "100ep"):
    pass
  elif preset == "1000ep":
    config.num_epochs = 1000
  elif preset == "v2":
    config.num_epochs = 800
    config.model.head.num_layers = 3
    config.eval.finetune_from_head_layer = True  # SimCLR v2 fine-tunes from the first head layer
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_simclr.py; use '100ep', '1000ep', 'v2' or 'multicrop'.")
  return config
