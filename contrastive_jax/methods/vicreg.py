"""VICReg (Bardes et al. 2022): invariance, variance and covariance terms on the two views' projections."""

from __future__ import annotations

from contrastive_jax import losses
from contrastive_jax.methods.common import Method


def make(*, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0,
         axis_name: str | None = None) -> Method:
  """VICReg: `losses.vicreg_loss(z1, z2, lambda_=sim_weight, mu=var_weight, nu=cov_weight)`.

  The weights are the paper's lambda, mu, nu (25, 25, 1), in the paper's convention where the
  two branches' variance terms are averaged. solo-learn sums them, so its `var_loss_weight: 25`
  is `var_weight=50` here (experiments/cifar10_vicreg.py). The variance and covariance terms are
  statistics of the global batch (psum over `axis_name`). BN per view, as solo-learn.
  """
  for name, value in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
    if not isinstance(value, (int, float)) or value < 0:
      raise ValueError(f"vicreg {name} must be a number >= 0; got {value!r} (the paper: 25, 25, 1).")

  def loss(online, target, state, labels, step):
    del target, state, labels, step
    z1, z2 = online["projection"]
    return losses.vicreg_loss(z1, z2, lambda_=sim_weight, mu=var_weight, nu=cov_weight, axis_name=axis_name), {}

  return Method(name="vicreg", num_views=2, loss=loss, per_view_bn=True)
