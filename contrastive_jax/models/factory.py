"""config.model -> the model, and what the model declares to the optimiser (its frozen parameters)."""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import ml_collections

from contrastive_jax.models import vit as vit_lib
from contrastive_jax.models.heads import ContrastiveModel


def create_model(config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None = "data"
                 ) -> ContrastiveModel:
  """The encoder + heads of `config.model`, with an online probe over `num_classes` if `online_probe`.

  `axis_name`: the mesh axis BN synchronises over inside `shard_map` (None outside it).
  """
  m = config.model
  return ContrastiveModel(
      depth=m.depth, width_multiplier=m.width_multiplier, cifar_stem=m.cifar_stem,
      head_layers=m.head_layers, proj_dim=m.proj_dim,
      num_probe_classes=num_classes if m.online_probe else 0, axis_name=axis_name,
      bn_momentum=m.bn_momentum, zero_init_residual=m.zero_init_residual,
      dtype=jnp.dtype(m.dtype), base_width=m.base_width, conv_impl=m.get("conv_impl", "xla"),
      bn_fast_variance=bool(m.get("bn_fast_variance", False)),
      head_hidden_dim=m.get("head_hidden_dim") or None, head_hidden_bn=bool(m.get("head_hidden_bn", True)),
      head_last_bn=bool(m.get("head_last_bn", True)), head_last_bn_scale=bool(m.get("head_last_bn_scale", True)),
      predictor_layers=int(m.get("predictor_layers", 0)), predictor_hidden_dim=int(m.get("predictor_hidden_dim", 4096)),
      predictor_last_bias=bool(m.get("predictor_last_bias", True)), head_init=m.get("head_init", "simclr"),
      arch=m.get("arch", "resnet"), vit=vit_kwargs(config) if m.get("arch", "resnet") == "vit" else None)


def vit_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`ViT` arguments from config.model (vit_variant, patch_size, posemb, pool, frozen_patch_embed,
  and vit_width / vit_depth / vit_heads, 0 for the variant's)."""
  m = config.model
  return {"variant": m.vit_variant, "patch_size": int(m.patch_size), "posemb": m.posemb, "pool": m.pool,
          "frozen_patch_embed": bool(m.frozen_patch_embed), "width": int(m.get("vit_width", 0)) or None,
          "depth": int(m.get("vit_depth", 0)) or None, "num_heads": int(m.get("vit_heads", 0)) or None}


def frozen_params(config: ml_collections.ConfigDict) -> Callable[[Any], Any] | None:
  """params -> a tree of bools, True on parameters the model keeps frozen; None when it freezes none.

  MoCo v3's ViT keeps its random patch projection (config.model.frozen_patch_embed).
  """
  m = config.model
  if m.get("arch", "resnet") == "vit" and m.get("frozen_patch_embed", False):
    return vit_lib.frozen_params
  return None
