"""SimCLR (Chen et al. 2020): NT-Xent between two views, negatives from every device."""

from __future__ import annotations

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive


def make(*, temperature: float, chunk_size: int | None = None, axis_name: str | None = None) -> Method:
  """SimCLR: views 0 and 1 of each image are positives, every other view in the global batch a negative.

  Both views go through the network as one batch (BN over both, as SimCLR's TF code).
  """
  check_positive("temperature", temperature, "SimCLR CIFAR-10: 0.5, ImageNet: 0.1.")

  def loss(online, target, state, labels, step):
    del target, state, labels, step
    z1, z2 = online["projection"]
    return losses.nt_xent_with_metrics(z1, z2, temperature=temperature, axis_name=axis_name, chunk_size=chunk_size)

  return Method(name="simclr", num_views=2, loss=loss)
