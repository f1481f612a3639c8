"""contrastive-jax: contrastive self-supervised learning (SimCLR family) in JAX/Flax.

The public API, by module:
  losses    nt_xent, nt_xent_with_metrics, info_nce
  augment   SimCLRAugment, simclr_augment, random_crop_and_flip, center_crop, colour ops
  models    ResNet, ProjectionHead, SimCLRModel
  optim     lars, scale_learning_rate, warmup_cosine_schedule, sgd_nesterov, adamw
  train     TrainState, make_train_step, distribute, train_and_evaluate (imported lazily:
            it pulls in the data pipeline)
"""

from contrastive_jax.augment import SimCLRAugment, center_crop, random_crop_and_flip, simclr_augment
from contrastive_jax.losses import info_nce, nt_xent, nt_xent_with_metrics
from contrastive_jax.models import ProjectionHead, ResNet, SimCLRModel
from contrastive_jax.optim import adamw, lars, scale_learning_rate, sgd_nesterov, warmup_cosine_schedule
from contrastive_jax.parallel import DATA_AXIS, make_data_mesh

__version__ = "0.1.0"

__all__ = [
    "DATA_AXIS", "ProjectionHead", "ResNet", "SimCLRAugment", "SimCLRModel", "adamw", "center_crop",
    "info_nce", "lars", "make_data_mesh", "nt_xent", "nt_xent_with_metrics", "random_crop_and_flip",
    "scale_learning_rate", "sgd_nesterov", "simclr_augment", "warmup_cosine_schedule",
]
