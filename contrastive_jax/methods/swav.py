"""SwAV (Caron et al. 2020): every crop predicts the Sinkhorn codes of the large crops over learnt prototypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive, gather_rows, unit_rows
from contrastive_jax.methods.moco import queue_sizes_that_work
from contrastive_jax.models.heads import l2_normalize

PROTOTYPES = "prototypes"  # the model's Prototypes submodule (config.model.prototypes)
QUEUE, QUEUE_PTR, QUEUE_FILLED, QUEUE_KERNEL = "queue", "queue_ptr", "queue_filled", "queue_kernel"


def normalize_prototypes(params):
  """params with each prototype (a column of params["prototypes"]["kernel"], [D, K]) of unit L2 norm.

  The paper's code does this before every step (`w = normalize(w, dim=1)` on the [K, D] weight);
  here after every update and at init, which gives the same weights to every forward pass.
  """
  kernel = l2_normalize(params[PROTOTYPES]["kernel"], axis=0)
  return {**params, PROTOTYPES: {**params[PROTOTYPES], "kernel": kernel}}


def make(*, temperature: float = 0.1, iterations: int = 3, epsilon: float = 0.05, queue_size: int = 0,
         queue_start_epoch: float = 15.0, global_batch: int, proj_dim: int, steps_per_epoch: int,
         num_views: int = 2, num_large_views: int | None = None, axis_name: str | None = None) -> Method:
  """SwAV: `losses.swav_loss` of every crop's prototype scores against the large crops' Sinkhorn codes.

  Args:
    temperature: the predictions' softmax temperature (the paper and solo-learn: 0.1).
    iterations, epsilon: Sinkhorn-Knopp's (the paper: 3 and 0.05).
    queue_size: rows of the queue per large crop (0: no queue); a multiple of `global_batch`
      (each step enqueues the global batch as one block). solo-learn CIFAR: 3840.
    queue_start_epoch: the queue starts filling at this epoch (solo-learn's `epoch_queue_starts`,
      the paper's `epoch_queue_starts`), and its scores join the Sinkhorn once it is full (the
      paper's `use_the_queue`: its last row is no longer zero). solo-learn uses a part-filled,
      zero-padded queue from that epoch on.
    global_batch: images per step over all devices (config.batch_size).
    proj_dim: the projection's width D (the queue's rows).
    steps_per_epoch: to turn queue_start_epoch into steps.
    num_views, num_large_views: the crops; multi-crop's large crops lead (views.py).
    axis_name: the data axis. Sinkhorn's sums run over the global batch (`losses.sinkhorn`); the
      queue holds every device's rows in global-batch order (`gather_rows` after the loss), the
      same on every device, and joins each sum once.

  The model needs prototypes (config.model.prototypes: `models.Prototypes` on the head's output,
  scores = unit(z) @ C); `project_params` puts their columns back on the unit sphere after every
  update. The queue stores unit projections and is scored with the current prototypes (the
  paper's `queue @ prototypes.weight.t()`): the method state keeps a copy of the prototypes as
  they are after the update, `queue_kernel`, which is what the next step's forward pass uses.
  Freezing the prototypes for the first epochs is the optimiser's (config.freeze_prototypes_epochs,
  `optim.frozen_until`).

  Method state (queue_size > 0): queue [L, Q, D] (L large crops; the parameters' dtype), queue_ptr, queue_filled
  int32 (rows filled, up to Q), queue_kernel [D, K]. Metric `queue_used` (0 or 1).
  """
  check_positive("swav temperature", temperature, "SwAV: 0.1.")
  num_large = num_views if num_large_views is None else num_large_views
  if num_large < 2:
    raise ValueError(f"swav needs >= 2 large crops (their codes are swapped); the views have {num_large}: set "
                     "config.augment.views to two large crops first, then any small ones (image_size).")
  if not isinstance(queue_size, int) or queue_size < 0 or queue_size % global_batch:
    raise ValueError(
        f"swav queue (config.swav.queue_size = {queue_size!r}) must be 0 (none) or a multiple of the global batch "
        f"(config.batch_size = {global_batch}). Sizes that work: "
        f"{queue_sizes_that_work(global_batch, max(queue_size if isinstance(queue_size, int) else 0, global_batch))}.")
  start_step = int(round(queue_start_epoch * steps_per_epoch))
  sinkhorn = dict(temperature=temperature, iterations=iterations, epsilon=epsilon, axis_name=axis_name)

  def init_state(params, batch_stats, key):
    del batch_stats, key
    if not queue_size:
      return {}
    zero = jnp.zeros((), jnp.int32)
    kernel = jnp.asarray(params[PROTOTYPES]["kernel"])  # the queue in the parameters' dtype
    return {QUEUE: jnp.zeros((num_large, queue_size, proj_dim), kernel.dtype), QUEUE_PTR: zero, QUEUE_FILLED: zero,
            QUEUE_KERNEL: kernel}

  def loss(online, target, state, labels, step):
    del target, labels, step
    scores = online["prototypes"]
    high, low = scores[:num_large], scores[num_large:]
    value = losses.swav_loss(high, low, **sinkhorn)
    if not queue_size:
      return value, {}
    kernel = jax.lax.stop_gradient(state[QUEUE_KERNEL])
    queued = [state[QUEUE][i] @ kernel for i in range(num_large)]
    used = state[QUEUE_FILLED] >= queue_size
    value = jnp.where(used, losses.swav_loss(high, low, queue=queued, **sinkhorn), value)
    return value, {"queue_used": used.astype(jnp.float32)}

  def update(state, params, target_batch_stats, target, online, labels, step):
    del target_batch_stats, target, labels
    if not queue_size:
      return state
    rows = jnp.stack([gather_rows(unit_rows(z), axis_name) for z in online["projection"][:num_large]])
    rows = rows.astype(state[QUEUE].dtype)
    ptr, filled = state[QUEUE_PTR], state[QUEUE_FILLED]
    zero = jnp.zeros((), ptr.dtype)
    filling = step >= start_step
    queue = jnp.where(filling, jax.lax.dynamic_update_slice(state[QUEUE], rows, (zero, ptr, zero)), state[QUEUE])
    return {QUEUE: queue, QUEUE_PTR: jnp.where(filling, (ptr + global_batch) % queue_size, ptr),
            QUEUE_FILLED: jnp.where(filling, jnp.minimum(filled + global_batch, queue_size), filled),
            QUEUE_KERNEL: params[PROTOTYPES]["kernel"]}

  return Method(name="swav", num_views=num_views, loss=loss, init_state=init_state, update=update, per_view_bn=True,
                num_large_views=num_large_views, project_params=normalize_prototypes)
