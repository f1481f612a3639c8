"""SupCon (Khosla et al. 2020) with ResNet-50 on ImageNet.

google-research/google-research `supcon/scripts/supcon_imagenet_resnet50.sh` with the
`SUPCON_FLAGS` of `scripts/configs.sh` (the paper's reference code, 128 TPU cores): batch
6144, LARS, base learning rate 0.4 x B/256, weight decay 1e-3, 350 epochs, 12 warmup epochs
(`stage_1_warmup_epochs`' default) then cosine, temperature 0.1, a projection head of one
Linear layer to 128-d without BN, blur p 0.5. The paper reports 78.7% top-1 for ResNet-50
(with AutoAugment; its Table 2).

Where this preset differs from that script, and why:
- augmentations: SimCLR's (jitter strength 1.0, blur 0.5) instead of AutoAugment, which this
  library does not implement;
- the script L2-normalises the encoder output before the head (`normalize_embedding`) and
  scales the loss by the temperature; neither is offered here (under LARS a loss scale only
  changes the balance against weight decay);
- LARS uses SimCLR's masks (no decay or adaptation on biases and BN); the script decays biases;
- the head's Dense starts from SimCLR's N(0, 0.01^2); the script's Keras Dense, from Glorot uniform;
- the script's stage 2 (a classifier trained with RMSProp) is this library's linear evaluation.

Presets: (none), 350ep.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "imagenet_simclr", os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_simclr.py"))
_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_imagenet)


def get_config(preset: str = "350ep") -> ml_collections.ConfigDict:
  if preset not in ("", "350ep"):
    raise ValueError(f"unknown preset {preset!r} for imagenet_supcon.py; use '350ep'.")
  config = _imagenet.get_config()
  config.method = "supcon"
  config.batch_size = 6144           # --batch_size=6144
  config.num_epochs = 350            # --stage_1_epochs=350
  config.warmup_epochs = 12.0        # hparams_flags.py: stage_1_warmup_epochs default
  config.optimizer = "lars"          # --stage_1_optimizer=LARS
  config.learning_rate = 0.4         # --stage_1_base_learning_rate=0.4, "multiplied by batch_size/256"
  config.lr_scaling = "linear"
  config.weight_decay = 1e-3         # --stage_1_weight_decay=1e-3
  config.temperature = 0.1           # --temperature=0.1
  config.model.head.num_layers = 1       # SUPCON_FLAGS: --projection_head_layers=128
  config.model.proj_dim = 128
  config.model.head.last_bn = False      # --use_projection_batch_norm=False: Dense with bias
  config.model.head.dense_init = "simclr"
  config.augment.jitter_strength = 1.0
  config.augment.blur_p = 0.5        # IMAGENET_FLAGS: --blur_probability=0.5
  return config
