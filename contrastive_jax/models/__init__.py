"""Encoders and heads: ResNet v1 (SimCLR widths, CIFAR stem), projection head, ContrastiveModel (alias SimCLRModel)."""

from contrastive_jax.models.heads import ContrastiveModel, ProjectionHead, SimCLRModel
from contrastive_jax.models.resnet import ALLOWED_DEPTHS, ResNet, feature_dim

__all__ = ["ALLOWED_DEPTHS", "ContrastiveModel", "ProjectionHead", "ResNet", "SimCLRModel", "feature_dim"]
