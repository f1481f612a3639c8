"""Datasets: TFDS names and local image folders, loaded into one of two kinds.

* `ArrayDataset`: every image has the same size and the split fits in host
  memory (CIFAR-10/100 at 32 px, STL-10 at 96 px). Images stay uint8 on the host
  and reach the devices as uint8; cropping and all other augmentation run on
  device inside the jitted train step (`contrastive_jax.augment`).
* `EncodedDataset`: images of their own sizes (ImageNet-like), from an image
  folder or a TFDS name with `host_crop`. Encoded images are read by index and
  decoded in tf.data on the host (contrastive_jax/data.py), where the random
  resized crop happens (`augment.tf_two_crops`), because a batch of differently
  sized images cannot go to the device.

`load_dataset` picks the source; `load_train_data(config)` the pretraining split
of a config. The order they are read in is contrastive_jax/data.py's.
"""


from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

# Datasets whose pretraining split is not "train".
PRETRAIN_SPLITS = {"stl10": "unlabelled"}


class DatasetUnavailableError(RuntimeError):
  """The dataset can be neither downloaded nor found locally."""


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A split held in host memory.

  Attributes:
    images: uint8 [N, H, W, 3].
    labels: int32 [N]; -1 where the split has no labels (STL-10 unlabelled).
    num_classes: number of label classes (0 if unknown).
    name: where it came from, for messages.
  """
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {"image": self.images[indices], "label": self.labels[indices]}


@dataclasses.dataclass(frozen=True)
class EncodedDataset:
  """Encoded images of their own sizes, read by index, decoded and cropped on the host.

  Three sources, and what each holds in host memory (per process):
    * an image folder (`files`): `images` are file paths, each batch reads its
      own files. Memory: the paths.
    * a TFDS split in tfrecord files: `images` are the encoded image bytes, read
      once at load (`tfds.decode.SkipDecoding`). Memory: the encoded split, e.g.
      about 140 GB for imagenet2012 train; prepare such a dataset as array_record
      (`tfds build NAME --file_format=array_record`).
    * a TFDS split in array_record files (`records`): each batch reads its own
      records by index (`tfds.data_source`). Memory: nothing up front.

  Attributes:
    images: [N] file paths (`files`) or encoded bytes (object array); None with `records`.
    labels: int32 [N] (-1: no label); None with `records`.
    num_classes: number of label classes (0 if unknown).
    name: where it came from, for messages.
    files: `images` are file paths to read.
    records: random access to TFDS examples `{"image": encoded bytes, "label": int, ...}`; None otherwise.
    num_records: with `records`: use its first `num_records` examples.
  """
  images: np.ndarray | None
  labels: np.ndarray | None
  num_classes: int
  name: str
  files: bool = False
  records: Any = None
  num_records: int = 0

  def __len__(self) -> int:
    return self.num_records if self.records is not None else len(self.labels)

  def read(self, indices: np.ndarray) -> tuple[Sequence[Any], np.ndarray]:
    """The images (encoded bytes, or paths if `files`) and int32 labels of `indices`."""
    if self.records is None:
      return self.images[indices], self.labels[indices]
    # One batched read: array_record fetches the records in parallel.
    examples = self.records.__getitems__([int(i) for i in indices])
    return [e["image"] for e in examples], np.asarray([e.get("label", -1) for e in examples], np.int32)


Dataset = ArrayDataset | EncodedDataset


def tf_for_data():
  """TensorFlow imported for tf.data alone: quiet, and with no GPU or TPU taken from JAX."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # tf.data only: TensorFlow must not take the accelerators from JAX.
  tf.config.set_visible_devices([], "GPU")
  tf.config.set_visible_devices([], "TPU") if tf.config.list_physical_devices("TPU") else None
  return tf


