"""MoCo v2 (Chen et al. 2020) and MoCo v3 (Chen, Xie, He 2021): a momentum encoder makes the keys.

MoCo v2 scores each query against its own key and a queue of keys from earlier steps;
MoCo v3 against the keys of the whole global batch and predicts them with an MLP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_positive, gather_rows, momentum_target

QUEUE, QUEUE_PTR = "queue", "queue_ptr"


def queue_sizes_that_work(global_batch: int, near: int) -> list[int]:
  """Multiples of the global batch near `near` (for the error message)."""
  k = max(1, round(near / global_batch))
  return sorted({global_batch * m for m in (max(1, k - 1), k, k + 1)})


def make_v2(*, temperature: float, queue_size: int, global_batch: int, proj_dim: int, total_steps: int,
            base_momentum: float, final_momentum: float, symmetric: bool = True,
            chunk_size: int | None = None, axis_name: str | None = None) -> Method:
  """MoCo v2: InfoNCE of each query against its key and a queue of `queue_size` earlier keys.

  Args:
    temperature: softmax temperature (MoCo v2: 0.2).
    queue_size: K keys per queue; a multiple of `global_batch`, so the global batch's keys
      always fill one contiguous block.
    global_batch: images per step over all devices (config.batch_size).
    proj_dim: the projection's width (the queue's D).
    total_steps: the run's length, for the momentum schedule.
    base_momentum, final_momentum: the target's EMA momentum, cosine from base to final
      (equal: constant, MoCo v2's 0.999).
    symmetric: solo-learn's MoCo v2+: both views are queries, one queue per view, the
      loss is the mean of the two directions. False: MoCo v2 as published (view 0 the
      query, view 1 the key, one queue).
    chunk_size: tile the K negatives (same values and gradients).
    axis_name: the data axis: keys of every device are enqueued, in global-batch order,
      after the loss, so a key is never its own negative and the queue stays identical
      on every device (the queue is never gathered: it is the same everywhere).

  Method state: target (EMA encoder + head), queue [Q, K, D] float32 unit rows (Q = 2
  symmetric, 1 otherwise), queue_ptr int32: where the next keys go.
  """
  check_positive("temperature", temperature, "MoCo v2: 0.2.")
  target_init, target_update = momentum_target(base_momentum, final_momentum, total_steps)
  if not isinstance(queue_size, int) or queue_size <= 0 or queue_size % global_batch:
    raise ValueError(
        f"moco queue_size must be a positive multiple of the global batch size {global_batch} (each step enqueues "
        f"the whole global batch as one block); got {queue_size!r}. Sizes that work near it: "
        f"{queue_sizes_that_work(global_batch, queue_size if isinstance(queue_size, int) and queue_size > 0 else 65536)}.")
  num_queues = 2 if symmetric else 1

  def init_state(params, batch_stats, key):
    queue = jax.random.normal(key, (num_queues, queue_size, proj_dim), jnp.float32)
    queue = queue / jnp.linalg.norm(queue, axis=-1, keepdims=True)
    return {**target_init(params, batch_stats, key), QUEUE: queue, QUEUE_PTR: jnp.zeros((), jnp.int32)}

  def loss(online, target, state, labels, step):
    del labels, step
    q, k = online["projection"], target["projection"]
    queue = jax.lax.stop_gradient(state[QUEUE])
    # Query of view v, key of the other view; negatives: the queue of that other view's keys.
    pairs = [(0, 1), (1, 0)] if symmetric else [(0, 1)]
    values = [losses.info_nce(q[a], k[b], temperature=temperature, negatives=queue[b if symmetric else 0],
                              axis_name=axis_name, chunk_size=chunk_size) for a, b in pairs]
    return sum(values) / len(values), {}

  def update(state, params, target_batch_stats, target, online, labels, step):
    keys = [target["projection"][v] for v in ((0, 1) if symmetric else (1,))]
    keys = [gather_rows(k, axis_name) for k in keys]  # every device's keys, in global-batch order
    keys = jnp.stack([k / jnp.maximum(jnp.linalg.norm(k, axis=-1, keepdims=True), 1e-12) for k in keys])
    ptr = state[QUEUE_PTR]
    zero = jnp.zeros((), ptr.dtype)
    queue = jax.lax.dynamic_update_slice(state[QUEUE], keys.astype(jnp.float32), (zero, ptr, zero))
    return {**target_update(state, params, target_batch_stats, target, online, labels, step), QUEUE: queue,
            QUEUE_PTR: (ptr + global_batch) % queue_size}

  return Method(name="moco_v2", num_views=2, loss=loss, init_state=init_state, update=update, target=True,
                per_view_bn=True)


def make_v3(*, temperature: float, total_steps: int, base_momentum: float, final_momentum: float,
            predictor_layers: int = 2, chunk_size: int | None = None, axis_name: str | None = None) -> Method:
  """MoCo v3: symmetric InfoNCE of predicted queries against the global batch's momentum keys, x 2 tau.

  loss = ctr(q1, k2) + ctr(q2, k1), ctr = InfoNCE(q, k, temperature) * 2 * temperature (the
  paper's Algorithm 1); keys from every device are negatives (`info_nce` with axis_name).
  The momentum follows the cosine schedule from base to final.
  """
  check_positive("temperature", temperature, "MoCo v3: 0.2 (solo-learn CIFAR), 1.0 (ResNet-50 ImageNet).")
  init_state, update = momentum_target(base_momentum, final_momentum, total_steps)

  def loss(online, target, state, labels, step):
    del state, labels, step
    q, k = online["prediction"], target["projection"]
    ctr = lambda a, b: losses.info_nce(a, b, temperature=temperature, axis_name=axis_name,
                                       chunk_size=chunk_size) * (2.0 * temperature)
    return ctr(q[0], k[1]) + ctr(q[1], k[0]), {}

  return Method(name="moco_v3", num_views=2, loss=loss, init_state=init_state, update=update, target=True,
                per_view_bn=True, predictor_layers=predictor_layers)
