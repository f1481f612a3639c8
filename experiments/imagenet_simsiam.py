"""SimSiam (Chen & He 2021) with ResNet-50 on ImageNet, following the paper.

The paper (section 3, appendix A) and facebookresearch/simsiam `main_simsiam.py`: projector
2048 -> 2048 -> 2048 -> 2048 with BN on every layer (the last without affine), predictor
2048 -> 512 -> 2048 (Linear - BN - ReLU - Linear), batch 512, SGD lr 0.05 (x B/256), momentum
0.9, weight decay 1e-4 on every parameter, the predictor at the fixed rate (`--fix-pred-lr`),
100 epochs, cosine without warmup; MoCo v2's views: crops of 20-100% area, jitter (0.4, 0.4, 0.4,
0.1) p 0.8, grayscale 0.2, blur 0.5, flip. Headline: 68.1% linear top-1 at 100 epochs. Difference:
BN per view, as solo-learn (the authors' DDP code normalises each GPU's batch of one view).

Presets: (none), 100ep; 800ep (71.3% in the paper).
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


def get_config(preset: str = "100ep") -> ml_collections.ConfigDict:
  config = _imagenet.get_config()
  config.method = "simsiam"
  config.batch_size = 512
  config.num_epochs = 100
  config.warmup_epochs = 0.0
  config.optimizer = "sgd"
  config.learning_rate = 0.05
  config.lr_scaling = "linear"
  config.weight_decay = 1e-4
  config.momentum = 0.9
  config.predictor_fixed_lr = True
  _base.three_layer_projector(config, 2048, 2048)
  config.model.head.last_bn = True
  config.model.head.last_bn_scale = False
  _base.torch_heads(config)
  config.model.predictor = _base.predictor(2, 512)
  config.augment.crop_area_range = (0.2, 1.0)
  config.augment.jitter = (0.4, 0.4, 0.4, 0.1)
  config.augment.multiplicative_brightness = True
  config.augment.blur_p = 0.5
  if preset in ("", "100ep"):
    pass
  elif preset == "800ep":
    config.num_epochs = 800
  else:
    raise ValueError(f"unknown preset {preset!r} for imagenet_simsiam.py; use '100ep' or '800ep'.")
  return config
