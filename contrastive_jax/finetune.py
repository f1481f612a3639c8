"""Semi-supervised fine-tuning of the whole network (SimCLR v2) on a class-balanced label fraction.

The recipe and where each setting comes from (google-research/simclr, README "Semi-supervised
learning and fine-tuning the whole network", and the SimCLR v2 paper, Chen et al. 2020b,
"Big Self-Supervised Models are Strong Semi-Supervised Learners", Sec. 2 and App. B):

* optimiser: LARS (`--optimizer=lars`), momentum 0.9, trust coefficient 0.001, weight decay 0
  (`--weight_decay=0`); BN parameters, biases and the new classifier take plain momentum steps,
  as pretraining's probe does (the repo's LARS excludes 'batch_normalization', 'bias' and
  'head_supervised');
* learning rate 0.005 x sqrt(B) (`--learning_rate=0.005 --learning_rate_scaling=sqrt`), no warmup
  (`--warmup_epochs=0`), cosine decay to 0 over the run; the linear probe's rate is not used;
* batch 1024 (`--train_batch_size=1024`); 60 epochs for 1% of the labels (the README command) and
  30 for 10% (the paper);
* the classifier is zero-initialised (`--zero_init_logits_layer=True`) and reads h, or, with
  SimCLR v2's 3-layer head, the first head layer's output (`--ft_proj_selector=1
  --num_proj_layers=3`); `config.eval.finetune_from_head_layer`;
* augmentation: random crop + flip only (the repo's fine-tuning preprocessing has no colour
  distortion: `color_jitter_strength = 0` unless pretraining);
* BN: batch statistics while training, updated with the pretraining decay (0.9), the running
  statistics for evaluation (`--global_bn=True`).

A guard stops a run that diverges (non-finite loss) or collapses (training accuracy at chance
after the first epoch) with `FineTuneDivergedError`, naming the learning rate, instead of reporting
a number. Fine-tuning runs on one device (`jax.jit`); evaluation scores it on all of them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from contrastive_jax import augment as augment_lib
from contrastive_jax import optim
from contrastive_jax import sources

OPTIMIZERS = ("lars", "sgd_nesterov")


class FineTuneDivergedError(ValueError):
  """Fine-tuning diverged or collapsed to chance; no accuracy is reported for it."""


def label_fraction_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
  """Indices of a class-balanced `fraction` of the examples (sorted).

  Each class contributes round(fraction x class size) examples, at least 1 (so a fraction too small
  for a class still gives it one example; `subset_counts` reports what was taken), drawn without
  replacement with `seed`, as SimCLR's 1% / 10% subsets.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"config.eval.finetune_fractions: a label fraction must be in (0, 1], got {fraction}.")
  labels = np.asarray(labels)
  if labels.size and labels.min() < 0:
    raise ValueError("config.data.train_split: the split has no labels (label -1); fine-tuning needs a labelled "
                     "split.")
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    take = max(1, int(round(fraction * len(members))))
    chosen.append(rng.choice(members, size=take, replace=False))
  return np.sort(np.concatenate(chosen))


def subset_counts(labels: np.ndarray, fraction: float) -> dict[str, Any]:
  """What `label_fraction_indices` takes per class, and which classes got only the minimum of one."""
  classes, sizes = np.unique(np.asarray(labels), return_counts=True)
  wanted = {int(c): fraction * int(n) for c, n in zip(classes, sizes)}
  return {"per_class": {c: max(1, int(round(w))) for c, w in wanted.items()},
          "raised_to_one": sorted(c for c, w in wanted.items() if round(w) < 1)}


class FineTuneModel(nn.Module):
  """A ContrastiveModel (`backbone`) with a new, zero-initialised linear classifier.

  With `from_head_layer` the classifier reads the first projection-head layer's output, as SimCLR v2
  fine-tunes; otherwise h. Params: `backbone` (the pretrained `encoder` and `head` drop in) and
  `classifier`. `__call__(images [B, H, W, 3] in [0, 1]) -> logits [B, num_classes]`.
  """
  backbone: nn.Module  # a ContrastiveModel without probe, axis_name None
  num_classes: int
  from_head_layer: bool = False

  @nn.compact
  def __call__(self, images, train: bool = False):
    feats = self.backbone.finetune_features(images, train=train, from_head_layer=self.from_head_layer)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="classifier")(feats)


