"""Every config in experiments/ builds its model, method, views and optimiser (no training)."""

import glob
import os

import pytest

from contrastive_jax import methods
from contrastive_jax import models
from contrastive_jax import optim
from contrastive_jax import views as views_lib
from contrastive_jax.cli import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = sorted(glob.glob(os.path.join(ROOT, "experiments", "cifar10_*.py")))
IMAGENET = sorted(glob.glob(os.path.join(ROOT, "experiments", "imagenet_*.py")))
EXTRA = [f"{ROOT}/experiments/cifar10_{m}.py:{p}" for m in ("moco_v3", "dino") for p in ("vit", "vit_cpu", "vit_test")] + [
    f"{ROOT}/experiments/imagenet_moco_v3.py:{p}" for p in ("vit_small", "vit_base")] + [
    f"{ROOT}/experiments/cifar10_simclr.py:{p}" for p in ("multicrop", "multicrop_cpu", "multicrop_test")] + [
    f"{ROOT}/experiments/imagenet_simclr.py:multicrop"] + [
    f"{ROOT}/experiments/imagenet_{m}.py:{p}" for m, p in (("barlow_twins", "300ep"), ("vicreg", "100ep"),
                                                           ("simsiam", "800ep"), ("dcl", "1000ep"),
                                                           ("swav", "800ep"), ("dino", "300ep"))]
SPECS = ([f"{p}:{preset}" for p in CIFAR for preset in ("", "cpu", "test", "gpu200")] + EXTRA
         + [p for p in IMAGENET] + [f"{p}:{preset}" for p in IMAGENET for preset in ("unknown",)])


@pytest.mark.parametrize("spec", [s for s in SPECS if not s.endswith(":unknown")],
                         ids=lambda s: os.path.basename(s))
def test_every_experiment_config_builds_its_model_method_views_and_optimizer(spec):
  config = load_config(spec.rstrip(":"))
  model = models.create_model(config, 10, axis_name=None)
  method = methods.create(config, total_steps=100, axis_name=None)
  views = views_lib.view_configs(config)
  assert len(views) == method.num_views
  assert bool(method.predictor_layers) <= model.has_predictor
  tx, schedule = optim.create_optimizer(config, num_examples=50_000)
  assert tx is not None and float(schedule(0)) >= 0.0


@pytest.mark.parametrize("spec", [s for s in SPECS if s.endswith(":unknown")], ids=lambda s: os.path.basename(s))
def test_an_unknown_preset_is_an_error(spec):
  with pytest.raises(ValueError, match="preset"):
    load_config(spec)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.endswith(":gpu200")], ids=lambda s: os.path.basename(s))
def test_gpu200_presets_follow_the_lightly_protocol(spec):
  """ResNet-18, CIFAR stem, batch 512, 200 epochs, bf16 compute, the split on the device, kNN every 10 epochs."""
  config = load_config(spec)
  encoder = config.model.encoder
  assert (encoder.name, encoder.depth, encoder.base_width, encoder.cifar_stem) == ("resnet", 18, 64, True)
  assert (config.batch_size, config.num_epochs, config.num_steps) == (512, 200, 0)
  assert config.model.dtype == "bfloat16" and config.data.on_device == "true"
  assert (config.eval.knn_every_epochs, config.eval.knn_k, config.eval.knn_temperature) == (10, 200, 0.1)