def _folder_examples(root: str, split: str) -> tuple[list[str], list[int], list[str]]:
  """File paths and labels of one split of a `split/<class>/<image>` folder, via tfds.ImageFolder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(root):
    raise DatasetUnavailableError(
        f"image folder {root!r} does not exist. Point --config.data.image_folder at a folder laid out "
        "as <split>/<class>/<image>.")
  builder = tfds.ImageFolder(root)
  examples = builder._split_examples.get(split, [])  # pylint: disable=protected-access
  if not examples:
    found = sorted(builder.info.splits.keys())
    raise DatasetUnavailableError(
        f"image folder {root!r} has no images for split {split!r} (expected {root}/{split}/<class>/<image>; "
        f"splits found: {found or 'none'}).")
  names = list(builder.info.features["label"].names)
  examples = sorted(examples, key=lambda e: e.image_path)  # an order that every host agrees on
  return [e.image_path for e in examples], [names.index(e.label) for e in examples], names


def _decode_files(paths: list[str]) -> np.ndarray:
  """Decode image files to one uint8 [N, H, W, 3] array; names the file that fails."""
  tf = tf_for_data()
  ds = tf.data.Dataset.from_tensor_slices(paths).map(
      lambda p: tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  images, shape = [], None
  try:
    for batch in ds.batch(1024).as_numpy_iterator():
      images.append(batch)
  except Exception:  # pylint: disable=broad-except
    # tf.data says neither which file broke nor that sizes differ; find out one by one.
    for p in paths:
      try:
        img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False).numpy()
      except Exception as e:  # pylint: disable=broad-except
        raise ValueError(f"cannot read image file {p!r}: {type(e).__name__}: {str(e)[:200]}") from None
      if shape is None:
        shape = img.shape
      elif img.shape != shape:
        raise ValueError(
            f"images differ in size ({p!r} is {img.shape}, earlier ones {shape}); set "
            "config.data.host_crop=True to crop variable-size images on the host.") from None
    raise
  return np.concatenate(images) if images else np.zeros((0, 0, 0, 3), np.uint8)


def _unavailable(name: str, split: str, data_dir: str | None, error: Exception) -> DatasetUnavailableError:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cause = " ".join(str(error).split())[:200]  # one line: TFDS's own messages span many
  return DatasetUnavailableError(
      f"TFDS dataset {name!r} (split {split!r}, data_dir {data_dir or tfds.core.constants.DATA_DIR!r}) "
      f"could not be loaded or downloaded ({type(error).__name__}: {cause}). Without the network, "
      "point --config.data.image_folder at a local copy laid out as <split>/<class>/<image>.")


def _num_classes(info: Any) -> int:
  """Classes of a TFDS dataset's `label` feature; 0 without one. (FeaturesDict has no `.get`.)"""
  label_feature = info.features["label"] if "label" in info.features else None
  return getattr(label_feature, "num_classes", 0) or 0


