"""Views as configuration: `config.augment` -> one `ViewAugment` per view, and multi-crop groups.

`config.augment` holds the base view (a preset plus any `ViewAugment` field);
`config.augment.views` is a list with one dict of overrides per view (BYOL's asymmetric
blur and solarize, a multi-crop's small crops). Every field of every view is config.

Multi-crop: views may have different `image_size`. The large crops are the leading views
at the first view's size; the small crops follow, each smaller. Consecutive views of one
size form a resolution group, which the encoder sees as one batch (`resolution_groups`).
A method's momentum target sees only the large crops (`num_large_views`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from contrastive_jax import augment as augment_lib
from contrastive_jax import data as data_lib

_AUGMENT_FIELDS = {f.name for f in dataclasses.fields(augment_lib.ViewAugment)}


def _augment_overrides(fields: Any, where: str) -> dict[str, Any]:
  fields = dict(fields)
  unknown = sorted(set(fields) - _AUGMENT_FIELDS)
  if unknown:
    raise ValueError(f"{where} has unknown augmentation fields {unknown}; use fields of ViewAugment: "
                     f"{sorted(_AUGMENT_FIELDS - {'crop'})}.")
  return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def augment_config(config: ml_collections.ConfigDict) -> augment_lib.ViewAugment:
  """The base view: the preset, then every other field of config.augment (ViewAugment names)."""
  a = config.augment
  presets = {"cifar10": augment_lib.ViewAugment.cifar10, "imagenet": augment_lib.ViewAugment.imagenet}
  if a.preset not in presets:
    raise ValueError(f"unknown config.augment.preset {a.preset!r}; use one of {sorted(presets)}.")
  fields = {k: v for k, v in a.to_dict().items() if k not in ("preset", "views")}
  return dataclasses.replace(presets[a.preset](), **_augment_overrides(fields, "config.augment"),
                             crop=not config.data.host_crop)


def view_configs(config: ml_collections.ConfigDict) -> tuple[augment_lib.ViewAugment, ...]:
  """One ViewAugment per view: config.augment.views[v] overrides fields of the base view.

  Raises ValueError when the views' sizes are not large crops first, then smaller ones.
  """
  base = augment_config(config)
  views = config.augment.get("views", ({}, {}))
  augs = []
  for i, v in enumerate(views):
    where = f"config.augment.views[{i}]"
    try:
      augs.append(dataclasses.replace(base, **_augment_overrides(v, where)))
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from None
  augs = tuple(augs)
  num_large_views(augs)  # checks the order
  return augs


def num_large_views(augs: Sequence[augment_lib.ViewAugment]) -> int:
  """How many leading views are at the first view's (the largest) size; the rest must be smaller."""
  sizes = [a.image_size for a in augs]
  if not sizes:
    raise ValueError("config.augment.views is empty; a method needs at least 2 views.")
  large = next((i for i, s in enumerate(sizes) if s != sizes[0]), len(sizes))
  if any(s >= sizes[0] for s in sizes[large:]):
    raise ValueError(f"view sizes {sizes}: list the large crops first, then the smaller ones "
                     f"(e.g. 2 x 32 px then 4 x 16 px).")
  return large


def resolution_groups(sizes: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """[start, stop) of each run of consecutive views with one size: (32, 32, 16, 16) -> ((0, 2), (2, 4))."""
  groups, start = [], 0
  for i in range(1, len(sizes) + 1):
    if i == len(sizes) or sizes[i] != sizes[start]:
      groups.append((start, i))
      start = i
  return tuple(groups)


def host_crop_views(augs: Sequence[augment_lib.ViewAugment]) -> tuple[dict[str, Any], ...]:
  """Each view's host-crop arguments (variable-size datasets): its size, crop area and aspect ranges."""
  return tuple({"size": a.image_size, "area_range": tuple(a.crop_area_range),
                "aspect_ratio_range": tuple(a.aspect_ratio_range)} for a in augs)


def augment_views(batch: dict[str, jax.Array], keys: jax.Array, augs: Sequence[augment_lib.ViewAugment],
                  dtype: Any = jnp.float32) -> tuple[jax.Array, ...]:
  """The augmented `dtype` views [b, S_v, S_v, 3], each at its view's size, from a uint8 batch.

  `batch["image"]`: whole images [b, H, W, 3], every view cropped from them on device, or host crops
  per resolution group (`data.batch_crops`). `keys`: [b, len(augs)], one key per image and view.
  """
  if not data_lib.has_host_crops(batch):
    images = batch["image"].astype(dtype) / 255.0
    return tuple(augment_lib.augment_batch(keys[:, v], images, aug) for v, aug in enumerate(augs))
  sizes = [a.image_size for a in augs]
  groups = resolution_groups(sizes)
  views = []
  for (start, stop), crops in zip(groups, data_lib.batch_crops(batch, groups, sizes)):
    crops = crops.astype(dtype) / 255.0
    views += [augment_lib.augment_batch(keys[:, v], crops[:, v - start], augs[v]) for v in range(start, stop)]
  return tuple(views)
