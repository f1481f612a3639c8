"""Trained encoders a user can load: load_encoder, the embed command, evaluate's restore.

The run is a checkpoint of the `test` preset's model (ResNet-18 at base width 8, 4 probe
classes) with random values at He scale and non-trivial BN statistics, written without
training: only the restore and the features are under test, and nothing compiles a train step.
"""

import dataclasses
import functools
import json
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from tolerances import REASSOC_RTOL

import contrastive_jax
from contrastive_jax import cli
from contrastive_jax import embed as embed_lib
from contrastive_jax import evaluate
from contrastive_jax import models
from contrastive_jax import sources
from contrastive_jax import train as train_lib
from contrastive_jax.checkpoint import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "cifar10_simclr.py")
STEP = 3


@dataclasses.dataclass
class Run:
  workdir: pathlib.Path
  config: Any
  state: train_lib.TrainState  # numpy leaves
  features: Any  # jitted reference: uint8 images -> model.apply(..., train=False)["features"]

  @property
  def variables(self):
    return {"params": self.state.params, "batch_stats": self.state.batch_stats}


def _fill(shapes: Any, seed: int) -> Any:
  """Values for a tree of ShapeDtypeStructs: He-scaled kernels, BN variances in [0.5, 1.5], small rest."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    name = jax.tree_util.keystr(path)
    if not jnp.issubdtype(s.dtype, jnp.floating):
      return np.full(s.shape, STEP, s.dtype)
    if "kernel" in name:
      return (rng.normal(size=s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1]))).astype(s.dtype)
    if "var" in name or "scale" in name:
      return rng.uniform(0.5, 1.5, size=s.shape).astype(s.dtype)
    return (rng.normal(size=s.shape) * 0.1).astype(s.dtype)
  return jax.tree_util.tree_map_with_path(leaf, shapes)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
  config = cli.load_config(f"{CONFIG}:test")
  model = models.create_model(config, 4, axis_name=None)
  # AdamW, not the LARS the config trains with: readers must not rebuild the optimiser.
  shapes = jax.eval_shape(functools.partial(train_lib.init_state, model, optax.adamw(1e-3), image_shape=(32, 32, 3)),
                          train_lib.init_key(0))
  state = _fill(shapes, seed=0)
  workdir = tmp_path_factory.mktemp("run")
  ckpt = Checkpointer(str(workdir / "checkpoints"), async_save=False)
  ckpt.save(STEP, state, {"data": {"next_step": STEP}}, config=config.to_dict())
  ckpt.close()
  apply = jax.jit(lambda v, x: model.apply(v, x.astype(jnp.float32) / 255.0, train=False)["features"])
  return Run(workdir, config, state, lambda x: np.asarray(apply({"params": state.params,
                                                                  "batch_stats": state.batch_stats}, x)))


def _images(n: int, seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def test_features_are_the_online_encoders_h_in_inference_mode(run):
  embed, config = contrastive_jax.load_encoder(str(run.workdir))
  x = _images(8)
  got = embed(x)
  assert isinstance(got, np.ndarray) and got.dtype == np.float32
  assert got.shape == (8, 64) == (8, embed.feature_dim)  # h of ResNet-18 at base width 8; z would be 128
  np.testing.assert_allclose(got, run.features(x), rtol=1e-5, atol=1e-5)
  # Another program (the uint8 path scales inside it) on the same encoder: the same math in another
  # summation order. Measured: 3.0e-6 relative on an AVX-512 CPU, within 1e-6 on the AVX2 ones.
  np.testing.assert_allclose(embed(x.astype(np.float32) / 255.0), got, rtol=REASSOC_RTOL, atol=REASSOC_RTOL)
  assert embed.step == STEP
  assert config.to_dict() == json.loads(json.dumps(run.config.to_dict()))


def test_any_batch_size_gives_the_rows_of_an_unpadded_batch(run):
  embed, _ = contrastive_jax.load_encoder(str(run.workdir), batch_size=8)  # one image per test device
  x = _images(19)
  full = embed(x)  # batches of 8, 8 and 3 padded to 8
  np.testing.assert_allclose(full, run.features(x), rtol=1e-5, atol=1e-5)
  # 3 rows padded to the 8 devices: the same program, rows in other positions of the conv's blocks.
  np.testing.assert_allclose(embed(x[:3]), full[:3], rtol=REASSOC_RTOL, atol=REASSOC_RTOL)
  assert embed(x[:0]).shape == (0, 64)


@pytest.mark.parametrize("images, message", [
    (np.zeros((32, 32, 3), np.uint8), r"got shape \(32, 32, 3\): a single image: add a batch axis"),
    (np.zeros((2, 3, 32, 32), np.uint8), r"\[B, 32, 32, 3\].*got shape \(2, 3, 32, 32\): channels first"),
    (np.zeros((2, 28, 28, 3), np.uint8), r"got shape \(2, 28, 28, 3\): resize or centre-crop .* to 32x32"),
    (np.zeros((2, 32, 32, 4), np.uint8), r"4 channels: convert to RGB"),
    (np.full((2, 32, 32, 3), 255.0, np.float32), r"must lie in \[0, 1\], got values in \[255, 255\]"),
    (np.full((2, 32, 32, 3), np.nan, np.float32), r"must lie in \[0, 1\], got values in \[nan, nan\]"),
    (np.zeros((2, 32, 32, 3), np.int32), r"uint8 images \(0-255\) or float images in \[0, 1\], got dtype int32"),
])
def test_wrong_images_say_what_was_expected_and_what_came(images, message):
  with pytest.raises(ValueError, match=message):
    embed_lib.check_images(images, 32)


def test_old_runs_take_their_config_from_config_json(run, tmp_path):
  """An old-layout checkpoint (the whole state as one item, no config item) loads with WORKDIR/config.json."""
  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"), options=ocp.CheckpointManagerOptions(create=True))
  manager.save(STEP, args=ocp.args.Composite(state=ocp.args.StandardSave(run.state), meta=ocp.args.JsonSave({})))
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(FileNotFoundError, match=r"no `config` item .*/config\.json does not exist"):
    contrastive_jax.load_encoder(str(tmp_path))
  (tmp_path / "config.json").write_text(run.config.to_json_best_effort(indent=2))
  embed, config = contrastive_jax.load_encoder(str(tmp_path))
  x = _images(8)
  np.testing.assert_allclose(embed(x), run.features(x), rtol=1e-5, atol=1e-5)
  assert config.model.encoder.base_width == run.config.model.encoder.base_width


def test_a_config_that_does_not_match_the_checkpoint_is_named(run, tmp_path):
  shutil.copytree(run.workdir / "checkpoints", tmp_path / "checkpoints")
  shutil.rmtree(tmp_path / "checkpoints" / str(STEP) / "config")
  config = cli.load_config(f"{CONFIG}:test", **{"model.encoder.base_width": 16})
  (tmp_path / "config.json").write_text(config.to_json_best_effort())
  with pytest.raises(ValueError, match=r"does not match the model of its config: at .* the checkpoint has \("):
    contrastive_jax.load_encoder(str(tmp_path))


def test_evaluate_restores_a_checkpoint_of_any_optimiser(run):
  """evaluate.load_model reads step, params and batch_stats only (the run's optimiser is AdamW)."""
  _, variables, step = evaluate.load_model(run.config, str(run.workdir), num_classes=4, image_size=32)
  assert step == STEP
  jax.tree.map(np.testing.assert_array_equal, variables, run.variables)


def test_embed_command_writes_embeddings_labels_and_paths(run, image_folder, tmp_path):
  out = tmp_path / "test.npz"
  assert embed_lib.main(["--workdir", str(run.workdir), "--images", str(image_folder / "test"),
                         "--out", str(out)]) == 0
  z = np.load(out)
  assert set(z.files) == {"embeddings", "labels", "paths", "class_names", "step"}
  assert z["embeddings"].shape == (32, 64) and z["embeddings"].dtype == np.float32
  np.testing.assert_array_equal(z["labels"], np.repeat(np.arange(4), 8))
  assert list(z["class_names"]) == ["class0", "class1", "class2", "class3"]
  assert [pathlib.Path(p).relative_to(image_folder / "test").as_posix() for p in z["paths"][:2]] == [
      "class0/000.jpg", "class0/001.jpg"]
  images = sources._decode_files(list(z["paths"]))  # pylint: disable=protected-access
  np.testing.assert_allclose(z["embeddings"], run.features(images), rtol=1e-5, atol=1e-5)
  assert int(z["step"]) == STEP

  flat = tmp_path / "flat"  # images without class folders: no labels
  flat.mkdir()
  for p in z["paths"][[0, 9, 17]]:
    shutil.copy(p, flat / f"{pathlib.Path(p).parent.name}_{pathlib.Path(p).name}")
  assert embed_lib.main(["--workdir", str(run.workdir), "--images", str(flat), "--out", str(out)]) == 0
  z = np.load(out)
  np.testing.assert_array_equal(z["labels"], [-1, -1, -1])
  assert z["embeddings"].shape == (3, 64)


def test_embed_command_on_a_tfds_split_writes_indices(run, monkeypatch, tmp_path, capsys):
  images, labels = _images(6), np.asarray([3, 1, 4, 1, 5, -1], np.int32)
  asked = []

  def fake_load(name, split, **kwargs):
    asked.append((name, split))
    return sources.ArrayDataset(images, labels, 10, f"tfds:{name}/{split}")
  monkeypatch.setattr(sources, "load_dataset", fake_load)
  out = tmp_path / "tfds.npz"
  assert embed_lib.main(["--workdir", str(run.workdir), "--tfds", "cifar10:test[:6]", "--out", str(out)]) == 0
  assert asked == [("cifar10", "test[:6]")]
  z = np.load(out)
  assert set(z.files) == {"embeddings", "labels", "indices", "step"}
  np.testing.assert_array_equal(z["indices"], np.arange(6))
  np.testing.assert_array_equal(z["labels"], labels)
  np.testing.assert_allclose(z["embeddings"], run.features(images), rtol=1e-5, atol=1e-5)

  assert embed_lib.main(["--workdir", str(run.workdir), "--tfds", "cifar10", "--out", str(out)]) == 1
  assert "--tfds expects NAME:SPLIT" in capsys.readouterr().err
