"""SwAV (Caron et al. 2020) on CIFAR-10, following solo-learn's multi-crop recipe.

solo-learn `scripts/pretrain/cifar-multicrop/swav.yaml` (+ `augmentations/swav.yaml`) and
`solo/methods/swav.py`: ResNet-18, projector 512 -> 2048 -> 128 (Linear - BN - ReLU - Linear),
L2-normalised, 3000 prototypes (a Linear without bias), temperature 0.1, Sinkhorn 3 iterations at
epsilon 0.05 over the global batch, a queue of 3840 projections per large crop from epoch 50, the
prototypes frozen for the first 2 epochs; LARS lr 0.6 (x B/256) with solo-learn's clipped rate, trust
coefficient 0.02, weight decay 1e-6, batch 256, 1000 epochs, 10 warmup epochs then cosine. Views: 2 x
32 px crops of 20-100% area (jitter 0.6, 0.6, 0.6, 0.2 p 0.8, grayscale 0.2, no blur, solarize 0 /
0.2) and 6 x 18 px crops of 8-50% area (jitter 0.8, 0.8, 0.8, 0.2, grayscale 0.2, blur 0.1,
solarize 0.1). BN per crop, as solo-learn.

Differences, stated:
- the prototypes are L2-normalised after every update (the paper's code, before every step);
  solo-learn weight-normalises them in the forward pass (gradient through the normalisation);
- the queue joins the Sinkhorn once it is full (the paper's `use_the_queue`); solo-learn uses it
  zero-padded from `epoch_queue_starts`;
- the learning rate decays to 0, where solo-learn's scheduler stops at min_lr 6e-4.

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and 3 epochs with lightly's CIFAR-10
benchmark SwAV (`docs/source/getting_started/benchmarks/cifar10_benchmark.py`, SwaVModel): projector
512 wide, 512 prototypes, two 32 px crops of 14-100% area with colour jitter 0.4, 0.4, 0.4, 0.1 (no
small crops, no blur), Adam lr 1e-3 x B/128 with weight decay 1e-6 and a cosine decay from step 0, no
queue and no prototype freeze. Differences from it: the weight decay is AdamW's decoupled 1e-6 (lightly:
Adam's L2 1e-6; both negligible), and the encoder is SimCLR's quarter-width cpu ResNet. Measured
(docs/results.md): with the recipe's LARS, 3000 prototypes and 2 x 32 + 4 x 16 px crops the run
collapsed (kNN -2.16 points against the random init; with a 1-epoch freeze and warmup -0.73); with
lightly's, +7.22; test a few steps, a
one-batch queue from step 0, prototypes frozen for the first step; gpu200 lightly's CIFAR-10 protocol
(cifar10_simclr.py), a queue of 4096 (a multiple of its batch 512) from epoch 15 (solo-learn's default).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

LARGE = {"crop_area_range": (0.2, 1.0), "jitter": (0.6, 0.6, 0.6, 0.2)}  # rrc.crop_min_scale, color_jitter
LIGHTLY_CROP = {"crop_area_range": (0.14, 1.0), "jitter": (0.4, 0.4, 0.4, 0.1)}  # SwaVTransform(crop_min_scales=[0.14], cj_strength=0.5)
SMALL = {"image_size": 18, "crop_area_range": (0.08, 0.5), "jitter": (0.8, 0.8, 0.8, 0.2), "blur_p": 0.1,
         "solarize_p": 0.1}


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_swav.py")
  config.method = "swav"
  config.swav = ml_collections.ConfigDict()  # methods/swav.py make()'s arguments
  config.swav.temperature = 0.1       # method_kwargs.temperature
  config.swav.iterations = 3          # sk_iters
  config.swav.epsilon = 0.05          # sk_epsilon
  config.swav.queue_size = 3840       # queue_size
  config.swav.queue_start_epoch = 50.0  # epoch_queue_starts
  config.freeze_prototypes_epochs = 2.0  # freeze_prototypes_epochs
  config.optimizer = "lars"
  config.learning_rate = 0.6          # optimizer.lr
  config.weight_decay = 1e-6          # optimizer.weight_decay
  config.trust_coefficient = 0.02     # optimizer.kwargs.eta
  config.lars_clip_lr = True          # optimizer.kwargs.clip_lr
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset)
  config.model.head.num_layers = 2    # swav.py: Linear - BN - ReLU - Linear
  config.model.head.hidden_dim = 2048  # method_kwargs.proj_hidden_dim
  config.model.head.last_bn = False
  config.model.head.last_bias = True
  config.model.proj_dim = 128         # method_kwargs.proj_output_dim
  config.model.prototypes = ml_collections.ConfigDict({"num_prototypes": 3000})  # method_kwargs.num_prototypes
  _base.torch_heads(config)
  _base.weak_jitter(config)
  config.augment.blur_p = 0.0
  config.augment.views = ({**LARGE}, {**LARGE, "solarize_p": 0.2}, *[SMALL] * 6)
  if preset == "cpu":  # lightly's CIFAR-10 benchmark SwaVModel (docstring)
    config.augment.views = (LIGHTLY_CROP, LIGHTLY_CROP)
    config.model.prototypes.num_prototypes = 512
    config.model.head.hidden_dim = 512
    config.optimizer = "adamw"
    config.learning_rate = 2e-3         # 1e-3 x B/128 = 2e-3 x B/256 (config.lr_scaling)
    config.warmup_epochs = 0.0
    config.swav.queue_size = 0
    config.freeze_prototypes_epochs = 0.0
  elif preset == "test":
    small = {**SMALL, "image_size": 16}
    config.augment.views = (*config.augment.views[:2], *[small] * 2)
    config.swav.queue_size = 16         # one test batch: full after step 1, used from step 2
    config.swav.queue_start_epoch = 0.0
    config.freeze_prototypes_epochs = 0.25  # the first of the 4 steps of an epoch
    config.model.prototypes.num_prototypes = 24
  elif preset == "gpu200":
    config.swav.queue_size = 4096
    config.swav.queue_start_epoch = 15.0
  _base.test_heads(config, preset)
  return config
