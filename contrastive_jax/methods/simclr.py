"""SimCLR (Chen et al. 2020): NT-Xent between two views, negatives from every device."""

from __future__ import annotations

import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive


def make(*, temperature: float, num_views: int = 2, num_large_views: int | None = None,
         chunk_size: int | None = None, axis_name: str | None = None) -> Method:
  """SimCLR: views 0 and 1 of each image are positives, every other view in the global batch a negative.

  Both views go through the network as one batch (BN over both, as SimCLR's TF code).
  Multi-crop (num_views > 2): every crop is a positive of the other crops of its image and
  a negative of every other crop in the global batch: `supcon`'s multi-view form without
  labels, which for two views is NT-Xent itself.
  """
  check_positive("temperature", temperature, "SimCLR CIFAR-10: 0.5, ImageNet: 0.1.")
  if not isinstance(num_views, int) or num_views < 2:
    raise ValueError(f"SimCLR needs >= 2 views per image; got num_views={num_views!r}.")

  def loss(online, target, state, labels, step):
    del target, state, step
    if num_views == 2:
      z1, z2 = online["projection"]
      return losses.nt_xent_with_metrics(z1, z2, temperature=temperature, axis_name=axis_name,
                                         chunk_size=chunk_size)
    z = jnp.stack(online["projection"], axis=1)  # [b, V, D]
    unlabelled = jnp.full_like(labels, -1)  # positives: this image's own other crops
    return losses.supcon(z, unlabelled, temperature=temperature, axis_name=axis_name, chunk_size=chunk_size), {}

  return Method(name="simclr", num_views=num_views, loss=loss, num_large_views=num_large_views)
