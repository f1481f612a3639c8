"""Barlow Twins (Zbontar et al. 2021) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/barlow.yaml` and `solo/methods/barlow_twins.py` (ResNet-18,
92.10% linear top-1 in its README): projector 512 -> 2048 -> 2048 -> 2048 (Linear - BN - ReLU,
twice, then Linear), lambda 0.0051, the loss scaled by 0.1, LARS lr 0.3 (x B/256) with
solo-learn's clipped rate, trust coefficient 0.02, weight decay 1e-4 (no decay or adaptation
on biases and BN), batch 256, 1000 epochs, 10 warmup epochs then cosine; the asymmetric views
of `augmentations/asymmetric.yaml` (as BYOL's). BN per view, as solo-learn. The loss's batch
statistics are those of the global batch (`losses.barlow_twins_loss`). Difference: the hidden
Dense layers have no bias (BN's offset follows them, so the outputs are the same).

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs, with a warmup of 1 epoch
instead of SimCLR's 0.3 (measured, docs/results.md: with 0.3 the parameters tripled in 70 steps and
the encoder ended 0.05 kNN points below its random init; with 1 epoch, 3.05 points above it); test a
few steps; gpu200 lightly's CIFAR-10 protocol (cifar10_simclr.py).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_barlow_twins.py")
  config.method = "barlow_twins"
  config.barlow_twins = ml_collections.ConfigDict()  # methods/barlow_twins.py make()'s arguments
  config.barlow_twins.lambda_ = 0.0051  # method_kwargs.lamb (solo-learn's default)
  config.barlow_twins.scale_loss = 0.1  # method_kwargs.scale_loss
  config.optimizer = "lars"           # optimizer.name, exclude_bias_n_norm
  config.learning_rate = 0.3          # optimizer.lr
  config.weight_decay = 1e-4          # optimizer.weight_decay
  config.trust_coefficient = 0.02     # optimizer.kwargs.eta
  config.lars_clip_lr = True          # optimizer.kwargs.clip_lr
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset, cpu_warmup_epochs=1.0)
  _base.three_layer_projector(config, 2048, 2048)  # method_kwargs.proj_hidden_dim, proj_output_dim
  _base.torch_heads(config)
  _base.asymmetric_views(config)
  _base.test_heads(config, preset)
  return config
