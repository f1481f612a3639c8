"""NNCLR (Dwibedi et al. 2021): the positive is the nearest neighbour of a view's projection in a support set."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive, gather_rows, pmean, unit_rows
from contrastive_jax.methods.moco import queue_sizes_that_work

SUPPORT, SUPPORT_LABELS, SUPPORT_PTR = "support", "support_labels", "support_ptr"


def make(*, temperature: float, queue_size: int, global_batch: int, proj_dim: int, predictor_layers: int = 2,
         chunk_size: int | None = None, axis_name: str | None = None) -> Method:
  """NNCLR: loss = InfoNCE(NN(z1), p2) / 2 + InfoNCE(NN(z2), p1) / 2 over the global batch.

  Args:
    temperature: softmax temperature (solo-learn CIFAR and the paper: 0.1-0.2; solo-learn: 0.2).
    queue_size: rows of the support set; a multiple of `global_batch` (each step enqueues the
      whole global batch as one block).
    global_batch: images per step over all devices (config.batch_size).
    proj_dim: the projection's width (the support set's D).
    predictor_layers: Dense layers of the predictor (the paper: 2).
    chunk_size: tile the global batch's columns in the InfoNCE (same values and gradients).
    axis_name: the data axis. The support set holds every device's unit projections of view 1
      in global-batch order (`gather_rows` after the loss, like MoCo's queue), so it is the same
      on every device and each neighbour is looked up in the **global** support set (solo-learn
      #229 looked up one GPU's). The InfoNCE's negatives are the predictions of every device
      (`losses.info_nce` with `axis_name`), as solo-learn's `nnclr_loss_func`.

  NN(z) = support[argmax_k <unit(z), support_k>], no gradient; the support set starts as random
  unit rows and the current batch enters it only after the loss. Method state: support [K, D]
  float32 unit rows, support_labels int32 [K] (-1: none yet), support_ptr int32. Metric
  `nn_acc`: how often view 1's neighbour has its image's label (global; labels -1 never match).
  """
  check_positive("nnclr temperature", temperature, "solo-learn CIFAR: 0.2.")
  if not isinstance(queue_size, int) or queue_size < global_batch or queue_size % global_batch:
    near = queue_size if isinstance(queue_size, int) and queue_size > 0 else 65536
    raise ValueError(
        f"nnclr support set (config.nnclr.queue_size = {queue_size!r}) must hold a whole number of global batches "
        f"(config.batch_size = {global_batch}): each step enqueues the global batch as one block. Sizes that work: "
        f"{queue_sizes_that_work(global_batch, max(near, global_batch))}.")
  if not isinstance(predictor_layers, int) or predictor_layers < 1:
    raise ValueError(f"nnclr needs a predictor: set config.model.predictor.num_layers (2 in the paper); "
                     f"got {predictor_layers!r}.")

  def init_state(params, batch_stats, key):
    del params, batch_stats
    support = unit_rows(jax.random.normal(key, (queue_size, proj_dim), jnp.float32))
    return {SUPPORT: support, SUPPORT_LABELS: jnp.full((queue_size,), -1, jnp.int32),
            SUPPORT_PTR: jnp.zeros((), jnp.int32)}

  def neighbour(z, support):
    index = jnp.argmax(unit_rows(z) @ support.T, axis=-1)
    return support[index], index

  def loss(online, target, state, labels, step):
    del target, step
    support = jax.lax.stop_gradient(state[SUPPORT])
    (z1, z2), (p1, p2) = online["projection"], online["prediction"]
    nn1, index1 = neighbour(z1, support)
    nn2, _ = neighbour(z2, support)
    ctr = lambda q, k: losses.info_nce(q, k, temperature=temperature, axis_name=axis_name, chunk_size=chunk_size)
    value = ctr(nn1, p2) / 2 + ctr(nn2, p1) / 2
    hit = (state[SUPPORT_LABELS][index1] == labels) & (labels >= 0)
    return value, {"nn_acc": pmean(jnp.mean(hit.astype(jnp.float32)), axis_name)}

  def update(state, params, target_batch_stats, target, online, labels, step):
    del params, target_batch_stats, target, step
    rows = gather_rows(unit_rows(online["projection"][0]), axis_name)  # every device's, in global-batch order
    ptr = state[SUPPORT_PTR]
    zero = jnp.zeros((), ptr.dtype)
    return {SUPPORT: jax.lax.dynamic_update_slice(state[SUPPORT], rows, (ptr, zero)),
            SUPPORT_LABELS: jax.lax.dynamic_update_slice(state[SUPPORT_LABELS],
                                                         gather_rows(labels, axis_name), (ptr,)),
            SUPPORT_PTR: (ptr + global_batch) % queue_size}

  return Method(name="nnclr", num_views=2, loss=loss, init_state=init_state, update=update, per_view_bn=True,
                predictor_layers=predictor_layers)