def _image_and_label_chunks(ds: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """A tf.data dataset of TFDS examples -> chunks of its images and labels (-1 without a label)."""
  images, labels = [], []
  for ex in ds.batch(1024).as_numpy_iterator():
    images.append(ex["image"])
    labels.append(ex.get("label", np.full(len(ex["image"]), -1)))
  return images, labels


def _load_tfds(name: str, split: str, data_dir: str | None) -> ArrayDataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tf_for_data()
  try:
    ds, info = tfds.load(name, split=split, data_dir=data_dir, as_supervised=False, with_info=True,
                         shuffle_files=False)
  except Exception as e:  # pylint: disable=broad-except
    raise _unavailable(name, split, data_dir, e) from None
  images, labels = _image_and_label_chunks(ds)
  return ArrayDataset(np.concatenate(images), np.concatenate(labels).astype(np.int32), _num_classes(info),
                      f"tfds:{name}/{split}")


def _load_tfds_encoded(name: str, split: str, data_dir: str | None, num_examples: int) -> EncodedDataset:
  """A TFDS split with its images left encoded (see `EncodedDataset` for the memory each format costs)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tf_for_data()
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()  # a no-op when the dataset is already prepared
    size = builder.info.splits[split].num_examples
  except Exception as e:  # pylint: disable=broad-except
    raise _unavailable(name, split, data_dir, e) from None
  info = builder.info
  if "image" not in info.features:
    raise ValueError(
        f"host_crop reads an 'image' feature, but TFDS {name!r} has {sorted(info.features.keys())}. Export the "
        "images as a <split>/<class>/<image> folder and set --config.data.image_folder.")
  n = min(num_examples, size) if num_examples else size
  label = f"tfds:{name}/{split}"
  decoders = {"image": tfds.decode.SkipDecoding()}
  if info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    records = builder.as_data_source(split=split, decoders=decoders)
    ds = EncodedDataset(None, None, _num_classes(info), label, records=records, num_records=n)
  else:
    # Shards read one after another (no interleave): the order of an array_record copy of the split.
    examples = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False,
                                  read_config=tfds.ReadConfig(interleave_cycle_length=1)).take(n)
    images, labels = _image_and_label_chunks(examples)
    images = np.concatenate(images) if images else np.zeros(0, object)
    labels = np.concatenate(labels).astype(np.int32) if labels else np.zeros(0, np.int32)
    ds = EncodedDataset(images, labels, _num_classes(info), label)
  return ds


def load_dataset(dataset: str, split: str, *, image_folder: str | None = None, data_dir: str | None = None,
                 host_crop: bool = False, num_examples: int = 0) -> Dataset:
  """Load one split.

  Args:
    dataset: TFDS name (cifar10, cifar100, stl10, imagenet2012, ...).
    split: split name (TFDS split syntax for TFDS names, a folder name for image folders).
    image_folder: a local `split/<class>/<image>` folder read with `tfds.ImageFolder`;
      overrides the TFDS name when set.
    data_dir: TFDS data directory.
    host_crop: return an `EncodedDataset` (variable-size images, cropped on the host).
    num_examples: keep only N examples of the split (0: all), a reproducible
      subset: class-balanced over the fixed order (file names for folders), or,
      for TFDS names with `host_crop`, the first N (TFDS shuffled them when it
      prepared the split), so that nothing else has to be read.

  Raises:
    DatasetUnavailableError: neither TFDS nor the folder can provide the split.
    ValueError: an unreadable image (the message names the file).
  """
  if image_folder:
    paths, labels, names = _folder_examples(image_folder, split)
    if num_examples:
      paths, labels = _stratified_prefix(paths, labels, num_examples)
    name = f"folder:{image_folder}/{split}"
    if host_crop:
      return EncodedDataset(np.asarray(paths), np.asarray(labels, np.int32), len(names), name, files=True)
    return ArrayDataset(_decode_files(paths), np.asarray(labels, np.int32), len(names), name)
  if host_crop:
    return _load_tfds_encoded(dataset, split, data_dir, num_examples)
  ds = _load_tfds(dataset, split, data_dir)
  if num_examples:
    keep = np.sort(np.asarray(_stratified_prefix(list(range(len(ds))), list(ds.labels), num_examples)[0]))
    ds = ArrayDataset(ds.images[keep], ds.labels[keep], ds.num_classes, ds.name)
  return ds


def _stratified_prefix(items: list, labels: list[int], n: int) -> tuple[list, list[int]]:
  """The first `n` items taken round-robin over classes, so a small subset stays class-balanced."""
  if n >= len(items):
    return items, labels
  by_class: dict[int, list[int]] = {}
  for i, y in enumerate(labels):
    by_class.setdefault(y, []).append(i)
  order = []
  queues = [by_class[c] for c in sorted(by_class)]
  for rank in range(max(len(q) for q in queues)):
    order.extend(q[rank] for q in queues if rank < len(q))
  keep = sorted(order[:n])
  return [items[i] for i in keep], [labels[i] for i in keep]


def load_train_data(config: Any) -> Dataset:
  """The pretraining split of config.data: `train_split`, or STL-10's `unlabelled` for TFDS stl10."""
  split = config.data.train_split
  if not config.data.image_folder and split == "train":
    split = PRETRAIN_SPLITS.get(config.data.dataset, "train")
  return load_dataset(config.data.dataset, split, image_folder=config.data.image_folder or None,
                      data_dir=config.data.data_dir or None, host_crop=config.data.host_crop,
                      num_examples=config.data.num_train_examples)
