"""Pretraining (SimCLR, SupCon, MoCo v2/v3, BYOL): the state, the train step, the loop and the command line.

    python -m contrastive_jax.train --config experiments/cifar10_simclr.py --workdir DIR

The train step is one pure function of `(state, batch, key)`: on-device
augmentation of the method's views (settings per view), the momentum target if
the method has one, encoder + heads, the method's loss (negatives gathered from
every device), the online linear probe, gradients, the optimiser update, the
BatchNorm statistics and the method's own state (contrastive_jax/methods/).
`make_train_step` builds the per-device function; `distribute` runs it with
`jax.shard_map` over the mesh's `data` axis, which spans every device of every
process (synchronised BN uses the same axis). `build_step(config, mesh, ...)` builds
both from a config: the model (models.create_model), the optimiser
(optim.create_optimizer), the method and the views, each once.

Per-image augmentation keys are `split(fold_in(fold_in(key, step), global_row), views)`,
so a step gives the same result on 1 device with batch 8b as on 8 devices with b each.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from contrastive_jax import augment as augment_lib
from contrastive_jax import data as data_lib
from contrastive_jax import methods as methods_lib
from contrastive_jax import monitor as monitor_lib
from contrastive_jax import models
from contrastive_jax import optim
from contrastive_jax import parallel
from contrastive_jax import resume as resume_lib
from contrastive_jax import sources
from contrastive_jax import views as views_lib
from contrastive_jax import writers
from contrastive_jax.checkpoint import Checkpointer
from contrastive_jax.models import ContrastiveModel

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (and is checkpointed).

  method_state: the method's state without gradients ({} for SimCLR and SupCon; the EMA
  target, and MoCo v2's queue and pointer); replicated like the parameters.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  method_state: Any = dataclasses.field(default_factory=dict)


def init_key(seed: int) -> jax.Array:
  """The parameter-initialisation key.

  An `rbg` key: initialising a ResNet with threefry keys compiles one threefry
  per parameter, which takes tens of seconds on a CPU; rbg's compile is a
  fraction of that. Augmentation keys stay threefry (few, and portable).
  """
  return jax.random.key(seed, impl="rbg")


def state_dtype(model: ContrastiveModel) -> jnp.dtype:
  """dtype of parameters, BN statistics, optimiser state and views: float32, or float64 for float64 compute."""
  return jnp.promote_types(model.dtype, jnp.float32)


def init_state(model: ContrastiveModel, tx: optax.GradientTransformation, key: jax.Array,
               image_shape: tuple[int, int, int], method: methods_lib.Method | None = None) -> TrainState:
  """Initialise parameters on one dummy image (BN without `axis_name` at init), and the method's state.

  Variables are drawn in float32 and cast to `state_dtype(model)`, so a
  float64 model starts from exactly the float32 model's parameters. The method
  state's random parts (MoCo's initial queue) use `fold_in(key, 1)`.
  """
  variables = model.clone(axis_name=None).init(key, jnp.zeros((2, *image_shape), jnp.float32), train=False)
  variables = jax.tree.map(lambda v: v.astype(state_dtype(model)), variables)
  params = variables["params"]
  if method is not None and method.project_params is not None:
    params = method.project_params(params)
  batch_stats = variables.get("batch_stats", {})  # {}: a model without BN (a ViT with BN-free heads)
  method_state = method.init_state(params, batch_stats, jax.random.fold_in(key, 1)) if method else {}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), method_state=method_state)


def view_keys(key: jax.Array, step: jax.Array, index: jax.Array, num_views: int) -> jax.Array:
  """Per-image, per-view augmentation keys [b, num_views] from (key, step, global row, view).

  `split` is prefix-stable, so views 0 and 1 get the same keys whatever num_views is:
  adding multi-crop's small crops leaves SimCLR's two views as they were.
  """
  step_key = jax.random.fold_in(key, step)
  return jax.vmap(lambda i: jax.random.split(jax.random.fold_in(step_key, i), num_views))(index)


def _forward(model: ContrastiveModel, variables: dict[str, Any], views: Sequence[jax.Array], per_view_bn: bool,
             method: Any = None) -> tuple[dict[str, tuple[jax.Array, ...]], Any]:
  """Train-mode outputs per view and the new batch_stats.

  All views of one size as one batch (BN over all of them; multi-crop: one batch per
  resolution group, in turn), or one view at a time, each updating the running averages in
  turn (as a PyTorch module called once per view).
  """
  apply = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"], method=method)
  groups = ([(v, v + 1) for v in range(len(views))] if per_view_bn else
            views_lib.resolution_groups([x.shape[1] for x in views]))
  outs, stats = {}, variables["batch_stats"]
  for start, stop in groups:
    out, new = apply({**variables, "batch_stats": stats}, jnp.concatenate(views[start:stop]))
    for k, v in out.items():
      outs.setdefault(k, []).extend(jnp.split(v, stop - start))
    stats = new.get("batch_stats", {})
  return {k: tuple(v) for k, v in outs.items()}, stats


def make_train_step(model: ContrastiveModel, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    augs: Sequence[augment_lib.ViewAugment], method: methods_lib.Method, *,
                    axis_name: str | None = parallel.DATA_AXIS,
                    ) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
  """The per-device step `(state, batch, key) -> (state, metrics)` of `method`.

  Args:
    augs: one ViewAugment per view (`views.view_configs(config)`).
    method: from `methods.create(config, ...)`, built with the same axis_name and views.
    axis_name: the mesh axis of `shard_map` (the model's BN axis too); None on one device.

  Inside `shard_map` (`axis_name` set) `batch` is this device's rows:
    image: uint8 [b, H, W, 3] or [b, V, S, S, 3]; label: int32 [b] (-1: none);
    index: int32 [b], each row's position in the global batch;
    preempt (optional): int32 [b], 1 on the rows of a process that got SIGTERM.
  `key` is the run's base key (the same on every device). Metrics are global
  means, identical on every device. `build_step(config, ...)` builds it from a config.
  """
  augs = tuple(augs)
  if len(augs) != method.num_views:
    raise ValueError(f"{method.name} needs {method.num_views} views; config.augment.views has {len(augs)} entries.")
  if method.predictor_layers and not model.has_predictor:
    raise ValueError(f"{method.name} needs a predictor; build the model with a predictor of "
                     f"{method.predictor_layers} layers (config.model.predictor.num_layers).")
  probe = model.num_probe_classes > 0
  dtype = state_dtype(model)
  num_large = views_lib.num_large_views(augs)
  if method.num_large != num_large:
    raise ValueError(f"{method.name} was built for {method.num_large} large crops; the views have {num_large} "
                     "(create the method and the views from the same config).")

  def mean(x):
    return jax.lax.pmean(x, axis_name) if axis_name else x

  def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    views = views_lib.augment_views(batch, view_keys(key, state.step, batch["index"], len(augs)), augs, dtype)
    large = views[:num_large]  # multi-crop: the target and the probe see the large crops only
    labels = jnp.concatenate([batch["label"]] * len(large))
    target = target_stats = None
    if method.target:
      t = state.method_state[methods_lib.TARGET]
      target, target_stats = _forward(model, dict(t), large, method.per_view_bn, method=ContrastiveModel.project)
      target = jax.lax.stop_gradient(target)

    def loss_fn(params):
      out, batch_stats = _forward(model, {"params": params, "batch_stats": state.batch_stats}, views,
                                  method.per_view_bn)
      loss, m = method.loss(out, target, state.method_state, batch["label"], state.step)
      # The global loss: its gradient w.r.t. replicated params is already the global one.
      loss = mean(loss)
      total = loss
      if probe:
        logits = jnp.concatenate(out["probe_logits"][:num_large]).astype(dtype)
        valid = labels >= 0
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
        n_valid = jnp.maximum(mean(jnp.sum(valid).astype(dtype)), 1.0)
        probe_loss = mean(jnp.sum(jnp.where(valid, ce, 0.0))) / n_valid
        m["probe_loss"] = probe_loss
        m["probe_acc"] = mean(jnp.sum(jnp.where(valid, jnp.argmax(logits, -1) == labels, False))) / n_valid
        total = total + probe_loss
      m["loss"] = loss
      return total, (batch_stats, m, jax.lax.stop_gradient(out))

    grads, (batch_stats, metrics, online) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if method.project_params is not None:
      params = method.project_params(params)
    method_state = state.method_state
    if method.update is not None:
      method_state = method.update(state.method_state, params, target_stats, target, online, batch["label"],
                                   state.step)
    metrics = jax.tree.map(lambda x: x.astype(dtype), metrics)
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["param_norm"] = optax.tree.norm(params)
    if "preempt" in batch:  # > 0 on every process when any process got SIGTERM (see train_and_evaluate)
      metrics["preempt"] = mean(jnp.max(batch["preempt"]).astype(jnp.float32))
    new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                           method_state=method_state)
    return new_state, metrics

  return train_step


def distribute(step_fn: Callable, mesh: jax.sharding.Mesh, donate: bool = True) -> Callable:
  """jit(shard_map(step_fn)): state and key replicated, batch split over `data`."""
  sharded = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(parallel.DATA_AXIS), P()), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=(0,) if donate else ())


@dataclasses.dataclass(frozen=True)
class Step:
  """What `build_step` builds from a config: the pieces, the jitted initialiser and the distributed step."""
  model: ContrastiveModel
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  method: methods_lib.Method
  augs: tuple[augment_lib.ViewAugment, ...]
  total_steps: int
  init: Callable[[jax.Array], TrainState]  # init key (`init_key(seed)`) -> replicated state
  step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]  # jit(shard_map(train_step))


def build_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, num_examples: int,
               num_classes: int, donate: bool = True) -> Step:
  """The train step of `config` on `mesh`: model, optimiser, method and views, each built once.

  `num_examples` sets the schedule's length (epochs), `num_classes` the online probe. The one
  builder that the trainer, the tools and the tests use.
  """
  augs = views_lib.view_configs(config)
  steps = optim.total_steps(config, num_examples)
  model = models.create_model(config, num_classes, axis_name=parallel.DATA_AXIS)
  tx, schedule = optim.create_optimizer(config, num_examples, frozen=models.frozen_params(config))
  method = methods_lib.create(config, total_steps=steps, axis_name=parallel.DATA_AXIS, views=augs,
                              steps_per_epoch=data_lib.steps_per_epoch(num_examples, config.batch_size))
  image_shape = (augs[0].image_size, augs[0].image_size, 3)
  init = jax.jit(functools.partial(init_state, model, tx, image_shape=image_shape, method=method),
                 out_shardings=parallel.replicated_sharding(mesh))
  step = distribute(make_train_step(model, tx, schedule, augs, method), mesh, donate=donate)
  return Step(model, tx, schedule, method, augs, steps, init, step)


def gather_on_device(step: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """`step` with its batch gathered on the device (`config.data.on_device`).

  The returned jitted function is `(state, batch, key, data) -> (state, metrics)`, where `data` is
  the split placed by `data.place_on_device` and `batch` holds only the host's `preempt` rows:
  global batch `state.step` is taken from `data` (`data.device_batch`), split over the mesh, and
  goes to `step` as TrainIterator's batch would. The state is donated.
  """
  def run(state: TrainState, batch: Batch, key: jax.Array, data: data_lib.DeviceData):
    rows = jax.lax.with_sharding_constraint(data_lib.device_batch(data, state.step), parallel.data_sharding(mesh))
    return step(state, {**rows, **batch}, key)

  return jax.jit(run, donate_argnums=(0,))


# ----------------------------------------------------------------------------- the loop


class NonFiniteLossError(FloatingPointError):
  pass


class _Preemption:
  """Turns SIGTERM into this process's flag; the loop makes the decision collective.

  The flag rides into the jitted step as `batch["preempt"]` and comes back as
  `metrics["preempt"]`, reduced over every device of every process in the
  all-reduce of the metrics that runs anyway. Every process reads it at the same
  steps, so every process saves the same step and stops (an Orbax save needs
  all of them), with no host-side collective stalling async dispatch, and in the
  compiled step no extra collective either (XLA combines it with the metrics'
  all-reduce: docs/performance.md). Orbax's `reached_preemption` is not used: it
  needs `jax.distributed`'s preemption service, whose own SIGTERM notifier takes
  the signal from this handler, and which single-process runs do not start.
  """

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


def _write_config(workdir: str, config_json: dict[str, Any]) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      json.dump(config_json, f, indent=2)


def _check_resume(ckpt: Checkpointer, workdir: str, config: ml_collections.ConfigDict,
                  config_json: dict[str, Any]) -> None:
  """Stop when the config differs from the recorded run's (resume.py); log an allowed schedule change."""
  recorded = ckpt.restore_config()
  path = os.path.join(workdir, "config.json")
  if recorded is None and os.path.exists(path):  # runs from before configs were checkpointed
    with open(path, encoding="utf-8") as f:
      recorded = json.load(f)
  if recorded is None:
    print(f"warning: {workdir} records no config; resuming without checking it.", flush=True)
    return
  changes = resume_lib.check_resume_config(recorded, config_json,
                                           allow_schedule_change=bool(config.get("allow_schedule_change", False)))
  if changes and jax.process_index() == 0:
    entry = {"step": ckpt.latest_step(), "time": time.time(),
             "changes": {k: {"from": old, "to": new} for k, (old, new) in changes.items()}}
    with open(os.path.join(workdir, "config_changes.jsonl"), "a", encoding="utf-8") as f:
      f.write(json.dumps(entry) + "\n")
    print(f"allow_schedule_change: continuing from step {entry['step']} with "
          + "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items()), flush=True)
    _write_config(workdir, config_json)


def _print_parameters(params: Any) -> None:
  """clu's table of parameter shapes where clu is installed (not on our GPU image), else the count."""
  try:
    from clu import parameter_overview  # pylint: disable=g-import-not-at-top
  except ImportError:
    print(f"{sum(x.size for x in jax.tree.leaves(params)):,} parameters", flush=True)
  else:
    print(parameter_overview.get_parameter_overview(params, include_stats=False, max_lines=80), flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Pretrain (resuming from `workdir` if it holds checkpoints); returns a summary.

  Raises NonFiniteLossError on a NaN/inf loss, without saving the bad state, and
  resume.ConfigMismatchError when `config` cannot resume the run recorded in `workdir`.
  """
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_data_mesh()
  parallel.check_batch_divisible(config.batch_size, mesh.size)
  config_json = json.loads(config.to_json_best_effort())
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
  batches = writer = None
  try:
    start_step = ckpt.latest_step() or 0
    if start_step:  # checked before the data and the compilation: fail fast
      _check_resume(ckpt, workdir, config, config_json)
    else:
      _write_config(workdir, config_json)
    dataset = sources.load_train_data(config)
    built = build_step(config, mesh, num_examples=len(dataset), num_classes=dataset.num_classes)
    steps, augs = built.total_steps, built.augs
    key = jax.random.key(config.seed)
    state = built.init(init_key(config.seed))
    if start_step:
      state, meta = ckpt.restore(state)
      start_step = int(meta["data"]["next_step"])
    if jax.process_index() == 0:
      _print_parameters(state.params)
      if start_step:
        print(f"Resumed from {ckpt.directory} at step {start_step}.", flush=True)

    rows = data_lib.process_slice(config.batch_size, mesh)
    step_fn, data_args = built.step, ()
    nbytes = (data_lib.device_data_bytes(dataset, config.batch_size, steps)
              if isinstance(dataset, sources.ArrayDataset) else 0)
    if data_lib.resolve_on_device(config.data.on_device, dataset, nbytes, mesh.devices.flat[0]):
      device_data = data_lib.place_on_device(dataset, mesh, global_batch_size=config.batch_size, seed=config.seed,
                                             total_steps=steps)
      step_fn, data_args = gather_on_device(built.step, mesh), (device_data,)
      batches = data_lib.StepCounter(device_data, num_examples=len(dataset), seed=config.seed, start_step=start_step,
                                     rows=rows)
    else:
      batches = data_lib.TrainIterator(dataset, global_batch_size=config.batch_size, seed=config.seed,
                                       start_step=start_step, rows=rows, prefetch=config.data.prefetch,
                                       crop_size=augs[0].image_size, crop_views=views_lib.host_crop_views(augs))
    monitor = None
    if config.eval.knn_every_epochs:
      monitor = monitor_lib.KnnMonitor(config, built.model, mesh, pretrain_split=dataset)
    writer = writers.create_writer(workdir)
    loop = _Loop(step_fn, data_args, batches, mesh, monitor, data_lib.steps_per_epoch(len(dataset), config.batch_size))
    return _train_loop(config, ckpt, writer, loop, state, key, start_step, steps, config_json)
  finally:
    if batches is not None:
      batches.close()
    ckpt.close()
    if writer is not None:
      writer.close()


@dataclasses.dataclass(frozen=True)
class _Loop:
  """What the loop runs: the step (`step(state, batch, key, *data_args)`), where its batches come
  from (TrainIterator, or StepCounter when the split is on the device), and the kNN monitor."""
  step: Callable
  data_args: tuple[Any, ...]
  batches: Any
  mesh: jax.sharding.Mesh
  monitor: Any
  steps_per_epoch: int


def _train_loop(config, ckpt, writer, loop: _Loop, state, key, start_step: int, steps: int,
                config_json: dict[str, Any]) -> dict[str, Any]:
  batches, mesh, step_fn = loop.batches, loop.mesh, loop.step
  meta = lambda: {"rng": np.asarray(jax.random.key_data(key)).tolist(), "data": batches.position,
                  "config_seed": config.seed}
  last_saved, last_loss, compile_seconds = start_step, None, 0.0
  t0 = time.time()

  def read(step_metrics, step) -> tuple[float, bool]:
    """A finished step's loss (checked finite) and the collective preemption decision."""
    # The loss is computed before the update, so the updated parameters are checked too.
    loss, pnorm, preempt = (float(x) for x in jax.device_get(
        (step_metrics["loss"], step_metrics["param_norm"], step_metrics["preempt"])))
    if not (math.isfinite(loss) and math.isfinite(pnorm)):
      good = ckpt.latest_step()
      raise NonFiniteLossError(
          f"training is not finite at step {step} (loss {loss}, parameter norm {pnorm}). Stopping without "
          f"saving; the last good checkpoint is {'step ' + str(good) if good is not None else 'none'} in "
          f"{ckpt.directory}. Lower config.learning_rate or raise config.temperature, then rerun to resume.")
    return loss, preempt > 0

  with _Preemption() as preempt:

    def next_batch():
      local = next(batches)
      local["preempt"] = np.full(batches.rows.size, preempt.requested, np.int32)
      return parallel.host_local_to_global(local, mesh)

    batch = next_batch() if start_step < steps else None
    if batch is not None:
      # Compile, then wait for every process: on a loaded host one process can finish compiling
      # long after another, past gloo's 30 s limit for the first collective.
      t_compile = time.time()
      step_fn = step_fn.lower(state, batch, key, *loop.data_args).compile()
      compile_seconds = time.time() - t_compile
      parallel.barrier(f"train step compiled, start {start_step}")
    progress = writers.Progress(writer, start_step=start_step, total_steps=steps)
    for step in range(start_step, steps):
      batch = batch if step == start_step else next_batch()
      state, metrics = step_fn(state, batch, key, *loop.data_args)
      done = step + 1
      # The host waits for the device only here: every process reads the same steps' metrics (log and
      # save steps), so all reach the same stop decision (NaN, SIGTERM) at the same step.
      is_log = done % config.log_every_steps == 0 or done == steps
      is_periodic_save = done % config.checkpoint_every_steps == 0 or done == steps
      stop = False
      if is_log or is_periodic_save:
        last_loss, stop = read(metrics, done)
      if is_log:
        progress(done)
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items() if k != "preempt"}
        writer.write_scalars(done, scalars)
        if jax.process_index() == 0:
          acc = f" acc {scalars['contrastive_acc']:.3f}" if "contrastive_acc" in scalars else ""
          probe = f" probe_acc {scalars['probe_acc']:.3f}" if "probe_acc" in scalars else ""
          print(f"step {done}/{steps} loss {scalars['loss']:.4f}{acc}{probe} "
                f"lr {scalars['learning_rate']:.4f}", flush=True)
      monitored = loop.monitor is not None and loop.monitor.due(done, loop.steps_per_epoch, steps)
      if monitored:
        result = loop.monitor(state)
        epoch = done / loop.steps_per_epoch
        writer.write_scalars(done, {"knn_top1": result.top1, "epoch": epoch, "knn_seconds": result.seconds})
        if jax.process_index() == 0:
          print(f"epoch {epoch:g}: kNN top-1 {result.top1:.4f} ({result.seconds:.1f} s)", flush=True)
      if is_periodic_save or stop:
        ckpt.save(done, state, meta(), config=config_json)
        last_saved = done
      if is_log or monitored:
        writer.flush()
      if stop:
        print(f"SIGTERM: saved step {done} to {ckpt.directory}; exiting (process {jax.process_index()}, "
              f"{'signalled here' if preempt.requested else 'signalled on another process'}).", flush=True)
        break
  return {"last_step": last_saved, "total_steps": steps, "last_loss": last_loss,
          "preempted": last_saved < steps, "train_seconds": time.time() - t0,
          "compile_seconds": compile_seconds}


# ----------------------------------------------------------------------------- command line


def _train_summary(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  return {"summary": train_and_evaluate(config, workdir)}


if __name__ == "__main__":
  from contrastive_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(_train_summary, (sources.DatasetUnavailableError, ValueError, NonFiniteLossError), indent=None)
