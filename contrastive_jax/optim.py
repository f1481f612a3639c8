"""Optimisers and learning-rate schedules for SimCLR pretraining and evaluation.

LARS as in SimCLR (google-research/simclr `lars_optimizer.py`): classic
(non-Nesterov) momentum, trust coefficient 0.001, and both weight decay and
the trust-ratio adaptation skip biases and BN parameters (every 1-D param
here) plus, optionally, further params such as the supervised probe head.
`lars(..., clip_lr=True)` is solo-learn's LARS with its clipped rate instead.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from contrastive_jax import data as data_lib

PyTree = Any
# exclude(path, leaf) -> True to keep `leaf` out of weight decay / trust ratio.
# `path` is the tuple of key names, e.g. ('probe', 'kernel').
ExcludeFn = Callable[[tuple[str, ...], jax.Array], bool]


def _key_name(entry: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def path_names(key_path: tuple[Any, ...]) -> tuple[str, ...]:
  """jax key path -> tuple of plain names, e.g. ('encoder', 'conv1', 'kernel')."""
  return tuple(_key_name(k) for k in key_path)


def is_1d_mask(params: PyTree) -> PyTree:
  """Bool tree: True for leaves with ndim <= 1 (biases, BN scale / offset)."""
  return jax.tree.map(lambda p: p.ndim <= 1, params)


def decay_mask(params: PyTree, exclude: ExcludeFn | None = None) -> PyTree:
  """Bool tree: True where weight decay (and LARS trust ratio) apply.

  That is every leaf with ndim > 1 for which `exclude(path, leaf)` is not
  True. Used as an optax mask (optax calls it on params and on updates, which
  share the tree structure and shapes).
  """
  def keep(key_path, p):
    if p.ndim <= 1:
      return False
    return not (exclude is not None and exclude(path_names(key_path), p))
  return jax.tree_util.tree_map_with_path(keep, params)


def exclude_by_name(*names: str) -> ExcludeFn:
  """exclude fn for params whose path contains any of `names`, e.g. 'probe'."""
  wanted = frozenset(names)
  return lambda path, _: bool(wanted.intersection(path))


def lars(
    learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: float,
    momentum: float = 0.9,
    trust_coefficient: float = 0.001,
    exclude: ExcludeFn | None = None,
    clip_lr: bool = False,
) -> optax.GradientTransformation:
  """LARS with SimCLR's exclusions, built on `optax.lars`; or solo-learn's with `clip_lr`.

  For params selected by `decay_mask(params, exclude)` (ndim > 1, not
  excluded), with u = g + weight_decay * w:
    v <- momentum * v + lr * trust_coefficient * ||w|| / ||u|| * u,
  and for all other params (1-D: biases, BN scale / offset; excluded):
    v <- momentum * v + lr * g;
  the update is -v. The trust ratio falls back to 1 when ||w|| or ||u|| is 0.
  So from zero momentum the first update is -lr * g (1-D) and
  -lr * eta * ||w|| / ||g + wd w|| * (g + wd w) (kernels).

  This is exactly optax.lars (installed optax 0.2.8: add_decayed_weights ->
  masked scale_by_trust_ratio with ratio eta * ||w|| / ||u|| on the *decayed*
  gradient -> scale_by_learning_rate -> trace(momentum, nesterov=False)),
  which matches SimCLR's LARS (lr applied before the momentum accumulation).
  optax.lars applies decay and trust ratio to every param by default; the
  masks here restrict them.

  Args:
    learning_rate: float or optax schedule (step -> lr).
    weight_decay: L2 coefficient added to the gradient (SimCLR: 1e-6 TF2, 1e-4 TF1).
    momentum: classic momentum (SimCLR 0.9).
    trust_coefficient: eta (SimCLR 0.001).
    exclude: optional `(path, leaf) -> bool`, True to also exclude a param
      from decay and trust ratio (e.g. `exclude_by_name('probe')`). None:
      only 1-D params are excluded.
    clip_lr: solo-learn's LARS (`solo/utils/lars.py`) with `clip_lr=True`, NVIDIA's
      LARC clipping: see `clipped_lars`. False: the chain above, unchanged.
  """
  mask = lambda params: decay_mask(params, exclude)
  if clip_lr:
    return clipped_lars(learning_rate, weight_decay=weight_decay, momentum=momentum,
                        trust_coefficient=trust_coefficient, mask=mask)
  return optax.lars(
      learning_rate, weight_decay=weight_decay, weight_decay_mask=mask,
      trust_coefficient=trust_coefficient, trust_ratio_mask=mask,
      momentum=momentum, nesterov=False)


# solo-learn's LARS eps (its default; no solo-learn yaml sets it).
SOLO_LARS_EPS = 1e-8


class ClippedLarsState(NamedTuple):
  count: jax.Array  # steps taken: the schedule's argument
  trace: PyTree     # momentum buffer v


def clipped_lars(
    learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: float,
    momentum: float,
    trust_coefficient: float,
    mask: Callable[[PyTree], PyTree],
    eps: float = SOLO_LARS_EPS,
) -> optax.GradientTransformation:
  """solo-learn's LARS (`solo/utils/lars.py`, PyTorch Lightning Bolts') with clip_lr=True.

  With lr_t the scheduled rate, for params where `mask(params)` is True and ||w|| > 0 and
  ||g|| > 0:
    local = eta * ||w|| / (||g|| + weight_decay * ||w|| + eps)
    d = min(local / lr_t, 1) * (g + weight_decay * w),
  and for every other param (1-D, excluded, or a zero norm) d = g: no weight decay either.
  Then, PyTorch's SGD momentum with the rate applied after the accumulation:
    v <- momentum * v + d,   update = -lr_t * v.
  So the fresh direction's per-layer rate is lr_t * min(local / lr_t, 1) = min(local, lr_t):
  the trust ratio clipped at 1 relative to the global rate, as NVIDIA's LARC (apex
  `parallel/LARC.py`, clip=True) computes it. The norms are of the raw gradient g, and the
  denominator adds weight_decay * ||w||, where SimCLR's (`lars` without clip_lr) uses
  ||g + weight_decay * w||; SimCLR's also applies lr before momentum. At lr_t = 0 the factor
  is 1 (solo-learn's min(inf, 1)).

  Only which params are adapted can differ: solo-learn (exclude_bias_n_norm) leaves out 1-D params
  only, so it would adapt a 0-D one, and it adapts its classifier's kernel (a group with weight
  decay 0); `mask` (`decay_mask`'s in `lars`) leaves out every ndim <= 1 param and what `exclude`
  names, e.g. the online probe in `create_optimizer`.
  """
  def init(params: PyTree) -> ClippedLarsState:
    return ClippedLarsState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

  def update(updates: PyTree, state: ClippedLarsState, params: PyTree | None = None
             ) -> tuple[PyTree, ClippedLarsState]:
    if params is None:
      raise ValueError("clipped_lars needs params: call update(grads, state, params).")
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

    def direction(g: jax.Array, w: jax.Array, adapt: bool) -> jax.Array:
      if not adapt:
        return g
      rate = jnp.asarray(lr, g.dtype)
      w_norm, g_norm = jnp.linalg.norm(w), jnp.linalg.norm(g)
      local = w_norm / (g_norm + w_norm * weight_decay + eps) * trust_coefficient  # solo-learn's order
      # min(local / lr, 1), written so that lr = 0 gives 1 without a 0 / 0.
      factor = jnp.where(local < rate, local / rate, jnp.ones_like(local))
      return jnp.where((w_norm > 0) & (g_norm > 0), (g + weight_decay * w) * factor, g)

    d = jax.tree.map(direction, updates, params, mask(params))
    trace = jax.tree.map(lambda v, x: momentum * v + x, state.trace, d)
    new_updates = jax.tree.map(lambda v: -jnp.asarray(lr, v.dtype) * v, trace)
    return new_updates, ClippedLarsState(optax.safe_int32_increment(state.count), trace)

  return optax.GradientTransformation(init, update)


class FrozenUntilState(NamedTuple):
  count: jax.Array  # updates seen, frozen ones included
  inner: Any        # the wrapped optimiser's state, untouched while frozen


def frozen_until(inner: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
  """`inner`, but for the first `steps` updates its parameters stay put and its state untouched.

  PyTorch's `p.grad = None` (SwAV's frozen prototypes, DINO's frozen last layer): no update, no
  weight decay, no momentum, no Adam step. From update `steps` on, `inner` runs as from a fresh
  start, so build it on a schedule shifted by `steps` (`lambda c: schedule(c + steps)`) to keep the
  global rate: its own step count, such as Adam's bias correction, then starts at 0, as PyTorch's
  per-parameter state does.
  """
  def init(params: PyTree) -> FrozenUntilState:
    return FrozenUntilState(jnp.zeros([], jnp.int32), inner.init(params))

  def update(updates: PyTree, state: FrozenUntilState, params: PyTree | None = None
             ) -> tuple[PyTree, FrozenUntilState]:
    new_updates, new_inner = inner.update(updates, state.inner, params)
    frozen = state.count < steps
    new_updates = jax.tree.map(lambda u: jnp.where(frozen, jnp.zeros_like(u), u), new_updates)
    new_inner = jax.tree.map(lambda old, new: jnp.where(frozen, old, new), state.inner, new_inner)
    return new_updates, FrozenUntilState(optax.safe_int32_increment(state.count), new_inner)

  return optax.GradientTransformation(init, update)


def clip_by_tensor_norm(max_norm: float, exclude: ExcludeFn | None = None) -> optax.GradientTransformation:
  """DINO's `clip_gradients`: each parameter tensor's gradient g becomes g * max_norm / (||g|| + 1e-6)
  where that factor is below 1; tensors that `exclude(path, leaf)` selects keep theirs."""
  def update(updates: PyTree, state: optax.EmptyState, params: PyTree | None = None):
    del params

    def clip(key_path, g):
      if exclude is not None and exclude(path_names(key_path), g):
        return g
      coef = max_norm / (jnp.linalg.norm(g) + 1e-6)
      return jnp.where(coef < 1, g * coef.astype(g.dtype), g)
    return jax.tree_util.tree_map_with_path(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scale_learning_rate(base_lr: float, batch_size: int, scaling: str = "linear") -> float:
  """SimCLR lr scaling: 'linear' base * B / 256, 'sqrt' base * sqrt(B)."""
  if scaling == "linear":
    return base_lr * batch_size / 256.0
  if scaling == "sqrt":
    return base_lr * math.sqrt(batch_size)
  raise ValueError(f"scaling must be 'linear' or 'sqrt', got {scaling!r}.")


def warmup_cosine_schedule(peak_lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
  """Linear warmup 0 -> peak_lr over warmup_steps, then cosine decay to 0 at total_steps.

  lr(warmup_steps) = peak_lr, lr(warmup + (total - warmup) / 2) = peak_lr / 2,
  lr(step >= total_steps) = 0.
  """
  if not 0 <= warmup_steps < total_steps:
    raise ValueError(
        f"need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, total_steps={total_steps}.")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_lr, warmup_steps=warmup_steps,
      decay_steps=total_steps, end_value=0.0)


def sgd_nesterov(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    exclude: ExcludeFn | None = None,
) -> optax.GradientTransformation:
  """SGD with Nesterov momentum (SimCLR linear eval / fine-tuning).

  Weight decay (gradient += wd * w, as TF's wd * l2_loss) applies to params
  selected by `decay_mask` (not 1-D, not excluded).
  """
  return optax.chain(
      optax.add_decayed_weights(weight_decay, mask=lambda p: decay_mask(p, exclude)),
      optax.sgd(learning_rate, momentum=momentum, nesterov=True))


def sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    *,
    nesterov: bool = False,
    exclude: ExcludeFn | None = None,
    decay_1d: bool = False,
) -> optax.GradientTransformation:
  """SGD with momentum and L2 weight decay (gradient += wd * w), as PyTorch's `torch.optim.SGD`.

  Weight decay applies to `decay_mask` params (not 1-D, not excluded) or, with decay_1d,
  to every param that `exclude` does not select, biases and BN included (PyTorch's
  default, which MoCo v2 and solo-learn's SGD recipes use).
  """
  return optax.chain(optax.add_decayed_weights(weight_decay, mask=_decay_mask_fn(exclude, decay_1d)),
                     optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov))


def _decay_mask_fn(exclude: ExcludeFn | None, decay_1d: bool) -> Callable[[PyTree], PyTree]:
  """`decay_mask`, or with decay_1d every param `exclude` does not select (PyTorch's default)."""
  if not decay_1d:
    return lambda params: decay_mask(params, exclude)
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda kp, p: not (exclude is not None and exclude(path_names(kp), p)), params)


def adamw(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: float = 1e-4,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    exclude: ExcludeFn | None = None,
    decay_1d: bool = False,
) -> optax.GradientTransformation:
  """optax.adamw whose decoupled weight decay skips 1-D (and excluded) params.

  With decay_1d it decays every param `exclude` does not select, as `torch.optim.AdamW(
  model.parameters())` does (MoCo v3's ViT recipe).
  """
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                     mask=_decay_mask_fn(exclude, decay_1d))


def total_steps(config: Any, num_examples: int) -> int:
  """The run's length: config.num_steps if > 0, else config.num_epochs epochs of `num_examples`."""
  if config.num_steps > 0:
    return int(config.num_steps)
  return int(config.num_epochs * data_lib.steps_per_epoch(num_examples, config.batch_size))


def create_optimizer(config: Any, num_examples: int, frozen: Callable[[PyTree], PyTree] | None = None
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """config.optimizer with a warmup + cosine schedule; the probe is excluded like a 1-D parameter.

  "lars" (default): LARS with SimCLR's masks; with config.lars_clip_lr, solo-learn's clipped LARS
  (`lars(..., clip_lr=True)`). "sgd": SGD with momentum whose weight decay covers every parameter
  but the probe, biases and BN included (PyTorch's SGD, MoCo v2).
  "adamw": AdamW decaying every parameter but the probe (MoCo v3's ViT recipe).
  With config.predictor_fixed_lr the predictor's parameters get the same optimiser at the constant
  peak rate (SimSiam). With config.freeze_prototypes_epochs > 0 the prototypes (SwAV's, DINO's last
  layer) stay frozen for that many epochs (`frozen_until`), then train at the global rate. With
  config.clip_grad > 0 each tensor's gradient is clipped to that norm first (DINO's
  `clip_gradients`; the probe is not clipped). `frozen`: params -> bools, the parameters the model keeps frozen
  (`models.frozen_params(config)`): no update, no weight decay, no optimiser state.
  """
  spe = data_lib.steps_per_epoch(num_examples, config.batch_size)
  peak = scale_learning_rate(config.learning_rate, config.batch_size, config.lr_scaling)
  steps = total_steps(config, num_examples)
  warmup = int(round(config.warmup_epochs * spe))
  if warmup >= steps:  # a short run (num_steps override) keeps a proportionate warmup
    warmup = steps // 10
  schedule = warmup_cosine_schedule(peak, steps, warmup)
  tx = _base_optimizer(config, schedule)
  if config.get("predictor_fixed_lr", False):
    # SimSiam's "fix lr" (section 4.2): the predictor keeps the peak rate, no warmup or decay
    # (solo-learn's static_lr); the same optimiser on its own state.
    labels = lambda p: {k: jax.tree.map(lambda _: "fixed" if k == "predictor" else "train", v) for k, v in p.items()}
    tx = optax.multi_transform({"train": tx, "fixed": _base_optimizer(config, optax.constant_schedule(peak))}, labels)
  freeze_steps = int(round(config.get("freeze_prototypes_epochs", 0) * spe))
  if freeze_steps > 0:
    delayed = frozen_until(_base_optimizer(config, lambda count: schedule(count + freeze_steps)), freeze_steps)
    labels = lambda p: {k: jax.tree.map(lambda _: "delayed" if k == "prototypes" else "train", v) for k, v in p.items()}
    tx = optax.multi_transform({"train": tx, "delayed": delayed}, labels)
  if config.get("clip_grad", 0) > 0:
    tx = optax.chain(clip_by_tensor_norm(config.clip_grad, exclude=exclude_by_name("probe")), tx)
  if frozen is not None:
    labels = lambda p: jax.tree.map(lambda f: "frozen" if f else "train", frozen(p))
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, schedule


def _base_optimizer(config: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
  """config.optimizer on `schedule` (create_optimizer's docstring)."""
  name = config.get("optimizer", "lars")
  if name == "lars":
    tx = lars(schedule, weight_decay=config.weight_decay, momentum=config.momentum,
              trust_coefficient=config.trust_coefficient, exclude=exclude_by_name("probe"),
              clip_lr=config.lars_clip_lr)
  elif name == "sgd":
    tx = sgd(schedule, momentum=config.momentum, weight_decay=config.weight_decay,
             exclude=exclude_by_name("probe"), decay_1d=True)
  elif name == "adamw":
    # MoCo v3's ViT recipe decays every parameter (torch.optim.AdamW(model.parameters())).
    tx = adamw(schedule, weight_decay=config.weight_decay, b1=config.get("adam_b1", 0.9),
               b2=config.get("adam_b2", 0.999), exclude=exclude_by_name("probe"), decay_1d=True)
  else:
    raise ValueError(f"unknown config.optimizer {name!r}; use 'lars', 'sgd' or 'adamw'.")
  return tx
