"""The kNN monitor of pretraining: evaluate's kNN with the current encoder, every N epochs.

That a run writes `knn_top1` per epoch and that the last equals `evaluate`'s on the final
checkpoint is tests/test_gpu_accuracy_script.py (the dry run of the GPU accuracy script).
"""

import pathlib

import numpy as np
import pytest

from contrastive_jax import cli
from contrastive_jax import models
from contrastive_jax import monitor as monitor_lib
from contrastive_jax import parallel
from contrastive_jax import sources

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(**overrides):
  return cli.load_config(str(ROOT / "experiments" / "cifar10_simclr.py") + ":test", **overrides)


def test_monitor_runs_every_n_epochs_and_after_the_last_step(image_folder):
  config = _config(**{"data.image_folder": str(image_folder), "eval.knn_every_epochs": 2})
  mesh = parallel.make_data_mesh()
  model = models.create_model(config, 4, axis_name=parallel.DATA_AXIS)
  monitor = monitor_lib.KnnMonitor(config, model, mesh)
  assert [d for d in range(1, 23) if monitor.due(d, steps_per_epoch=4, total_steps=22)] == [8, 16, 22]
  assert len(monitor.train) == 64 and len(monitor.test) == 32


def test_monitor_on_a_split_without_labels_names_the_field(image_folder):
  config = _config(**{"data.image_folder": str(image_folder), "eval.knn_every_epochs": 1})
  model = models.create_model(config, 4, axis_name=parallel.DATA_AXIS)
  train = sources.load_dataset("cifar10", "train", image_folder=str(image_folder), num_examples=64)
  unlabelled = sources.ArrayDataset(train.images, np.full(len(train), -1, np.int32), 0, "unlabelled")
  with pytest.raises(ValueError, match=r"config\.eval\.knn_every_epochs=1 .* 'train' .* no labels"):
    monitor_lib.KnnMonitor(config, model, parallel.make_data_mesh(), pretrain_split=unlabelled)


def test_monitor_with_a_missing_test_split_names_it(image_folder):
  config = _config(**{"data.image_folder": str(image_folder), "eval.knn_every_epochs": 1,
                      "data.test_split": "nowhere"})
  with pytest.raises(sources.DatasetUnavailableError, match="nowhere"):
    monitor_lib.KnnMonitor(config, None, parallel.make_data_mesh())


def test_negative_knn_every_epochs_is_an_error(image_folder):
  config = _config(**{"data.image_folder": str(image_folder), "eval.knn_every_epochs": -1})
  with pytest.raises(ValueError, match="knn_every_epochs is -1"):
    monitor_lib.KnnMonitor(config, None, parallel.make_data_mesh())
