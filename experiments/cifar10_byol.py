"""BYOL (Grill et al. 2020) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/byol.yaml` and `solo/methods/byol.py` (ResNet-18,
92.58% linear top-1 in its README): an EMA target (encoder + projector, momentum
0.99 -> 1.0 on the cosine schedule, per step), the symmetrised loss
(2 - 2 cos(p_2, t_1)) + (2 - 2 cos(p_1, t_2)), projector 512 -> 4096 -> 256 and predictor
256 -> 4096 -> 256 (Linear - BN - ReLU - Linear), LARS lr 1.0 (x B/256), weight decay
1e-5, trust coefficient 0.02, batch 256, 1000 epochs, 10 warmup epochs then cosine; the
asymmetric views of `augmentations/asymmetric.yaml`: jitter (0.4, 0.4, 0.2, 0.1) p 0.8,
grayscale 0.2, no blur at 32 px, solarize 0 / 0.2, crops of 8-100% area. BN per view, as
solo-learn. LARS with solo-learn's clipped rate (`clip_lr`, as LARC: each layer's rate is
min(eta ||w|| / (||g|| + wd ||w||), lr)), `optim.lars(clip_lr=True)`.

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs, and SimCLR's LARS (no clip:
measured better in 585 steps); test a few steps.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_byol.py")
  config.method = "byol"
  config.target = _base.target(0.99, 1.0)  # byol.yaml: momentum.base_tau, momentum.final_tau
  config.optimizer = "lars"           # optimizer.name, exclude_bias_n_norm
  config.learning_rate = 1.0          # optimizer.lr
  config.weight_decay = 1e-5          # optimizer.weight_decay
  config.trust_coefficient = 0.02     # optimizer.kwargs.eta
  config.lars_clip_lr = True          # optimizer.kwargs.clip_lr
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset)
  if preset == "cpu":
    # In 585 steps the clipped LARS did worse (kNN 29.31% with the 0.3-epoch warmup, 34.24% with 1 epoch)
    # than SimCLR's LARS (36.84%): docs/results.md, the record's `tried`.
    config.lars_clip_lr = False
  config.model.head.hidden_dim = 4096  # method_kwargs.proj_hidden_dim
  config.model.proj_dim = 256          # method_kwargs.proj_output_dim
  config.model.head.last_bn = False    # byol.py: Linear - BN - ReLU - Linear
  config.model.predictor = _base.predictor(2, 4096)  # method_kwargs.pred_hidden_dim
  _base.torch_heads(config)
  _base.asymmetric_views(config)
  _base.test_heads(config, preset)
  return config
