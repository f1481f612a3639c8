"""The field layout every CIFAR-10 method config shares: cifar10_simclr.py's, preset included.

`load(preset)` returns cifar10_simclr.get_config(preset): the method configs then set their
recipe's values; the `cpu`, `test` and `gpu200` presets keep SimCLR's encoder, batch and length
(`gpu200`: lightly's CIFAR-10 benchmark protocol, cifar10_simclr.py's docstring).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "cifar10_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_simclr.py"))
_simclr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_simclr)

PRESETS = ("", "cpu", "test", "gpu200")
VIT_PRESETS = {"vit": "", "vit_cpu": "cpu", "vit_test": "test"}  # the CIFAR ViT presets, and the ResNet preset each builds on


def load(preset: str, name: str) -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r} for {name}; use one of {list(PRESETS)}.")
  return _simclr.get_config(preset)


def solo_learn_schedule(config: ml_collections.ConfigDict, preset: str, cpu_warmup_epochs: float | None = None
                        ) -> None:
  """solo-learn's CIFAR schedule (batch 256, 1000 epochs, 10 warmup epochs, lr x B / 256) for the full preset.

  cpu_warmup_epochs: the `cpu` preset's warmup, where SimCLR's 0.3 epoch is too short for the method
  (VICReg, Barlow Twins and NNCLR under solo-learn's clipped LARS: 1 epoch, docs/results.md).
  """
  config.lr_scaling = "linear"      # solo/args/pretrain.py: lr * batch_size * devices / 256
  if preset == "cpu" and cpu_warmup_epochs is not None:
    config.warmup_epochs = cpu_warmup_epochs
  if preset in ("", "gpu200"):
    config.warmup_epochs = 10.0     # solo/methods/base.py: warmup_cosine, 10 warmup epochs
  if preset == "":
    config.batch_size = 256         # scripts/pretrain/cifar/*.yaml: optimizer.batch_size
    config.num_epochs = 1000        # max_epochs


def test_heads(config: ml_collections.ConfigDict, preset: str) -> None:
  """The test preset's heads: narrow, so the tests compile fast."""
  if preset == "test":
    config.model.head.hidden_dim = 32
    if config.model.predictor.num_layers:
      config.model.predictor.hidden_dim = 32
    config.model.proj_dim = 16


def torch_heads(config: ml_collections.ConfigDict) -> None:
  """solo-learn builds its heads from nn.Linear: PyTorch's default init."""
  config.model.head.dense_init = "torch"


def predictor(num_layers: int, hidden_dim: int, last_bias: bool = True) -> ml_collections.ConfigDict:
  """solo-learn's online predictor (BYOL, MoCo v3): Linear - BN - ReLU - Linear, nn.Linear's init."""
  return ml_collections.ConfigDict({"num_layers": num_layers, "hidden_dim": hidden_dim, "hidden_bn": True,
                                    "last_bn": False, "last_bias": last_bias, "dense_init": "torch"})


def target(base: float, final: float) -> ml_collections.ConfigDict:
  """The momentum target's EMA momentum, cosine from base to final (BYOL's schedule)."""
  return ml_collections.ConfigDict({"base_momentum": base, "final_momentum": final})


def weak_jitter(config: ml_collections.ConfigDict) -> None:
  """torchvision ColorJitter as solo-learn configures it: multiplicative brightness, random order."""
  config.augment.multiplicative_brightness = True


def asymmetric_views(config: ml_collections.ConfigDict) -> None:
  """solo-learn's `augmentations/asymmetric.yaml` (BYOL, MoCo v3) at 32 px: jitter (0.4, 0.4, 0.2, 0.1)
  on both views, no blur, and solarize 0 / 0.2."""
  config.augment.jitter = (0.4, 0.4, 0.2, 0.1)
  config.augment.blur_p = 0.0
  config.augment.views = ({}, {"solarize_p": 0.2})
  weak_jitter(config)


def three_layer_projector(config: ml_collections.ConfigDict, hidden_dim: int, out_dim: int) -> None:
  """solo-learn's 3-layer projector (Barlow Twins, VICReg, SimSiam, NNCLR): (Linear - BN - ReLU) x 2, Linear."""
  config.model.head.num_layers = 3
  config.model.head.hidden_dim = hidden_dim
  config.model.proj_dim = out_dim
  config.model.head.last_bn = False


def byol_views(config: ml_collections.ConfigDict) -> None:
  """BYOL's ImageNet views T and T' (Barlow Twins, VICReg and NNCLR use them too): jitter (0.4, 0.4, 0.2, 0.1)
  p 0.8, grayscale 0.2, blur 1.0 / 0.1, solarize 0 / 0.2."""
  config.augment.jitter = (0.4, 0.4, 0.2, 0.1)
  config.augment.blur_p = 1.0
  config.augment.views = ({}, {"blur_p": 0.1, "solarize_p": 0.2})
  weak_jitter(config)


def vit_encoder(config: ml_collections.ConfigDict, preset: str, **fields) -> None:
  """The CIFAR ViT presets' encoder (models/vit.py), with a method's `fields` (posemb, ...) on top.

  ViT-Small, patch 4 at 32 px (8 x 8 patches) with a class token; `cpu`: ViT-Tiny's width 192, 4 blocks,
  patch 8 (16 tokens + the class token); `test`: 2 blocks of width 32 with 2 heads, patch 8.
  """
  config.model.encoder = ml_collections.ConfigDict({"name": "vit", "variant": "small", "patch_size": 4,
                                                    "pool": "cls", "attention_impl": "flax", **fields})
  for field in ("width", "depth", "num_heads"):  # None: the variant's
    config.model.encoder[field] = ml_collections.FieldReference(None, field_type=int)
  if preset == "cpu":
    config.model.encoder.variant = "tiny"
    config.model.encoder.depth = 4
    config.model.encoder.patch_size = 8
  elif preset == "test":
    config.model.encoder.width, config.model.encoder.depth, config.model.encoder.num_heads = 32, 2, 2
    config.model.encoder.patch_size = 8
