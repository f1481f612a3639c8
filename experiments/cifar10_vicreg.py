"""VICReg (Bardes et al. 2022) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/vicreg.yaml` and `solo/methods/vicreg.py` (ResNet-18, 92.07%
linear top-1 in its README): projector 512 -> 2048 -> 2048 -> 2048 (Linear - BN - ReLU, twice,
then Linear), invariance / variance / covariance weights 25 / 25 / 1, LARS lr 0.3 (x B/256) with
solo-learn's clipped rate, trust coefficient 0.02, weight decay 1e-4, batch 256, 1000 epochs, 10
warmup epochs then cosine; two views of crops of 20-100% area, jitter (0.4, 0.4, 0.2, 0.1) p 0.8,
grayscale 0.2, no blur, solarize 0.1, flip. BN per view, as solo-learn. The variance and
covariance terms are statistics of the global batch (`losses.vicreg_loss`).

solo-learn sums the two branches' variance terms where the paper (and `losses.vicreg_loss`)
averages them: its var_loss_weight 25 is var_weight 50 here, the same loss. Difference: the hidden
Dense layers have no bias (BN's offset follows them, so the outputs are the same).

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs, with a warmup of 1 epoch
instead of SimCLR's 0.3 (measured, docs/results.md: with the rate at 0.15 by step 30 the run
diverged, loss 4.5e19 at step 30 and NaN at step 40; with 1 epoch it passed the peak rate of 0.3
at step 195 and trained on); test a few steps; gpu200 lightly's CIFAR-10 protocol
(cifar10_simclr.py).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_vicreg.py")
  config.method = "vicreg"
  config.vicreg = ml_collections.ConfigDict()  # methods/vicreg.py make()'s arguments
  config.vicreg.sim_weight = 25.0     # method_kwargs.sim_loss_weight
  config.vicreg.var_weight = 50.0     # method_kwargs.var_loss_weight 25, on the sum of the two branches
  config.vicreg.cov_weight = 1.0      # method_kwargs.cov_loss_weight
  config.optimizer = "lars"
  config.learning_rate = 0.3          # optimizer.lr
  config.weight_decay = 1e-4          # optimizer.weight_decay
  config.trust_coefficient = 0.02     # optimizer.kwargs.eta
  config.lars_clip_lr = True          # optimizer.kwargs.clip_lr
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset, cpu_warmup_epochs=1.0)
  _base.three_layer_projector(config, 2048, 2048)
  _base.torch_heads(config)
  config.augment.crop_area_range = (0.2, 1.0)  # augmentations: rrc.crop_min_scale
  config.augment.jitter = (0.4, 0.4, 0.2, 0.1)
  config.augment.blur_p = 0.0
  config.augment.solarize_p = 0.1
  _base.weak_jitter(config)
  _base.test_heads(config, preset)
  return config
