"""SimSiam (Chen & He 2021) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/simsiam.yaml` and `solo/methods/simsiam.py` (ResNet-18, 90.51%
linear top-1 in its README): projector 512 -> 2048 -> 2048 -> 2048 (Linear - BN - ReLU, twice,
then Linear - BN without affine), predictor 2048 -> 512 -> 2048 (Linear - BN - ReLU - Linear),
the symmetrised negative cosine with a stop-gradient on the projections, no target network; SGD
lr 0.5 (x B/256), momentum 0.9, weight decay 1e-5 on every parameter, the predictor at the fixed
peak rate (the paper's section 4.2, solo-learn's static_lr), batch 256, 1000 epochs, 10 warmup
epochs then cosine; two views of `augmentations/symmetric_weak.yaml`: jitter (0.4, 0.4, 0.4, 0.1)
p 0.8, grayscale 0.2, blur 0.5, crops of 8-100% area. BN per view, as solo-learn.

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs; test a few steps;
gpu200 lightly's CIFAR-10 protocol (cifar10_simclr.py).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_simsiam.py")
  config.method = "simsiam"
  config.optimizer = "sgd"            # optimizer.name
  config.learning_rate = 0.5          # optimizer.lr
  config.weight_decay = 1e-5          # optimizer.weight_decay
  config.momentum = 0.9
  config.predictor_fixed_lr = True    # simsiam.py: the predictor's param group has static_lr
  _base.solo_learn_schedule(config, preset)
  _base.three_layer_projector(config, 2048, 2048)  # method_kwargs.proj_hidden_dim, proj_output_dim
  config.model.head.last_bn = True    # simsiam.py: BatchNorm1d(proj_output_dim, affine=False)
  config.model.head.last_bn_scale = False
  config.model.predictor = _base.predictor(2, 512)  # method_kwargs.pred_hidden_dim
  _base.torch_heads(config)
  config.augment.jitter = (0.4, 0.4, 0.4, 0.1)  # augmentations/symmetric_weak.yaml
  config.augment.blur_p = 0.5
  _base.weak_jitter(config)
  _base.test_heads(config, preset)
  return config