@dataclasses.dataclass(frozen=True)
class FineTuneSettings:
  """One fine-tuning run's settings (`from_config` reads them from `config.eval.finetune_*`)."""
  epochs: int
  batch_size: int
  learning_rate: float  # base rate, before `lr_scaling`
  lr_scaling: str = "sqrt"
  optimizer: str = "lars"
  momentum: float = 0.9
  weight_decay: float = 0.0
  warmup_epochs: float = 0.0
  trust_coefficient: float = 0.001
  from_head_layer: bool = False

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, fraction: float) -> "FineTuneSettings":
    ev = config.eval
    epochs = int(ev.finetune_epochs) or (60 if fraction <= 0.01 else 30)  # 0: SimCLR v2's per fraction
    if ev.finetune_optimizer not in OPTIMIZERS:
      raise ValueError(f"config.eval.finetune_optimizer must be one of {OPTIMIZERS}, got {ev.finetune_optimizer!r}.")
    if epochs < 1 or ev.finetune_batch_size < 1:
      raise ValueError(f"config.eval.finetune_epochs and finetune_batch_size must be positive, got "
                       f"{ev.finetune_epochs} and {ev.finetune_batch_size}.")
    return cls(epochs=epochs, batch_size=int(ev.finetune_batch_size), learning_rate=float(ev.finetune_learning_rate),
               lr_scaling=ev.finetune_lr_scaling, optimizer=ev.finetune_optimizer,
               momentum=float(ev.finetune_momentum), weight_decay=float(ev.finetune_weight_decay),
               warmup_epochs=float(ev.finetune_warmup_epochs), trust_coefficient=float(config.trust_coefficient),
               from_head_layer=bool(ev.finetune_from_head_layer))

  def peak_learning_rate(self, batch_size: int) -> float:
    return optim.scale_learning_rate(self.learning_rate, batch_size, self.lr_scaling)

  def describe(self, batch_size: int) -> str:
    return (f"config.eval.finetune_learning_rate={self.learning_rate:g} ({self.lr_scaling} scaling at batch "
            f"{batch_size}: peak {self.peak_learning_rate(batch_size):g}, optimizer {self.optimizer})")


def make_optimizer(settings: FineTuneSettings, batch_size: int, total_steps: int) -> optax.GradientTransformation:
  """The fine-tuning optimiser: warmup (default none) + cosine decay to 0 over `total_steps`."""
  warmup = min(int(round(settings.warmup_epochs * total_steps / settings.epochs)), total_steps - 1)
  peak = settings.peak_learning_rate(batch_size)
  # The same values; optax warns about a zero-length warmup.
  schedule = (optim.warmup_cosine_schedule(peak, total_steps, warmup) if warmup
              else optax.cosine_decay_schedule(peak, total_steps))
  exclude = optim.exclude_by_name("classifier")
  if settings.optimizer == "lars":
    return optim.lars(schedule, weight_decay=settings.weight_decay, momentum=settings.momentum,
                      trust_coefficient=settings.trust_coefficient, exclude=exclude)
  return optim.sgd_nesterov(schedule, momentum=settings.momentum, weight_decay=settings.weight_decay, exclude=exclude)


def chance_bound(labels: np.ndarray, num_seen: int) -> float:
  """Training accuracy at or below this is chance: the majority-class share plus two standard errors."""
  p = float(np.max(np.bincount(np.asarray(labels))) / len(labels))
  return p + 2.0 * math.sqrt(p * (1.0 - p) / max(num_seen, 1))


