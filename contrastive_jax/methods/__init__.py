"""Self-supervised methods on one training core: SimCLR (and DCL), SupCon, MoCo v2, MoCo v3, BYOL, Barlow Twins,
VICReg, SimSiam, NNCLR, SwAV, DINO.

Each method is a small module that builds a `Method` (common.py): its views, its loss
and its updates of the state that takes no gradient. `create(config, ...)` picks one by
`config.method`; the train step (contrastive_jax/train.py) is the same for all.

Adding a method: write `methods/<name>.py` with a `make(...) -> Method`, add a branch to
`create` that reads its config fields, and add it to `METHODS`; the 1-vs-8-device and
resume tests (tests/test_methods.py) are parametrised over `METHODS`.
"""

from __future__ import annotations

from typing import Any, Sequence

from contrastive_jax import views as views_lib
from contrastive_jax.augment import ViewAugment
from contrastive_jax.methods import barlow_twins, byol, dino, moco, nnclr, simclr, simsiam, supcon, swav, vicreg
from contrastive_jax.methods.common import TARGET, Method, cosine_momentum, ema
from contrastive_jax.models.heads import ProjectionHead

METHODS = ("simclr", "supcon", "moco_v2", "moco_v3", "byol", "barlow_twins", "vicreg", "simsiam", "nnclr", "swav",
           "dino")
MULTICROP_METHODS = ("simclr", "supcon", "byol", "swav", "dino")

__all__ = ["METHODS", "MULTICROP_METHODS", "TARGET", "Method", "barlow_twins", "byol", "cosine_momentum", "create",
           "dino", "ema", "moco", "nnclr", "simclr", "simsiam", "supcon", "swav", "vicreg"]


def create(config: Any, *, total_steps: int, axis_name: str | None,
           views: Sequence[ViewAugment] | None = None, steps_per_epoch: int | None = None) -> Method:
  """The `Method` that `config.method` names (default "simclr"), with its config fields.

  Reads: temperature, loss_chunk_size, batch_size (the global batch), augment.views (how many,
  and multi-crop's large crops: contrastive_jax/views.py),
  model.proj_dim, model.predictor.num_layers; loss and dcl_sigma (simclr); target.base_momentum /
  target.final_momentum (moco_v2, moco_v3, byol, dino); moco.queue_size and moco.symmetric (moco_v2);
  the groups config.barlow_twins, config.vicreg, config.nnclr, config.swav and config.dino, passed to
  their `make` as keyword arguments (whatever a group leaves out takes make's default).
  `views`: the run's `views.view_configs(config)`, when the caller has built them already.
  `steps_per_epoch`: for schedules in epochs (SwAV's queue start, DINO's teacher temperature);
  None: total_steps / config.num_epochs.
  """
  name = config.get("method", "simclr")
  chunk = config.get("loss_chunk_size", 0) or None
  if name not in METHODS:
    raise ValueError(f"unknown config.method {name!r}; the known methods are {list(METHODS)}.")
  augs = tuple(views) if views is not None else views_lib.view_configs(config)
  views, large = len(augs), views_lib.num_large_views(augs)
  multicrop = dict(num_views=views, num_large_views=large)
  if name not in MULTICROP_METHODS and views != 2:
    raise ValueError(f"{name} uses 2 views; config.augment.views has {views} (multi-crop: "
                     f"{', '.join(MULTICROP_METHODS)}).")
  if steps_per_epoch is None:
    steps_per_epoch = max(1, int(total_steps // max(config.get("num_epochs", 1), 1)))
  group = lambda field: dict(config.get(field) or {})
  if name == "simclr":
    return simclr.make(temperature=config.temperature, chunk_size=chunk, axis_name=axis_name,
                       loss=config.get("loss", "nt_xent"), dcl_sigma=config.get("dcl_sigma", 0.5), **multicrop)
  if name == "supcon":
    return supcon.make(temperature=config.temperature, chunk_size=chunk, axis_name=axis_name, **multicrop)
  if name == "barlow_twins":
    return barlow_twins.make(**group("barlow_twins"), axis_name=axis_name)
  if name == "vicreg":
    return vicreg.make(**group("vicreg"), axis_name=axis_name)
  if name == "simsiam":
    return simsiam.make(predictor_layers=_predictor_layers(config, name), axis_name=axis_name)
  if name == "nnclr":
    return nnclr.make(temperature=config.temperature, **group("nnclr"), global_batch=config.batch_size,
                      proj_dim=config.model.proj_dim, predictor_layers=_predictor_layers(config, name),
                      chunk_size=chunk, axis_name=axis_name)
  if name == "swav":
    return swav.make(**group("swav"), global_batch=config.batch_size, proj_dim=config.model.proj_dim,
                     steps_per_epoch=steps_per_epoch, axis_name=axis_name, **multicrop)
  target = dict(total_steps=total_steps, base_momentum=config.target.base_momentum,
                final_momentum=config.target.final_momentum)
  if name == "dino":
    return dino.make(**group("dino"), **target, steps_per_epoch=steps_per_epoch, axis_name=axis_name, **multicrop)
  if name == "moco_v2":
    return moco.make_v2(temperature=config.temperature, queue_size=config.moco.queue_size,
                        global_batch=config.batch_size, proj_dim=config.model.proj_dim,
                        symmetric=config.moco.symmetric, chunk_size=chunk, axis_name=axis_name, **target)
  if name == "moco_v3":
    return moco.make_v3(temperature=config.temperature, predictor_layers=_predictor_layers(config, name),
                        chunk_size=chunk, axis_name=axis_name, **target)
  return byol.make(predictor_layers=_predictor_layers(config, name), **target, **multicrop)


def _predictor_layers(config: Any, name: str) -> int:
  """config.model.predictor's layers, by the model's rule (ContrastiveModel.has_predictor): a group
  without num_layers has ProjectionHead's. None is an error: `name` needs a predictor."""
  predictor = config.model.get("predictor") or {}
  layers = predictor.get("num_layers", ProjectionHead.num_layers) if predictor else 0
  if layers < 1:
    raise ValueError(f"{name} needs a predictor: set config.model.predictor.num_layers (2 in the paper).")
  return layers
