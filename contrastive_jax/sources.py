"""Datasets: TFDS names and local image folders, loaded into one of two kinds.

* `ArrayDataset`: every image has the same size and the split fits in host
  memory (CIFAR-10/100 at 32 px, STL-10 at 96 px). An image folder of these is
  listed and decoded (Pillow) without TensorFlow. Images stay uint8 on the host
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

import concurrent.futures
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


# The layout tfds.ImageFolder reads (tensorflow_datasets/core/folder_dataset/image_folder.py), listed
# here without TensorFlow: every subfolder of the root is a split and every subfolder of a split a class
# (symlinks followed, dot-names included; files directly in a split and deeper folders are ignored). An
# image is any entry of a class folder whose lower-cased name ends in one of these, hidden names
# included; only the name is checked, not the content or that it is a file. The class names are those
# of all splits together, sorted, so every split numbers its labels the same way.
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _subfolders(path: str) -> list[str]:
  """Sorted names of the folders in `path` (symlinks to folders count, as tf.io.gfile.isdir's do)."""
  with os.scandir(path) as entries:
    return sorted(e.name for e in entries if e.is_dir())


def _folder_examples(root: str, split: str) -> tuple[list[str], list[int], list[str]]:
  """File paths, labels and class names of one split of a `split/<class>/<image>` folder.

  The examples of `tfds.ImageFolder(root)` (see FOLDER_IMAGE_SUFFIXES), without TFDS: paths sorted
  (an order every host agrees on), a label is the index of its class in the sorted class names of
  all splits. Lists the files of `split` alone.
  """
  folder = os.path.expanduser(root)  # as tfds.ImageFolder does: its paths start with the expanded root
  if not os.path.isdir(folder):
    raise DatasetUnavailableError(
        f"image folder {root!r} does not exist. Point --config.data.image_folder at a folder laid out "
        "as <split>/<class>/<image>.")
  classes_of = {s: _subfolders(os.path.join(folder, s)) for s in _subfolders(folder)}
  names = sorted({c for classes in classes_of.values() for c in classes})
  label_of = {c: i for i, c in enumerate(names)}
  examples = []
  for c in classes_of.get(split, []):
    class_dir = os.path.join(folder, split, c)
    examples.extend((os.path.join(class_dir, f), label_of[c]) for f in os.listdir(class_dir)
                    if f.lower().endswith(FOLDER_IMAGE_SUFFIXES))
  if not examples:
    # TFDS's splits: the folders with a class folder, even if those hold no image.
    found = [s for s, classes in classes_of.items() if classes]
    raise DatasetUnavailableError(
        f"image folder {root!r} has no images for split {split!r} (expected {root}/{split}/<class>/<image>; "
        f"splits found: {found or 'none'}).")
  examples.sort()  # by path: unique, so labels never decide
  return [p for p, _ in examples], [y for _, y in examples], names


def _read_image(path: str) -> np.ndarray:
  """One image file -> uint8 [H, W, 3], the pixels tf.io.decode_image(channels=3) gives (JPEGs: see `_decode_files`)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as img:
    img.load()
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
      # 16-bit greyscale PNG: TF keeps the high byte; Pillow's convert("RGB") would clip at 255.
      grey = (np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8)
      return np.repeat(grey[:, :, None], 3, axis=2)
    # convert("RGB") replicates greyscale, expands palettes and drops alpha without compositing onto a
    # background (RGBA, LA, palette transparency): the channels=3 decode of TF's libpng does the same.
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _decode_files(paths: list[str], workers: int | None = None) -> np.ndarray:
  """Decode same-size image files to one uint8 [N, H, W, 3] array with Pillow, in `workers` threads.

  No TensorFlow. JPEGs decode with libjpeg's accurate integer DCT (Pillow's default, as in
  torchvision), which TF only gives with `tf.io.decode_jpeg(..., dct_method="INTEGER_ACCURATE")`:
  TF's default (IFAST, `tf.io.decode_image`), which this loader used before, is up to 5 grey levels
  off: folder-loaded pixels changed by that much (CIFAR-10 test split: 65% of the values, max 5, mean
  absolute 0.99). Other formats (PNG: greyscale, palette, RGBA, 16-bit) equal
  `tf.io.decode_image(channels=3)`.
  Pillow releases the GIL while it decodes, so threads use the host's cores (os.cpu_count() by default).

  Raises:
    ValueError: a file that cannot be read, or one whose size differs from the first file's; the
      first such file in `paths` order, named.
  """
  if not paths:
    return np.zeros((0, 0, 0, 3), np.uint8)

  def read(p: str) -> np.ndarray:
    try:
      return _read_image(p)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"cannot read image file {p!r}: {type(e).__name__}: {str(e)[:200]}") from None

  first = read(paths[0])
  images = np.empty((len(paths), *first.shape), np.uint8)  # filled in place: no second copy to concatenate
  images[0] = first

  def fill(start: int, stop: int) -> None:
    for i in range(start, stop):
      img = read(paths[i])
      if img.shape != first.shape:
        raise ValueError(
            f"images differ in size ({paths[i]!r} is {img.shape}, {paths[0]!r} is {first.shape}); set "
            "config.data.host_crop=True to crop variable-size images on the host.")
      images[i] = img

  workers = workers or os.cpu_count() or 1
  # Chunks of consecutive files: one task per image would cost as much as decoding a 32 px JPEG.
  chunk = max(1, min(256, -(-(len(paths) - 1) // workers)))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    tasks = [pool.submit(fill, s, min(s + chunk, len(paths))) for s in range(1, len(paths), chunk)]
    try:
      for task in tasks:  # in order: the error of the earliest bad file
        task.result()
    except BaseException:
      pool.shutdown(cancel_futures=True)
      raise
  return images


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
    image_folder: a local `split/<class>/<image>` folder, listed as `tfds.ImageFolder` lists it
      (`_folder_examples`); overrides the TFDS name when set. Without `host_crop` it needs
      neither TensorFlow nor TFDS.
    data_dir: TFDS data directory.
    host_crop: return an `EncodedDataset` (variable-size images, cropped on the host).
    num_examples: keep only N examples of the split (0: all), a reproducible
      subset: class-balanced over the fixed order (file names for folders), or,
      for TFDS names with `host_crop`, the first N (TFDS shuffled them when it
      prepared the split), so that nothing else has to be read.

  Raises:
    DatasetUnavailableError: neither TFDS nor the folder can provide the split.
    ValueError: an unreadable image, or (without `host_crop`) images of different sizes; the
      message names the file.
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
