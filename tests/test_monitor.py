"""The kNN monitor of pretraining: evaluate's kNN with the current encoder, every N epochs."""

import pathlib

import numpy as np
import pytest

from contrastive_jax import cli
from contrastive_jax import evaluate
from contrastive_jax import models
from contrastive_jax import monitor as monitor_lib
from contrastive_jax import parallel
from contrastive_jax import sources
from contrastive_jax import train as train_lib
from contrastive_jax import writers

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(**overrides):
  return cli.load_config(str(ROOT / "experiments" / "cifar10_simclr.py") + ":test", **overrides)


@pytest.mark.slow
def test_monitor_writes_knn_per_epoch_and_equals_evaluate_at_the_end(image_folder, tmp_path):
  """2 epochs of 4 steps, the monitor every epoch: rows at steps 4 and 8 with their epochs, and the
  last one equals `evaluate`'s kNN of the final checkpoint (the same code on the same weights)."""
  config = _config(**{"num_steps": 8, "checkpoint_every_steps": 8, "data.image_folder": str(image_folder),
                      "eval.knn_every_epochs": 1, "eval.baselines": False})
  train_lib.train_and_evaluate(config, str(tmp_path))
  rows = [m for m in writers.read_metrics(tmp_path) if "knn_top1" in m]
  assert [(m["step"], m["epoch"]) for m in rows] == [(4, 1.0), (8, 2.0)]
  assert all(0.0 <= m["knn_top1"] <= 1.0 and m["knn_seconds"] > 0 for m in rows)
  assert all("loss" in m for m in rows)  # the monitor's row is the log step's row
  results = evaluate.run_evaluation(config, str(tmp_path))
  assert results["checkpoint_step"] == 8
  assert rows[-1]["knn_top1"] == pytest.approx(results["knn_top1"], abs=1e-9)


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
