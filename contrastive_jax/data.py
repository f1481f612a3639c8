"""Input data: TFDS datasets and local image folders, read deterministically.

Two kinds of dataset, one batching rule:

* `ArrayDataset`: every image has the same size and the split fits in host
  memory (CIFAR-10/100 at 32 px, STL-10 at 96 px). Images stay uint8 on the host
  and reach the devices as uint8; cropping and all other augmentation run on
  device inside the jitted train step (`contrastive_jax.augment`).
* `EncodedDataset`: images of their own sizes (ImageNet-like), from an image
  folder or a TFDS name with `host_crop`. Encoded images are read by index and
  decoded in tf.data on the host, where the random resized crop happens
  (`augment.tf_two_crops`), because a batch of differently sized images cannot
  go to the device. The rest of the augmentation runs on device.

Order is a pure function of `(seed, step)`: epoch `e` is the permutation
`np.random.default_rng([seed, e])` of the examples and step `s` takes its
`s mod steps_per_epoch`-th slice (last partial batch dropped). The iterator's
position is therefore just the step, which the checkpoint stores, and a resumed
run sees exactly the data an uninterrupted one would. Each process reads only
its own rows of every global batch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
from typing import Any, Iterator, Sequence

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


def _tf():
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
  tf = _tf()
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
  _tf()
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
  _tf()
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


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  steps = num_examples // global_batch_size
  if steps == 0:
    raise ValueError(f"the dataset has {num_examples} examples, fewer than one batch of {global_batch_size}; "
                     "lower config.batch_size.")
  return steps


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The example order of one epoch, read-only and cached: every step of the epoch slices it.

  Drawing it anew every step took 0.11-0.31 s per step at ImageNet's 1.28 M examples on our
  2-core machine (docs/performance.md, "Input throughput"): a core's work per accelerator step.
  """
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  perm.flags.writeable = False
  return perm


def global_batch_indices(step: int, num_examples: int, global_batch_size: int, seed: int) -> np.ndarray:
  """Example indices of global batch `step`: int64 [global_batch_size]."""
  spe = steps_per_epoch(num_examples, global_batch_size)
  epoch, offset = divmod(step, spe)
  perm = _epoch_permutation(int(seed), int(epoch), int(num_examples))
  return perm[offset * global_batch_size:(offset + 1) * global_batch_size].copy()


@dataclasses.dataclass(frozen=True)
class ProcessSlice:
  """Which rows of each global batch this process reads: [start, start + size)."""
  start: int
  size: int


def process_slice(global_batch_size: int, mesh=None) -> ProcessSlice:
  """This process's rows of the global batch, in the order the data mesh lays them out.

  The mesh's devices are assumed grouped by process (as `jax.devices()` is).
  """
  import jax  # pylint: disable=g-import-not-at-top
  devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
  per_device = global_batch_size // len(devices)
  mine = [i for i, d in enumerate(devices) if d.process_index == jax.process_index()]
  if mine != list(range(mine[0], mine[0] + len(mine))):
    raise ValueError("this process's devices are not contiguous in the data mesh; order the mesh by process.")
  return ProcessSlice(mine[0] * per_device, len(mine) * per_device)


def group_image_key(group: int) -> str:
  """The batch entry of a host-cropped resolution group: "image", then "image1", "image2", ..."""
  return "image" if group == 0 else f"image{group}"


def has_host_crops(batch: dict[str, Any]) -> bool:
  """Whether `batch` holds host crops [b, V, S, S, 3] per resolution group, or whole images [b, H, W, 3]."""
  return batch["image"].ndim == 5


def batch_crops(batch: dict[str, Any], groups: Sequence[tuple[int, int]], sizes: Sequence[int]) -> list[Any]:
  """The host crops of each resolution group ([start, stop) of the views, `views.resolution_groups`):
  uint8 [b, stop - start, S, S, 3] from the batch entry `group_image_key(g)`, or a ValueError."""
  out = []
  for g, (start, stop) in enumerate(groups):
    name = group_image_key(g)
    crops = batch.get(name)
    if crops is None or crops.shape[1] != stop - start:
      got = "none" if crops is None else crops.shape[1]
      raise ValueError(f"host crops: batch[{name!r}] has {got} views of {sizes[start]} px, the method "
                       f"needs {stop - start}; build TrainIterator with crop_views=views.host_crop_views(augs), "
                       "or set config.data.host_crop=False.")
    out.append(crops)
  return out


def crop_groups(crop_views: Sequence[dict[str, Any]], default_size: int) -> list[tuple[int, list[dict[str, Any]]]]:
  """Consecutive host-crop views of one "size" (default `default_size`) -> [(size, [crop kwargs])],
  the groups of `views.resolution_groups`."""
  from contrastive_jax import views  # pylint: disable=g-import-not-at-top
  sizes = [int(v.get("size", default_size)) for v in crop_views]
  kwargs = [{k: x for k, x in v.items() if k != "size"} for v in crop_views]
  return [(sizes[start], kwargs[start:stop]) for start, stop in views.resolution_groups(sizes)]


