"""SimCLR pretraining: the train step, the training loop and the command line.

    python -m contrastive_jax.train --config experiments/cifar10_simclr.py --workdir DIR

The train step is one pure function of `(state, batch, key)`: on-device
augmentation of two views, encoder + projection head, NT-Xent with negatives
gathered from every device, the online linear probe, gradients, the LARS update
and the BatchNorm statistics. `make_train_step` builds the per-device function;
`distribute` runs it with `jax.shard_map` over the mesh's `data` axis, which
spans every device of every process (synchronised BN uses the same axis).

Per-image augmentation keys are `fold_in(fold_in(key, step), global_row)`, so a
step gives the same result on 1 device with batch 8b as on 8 devices with b each.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from contrastive_jax import augment as augment_lib
from contrastive_jax import data as data_lib
from contrastive_jax import losses
from contrastive_jax import optim
from contrastive_jax import parallel
from contrastive_jax.checkpoint import Checkpointer
from contrastive_jax.models import SimCLRModel

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (and is checkpointed)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def create_model(config: ml_collections.ConfigDict, num_classes: int,
                 axis_name: str | None = parallel.DATA_AXIS) -> SimCLRModel:
  m = config.model
  return SimCLRModel(
      depth=m.depth, width_multiplier=m.width_multiplier, cifar_stem=m.cifar_stem,
      head_layers=m.head_layers, proj_dim=m.proj_dim,
      num_probe_classes=num_classes if m.online_probe else 0, axis_name=axis_name,
      bn_momentum=m.bn_momentum, zero_init_residual=m.zero_init_residual,
      dtype=jnp.dtype(m.dtype), base_width=m.base_width, conv_impl=m.get("conv_impl", "xla"))


def augment_config(config: ml_collections.ConfigDict) -> augment_lib.SimCLRAugment:
  a = config.augment
  presets = {"cifar10": augment_lib.SimCLRAugment.cifar10, "imagenet": augment_lib.SimCLRAugment.imagenet}
  if a.preset not in presets:
    raise ValueError(f"unknown config.augment.preset {a.preset!r}; use one of {sorted(presets)}.")
  base = presets[a.preset]()
  return dataclasses.replace(base, image_size=a.image_size, jitter_strength=a.jitter_strength, blur_p=a.blur_p,
                             crop=not config.data.host_crop)


def total_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  if config.num_steps > 0:
    return int(config.num_steps)
  return int(config.num_epochs * data_lib.steps_per_epoch(num_examples, config.batch_size))


def create_optimizer(config: ml_collections.ConfigDict, num_examples: int
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """LARS with SimCLR's masks, warmup + cosine schedule; the probe is excluded like a 1-D parameter."""
  spe = data_lib.steps_per_epoch(num_examples, config.batch_size)
  peak = optim.scale_learning_rate(config.learning_rate, config.batch_size, config.lr_scaling)
  steps = total_steps(config, num_examples)
  warmup = int(round(config.warmup_epochs * spe))
  if warmup >= steps:  # a short run (num_steps override) keeps a proportionate warmup
    warmup = steps // 10
  schedule = optim.warmup_cosine_schedule(peak, steps, warmup)
  tx = optim.lars(schedule, weight_decay=config.weight_decay, momentum=config.momentum,
                  trust_coefficient=config.trust_coefficient,
                  exclude=optim.exclude_by_name("probe"))
  return tx, schedule


def init_key(seed: int) -> jax.Array:
  """The parameter-initialisation key.

  An `rbg` key: initialising a ResNet with threefry keys compiles one threefry
  per parameter, which takes tens of seconds on a CPU; rbg's compile is a
  fraction of that. Augmentation keys stay threefry (few, and portable).
  """
  return jax.random.key(seed, impl="rbg")


def init_state(model: SimCLRModel, tx: optax.GradientTransformation, key: jax.Array,
               image_shape: tuple[int, int, int]) -> TrainState:
  """Initialise parameters on one dummy image (BN without `axis_name` at init)."""
  variables = model.clone(axis_name=None).init(key, jnp.zeros((2, *image_shape), jnp.float32), train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
                    opt_state=tx.init(params))


def _views(batch: Batch, keys: jax.Array, aug: augment_lib.SimCLRAugment) -> tuple[jax.Array, jax.Array]:
  """Two augmented float views from a uint8 batch ([b,H,W,3], or [b,2,S,S,3] from host crops)."""
  images = batch["image"].astype(jnp.float32) / 255.0
  k1, k2 = keys[:, 0], keys[:, 1]
  if images.ndim == 5:
    return augment_lib.simclr_augment(k1, images[:, 0], aug), augment_lib.simclr_augment(k2, images[:, 1], aug)
  return augment_lib.simclr_augment(k1, images, aug), augment_lib.simclr_augment(k2, images, aug)


