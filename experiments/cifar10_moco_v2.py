"""MoCo v2 on CIFAR-10, following solo-learn's MoCo v2+ recipe.

solo-learn `scripts/pretrain/cifar/mocov2plus.yaml` and `solo/methods/mocov2plus.py`
(ResNet-18, 92.94% linear top-1 in its README): a momentum encoder (EMA of encoder +
projector, momentum 0.99 -> 0.999 on the cosine schedule, per step), one queue of 32,768
keys per view, temperature 0.2, the symmetric loss (query of view 1 against the key of
view 2 and the view-2 queue, and the reverse, averaged), projector 512 -> 2048 -> 256
without BN, SGD lr 0.3 (x B/256), weight decay 1e-4 on every parameter, batch 256, 1000
epochs, 10 warmup epochs then cosine; two views of `augmentations/symmetric_weak.yaml`:
jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, blur 0.5, crops of 8-100% area.
solo-learn runs each view through the networks as its own batch (BN per view); so does
this config. The queue size must be a multiple of the global batch.

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs (queue 32,768
is then 128 steps of keys, as in the recipe); test a few steps, queue 64.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = _base.load(preset, "cifar10_moco_v2.py")
  config.method = "moco_v2"
  config.temperature = 0.2            # mocov2plus.yaml: method_kwargs.temperature
  config.moco = ml_collections.ConfigDict()
  config.moco.queue_size = 32768      # method_kwargs.queue_size
  config.moco.symmetric = True        # mocov2plus.py: (loss(q1, k2, queue[1]) + loss(q2, k1, queue[0])) / 2
  config.target = _base.target(0.99, 0.999)  # momentum.base_tau, momentum.final_tau
  config.optimizer = "sgd"            # optimizer.name
  config.learning_rate = 0.3          # optimizer.lr
  config.weight_decay = 1e-4          # optimizer.weight_decay
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset)
  config.model.head.hidden_dim = 2048  # method_kwargs.proj_hidden_dim
  config.model.proj_dim = 256          # method_kwargs.proj_output_dim
  config.model.head.hidden_bn = False  # mocov2plus.py: Linear - ReLU - Linear
  config.model.head.last_bn = False
  _base.torch_heads(config)
  config.augment.jitter = (0.4, 0.4, 0.4, 0.1)  # augmentations/symmetric_weak.yaml
  config.augment.blur_p = 0.5
  _base.weak_jitter(config)
  _base.test_heads(config, preset)
  if preset == "test":
    config.moco.queue_size = 64
  return config
