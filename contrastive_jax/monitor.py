"""The kNN monitor of pretraining (`config.eval.knn_every_epochs`): evaluate's kNN with the current encoder.

Every `knn_every_epochs` epochs, and after the last step, the train loop calls the monitor with
its state: the encoder's features h (BatchNorm in inference mode) of the labelled train split and
of the test split, computed on every device, then the weighted kNN of `evaluate` (k =
`config.eval.knn_k`, T = `config.eval.knn_temperature`; 200 and 0.1 as solo-learn's and lightly's
monitors). The loop writes `knn_top1` with its `epoch` into metrics.jsonl. The feature program
takes the weights as an argument, so it compiles once per run.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import ml_collections

from contrastive_jax import evaluate
from contrastive_jax import sources


@dataclasses.dataclass(frozen=True)
class KnnResult:
  top1: float
  seconds: float  # wall time of the call: features of both splits and the kNN


class KnnMonitor:
  """Weighted kNN top-1 of the current encoder, train split against test split.

  Args:
    config: the run's config (`config.eval.knn_*`, `config.data.*`).
    model: the ContrastiveModel being trained.
    mesh: the run's data mesh.
    pretrain_split: the pretraining split, reused when it is the labelled train split the monitor
      would load (same split and subset), instead of decoding it again.
  Raises:
    ValueError: knn_every_epochs < 0, or a split without labels (the message names the field).
  """

  def __init__(self, config: ml_collections.ConfigDict, model: Any, mesh: jax.sharding.Mesh, *,
               pretrain_split: sources.Dataset | None = None):
    ev = config.eval
    self.every_epochs = int(ev.knn_every_epochs)
    if self.every_epochs < 0:
      raise ValueError(f"config.eval.knn_every_epochs is {self.every_epochs}; expected 0 (off) or a number of epochs.")
    self.k, self.temperature, self.batch_size = int(ev.knn_k), float(ev.knn_temperature), int(ev.feature_batch_size)
    self.mesh = mesh
    load = functools.partial(sources.load_dataset, config.data.dataset, image_folder=config.data.image_folder or None,
                             data_dir=config.data.data_dir or None)
    reuse = (isinstance(pretrain_split, sources.ArrayDataset) and config.data.train_split == "train"
             and config.data.num_train_examples == ev.num_train_examples)
    self.train = pretrain_split if reuse else load("train", num_examples=ev.num_train_examples)
    self.test = load(config.data.test_split, num_examples=ev.num_test_examples)
    for name, split, field in (("train", self.train, "the 'train' split of config.data.dataset"),
                               (config.data.test_split, self.test, "config.data.test_split")):
      if not isinstance(split, sources.ArrayDataset) or split.labels.min() < 0:
        raise ValueError(
            f"config.eval.knn_every_epochs={self.every_epochs} needs labelled same-size images, but split {name!r} "
            f"({split.name}, {field}) has {'no labels' if isinstance(split, sources.ArrayDataset) else 'host crops'}. "
            "Set config.eval.knn_every_epochs=0, or point the config at a labelled split.")
    self.num_classes = max(self.train.num_classes, int(self.train.labels.max()) + 1)
    self._program = evaluate.feature_program(evaluate.model_features(model), mesh)

  def due(self, done: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the monitor runs after step `done`: every `every_epochs` epochs, and after the last step."""
    return self.every_epochs > 0 and (done % (self.every_epochs * steps_per_epoch) == 0 or done == total_steps)

  def __call__(self, state: Any) -> KnnResult:
    t0 = time.time()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    features = functools.partial(evaluate.run_feature_program, self._program, variables,
                                 batch_size=self.batch_size, mesh=self.mesh)
    scores = evaluate.knn_predict(features(self.train), self.train.labels, features(self.test),
                                  num_classes=self.num_classes, k=self.k, temperature=self.temperature)
    return KnnResult(evaluate.topk_accuracy(scores, self.test.labels, 1), time.time() - t0)