def make_train_step(model: SimCLRModel, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    aug: augment_lib.SimCLRAugment, *, temperature: float, chunk_size: int | None = None,
                    axis_name: str | None = parallel.DATA_AXIS
                    ) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
  """The per-device SimCLR step `(state, batch, key) -> (state, metrics)`.

  Inside `shard_map` (`axis_name` set) `batch` is this device's rows:
    image: uint8 [b, H, W, 3] or [b, 2, S, S, 3]; label: int32 [b] (-1: none);
    index: int32 [b], each row's position in the global batch.
  `key` is the run's base key (the same on every device). Metrics are global
  means, identical on every device.
  """
  probe = model.num_probe_classes > 0

  def mean(x):
    return jax.lax.pmean(x, axis_name) if axis_name else x

  def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    step_key = jax.random.fold_in(key, state.step)
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(step_key, i)))(batch["index"])
    v1, v2 = _views(batch, keys, aug)
    b = v1.shape[0]
    labels = jnp.concatenate([batch["label"], batch["label"]])

    def loss_fn(params):
      # Both views in one batch, so BN normalises over both, as SimCLR does.
      out, new_vars = model.apply({"params": params, "batch_stats": state.batch_stats},
                                  jnp.concatenate([v1, v2]), train=True, mutable=["batch_stats"])
      z = out[1]
      loss, m = losses.nt_xent_with_metrics(z[:b], z[b:], temperature=temperature, axis_name=axis_name,
                                            chunk_size=chunk_size)
      # The global loss: its gradient w.r.t. replicated params is already the global one.
      loss = mean(loss)
      total = loss
      if probe:
        logits = out[2].astype(jnp.float32)
        valid = labels >= 0
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
        n_valid = jnp.maximum(mean(jnp.sum(valid).astype(jnp.float32)), 1.0)
        probe_loss = mean(jnp.sum(jnp.where(valid, ce, 0.0))) / n_valid
        m["probe_loss"] = probe_loss
        m["probe_acc"] = mean(jnp.sum(jnp.where(valid, jnp.argmax(logits, -1) == labels, False))) / n_valid
        total = total + probe_loss
      m["loss"] = loss
      return total, (new_vars["batch_stats"], m)

    grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = jax.tree.map(lambda x: x.astype(jnp.float32), metrics)
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["param_norm"] = optax.tree.norm(params)
    new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
    return new_state, metrics

  return train_step


def distribute(step_fn: Callable, mesh: jax.sharding.Mesh, donate: bool = True) -> Callable:
  """jit(shard_map(step_fn)): state and key replicated, batch split over `data`."""
  sharded = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(parallel.DATA_AXIS), P()), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,) if donate else ())


# ----------------------------------------------------------------------------- the loop


class NonFiniteLossError(FloatingPointError):
  pass


