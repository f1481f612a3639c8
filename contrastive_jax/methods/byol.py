"""BYOL (Grill et al. 2020): predict an EMA target's projection of the other view; no negatives."""

from __future__ import annotations

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, momentum_target


def make(*, total_steps: int, base_momentum: float = 0.996, final_momentum: float = 1.0,
         predictor_layers: int = 2, num_views: int = 2, num_large_views: int | None = None) -> Method:
  """BYOL: loss = sum over target views v and online views w != v of byol_loss(p_w, sg(t_v)).

  With two views that is the paper's symmetrised L + L~ (each 2 - 2 cos, mean over the
  batch). Multi-crop: the target sees the large crops only, and every crop, small ones
  included, predicts each other large crop's target (solo-learn's multi-crop BYOL). The
  target's momentum goes from base to final on the cosine schedule. The loss is row-wise,
  so 1 and 8 devices agree without any gather.
  """
  init_state, update = momentum_target(base_momentum, final_momentum, total_steps)
  if not isinstance(num_views, int) or num_views < 2:
    raise ValueError(f"BYOL needs >= 2 views per image; got num_views={num_views!r}.")

  def loss(online, target, state, labels, step):
    del state, labels, step
    p, t = online["prediction"], target["projection"]  # t: the large views only
    return sum(losses.byol_loss(p[w], t[v]) for v in range(len(t)) for w in range(len(p)) if w != v), {}

  return Method(name="byol", num_views=num_views, loss=loss, init_state=init_state, update=update, target=True,
                per_view_bn=True, predictor_layers=predictor_layers, num_large_views=num_large_views)
