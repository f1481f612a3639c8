"""NNCLR (Dwibedi et al. 2021) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/nnclr.yaml` and `solo/methods/nnclr.py` (ResNet-18, 91.88%
linear top-1 in its README): projector 512 -> 2048 -> 2048 -> 256 (Linear - BN - ReLU, twice, then
Linear - BN), predictor 256 -> 4096 -> 256 (Linear - BN - ReLU - Linear), a support set of 65,536
unit projections of view 1 from the global batch, temperature 0.2, loss InfoNCE(NN(z1), p2) / 2 +
InfoNCE(NN(z2), p1) / 2 against the global batch's predictions; LARS lr 0.4 (x B/256) with
solo-learn's clipped rate, trust coefficient 0.02, weight decay 1e-5, batch 256, 1000 epochs, 10
warmup epochs then cosine; the asymmetric views of `augmentations/asymmetric.yaml`. BN per view,
as solo-learn. Difference: the hidden Dense layers have no bias (BN's offset follows them).

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs, with a warmup of 1 epoch
instead of SimCLR's 0.3, as VICReg's and Barlow Twins' `cpu` presets under the same clipped LARS
(docs/results.md: with 0.3 VICReg diverged and Barlow Twins did not learn); test a few steps, support
set 64; gpu200 lightly's CIFAR-10 protocol (cifar10_simclr.py).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_nnclr.py")
  config.method = "nnclr"
  config.temperature = 0.2            # method_kwargs.temperature
  config.nnclr = ml_collections.ConfigDict()  # methods/nnclr.py make()'s arguments
  config.nnclr.queue_size = 65536     # method_kwargs.queue_size
  config.optimizer = "lars"
  config.learning_rate = 0.4          # optimizer.lr
  config.weight_decay = 1e-5          # optimizer.weight_decay
  config.trust_coefficient = 0.02     # optimizer.kwargs.eta
  config.lars_clip_lr = True          # optimizer.kwargs.clip_lr
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset, cpu_warmup_epochs=1.0)
  _base.three_layer_projector(config, 2048, 256)  # method_kwargs.proj_hidden_dim, proj_output_dim
  config.model.head.last_bn = True    # nnclr.py: the projector ends in BatchNorm1d(proj_output_dim)
  config.model.predictor = _base.predictor(2, 4096)  # method_kwargs.pred_hidden_dim
  _base.torch_heads(config)
  _base.asymmetric_views(config)
  _base.test_heads(config, preset)
  if preset == "test":
    config.nnclr.queue_size = 64
  return config
