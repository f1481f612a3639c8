"""TFDS datasets by name with host-side crops, built offline from tiny in-test builders."""

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from contrastive_jax import cli
from contrastive_jax import data as data_lib
from contrastive_jax import sources
from contrastive_jax import views as views_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_IMAGES = 40


class TinyVariableSizeImages(tfds.core.GeneratorBasedBuilder):
  """40 JPEGs of random sizes 40..90 px; class 0 is dark, class 1 bright, so a crop shows its label."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names=["dark", "bright"])}))

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is generated here: no download
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    rng = np.random.default_rng(0)
    for i in range(NUM_IMAGES):
      h, w = rng.integers(40, 91, size=2)
      label = i % 2
      image = rng.integers(0, 60, (h, w, 3)) + (180 if label else 10)
      yield i, {"image": image.astype(np.uint8), "label": label}


class TinyPngImages(tfds.core.GeneratorBasedBuilder):
  """Same-size PNGs, as TFDS stores CIFAR-10."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3)), "label": tfds.features.ClassLabel(num_classes=2)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(4):
      yield i, {"image": np.full((8, 8, 3), i, np.uint8), "label": i % 2}


@pytest.fixture(scope="module")
def tfds_dirs(tmp_path_factory) -> dict[str, pathlib.Path]:
  """TFDS data_dirs holding `tiny_variable_size_images`, one per file format.

  Two shards of 20: more than tf.data's interleave block of 16, so reading them in order matters.
  """
  dirs = {}
  for file_format in ("tfrecord", "array_record"):
    dirs[file_format] = tmp_path_factory.mktemp(f"tfds_{file_format}")
    TinyVariableSizeImages(data_dir=str(dirs[file_format]), file_format=file_format).download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=2))
  return dirs


@pytest.fixture(params=["tfrecord", "array_record"])
def tfds_dir(request, tfds_dirs) -> pathlib.Path:
  return tfds_dirs[request.param]


def _load(data_dir, **kwargs) -> sources.EncodedDataset:
  return sources.load_dataset("tiny_variable_size_images", "train", data_dir=str(data_dir), host_crop=True,
                               **kwargs)


def _batch(dataset, step, **kwargs):
  batches = data_lib.TrainIterator(dataset, global_batch_size=8, seed=3, start_step=step, crop_size=32, **kwargs)
  try:
    return next(batches)
  finally:
    batches.close()


def test_tfds_name_with_host_crop_gives_two_crops_and_labels(tfds_dir):
  ds = _load(tfds_dir)
  assert isinstance(ds, sources.EncodedDataset)
  assert len(ds) == NUM_IMAGES and ds.num_classes == 2 and ds.name == "tfds:tiny_variable_size_images/train"
  batch = _batch(ds, step=0)
  assert batch["image"].shape == (8, 2, 32, 32, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].dtype == np.int32 and batch["index"].tolist() == list(range(8))
  want = ds.read(data_lib.global_batch_indices(0, len(ds), 8, seed=3))[1]
  np.testing.assert_array_equal(batch["label"], want)
  # Dark images are class 0 and bright ones class 1: every crop agrees with its label.
  brightness = batch["image"].reshape(8, -1).mean(axis=1)
  np.testing.assert_array_equal(brightness > 128, batch["label"] == 1)
  assert set(batch["label"].tolist()) == {0, 1}
  assert not np.array_equal(batch["image"][:, 0], batch["image"][:, 1])  # two independent crops


def test_tfds_host_crop_batches_are_a_function_of_the_step(tfds_dir):
  ds = _load(tfds_dir)
  batches = data_lib.TrainIterator(ds, global_batch_size=8, seed=3, crop_size=32)
  first = [next(batches) for _ in range(7)]  # 2 epochs of 5 steps
  batches.close()
  for step in (1, 6):
    again = _batch(ds, step=step)  # a resumed iterator, started at `step`
    for key in ("image", "label", "index"):
      np.testing.assert_array_equal(again[key], first[step][key])
  # A process reading rows 4..7 gets exactly those rows of the global batch.
  half = _batch(ds, step=1, rows=data_lib.ProcessSlice(4, 4))
  np.testing.assert_array_equal(half["image"], first[1]["image"][4:])
  np.testing.assert_array_equal(half["label"], first[1]["label"][4:])
  np.testing.assert_array_equal(half["index"], [4, 5, 6, 7])


