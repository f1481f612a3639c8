"""BYOL (Grill et al. 2020): predict an EMA target's projection of the other view; no negatives."""

from __future__ import annotations

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, momentum_target


def make(*, total_steps: int, base_momentum: float = 0.996, final_momentum: float = 1.0,
         predictor_layers: int = 2) -> Method:
  """BYOL: loss = sum over ordered view pairs (v, w), v != w, of byol_loss(p_w, sg(t_v)).

  With two views that is the paper's symmetrised L + L~ (each 2 - 2 cos, mean over the
  batch). The target's momentum goes from base to final on the cosine schedule. The loss
  is row-wise, so 1 and 8 devices agree without any gather.
  """
  init_state, update = momentum_target(base_momentum, final_momentum, total_steps)

  def loss(online, target, state, labels, step):
    del state, labels, step
    p, t = online["prediction"], target["projection"]
    n = len(p)
    return sum(losses.byol_loss(p[w], t[v]) for v in range(n) for w in range(n) if w != v), {}

  return Method(name="byol", num_views=2, loss=loss, init_state=init_state, update=update, target=True,
                per_view_bn=True, predictor_layers=predictor_layers)
