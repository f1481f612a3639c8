"""Evaluation of learned features: linear evaluation, kNN, semi-supervised fine-tuning.

    python -m contrastive_jax.evaluate --config <training config> --workdir DIR

restores the latest checkpoint in `DIR/checkpoints` and writes `DIR/eval.json`.

Protocols (see ../shared/REFERENCE.md):
* Linear evaluation (SimCLR): frozen encoder features h (BN in inference mode),
  a zero-initialised linear classifier trained with SGD + Nesterov momentum 0.9,
  cosine-decayed learning rate `base × B / 256`; training images get crop + flip
  only (`config.eval.linear_augment`; without it the classifier is trained on
  the features of the un-augmented images, much cheaper on a CPU). Top-1 and
  top-5 on the test split.
* kNN (Wu et al. 2018; the monitor of solo-learn and lightly): cosine similarity,
  the k = 200 nearest training features vote with weight exp(sim / T), T = 0.1.
* Semi-supervised fine-tuning (SimCLR v2; the recipe and its sources are in
  `contrastive_jax/finetune.py`): the whole network with a new classifier, on a
  class-balanced fraction of the labels (`config.eval.finetune_fractions`).
Baselines run through the same code: a randomly initialised encoder and raw
pixels for the linear and kNN protocols; for each label fraction, the same
fine-tuning from random init (`scratch_<f>_top1`) and a linear probe on frozen
pretrained features of the same labelled subset (`linear_<f>_top1`), so that
"pretraining helps" is a measured difference.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from contrastive_jax import augment as augment_lib
from contrastive_jax import data as data_lib
from contrastive_jax import finetune as finetune_lib
from contrastive_jax import models
from contrastive_jax import optim
from contrastive_jax import parallel
from contrastive_jax import sources
from contrastive_jax.checkpoint import Checkpointer

FeatureFn = Callable[[jax.Array], jax.Array]  # float images [b, H, W, 3] in [0, 1] -> features [b, F]


# ----------------------------------------------------------------------------- features


def feature_program(feature_fn: Callable[[Any, jax.Array], jax.Array], mesh: jax.sharding.Mesh, *,
                    preprocess: Callable | None = None) -> Callable:
  """jit(shard_map) of `(variables, images, index, key) -> features`, built once, called per batch.

  feature_fn: per-device `(variables, float images [b, H, W, 3] in [0, 1]) -> [b, F]`; `variables`
    is an argument (replicated), so new weights (the kNN monitor's) need no new compilation.
  preprocess: optional `(keys [b], images) -> images` on device (e.g. crop + flip), each image's
    key `fold_in(key, example index)`.
  """
  data = P(parallel.DATA_AXIS)

  def local(variables, images, index, key):
    x = images.astype(jnp.float32) / 255.0
    if preprocess is not None:
      keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
      x = preprocess(keys, x)
    return feature_fn(variables, x).astype(jnp.float32)

  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), data, data, P()), out_specs=data))


def run_feature_program(program: Callable, variables: Any, dataset: sources.ArrayDataset, *, batch_size: int,
                        mesh: jax.sharding.Mesh, key: jax.Array | None = None) -> np.ndarray:
  """`program`'s (`feature_program`) features of every image of `dataset`: float32 [N, F], in order.

  `batch_size` is rounded up to a multiple of the device count. Every process holds the whole
  dataset and the same `variables`, and gets every feature.
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  batch_size = -(-batch_size // mesh.size) * mesh.size
  sharding = parallel.data_sharding(mesh)
  to_global = lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  key = jax.random.key(0) if key is None else key
  variables = parallel.replicate(variables, mesh)
  out, start = [], 0
  for batch in data_lib.eval_batches(dataset, batch_size):
    n_real = int(batch["mask"].sum())
    index = np.arange(start, start + batch_size, dtype=np.int32)
    feats = program(variables, to_global(batch["image"]), to_global(index), key)
    out.append(np.asarray(multihost_utils.process_allgather(feats, tiled=True))[:n_real])
    start += n_real
  return np.concatenate(out)


def extract_features(feature_fn: FeatureFn, dataset: sources.ArrayDataset, *, batch_size: int,
                     mesh: jax.sharding.Mesh | None = None, preprocess: Callable | None = None,
                     key: jax.Array | None = None) -> np.ndarray:
  """Features of every image of `dataset`, computed on all devices of `mesh`.

  Args:
    feature_fn: per-device function of float images [b, H, W, 3] -> [b, F].
    dataset: images uint8 [N, H, W, 3].
    batch_size: global batch; rounded up to a multiple of the device count.
    preprocess: optional `(key [b], images) -> images` applied on device (e.g. crop + flip);
      `key` is then required and each image's key is `fold_in(key, example index)`.
  Returns:
    float32 [N, F] numpy array, in dataset order.
  """
  mesh = mesh or parallel.make_data_mesh()
  program = feature_program(lambda _, x: feature_fn(x), mesh, preprocess=preprocess)
  return run_feature_program(program, {}, dataset, batch_size=batch_size, mesh=mesh, key=key)


def model_features(model) -> Callable[[Any, jax.Array], jax.Array]:
  """`(variables, float images [b, H, W, 3]) -> encoder features h [b, F]` of a ContrastiveModel (BN in
  inference mode): the `feature_fn` of `feature_program` for a pretrained or random-init encoder."""
  return lambda variables, x: model.apply(variables, x, train=False)["features"]


@dataclasses.dataclass(frozen=True)
class FeaturePrograms:
  """One architecture's feature programs, each compiled once: `plain` for the train and test features,
  `crop` for the linear probe's crop + flip epochs. The variables are their argument, so the pretrained
  encoder, its random-init baseline and every epoch share them."""
  plain: Callable
  crop: Callable

  @classmethod
  def build(cls, feature_fn: Callable[[Any, jax.Array], jax.Array], mesh: jax.sharding.Mesh,
            image_size: int) -> FeaturePrograms:
    crop = lambda keys, x: augment_lib.random_crop_and_flip(keys, x, image_size)
    return cls(feature_program(feature_fn, mesh), feature_program(feature_fn, mesh, preprocess=crop))


def pixel_features(images: jax.Array) -> jax.Array:
  """The raw-pixel baseline: flattened [0, 1] pixels, [b, H × W × 3]."""
  return images.reshape(images.shape[0], -1)


# ----------------------------------------------------------------------------- kNN


def knn_predict(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, *,
                num_classes: int, k: int = 200, temperature: float = 0.1, batch_size: int = 1024) -> np.ndarray:
  """Weighted kNN class scores (Wu et al. 2018): float32 [N_test, num_classes].

  Cosine similarity to every training feature; the k most similar vote for their
  class with weight exp(sim / temperature).
  """
  if k <= 0 or temperature <= 0:
    raise ValueError(f"knn needs k > 0 and temperature > 0, got k={k}, temperature={temperature}.")
  k = min(k, len(train_features))
  train = jnp.asarray(train_features, jnp.float32)
  train = train / jnp.maximum(jnp.linalg.norm(train, axis=1, keepdims=True), 1e-12)
  labels = jnp.asarray(train_labels, jnp.int32)

  @jax.jit
  def scores(q):
    q = q / jnp.maximum(jnp.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    sim, idx = jax.lax.top_k(q @ train.T, k)
    w = jnp.exp(sim / temperature)
    onehot = jax.nn.one_hot(labels[idx], num_classes, dtype=jnp.float32)
    return jnp.einsum("qk,qkc->qc", w, onehot)

  out = []
  for s in range(0, len(test_features), batch_size):
    q = np.asarray(test_features[s:s + batch_size], np.float32)
    pad = batch_size - len(q)
    out.append(np.asarray(scores(jnp.asarray(np.pad(q, ((0, pad), (0, 0))))))[:len(q)])
  return np.concatenate(out) if out else np.zeros((0, num_classes), np.float32)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
  """Fraction of rows whose label is among the k highest scores."""
  top = np.argsort(-scores, axis=1)[:, :k]
  return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


# ----------------------------------------------------------------------------- linear evaluation


def train_linear_classifier(train_features: np.ndarray, train_labels: np.ndarray, *, num_classes: int,
                            epochs: int, batch_size: int = 512, learning_rate: float = 0.1,
                            weight_decay: float = 0.0, seed: int = 0,
                            feature_fn: Callable[[int], np.ndarray] | None = None) -> dict[str, jax.Array]:
  """SimCLR linear evaluation head: zero-initialised, SGD + Nesterov, cosine schedule.

  Args:
    train_features: float [N, F] (used every epoch unless `feature_fn` is given).
    learning_rate: base rate, scaled linearly by `batch_size / 256` as SimCLR.
    feature_fn: optional `epoch -> [N, F]` giving fresh features of augmented images
      each epoch (crop + flip protocol).
  Returns:
    params {"kernel": [F, C], "bias": [C]}.
  """
  n, f = train_features.shape
  batch_size = min(batch_size, n)
  steps_per_epoch = max(n // batch_size, 1)
  lr = optim.scale_learning_rate(learning_rate, batch_size, "linear")
  schedule = optax.cosine_decay_schedule(lr, epochs * steps_per_epoch)
  tx = optim.sgd_nesterov(schedule, momentum=0.9, weight_decay=weight_decay)
  params = {"kernel": jnp.zeros((f, num_classes)), "bias": jnp.zeros((num_classes,))}
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = x @ p["kernel"] + p["bias"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  labels = np.asarray(train_labels, np.int32)
  for epoch in range(epochs):
    feats = train_features if feature_fn is None else feature_fn(epoch)
    perm = rng.permutation(n)
    for s in range(steps_per_epoch):
      idx = perm[s * batch_size:(s + 1) * batch_size]
      params, opt_state = step(params, opt_state, jnp.asarray(feats[idx]), jnp.asarray(labels[idx]))
  return params


def linear_scores(params: dict[str, jax.Array], features: np.ndarray) -> np.ndarray:
  return np.asarray(jnp.asarray(features) @ params["kernel"] + params["bias"])


# ----------------------------------------------------------------------------- semi-supervised

# Kept importable from here (the public home is contrastive_jax.finetune).
label_fraction_indices = finetune_lib.label_fraction_indices
FineTuneModel = finetune_lib.FineTuneModel


def semi_supervised(config: ml_collections.ConfigDict, model, variables, train: sources.ArrayDataset,
                    test: sources.ArrayDataset, fraction: float, mesh,
                    encoder: FeaturePrograms | None = None) -> dict[str, Any]:
  """SimCLR v2 fine-tuning on a balanced `fraction` of the labels, and its baselines; test top-1.

  Returns `finetune_<f>_top1` and, with `config.eval.finetune_baselines`, `scratch_<f>_top1` (the same
  fine-tuning from random init) and `linear_<f>_top1` (the linear probe on frozen pretrained features of
  the same subset, with the linear-probe settings), plus `finetune_<f>_details`: the settings, the
  subset's class counts and each run's training history. `encoder`: `model`'s feature programs, if
  already built (`run_evaluation`'s).
  """
  ev = config.eval
  tag = f"{fraction:g}"
  settings = finetune_lib.FineTuneSettings.from_config(config, fraction)
  idx = finetune_lib.label_fraction_indices(train.labels, fraction, seed=config.seed)
  subset = sources.ArrayDataset(train.images[idx], train.labels[idx], train.num_classes, train.name)
  counts = finetune_lib.subset_counts(train.labels, fraction)
  if counts["raised_to_one"]:
    print(f"label fraction {tag}: classes {counts['raised_to_one']} have less than one example at this fraction; "
          f"each gets one.", flush=True)
  num_classes = max(train.num_classes, int(train.labels.max()) + 1)
  runs = [("finetune", variables)]
  if ev.finetune_baselines:
    runs.append(("scratch", load_model(config, None, num_classes, config.augment.image_size, seed=config.seed + 1)[1]))
  out: dict[str, Any] = {}
  details: dict[str, Any] = {"examples": len(subset), "per_class": counts["per_class"],
                             "raised_to_one": counts["raised_to_one"], "settings": dataclasses.asdict(settings)}
  scores_program = None  # the fine-tuned and the scratch network share one architecture
  for name, init in runs:
    ft, ft_vars, history = finetune_lib.fine_tune(model, init, subset, settings, num_classes=num_classes,
                                                  seed=config.seed, name=f"{name} on {tag} of the labels",
                                                  verbose=True)
    if scores_program is None:
      scores_program = feature_program(lambda v, x, ft=ft: ft.apply(v, x, train=False), mesh)
    scores = run_feature_program(scores_program, ft_vars, test, batch_size=ev.feature_batch_size, mesh=mesh)
    out[f"{name}_{tag}_top1"] = topk_accuracy(scores, test.labels, 1)
    details[name] = history
    print(f"{name}_{tag}_top1 {out[f'{name}_{tag}_top1']:.4f} ({history['steps']} steps, "
          f"{history['seconds']:.0f} s)", flush=True)
  if ev.finetune_baselines:
    encoder = encoder or FeaturePrograms.build(model_features(model), mesh, train.images.shape[1])
    probe = evaluate_features(f"subset_{tag}_", encoder, variables, subset, test, config, mesh,
                              augment=bool(ev.linear_augment))
    out[f"linear_{tag}_top1"] = probe[f"subset_{tag}_linear_top1"]
  out[f"finetune_{tag}_details"] = details
  return out


# ----------------------------------------------------------------------------- the command


def load_model(config: ml_collections.ConfigDict, workdir: str | None, num_classes: int,
               image_size: int, seed: int = 0):
  """The pretrained model (restored from `workdir`) or, with `workdir=None`, a random-init one.

  Restores only the checkpoint items `step`, `params` and `batch_stats`, so a checkpoint
  of any optimiser restores without rebuilding that optimiser.
  """
  model = models.create_model(config, num_classes, axis_name=None)
  init = functools.partial(model.init, jax.random.key(seed), jnp.zeros((2, image_size, image_size, 3)), train=False)
  if workdir is None:  # one program, not an op-by-op init; {} batch_stats for a BN-free model (a DINO ViT)
    return model, {"batch_stats": {}, **jax.jit(init)()}, 0
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  if ckpt.latest_step() is None:
    raise FileNotFoundError(
        f"no checkpoint found in {os.path.join(workdir, 'checkpoints')}. Pretrain first with "
        f"python -m contrastive_jax.train --config ... --workdir {workdir}")
  # The config's model shapes as targets (no initialisation to compute): a config that does
  # not match the checkpoint fails here, naming the shapes. On one device, as init would put them.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  targets = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                         {"step": jax.ShapeDtypeStruct((), jnp.int32), "batch_stats": {}, **jax.eval_shape(init)})
  try:
    restored = ckpt.restore_items(("step", "params", "batch_stats"), abstract=targets)
  finally:
    ckpt.close()
  return model, {"params": restored["params"], "batch_stats": restored["batch_stats"]}, int(restored["step"])


def encoder_feature_fn(model, variables) -> FeatureFn:
  """`model_features` at fixed `variables`: the `feature_fn` of `extract_features`."""
  return functools.partial(model_features(model), variables)


def evaluate_features(name: str, programs: FeaturePrograms, variables: Any, train: sources.ArrayDataset,
                      test: sources.ArrayDataset, config: ml_collections.ConfigDict, mesh, *,
                      augment: bool) -> dict[str, float]:
  """Linear and kNN accuracy of one feature extractor: `programs` (`FeaturePrograms`) at `variables`."""
  ev = config.eval
  t0 = time.time()
  features = functools.partial(run_feature_program, variables=parallel.replicate(variables, mesh),
                               batch_size=ev.feature_batch_size, mesh=mesh)
  train_f = features(programs.plain, dataset=train)
  test_f = features(programs.plain, dataset=test)
  num_classes = max(train.num_classes, int(train.labels.max()) + 1)
  knn = knn_predict(train_f, train.labels, test_f, num_classes=num_classes, k=ev.knn_k,
                    temperature=ev.knn_temperature)
  feature_fn_epoch = None
  if augment:
    feature_fn_epoch = lambda epoch: features(programs.crop, dataset=train,
                                              key=jax.random.fold_in(jax.random.key(config.seed), epoch))
  params = train_linear_classifier(train_f, train.labels, num_classes=num_classes, epochs=ev.linear_epochs,
                                   batch_size=ev.linear_batch_size, learning_rate=ev.linear_learning_rate,
                                   weight_decay=ev.linear_weight_decay, seed=config.seed,
                                   feature_fn=feature_fn_epoch)
  lin = linear_scores(params, test_f)
  res = {f"{name}linear_top1": topk_accuracy(lin, test.labels, 1),
         f"{name}linear_top5": topk_accuracy(lin, test.labels, min(5, num_classes)),
         f"{name}knn_top1": topk_accuracy(knn, test.labels, 1),
         f"{name}seconds": time.time() - t0}
  return res


def run_evaluation(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluate the checkpoint in `workdir` (and the baselines); write and return `eval.json`."""
  ev = config.eval
  t0 = time.time()
  mesh = parallel.make_data_mesh()
  folder = config.data.image_folder or None
  load = functools.partial(sources.load_dataset, config.data.dataset, image_folder=folder,
                           data_dir=config.data.data_dir or None)
  train = load("train", num_examples=ev.num_train_examples)
  test = load(config.data.test_split, num_examples=ev.num_test_examples)
  if train.labels.min() < 0:
    raise ValueError("the evaluation train split has no labels; set config.data.train_split to a labelled split.")
  size = config.augment.image_size
  num_classes = max(train.num_classes, int(train.labels.max()) + 1)
  model, variables, step = load_model(config, workdir, num_classes, size)
  augment = bool(ev.linear_augment)
  encoder = FeaturePrograms.build(model_features(model), mesh, train.images.shape[1])
  results: dict[str, Any] = {"checkpoint_step": step}
  results.update(evaluate_features("", encoder, variables, train, test, config, mesh, augment=augment))
  if ev.baselines:
    _, rvars, _ = load_model(config, None, num_classes, size, seed=config.seed + 1)
    results.update(evaluate_features("random_", encoder, rvars, train, test, config, mesh, augment=augment))
    pixels = FeaturePrograms.build(lambda _, x: pixel_features(x), mesh, train.images.shape[1])
    results.update(evaluate_features("pixels_", pixels, {}, train, test, config, mesh, augment=augment))
  for fraction in ev.finetune_fractions:
    results.update(semi_supervised(config, model, variables, train, test, fraction, mesh, encoder))
  results["settings"] = {
      "num_train_examples": len(train), "num_test_examples": len(test), "linear_epochs": ev.linear_epochs,
      "linear_batch_size": ev.linear_batch_size, "linear_learning_rate": ev.linear_learning_rate,
      "linear_weight_decay": ev.linear_weight_decay, "linear_augment": augment, "knn_k": ev.knn_k,
      "knn_temperature": ev.knn_temperature, "dataset": config.data.image_folder or config.data.dataset,
      "test_split": config.data.test_split}
  results["seconds"] = time.time() - t0
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "eval.json"), "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  from contrastive_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(run_evaluation, (sources.DatasetUnavailableError, ValueError, FileNotFoundError))