def test_tfds_host_crop_num_examples_is_a_prefix(tfds_dir):
  full, part = _load(tfds_dir), _load(tfds_dir, num_examples=12)
  assert len(part) == 12 and len(_load(tfds_dir, num_examples=1000)) == NUM_IMAGES
  idx = np.arange(12)
  for a, b in zip(full.read(idx), part.read(idx)):
    assert list(a) == list(b)


def test_tfds_file_formats_give_the_same_examples_in_the_same_order(tfds_dirs):
  """tfrecord (held in memory) and array_record (read by index) copies of a split are one dataset."""
  idx = np.arange(NUM_IMAGES)
  (images_a, labels_a), (images_b, labels_b) = (_load(d).read(idx) for d in tfds_dirs.values())
  assert list(images_a) == list(images_b)
  np.testing.assert_array_equal(labels_a, labels_b)


def test_tfds_host_crop_through_the_train_config(tfds_dir):
  config = cli.load_config(f"{ROOT / 'experiments' / 'cifar10_simclr.py'}:test", **{
      "data.dataset": "tiny_variable_size_images", "data.data_dir": str(tfds_dir), "data.host_crop": True})
  ds = sources.load_train_data(config)
  assert isinstance(ds, sources.EncodedDataset) and len(ds) == NUM_IMAGES  # num_train_examples 64 > 40


def test_tfds_bad_name_with_host_crop_points_to_image_folder(tmp_path):
  with pytest.raises(sources.DatasetUnavailableError,
                     match=r"no_such_dataset_xyz.*could not be loaded.*--config.data.image_folder"):
    sources.load_dataset("no_such_dataset_xyz", "train", data_dir=str(tmp_path), host_crop=True)


def test_tfds_bad_split_with_host_crop_is_unavailable(tfds_dir):
  with pytest.raises(sources.DatasetUnavailableError, match=r"split 'validation'.*--config.data.image_folder"):
    sources.load_dataset("tiny_variable_size_images", "validation", data_dir=str(tfds_dir), host_crop=True)


