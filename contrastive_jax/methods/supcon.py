"""SupCon (Khosla et al. 2020): every view of every image with the same label is a positive."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive, pmean


def make(*, temperature: float, num_views: int = 2, num_large_views: int | None = None,
         chunk_size: int | None = None, axis_name: str | None = None) -> Method:
  """Supervised contrastive learning, L_out (the paper's eq. 2), over the global batch.

  Labels come from the dataset; an image without one (label -1) has only its own other
  views as positives, so an unlabelled batch trains as SimCLR. The views go through the
  network as one batch, as in the paper's code (`torch.cat` of the two views); multi-crop
  crops of every size are positives of each other (one batch per resolution).
  """
  check_positive("temperature", temperature, "SupCon: 0.1 (the paper); solo-learn's CIFAR recipe: 0.2.")
  if not isinstance(num_views, int) or num_views < 2:
    raise ValueError(f"SupCon needs >= 2 views per image; got num_views={num_views!r}.")

  def loss(online, target, state, labels, step):
    del target, state, step
    z = jnp.stack(online["projection"], axis=1)  # [b, V, D]
    value = losses.supcon(z, labels, temperature=temperature, axis_name=axis_name, chunk_size=chunk_size)
    labelled = pmean(jnp.mean((labels >= 0).astype(jnp.float32)), axis_name)
    return value, {"labelled_fraction": jax.lax.stop_gradient(labelled)}

  return Method(name="supcon", num_views=num_views, loss=loss, num_large_views=num_large_views)
