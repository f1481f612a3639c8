"""config.model -> the model, and what the model declares to the optimiser (its frozen parameters)."""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import ml_collections

from contrastive_jax.models import vit as vit_lib
from contrastive_jax.models.heads import ContrastiveModel


def _group(config: Any) -> dict[str, Any] | None:
  return None if config is None else (config.to_dict() if hasattr(config, "to_dict") else dict(config))


def create_model(config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None = "data"
                 ) -> ContrastiveModel:
  """The encoder + heads of `config.model`, with an online probe over `num_classes` if `online_probe`.

  config.model.encoder, .head, .predictor and .prototypes are the submodules' keyword arguments (the encoder's
  "name" picks ResNet or ViT); whatever a group leaves out takes the module's default.
  `axis_name`: the mesh axis BN synchronises over inside `shard_map` (None outside it).
  """
  m = config.model
  return ContrastiveModel(
      encoder_config=_group(m.encoder), head_config=_group(m.head), predictor_config=_group(m.get("predictor")),
      prototypes_config=_group(m.get("prototypes")),
      proj_dim=m.proj_dim, num_probe_classes=num_classes if m.online_probe else 0, axis_name=axis_name,
      bn_momentum=m.bn_momentum, dtype=jnp.dtype(m.dtype), bn_fast_variance=m.bn_fast_variance)


def frozen_params(config: ml_collections.ConfigDict) -> Callable[[Any], Any] | None:
  """params -> a tree of bools, True on parameters the model keeps frozen; None when it freezes none.

  MoCo v3's ViT keeps its random patch projection (config.model.encoder.frozen_patch_embed).
  """
  encoder = config.model.encoder
  if encoder.get("name") == "vit" and encoder.get("frozen_patch_embed", False):
    return vit_lib.frozen_params
  return None
