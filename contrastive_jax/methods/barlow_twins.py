"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' projections towards identity."""

from __future__ import annotations

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive


def make(*, lambda_: float = 0.0051, scale_loss: float = 1.0, axis_name: str | None = None) -> Method:
  """Barlow Twins: scale_loss * barlow_twins_loss(z1, z2, lambda_), statistics of the global batch.

  Args:
    lambda_: weight of the off-diagonal terms (paper: 5e-3; solo-learn: 0.0051).
    scale_loss: a factor on the whole loss (solo-learn's CIFAR recipe: 0.1; the paper: none).
    axis_name: the data axis: every BN and cross-correlation statistic of the loss is a psum
      over it (`losses.barlow_twins_loss`), never a per-device one.

  BN per view in the networks, as solo-learn runs each view through them on its own.
  """
  if not isinstance(lambda_, (int, float)) or lambda_ < 0:
    raise ValueError(f"barlow_twins lambda_ must be a number >= 0; got {lambda_!r} (paper: 5e-3).")
  check_positive("barlow_twins scale_loss", scale_loss, "solo-learn CIFAR: 0.1; the paper: 1.")

  def loss(online, target, state, labels, step):
    del target, state, labels, step
    z1, z2 = online["projection"]
    return scale_loss * losses.barlow_twins_loss(z1, z2, lambda_=lambda_, axis_name=axis_name), {}

  return Method(name="barlow_twins", num_views=2, loss=loss, per_view_bn=True)
