"""contrastive-jax: contrastive and self-distillation learning (SimCLR, DCL, SupCon, MoCo v2/v3, BYOL, SimSiam,
NNCLR, Barlow Twins, VICReg, SwAV, DINO) in JAX/Flax.

The public API, by module:
  losses    nt_xent, nt_xent_with_metrics, supcon, info_nce (in-batch or MoCo queue), byol_loss,
            barlow_twins_loss, vicreg_loss, dcl_loss, swav_loss, sinkhorn, dino_loss, dino_center,
            negative_cosine_similarity, clip_loss, siglip_loss
  augment   ViewAugment, augment_batch, random_crop_and_flip, center_crop, colour ops
  models    ResNet, ViT, ProjectionHead, ContrastiveModel
  methods   simclr (and DCL), supcon, moco (v2, v3), byol, simsiam, nnclr, barlow_twins, vicreg, swav,
            dino: each a `Method` the train step runs;
            `methods.create(config, ...)` picks one by config.method
  optim     lars, sgd, scale_learning_rate, warmup_cosine_schedule, sgd_nesterov, adamw
  train     TrainState, make_train_step, distribute, train_and_evaluate (imported lazily:
            it pulls in the data pipeline)
  embed     load_encoder, Encoder: a trained run's encoder as a function of images
            (`contrastive_jax.load_encoder` imports it on first use)
"""

from contrastive_jax import methods
from contrastive_jax.augment import ViewAugment, augment_batch, center_crop, random_crop_and_flip
from contrastive_jax.losses import (barlow_twins_loss, byol_loss, clip_loss, dcl_loss, dino_center, dino_loss,
                                   info_nce, negative_cosine_similarity, nt_xent, nt_xent_with_metrics, siglip_loss,
                                   sinkhorn, supcon, swav_loss, vicreg_loss)
from contrastive_jax.models import ContrastiveModel, ProjectionHead, ResNet, ViT
from contrastive_jax.optim import adamw, lars, scale_learning_rate, sgd, sgd_nesterov, warmup_cosine_schedule
from contrastive_jax.parallel import DATA_AXIS, make_data_mesh

__version__ = "0.1.0"

__all__ = [
    "DATA_AXIS", "ContrastiveModel", "Encoder", "ProjectionHead", "ResNet", "ViT", "ViewAugment", "adamw",
    "augment_batch", "barlow_twins_loss", "byol_loss", "center_crop", "clip_loss", "dcl_loss", "dino_center",
    "dino_loss", "info_nce", "lars", "load_encoder", "make_data_mesh", "methods", "negative_cosine_similarity",
    "nt_xent", "nt_xent_with_metrics", "random_crop_and_flip", "scale_learning_rate", "sgd", "sgd_nesterov",
    "siglip_loss", "sinkhorn", "supcon", "swav_loss", "vicreg_loss", "warmup_cosine_schedule",
]

_LAZY = {"load_encoder": "contrastive_jax.embed", "Encoder": "contrastive_jax.embed"}


def __getattr__(name: str):
  # load_encoder needs orbax and the training code; `import contrastive_jax` stays light.
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'contrastive_jax' has no attribute {name!r}")