class TrainIterator:
  """Batches of global steps `start_step, start_step + 1, ...` for this process.

  Each batch is a dict of numpy arrays with leading dimension = this process's
  share of the global batch:
    image: uint8 [b, H, W, 3] (ArrayDataset) or [b, V, S, S, 3] (one host crop per entry of
      `crop_views`, each a dict of `augment.tf_decode_and_random_crop` arguments such as
      area_range, plus an optional "size" (default `crop_size`); SimCLR: two empty dicts);
    image1, image2, ...: multi-crop's later resolution groups ([b, V_g, S_g, S_g, 3]: each run
      of consecutive crop_views of one size is a group, `crop_groups`);
    label: int32 [b];
    index: int32 [b], the row of each image in the *global* batch, from which the
      train step derives per-image augmentation keys that do not depend on the
      device count.
  A background thread keeps `prefetch` batches ready. Host crops (`EncodedDataset`)
  run in a tf.data pool of `threads` threads, each decoding and cropping one image
  at a time (0: tf.data's shared pool, one thread per core this process may run on,
  autotuned parallelism); the batches do not depend on it.
  """

  def __init__(self, dataset: Dataset, *, global_batch_size: int, seed: int, start_step: int = 0,
               rows: ProcessSlice | None = None, prefetch: int = 2, crop_size: int = 224, threads: int = 0,
               crop_views: Sequence[dict[str, Any]] = ({}, {})):
    self.dataset = dataset
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.rows = rows or ProcessSlice(0, global_batch_size)
    self.crop_size = crop_size
    self.crop_views = tuple(dict(v) for v in crop_views)
    self.threads = threads
    steps_per_epoch(len(dataset), global_batch_size)  # fail early on a dataset smaller than a batch
    self._next_step = start_step
    self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(start_step,), daemon=True)
    self._thread.start()

  @property
  def position(self) -> dict[str, int]:
    """What a checkpoint needs to resume the data order: the next global step."""
    return {"next_step": self._next_step, "seed": self.seed, "num_examples": len(self.dataset),
            "global_batch_size": self.global_batch_size}

  def _indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    idx = global_batch_indices(step, len(self.dataset), self.global_batch_size, self.seed)
    rows = np.arange(self.rows.start, self.rows.start + self.rows.size)
    return idx[rows], rows.astype(np.int32)

  def _fill(self, step: int) -> None:
    try:
      batches = self._array_batches(step) if isinstance(self.dataset, ArrayDataset) else self._encoded_batches(step)
      for batch in batches:
        while not self._stop.is_set():
          try:
            self._queue.put(batch, timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set():
          return
    except Exception as e:  # pylint: disable=broad-except
      self._queue.put(e)

  def _array_batches(self, step: int) -> Iterator[dict[str, np.ndarray]]:
    while True:
      idx, rows = self._indices(step)
      batch = self.dataset.take(idx)
      batch["index"] = rows
      yield batch
      step += 1

  def _step_inputs(self, step: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encoded images (or paths), labels, global rows and per-image crop seeds of this process's rows of `step`."""
    step = int(step)
    idx, rows = self._indices(step)
    images, labels = self.dataset.read(idx)  # type: ignore[union-attr]
    # Per-image crop seed from (seed, step, global row), like the device-side keys.
    seeds = np.stack([np.full(len(rows), self.seed, np.int64), step * self.global_batch_size + rows.astype(np.int64)],
                     axis=1)
    return np.asarray(images, object), np.asarray(labels, np.int32), rows, seeds

  def _encoded_batches(self, step: int) -> Iterator[dict[str, np.ndarray]]:
    """Host-cropped batches from `step` on, decoded and cropped in parallel by tf.data.

    The only Python is one `numpy_function` per step that lists the step's inputs;
    every per-image op runs in tf.data's threads. (A per-image `from_generator`
    source made the same crops cost about 1.6x the CPU time: docs/performance.md.)
    The parallel map is deterministic (kept in order), so a batch is a function of
    (seed, step) alone, whatever the thread count or timing.
    """
    from contrastive_jax import augment  # pylint: disable=g-import-not-at-top
    tf = _tf()
    ds: EncodedDataset = self.dataset  # type: ignore[assignment]
    b = self.rows.size

    def step_inputs(s: Any) -> tuple[Any, Any, Any, Any]:
      images, labels, rows, seeds = tf.numpy_function(self._step_inputs, [s], (tf.string, tf.int32, tf.int32, tf.int64))
      return (tf.ensure_shape(images, [b]), tf.ensure_shape(labels, [b]), tf.ensure_shape(rows, [b]),
              tf.ensure_shape(seeds, [b, 2]))

    groups = crop_groups(self.crop_views, self.crop_size)

    def load(image: Any, label: Any, row: Any, seed: Any) -> dict[str, Any]:
      encoded = tf.io.read_file(image) if ds.files else image
      out = {"label": label, "index": row}
      for g, (size, views) in enumerate(groups):
        # Group 0 keeps the image's seed, so adding small crops leaves the large ones as they were.
        group_seed = seed if g == 0 else tf.random.experimental.stateless_fold_in(seed, g)
        out[group_image_key(g)] = tf.stack(augment.tf_random_crops(encoded, group_seed, size, views))
      return out

    options = tf.data.Options()
    if self.threads:
      options.threading.private_threadpool_size = self.threads
    pipe = (tf.data.Dataset.range(step, 2**62).map(step_inputs).unbatch()
            .map(load, num_parallel_calls=self.threads or tf.data.AUTOTUNE, deterministic=True)
            .batch(b, drop_remainder=True).prefetch(2).with_options(options))
    yield from pipe.as_numpy_iterator()

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    item = self._queue.get()
    if isinstance(item, Exception):
      raise item
    self._next_step += 1
    return item

  def close(self) -> None:
    self._stop.set()


def eval_batches(dataset: ArrayDataset, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """Every example once, in order, padded to full batches; `mask` marks real rows."""
  n = len(dataset)
  for start in range(0, n, batch_size):
    idx = np.arange(start, min(start + batch_size, n))
    pad = batch_size - len(idx)
    batch = dataset.take(np.concatenate([idx, np.zeros(pad, idx.dtype)]))
    batch["mask"] = np.concatenate([np.ones(len(idx), bool), np.zeros(pad, bool)])
    yield batch
