"""MoCo v3 (Chen, Xie, He 2021) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/mocov3.yaml` and `solo/methods/mocov3.py` (ResNet-18,
93.10% linear top-1 in its README): a momentum encoder (EMA of encoder + projector,
momentum 0.99 -> 1.0 on the cosine schedule, per step), temperature 0.2, the symmetric
InfoNCE over the global batch's keys scaled by 2 tau (the paper's Algorithm 1), projector
512 -> 4096 -> 256 with BN on the hidden layer and a BN without scale or offset on the
output, predictor 256 -> 4096 -> 256 with BN on the hidden layer and no bias on the output
(every Linear of solo-learn's MoCo v3 heads is bias-free), LARS lr 0.3 (x B/256), weight
decay 1e-6, trust coefficient 0.02, batch 256, 1000 epochs, 10 warmup epochs then cosine;
the asymmetric views of `augmentations/asymmetric.yaml`: jitter (0.4, 0.4, 0.2, 0.1) p 0.8,
grayscale 0.2, no blur, solarize 0 / 0.2, crops of 8-100% area. BN per view, as
solo-learn. solo-learn's LARS also clips the adaptive rate (LARC's clip_lr); ours does not.

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs; test a few steps.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_moco_v3.py")
  config.method = "moco_v3"
  config.temperature = 0.2            # mocov3.yaml: method_kwargs.temperature
  config.target = _base.target(0.99, 1.0)  # momentum.base_tau, momentum.final_tau
  config.optimizer = "lars"           # optimizer.name, exclude_bias_n_norm
  config.learning_rate = 0.3          # optimizer.lr
  config.weight_decay = 1e-6          # optimizer.weight_decay
  config.trust_coefficient = 0.02     # optimizer.kwargs.eta
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset)
  config.model.head_hidden_dim = 4096  # method_kwargs.proj_hidden_dim
  config.model.head_init = "torch"      # solo-learn builds its heads from nn.Linear (default init)
  config.model.proj_dim = 256          # method_kwargs.proj_output_dim
  config.model.head_last_bn_scale = False  # mocov3.py: BatchNorm1d(affine=False) on the output
  config.model.predictor_layers = 2
  config.model.predictor_hidden_dim = 4096  # method_kwargs.pred_hidden_dim
  config.model.predictor_last_bias = False  # mocov3.py: Linear(..., bias=False)
  _base.asymmetric_views(config)
  _base.test_heads(config, preset)
  return config
