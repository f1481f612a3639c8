"""Encoders and heads: ResNet v1 (SimCLR widths, CIFAR stem), ViT, projection head, ContrastiveModel;
`create_model(config, num_classes)` builds one from config.model."""

from contrastive_jax.models.factory import create_model, frozen_params
from contrastive_jax.models.heads import ContrastiveModel, ProjectionHead, Prototypes
from contrastive_jax.models.resnet import ALLOWED_DEPTHS, ResNet, feature_dim
from contrastive_jax.models.vit import ViT

__all__ = ["ALLOWED_DEPTHS", "ContrastiveModel", "ProjectionHead", "Prototypes", "ResNet", "ViT", "create_model", "feature_dim",
           "frozen_params"]