def test_tfds_png_dataset_with_host_crop(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # TFDS stores e.g. CIFAR-10 as PNG; the host crop decodes those whole.
  TinyPngImages(data_dir=str(tmp_path)).download_and_prepare()
  ds = sources.load_dataset("tiny_png_images", "train", data_dir=str(tmp_path), host_crop=True)
  batches = data_lib.TrainIterator(ds, global_batch_size=4, seed=0, crop_size=8)
  batch = next(batches)
  batches.close()
  assert batch["image"].shape == (4, 2, 8, 8, 3) and batch["image"].dtype == np.uint8
  # Every image is constant (a different value each), and resizing keeps a constant: each crop
  # shows the value of its source example.
  encoded, _ = ds.read(data_lib.global_batch_indices(0, len(ds), 4, seed=0))
  want = [tf.io.decode_png(e).numpy()[0, 0, 0] for e in encoded]
  assert len(set(want)) == 4
  np.testing.assert_array_equal(batch["image"][:, :, 0, 0, 0], np.repeat(np.array(want)[:, None], 2, axis=1))


def _jpeg_folder(root: pathlib.Path, num_images: int = 24) -> pathlib.Path:
  """`root/train/<class>/<i>.jpg`: JPEGs of random sizes 40..90 px, every third 1200 x 900 (slow to decode).

  Images that take 100x longer than their neighbours finish out of order in a parallel map.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  for i in range(num_images):
    h, w = (900, 1200) if i % 3 == 0 else rng.integers(40, 91, size=2)
    d = root / "train" / f"c{i % 2}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{i:02d}.jpg").write_bytes(tf.io.encode_jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).numpy())
  return root


def test_host_crop_batches_are_a_function_of_seed_and_step_at_any_parallelism(tmp_path):
  """The parallel tf.data map keeps its order: thread count, timing and the start step change no batch."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from contrastive_jax import augment  # pylint: disable=g-import-not-at-top
  ds = sources.load_dataset("unused", "train", image_folder=str(_jpeg_folder(tmp_path)), host_crop=True)

  def run(threads, start_step=0, num=4):
    batches = data_lib.TrainIterator(ds, global_batch_size=8, seed=5, start_step=start_step, crop_size=32,
                                     threads=threads)
    try:
      return [next(batches) for _ in range(num)]
    finally:
      batches.close()

  serial, parallel = run(threads=1), run(threads=4)  # 3 steps per epoch: step 3 starts epoch 1
  resumed = run(threads=4, start_step=2, num=2)
  for a, b in zip(serial, parallel):
    for key in ("image", "label", "index"):
      np.testing.assert_array_equal(a[key], b[key])
  for a, b in zip(serial[2:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
  # Row r of step s holds the two crops of image global_batch_indices(s)[r] with seed (seed, s * B + r).
  step = 3
  files, labels = ds.read(data_lib.global_batch_indices(step, len(ds), 8, seed=5))
  np.testing.assert_array_equal(serial[step]["label"], labels)
  for r, path in enumerate(files):
    want = np.stack(augment.tf_two_crops(tf.io.read_file(path), np.asarray([5, step * 8 + r], np.int64), size=32))
    np.testing.assert_array_equal(serial[step]["image"][r], want)


def test_global_batch_indices_slice_each_epochs_permutation():
  """The cached epoch order is the one drawn per step before; callers get copies they may change."""
  n, b, seed = 50, 8, 7  # 6 steps per epoch
  for step in (0, 5, 6, 13):
    epoch, offset = divmod(step, 6)
    want = np.random.default_rng([seed, epoch]).permutation(n)[offset * b:(offset + 1) * b]
    got = data_lib.global_batch_indices(step, n, b, seed)
    np.testing.assert_array_equal(got, want)
    got[:] = -1  # must not reach the cache
    np.testing.assert_array_equal(data_lib.global_batch_indices(step, n, b, seed), want)


def test_host_crops_take_each_views_area_range():
  """Variable-size datasets crop on the host with each view's own crop_area_range and aspect range."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from contrastive_jax import augment  # pylint: disable=g-import-not-at-top
  from contrastive_jax.cli import load_config  # pylint: disable=g-import-not-at-top
  ramp = np.broadcast_to(np.linspace(0, 255, 96).astype(np.uint8)[None, :, None], (96, 96, 3))
  png = tf.io.encode_png(ramp)
  views = ({"area_range": (1.0, 1.0), "aspect_ratio_range": (1.0, 1.0)},
           {"area_range": (0.1, 0.11), "aspect_ratio_range": (1.0, 1.0)})  # >= SimCLR's min_object_covered
  for s in range(5):
    whole, small = augment.tf_random_crops(png, np.asarray([0, s], np.int64), 32, views)
    span = lambda x: int(np.ptp(np.asarray(x)[..., 0].astype(int)))
    assert span(whole) > 240 and span(small) < 100, (span(whole), span(small))
  config = load_config("experiments/cifar10_simclr.py:test")
  config.augment.views = ({}, {"crop_area_range": (0.5, 1.0)})
  got = views_lib.host_crop_views(views_lib.view_configs(config))
  assert got == ({"size": 32, "area_range": (0.08, 1.0), "aspect_ratio_range": (3 / 4, 4 / 3)},
                 {"size": 32, "area_range": (0.5, 1.0), "aspect_ratio_range": (3 / 4, 4 / 3)})
