"""SupCon (Khosla et al. 2020) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/supcon.yaml` (ResNet-18, 93.82% linear top-1 in its
README): temperature 0.2, projector 512 -> 2048 -> 256 without BN, SGD lr 0.4 (x B/256),
weight decay 1e-5 on every parameter, momentum 0.9, batch 256, 1000 epochs, 10 warmup
epochs then cosine; two views of `augmentations/symmetric.yaml`: jitter (0.8, 0.8, 0.8,
0.2) p 0.8, grayscale 0.2, blur 0.5, no solarize, crops of 8-100% area. The loss here
is the paper's L_out (eq. 2), as the issue asks, not solo-learn's sum-inside-the-log form.
Labels come from the dataset; images without one train as SimCLR (label -1).

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
  config = _base.load(preset, "cifar10_supcon.py")
  config.method = "supcon"
  config.temperature = 0.2            # supcon.yaml: method_kwargs.temperature
  config.optimizer = "sgd"            # supcon.yaml: optimizer.name sgd (decays every parameter)
  config.learning_rate = 0.4          # optimizer.lr
  config.weight_decay = 1e-5          # optimizer.weight_decay
  config.momentum = 0.9               # solo/args/pretrain.py: SGD momentum
  _base.solo_learn_schedule(config, preset)
  config.model.head.hidden_dim = 2048  # method_kwargs.proj_hidden_dim
  config.model.proj_dim = 256          # method_kwargs.proj_output_dim
  config.model.head.hidden_bn = False  # solo/methods/supcon.py: Linear - ReLU - Linear
  config.model.head.last_bn = False
  _base.torch_heads(config)
  config.augment.jitter = (0.8, 0.8, 0.8, 0.2)  # augmentations/symmetric.yaml
  config.augment.blur_p = 0.5
  _base.weak_jitter(config)
  _base.test_heads(config, preset)
  return config
