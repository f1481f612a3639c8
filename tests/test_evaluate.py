"""Evaluation protocols: linear, kNN, the eval.json contract and its errors."""

import json
import pathlib

import numpy as np
import pytest

from contrastive_jax import cli
from contrastive_jax import evaluate
from contrastive_jax import train as train_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "cifar10_simclr.py")


def _config(**overrides):
  return cli.load_config(f"{CONFIG}:test", **overrides)


def _separable(n_per_class=40, num_classes=4, dim=16, seed=0):
  centres = np.random.default_rng(123).normal(size=(num_classes, dim)) * 5  # shared by train and test
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_classes), n_per_class)
  feats = centres[labels] + rng.normal(size=(len(labels), dim)) * 0.3
  return feats.astype(np.float32), labels.astype(np.int32)


def test_linear_and_knn_separate_a_separable_set():
  x, y = _separable()
  xt, yt = _separable(seed=1)
  params = evaluate.train_linear_classifier(x, y, num_classes=4, epochs=20, batch_size=32, learning_rate=0.1)
  assert evaluate.topk_accuracy(evaluate.linear_scores(params, xt), yt, 1) >= 0.99
  knn = evaluate.knn_predict(x, y, xt, num_classes=4, k=20, temperature=0.1)
  assert evaluate.topk_accuracy(knn, yt, 1) >= 0.99


def test_knn_matches_numpy_reference():
  rng = np.random.default_rng(0)
  train, labels = rng.normal(size=(300, 8)), rng.integers(0, 5, 300)
  test = rng.normal(size=(37, 8))
  k, t = 20, 0.1
  got = evaluate.knn_predict(train, labels, test, num_classes=5, k=k, temperature=t, batch_size=16)
  tn = train / np.linalg.norm(train, axis=1, keepdims=True)
  qn = test / np.linalg.norm(test, axis=1, keepdims=True)
  sim = qn @ tn.T
  want = np.zeros((len(test), 5))
  for q in range(len(test)):
    top = np.argsort(-sim[q])[:k]
    for i in top:
      want[q, labels[i]] += np.exp(sim[q, i] / t)
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_topk_accuracy():
  scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.5], [0.2, 0.3, 0.5]])
  assert evaluate.topk_accuracy(scores, np.array([1, 2, 0]), 1) == pytest.approx(1 / 3)
  assert evaluate.topk_accuracy(scores, np.array([1, 2, 0]), 2) == pytest.approx(2 / 3)


def test_workdir_without_checkpoints_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint found"):
    evaluate.load_model(_config(), str(tmp_path), num_classes=4, image_size=32)


@pytest.mark.slow
def test_eval_json_contract(image_folder, tmp_path):
  config = _config(**{"data.image_folder": str(image_folder), "num_steps": 2, "eval.finetune_fractions": (0.5,),
                      "eval.finetune_epochs": 1})
  train_lib.train_and_evaluate(config, str(tmp_path))
  results = evaluate.run_evaluation(config, str(tmp_path))
  with open(tmp_path / "eval.json", encoding="utf-8") as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(results))
  for prefix in ("", "random_", "pixels_"):
    for metric in ("linear_top1", "linear_top5", "knn_top1"):
      value = saved[prefix + metric]
      assert 0.0 <= value <= 1.0, (prefix + metric, value)
  for name in ("finetune", "scratch", "linear"):
    assert 0.0 <= saved[f"{name}_0.5_top1"] <= 1.0, name
  details = saved["finetune_0.5_details"]
  assert details["examples"] == 32 and details["settings"]["epochs"] == 1
  assert details["finetune"]["steps"] == details["scratch"]["steps"] == 2  # 32 images, batch 16
  assert saved["checkpoint_step"] == 2
  settings = saved["settings"]
  assert settings["num_train_examples"] == 64 and settings["num_test_examples"] == 32
  assert settings["knn_k"] == config.eval.knn_k and settings["linear_epochs"] == config.eval.linear_epochs
  # Each class of this image_folder has its own colour: raw pixels must beat chance (0.25) clearly.
  assert saved["pixels_knn_top1"] > 0.5
