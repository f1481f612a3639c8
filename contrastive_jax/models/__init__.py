"""Encoders and heads: ResNet v1 (SimCLR widths, CIFAR stem), ViT, projection head, ContrastiveModel (alias SimCLRModel)."""

from contrastive_jax.models.heads import ContrastiveModel, ProjectionHead, SimCLRModel
from contrastive_jax.models.resnet import ALLOWED_DEPTHS, ResNet, feature_dim
from contrastive_jax.models.vit import ViT

__all__ = ["ALLOWED_DEPTHS", "ContrastiveModel", "ProjectionHead", "ResNet", "SimCLRModel", "ViT", "feature_dim"]