def fine_tune(model: nn.Module, variables: dict[str, Any], subset: sources.ArrayDataset,
              settings: FineTuneSettings, *, num_classes: int, seed: int = 0, name: str = "fine-tuning",
              verbose: bool = False) -> tuple[FineTuneModel, dict[str, Any], dict[str, Any]]:
  """Trains `model`'s encoder and head, from `variables`, with a new classifier on `subset`.

  Args:
    model: a ContrastiveModel (its probe, if any, is dropped).
    variables: {'params', 'batch_stats'} with 'encoder' and 'head' (pretrained, or random for the
      scratch baseline).
    subset: the labelled images uint8 [N, H, W, 3] and labels [N].
    settings: the recipe.
    name: what the guard's error and the progress lines call this run.
    verbose: print the loss and training accuracy of each epoch.
  Returns:
    (the FineTuneModel, its variables {'params', 'batch_stats'}, a history: per-epoch training loss
    and accuracy (augmented batches, train-mode BN), steps, batch size, seconds).
  Raises:
    FineTuneDivergedError: the loss became non-finite, or an epoch after the first ended with the
      training accuracy at chance (`chance_bound`).
  """
  ft = FineTuneModel(backbone=model.clone(axis_name=None, num_probe_classes=0), num_classes=num_classes,
                     from_head_layer=settings.from_head_layer)
  size = subset.images.shape[1]
  init = jax.jit(functools.partial(ft.init, train=False))(jax.random.key(seed), jnp.zeros((2, size, size, 3)))
  params = {**init["params"], "backbone": {k: variables["params"][k] for k in ("encoder", "head")}}
  stats = {"backbone": {k: variables["batch_stats"][k] for k in ("encoder", "head") if k in variables["batch_stats"]}}
  batch = min(settings.batch_size, len(subset))
  steps_per_epoch = max(len(subset) // batch, 1)
  total = settings.epochs * steps_per_epoch
  tx = make_optimizer(settings, batch, total)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, stats, opt_state, images, labels, key):
    keys = jax.random.split(key, images.shape[0])
    x = augment_lib.random_crop_and_flip(keys, images.astype(jnp.float32) / 255.0, size)

    def loss_fn(p):
      logits, new = ft.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, (new["batch_stats"], jnp.sum(jnp.argmax(logits, -1) == labels))
    (loss, (new_stats, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss, correct

  history: dict[str, Any] = {"train_loss": [], "train_accuracy": [], "steps": total, "batch_size": batch,
                             "peak_learning_rate": settings.peak_learning_rate(batch)}
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  t0 = time.time()
  for epoch in range(settings.epochs):
    perm = rng.permutation(len(subset))
    losses, correct = [], []
    for s in range(steps_per_epoch):
      b = np.sort(perm[s * batch:(s + 1) * batch])
      params, stats, opt_state, loss, right = step(params, stats, opt_state, subset.images[b], subset.labels[b],
                                                   jax.random.fold_in(key, epoch * steps_per_epoch + s))
      losses.append(loss)
      correct.append(right)
    mean_loss = float(np.mean(jax.device_get(losses)))
    seen = steps_per_epoch * batch
    accuracy = float(np.sum(jax.device_get(correct)) / seen)
    history["train_loss"].append(mean_loss)
    history["train_accuracy"].append(accuracy)
    if verbose:
      print(f"{name}: epoch {epoch + 1}/{settings.epochs} loss {mean_loss:.4f} train accuracy {accuracy:.3f} "
            f"({time.time() - t0:.0f} s)", flush=True)
    if not math.isfinite(mean_loss):
      raise FineTuneDivergedError(
          f"{name} diverged: the training loss became {mean_loss} in epoch {epoch + 1}. Lower "
          f"{settings.describe(batch)}.")
    if epoch >= 1 and accuracy <= chance_bound(subset.labels, seen):
      raise FineTuneDivergedError(
          f"{name} is at chance: training accuracy {accuracy:.3f} in epoch {epoch + 1} (chance is at most "
          f"{chance_bound(subset.labels, seen):.3f} for these labels), so it collapsed or is not learning. Check "
          f"{settings.describe(batch)}: a collapse needs a lower one.")
  history["seconds"] = time.time() - t0
  return ft, {"params": params, "batch_stats": stats}, history