class _Preemption:
  """Turns SIGTERM into a flag the loop checks after each step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler, no preemption saves
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class MetricWriter:
  """metrics.jsonl + TensorBoard events; only process 0 writes."""

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    if self.active:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
      # tensorboardX: TensorBoard event files without TensorBoard/TF summary ops
      # (tensorflow-cpu does not ship tensorboard).
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.active:
      return
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()

  def close(self) -> None:
    if self.active:
      self._jsonl.close()
      self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of WORKDIR/metrics.jsonl in the order written (a resumed run appends; steps may repeat)."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def load_train_data(config: ml_collections.ConfigDict) -> data_lib.Dataset:
  """The pretraining split: `config.data.train_split`, or STL-10's `unlabelled` for TFDS stl10."""
  split = config.data.train_split
  if not config.data.image_folder and split == "train":
    split = data_lib.PRETRAIN_SPLITS.get(config.data.dataset, "train")
  return data_lib.load_dataset(config.data.dataset, split, image_folder=config.data.image_folder or None,
                               data_dir=config.data.data_dir or None, host_crop=config.data.host_crop,
                               num_examples=config.data.num_train_examples)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Pretrain (resuming from `workdir` if it holds checkpoints); returns a summary.

  Raises NonFiniteLossError on a NaN/inf loss, without saving the bad state.
  """
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_data_mesh()
  parallel.check_batch_divisible(config.batch_size, mesh.size)
  dataset = load_train_data(config)
  num_classes = dataset.num_classes
  steps = total_steps(config, len(dataset))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2))

  model = create_model(config, num_classes)
  tx, schedule = create_optimizer(config, len(dataset))
  aug = augment_config(config)
  key = jax.random.key(config.seed)
  image_shape = (aug.image_size, aug.image_size, 3)
  replicated = parallel.replicated_sharding(mesh)
  state = jax.jit(functools.partial(init_state, model, tx, image_shape=image_shape),
                  out_shardings=replicated)(init_key(config.seed))
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
  start_step = 0
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    start_step = int(meta["data"]["next_step"])
    if jax.process_index() == 0:
      print(f"Resumed from {ckpt.directory} at step {start_step}.", flush=True)

  step_fn = distribute(make_train_step(model, tx, schedule, aug, temperature=config.temperature,
                                       chunk_size=config.loss_chunk_size or None), mesh)
  batches = data_lib.TrainIterator(dataset, global_batch_size=config.batch_size, seed=config.seed,
                                   start_step=start_step, rows=data_lib.process_slice(config.batch_size, mesh),
                                   prefetch=config.data.prefetch, crop_size=aug.image_size)
  writer = MetricWriter(workdir)
  meta = lambda: {"rng": np.asarray(jax.random.key_data(key)).tolist(), "data": batches.position,
                  "config_seed": config.seed}
  last = {"step": start_step}
  t0, pending, last_loss = time.time(), None, None
  images_since_log, last_log_time = 0, time.time()
  eta_clock = None  # (time, step) once the first step (and its compilation) is done

  def check(step_metrics, step):
    # The loss is computed before the update, so the updated parameters are checked too.
    loss, pnorm = (float(x) for x in jax.device_get((step_metrics["loss"], step_metrics["param_norm"])))
    if not (math.isfinite(loss) and math.isfinite(pnorm)):
      good = ckpt.latest_step()
      raise NonFiniteLossError(
          f"training is not finite at step {step} (loss {loss}, parameter norm {pnorm}). Stopping without "
          f"saving; the last good checkpoint is {'step ' + str(good) if good is not None else 'none'} in "
          f"{ckpt.directory}. Lower config.learning_rate or raise config.temperature, then rerun to resume.")
    return loss

  try:
    with _Preemption() as preempt:
      for step in range(start_step, steps):
        batch = parallel.host_local_to_global(next(batches), mesh)
        state, metrics = step_fn(state, batch, key)
        images_since_log += config.batch_size
        if eta_clock is None:
          jax.block_until_ready(metrics["loss"])
          eta_clock = (time.time(), step + 1)
        if pending is not None:  # check the previous step while this one runs
          last_loss = check(*pending)
        pending = (metrics, step + 1)
        done = step + 1
        stop = preempt.requested  # read once: the signal may arrive at any moment
        is_log = done % config.log_every_steps == 0 or done == steps
        is_save = done % config.checkpoint_every_steps == 0 or done == steps or stop
        if is_log or is_save:
          last_loss = check(metrics, done)
          pending = None
        if is_log:
          now = time.time()
          scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
          # Source images (pairs of views) per second since the last log; the first
          # interval includes compilation.
          ips = images_since_log / max(now - last_log_time, 1e-9)
          scalars["images_per_sec"] = ips
          writer.write(done, scalars)
          if jax.process_index() == 0:
            timed = done - eta_clock[1]
            eta = _eta((steps - done) * (now - eta_clock[0]) / timed) if timed > 0 else "?"
            probe = f" probe_acc {scalars['probe_acc']:.3f}" if "probe_acc" in scalars else ""
            print(f"step {done}/{steps} loss {scalars['loss']:.4f} acc {scalars['contrastive_acc']:.3f}{probe} "
                  f"lr {scalars['learning_rate']:.4f} {ips:.1f} img/s ETA {eta}", flush=True)
          images_since_log, last_log_time = 0, now
        if is_save:
          ckpt.save(done, state, meta())
          last["step"] = done
        if stop:
          if jax.process_index() == 0:
            print(f"SIGTERM: saved step {done} to {ckpt.directory}; exiting.", flush=True)
          break
      if pending is not None:
        last_loss = check(*pending)
  finally:
    batches.close()
    ckpt.close()
    writer.close()
  return {"last_step": last["step"], "total_steps": steps, "last_loss": last_loss,
          "preempted": last["step"] < steps, "train_seconds": time.time() - t0}


# ----------------------------------------------------------------------------- command line


def _train_summary(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  return {"summary": train_and_evaluate(config, workdir)}


if __name__ == "__main__":
  from contrastive_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(_train_summary, (data_lib.DatasetUnavailableError, ValueError, NonFiniteLossError), indent=None)
