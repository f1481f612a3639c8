"""SimSiam (Chen & He 2021): predict the other view's projection, with a stop-gradient and no target network."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, pmean, unit_rows


def make(*, predictor_layers: int = 2, axis_name: str | None = None) -> Method:
  """SimSiam: loss = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2, D the negative cosine similarity.

  Row-wise, so 1 and 8 devices agree without a gather. The predictor's fixed learning rate
  (the paper's section 4.2) is the optimiser's: `config.predictor_fixed_lr`
  (contrastive_jax/optim.py). Metric `z_std`: the mean per-feature std of the unit projections,
  which collapse drives to 0 (1/sqrt(D) when healthy; the paper's Fig. 2), over the global batch.
  """
  if not isinstance(predictor_layers, int) or predictor_layers < 1:
    raise ValueError(f"simsiam needs a predictor: set config.model.predictor.num_layers (2 in the paper); "
                     f"got {predictor_layers!r}.")

  def z_std(z):
    z = unit_rows(z)
    mean = pmean(jnp.mean(z, axis=0), axis_name)
    var = pmean(jnp.mean(jnp.square(z - mean), axis=0), axis_name)
    return jnp.mean(jnp.sqrt(var))

  def loss(online, target, state, labels, step):
    del target, state, labels, step
    (z1, z2), (p1, p2) = online["projection"], online["prediction"]
    sg = jax.lax.stop_gradient
    value = (losses.negative_cosine_similarity(p1, sg(z2)) + losses.negative_cosine_similarity(p2, sg(z1))) / 2
    return value, {"z_std": sg((z_std(z1) + z_std(z2)) / 2)}

  return Method(name="simsiam", num_views=2, loss=loss, per_view_bn=True, predictor_layers=predictor_layers)
