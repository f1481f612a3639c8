"""What the methods share: the `Method` record, momentum targets and their schedule.

A method is a handful of pure functions that the one train step (contrastive_jax/train.py)
calls in a fixed order:

  1. `num_views` augmented views of each image (settings per view: config.augment.views;
     multi-crop: the first `num_large_views` are the large crops);
  2. if `target`: the momentum network (encoder + head, EMA parameters in the method
     state) runs on every large view in train mode, synchronised BN, no gradient;
  3. the online model runs on every view, and `loss(online, target, state, labels, step)`
     gives the local loss (its pmean over the data axis is the global loss) and metrics;
  4. after the optimiser update, `project_params(params)` if the method constrains its parameters
     (SwAV's unit prototypes), then `update(state, params, target_stats, target, online, labels,
     step)` gives the new method state (EMA parameters, a queue), identical on every device.

Outputs are dicts of per-view tuples: `online["projection"][v]` is view v's [b, D]
projection on this device; `target` likewise (large views only), or None for methods
without a target.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any
Outputs = dict[str, tuple[Array, ...]]  # name -> one [b, ...] array per view
MethodState = dict[str, Any]

# The method state's EMA copy of encoder + head: {"params": ..., "batch_stats": ...}.
TARGET = "target"
TARGET_MODULES = ("encoder", "head", "prototypes")  # those the model has


@dataclasses.dataclass(frozen=True)
class Method:
  """One self-supervised method as pure functions (see the module docstring for the order).

  Attributes:
    name: the `config.method` string.
    num_views: augmented views per image.
    loss: `(online, target, state, labels, step) -> (loss, metrics)`: the local-mean loss
      (a float scalar; pmean over the data axis is the global loss) and scalar metrics that
      are already global means. labels: int32 [b], -1 where unknown.
    init_state: `(params, batch_stats, key) -> state` for the method's state without
      gradients ({} when it has none).
    update: `(state, params, target_batch_stats, target, online, labels, step) -> state` after
      the optimiser update, `online` being this step's online outputs (no gradient) and labels
      int32 [b]; None: the state never changes.
    target: whether a momentum target (state[TARGET]) runs on the views.
    per_view_bn: the networks see each view as its own batch (BN statistics per view, as
      solo-learn's MoCo and BYOL); False: all views as one batch (SimCLR, SupCon).
    predictor_layers: Dense layers of the online predictor (0: none).
    num_large_views: multi-crop's large crops, the leading views (contrastive_jax/views.py);
      the target and the online probe see only these. None: every view is large.
    project_params: `params -> params`, applied to the initial parameters and after every
      optimiser update (SwAV: the prototypes back onto the unit sphere); None: no constraint.
  """
  name: str
  num_views: int
  loss: Callable[..., tuple[Array, dict[str, Array]]]
  init_state: Callable[[PyTree, PyTree, Array], MethodState] = lambda params, batch_stats, key: {}
  update: Callable[..., MethodState] | None = None
  target: bool = False
  per_view_bn: bool = False
  predictor_layers: int = 0
  num_large_views: int | None = None
  project_params: Callable[[PyTree], PyTree] | None = None

  def __post_init__(self):
    if self.num_large_views is not None and not 1 <= self.num_large_views <= self.num_views:
      raise ValueError(f"{self.name}: num_large_views must be in 1..num_views={self.num_views} (the leading, "
                       f"large crops); got {self.num_large_views}.")

  @property
  def num_large(self) -> int:
    """How many leading views are large: num_large_views, or every view when it is None."""
    return self.num_views if self.num_large_views is None else self.num_large_views


def pmean(x: Any, axis_name: str | None) -> Any:
  return jax.lax.pmean(x, axis_name) if axis_name else x


def unit_rows(x: Array) -> Array:
  """Each row of x scaled to unit L2 norm, in float32 (rows of norm 0 stay 0)."""
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def gather_rows(x: Array, axis_name: str | None) -> Array:
  """[b, ...] per device -> [b * devices, ...] in global-batch order, the same array on every device.

  A psum of zero-padded blocks rather than an all_gather: shard_map then knows the result is
  replicated (state such as MoCo's queue must be), and adding zeros is exact.
  """
  if not axis_name:
    return x
  b = x.shape[0]
  full = jnp.zeros((b * jax.lax.axis_size(axis_name), *x.shape[1:]), x.dtype)
  row = jax.lax.axis_index(axis_name).astype(jnp.int32) * b
  start = (row,) + (jnp.zeros((), jnp.int32),) * (x.ndim - 1)
  return jax.lax.psum(jax.lax.dynamic_update_slice(full, x, start), axis_name)


def target_from_online(params: PyTree, batch_stats: PyTree) -> dict[str, PyTree]:
  """The initial momentum target: a copy of the online encoder + head (no predictor, no probe)."""
  pick = lambda tree: {k: tree[k] for k in TARGET_MODULES if k in tree}
  return {"params": jax.tree.map(jnp.array, pick(params)), "batch_stats": jax.tree.map(jnp.array, pick(batch_stats))}


def ema(target: PyTree, online: PyTree, momentum: Array) -> PyTree:
  """target <- momentum * target + (1 - momentum) * online, leaf by leaf (online's keys of target only)."""
  return jax.tree.map(lambda t, o: (momentum * t + (1.0 - momentum) * o).astype(t.dtype), target,
                      {k: online[k] for k in target})


def cosine_momentum(base: float, final: float, step: Array, total_steps: int) -> Array:
  """BYOL's schedule: final - (final - base) * (cos(pi * step / total) + 1) / 2.

  base at step 0, final at step total_steps (BYOL eq. after (2); solo-learn
  `solo/utils/momentum.py`, stepped once per training step).
  """
  frac = jnp.minimum(step.astype(jnp.float32) / max(total_steps, 1), 1.0)
  return final - (final - base) * (jnp.cos(math.pi * frac) + 1.0) / 2.0


def updated_target(state: MethodState, params: PyTree, target_batch_stats: PyTree, momentum: Array) -> dict:
  """The target after a step: EMA parameters; BN statistics from the target's own forward pass."""
  return {"params": ema(state[TARGET]["params"], params, momentum), "batch_stats": target_batch_stats}


def momentum_target(base_momentum: float, final_momentum: float, total_steps: int
                    ) -> tuple[Callable[..., MethodState], Callable[..., MethodState]]:
  """`(init_state, update)` of a momentum target on the cosine schedule (BYOL, MoCo v2 and v3).

  init_state copies the online encoder + head into state[TARGET]; update applies the EMA
  with momentum `cosine_momentum(base, final, step, total_steps)` and keeps any other
  entries of the state, which a method with more state (MoCo v2's queue) then replaces.
  """
  check_momentum("base_momentum", base_momentum)
  check_momentum("final_momentum", final_momentum)

  def init_state(params, batch_stats, key):
    del key
    return {TARGET: target_from_online(params, batch_stats)}

  def update(state, params, target_batch_stats, target, online, labels, step):
    del target, online, labels
    momentum = cosine_momentum(base_momentum, final_momentum, step, total_steps)
    return {**state, TARGET: updated_target(state, params, target_batch_stats, momentum)}

  return init_state, update


def check_positive(name: str, value: Any, hint: str) -> None:
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
    raise ValueError(f"{name} must be a number > 0; got {value!r}. {hint}")


def check_momentum(name: str, value: Any) -> None:
  if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
    raise ValueError(f"{name} must be in [0, 1]; got {value!r} (BYOL: 0.996 -> 1, MoCo v2: 0.999).")
