"""SimCLR (Chen et al. 2020): NT-Xent between two views, negatives from every device; DCL / DCLW as its loss."""

from __future__ import annotations

import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive

LOSSES = ("nt_xent", "dcl", "dclw")


def make(*, temperature: float, num_views: int = 2, num_large_views: int | None = None,
         chunk_size: int | None = None, axis_name: str | None = None, loss: str = "nt_xent",
         dcl_sigma: float = 0.5) -> Method:
  """SimCLR: views 0 and 1 of each image are positives, every other view in the global batch a negative.

  Both views go through the network as one batch (BN over both, as SimCLR's TF code).
  Multi-crop (num_views > 2): every crop is a positive of the other crops of its image and
  a negative of every other crop in the global batch: `supcon`'s multi-view form without
  labels, which for two views is NT-Xent itself.

  `loss` (config.loss): "nt_xent", or the decoupled contrastive loss of Yeh et al. 2022 (the
  positive left out of the denominator): "dcl", or "dclw" with its von Mises-Fisher weight of
  width `dcl_sigma` (`losses.dcl_loss`); DCL takes two views.
  """
  check_positive("temperature", temperature, "SimCLR CIFAR-10: 0.5, ImageNet: 0.1.")
  if not isinstance(num_views, int) or num_views < 2:
    raise ValueError(f"SimCLR needs >= 2 views per image; got num_views={num_views!r}.")
  if loss not in LOSSES:
    raise ValueError(f"unknown config.loss {loss!r} for simclr; use one of {list(LOSSES)}.")
  if loss != "nt_xent" and num_views != 2:
    raise ValueError(f"config.loss={loss!r} takes 2 views; config.augment.views has {num_views} (multi-crop: nt_xent).")
  if loss == "dclw":
    check_positive("dcl_sigma", dcl_sigma, "DCLW: 0.5.")

  def loss_fn(online, target, state, labels, step):
    del target, state, step
    if loss != "nt_xent":
      z1, z2 = online["projection"]
      return losses.dcl_loss(z1, z2, temperature=temperature, weighted=loss == "dclw", sigma=dcl_sigma,
                             axis_name=axis_name, chunk_size=chunk_size), {}
    if num_views == 2:
      z1, z2 = online["projection"]
      return losses.nt_xent_with_metrics(z1, z2, temperature=temperature, axis_name=axis_name,
                                         chunk_size=chunk_size)
    z = jnp.stack(online["projection"], axis=1)  # [b, V, D]
    unlabelled = jnp.full_like(labels, -1)  # positives: this image's own other crops
    return losses.supcon(z, unlabelled, temperature=temperature, axis_name=axis_name, chunk_size=chunk_size), {}

  return Method(name="simclr", num_views=num_views, loss=loss_fn, num_large_views=num_large_views)
