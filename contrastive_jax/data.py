"""The deterministic input order, and the batch layout the train step reads.

Order is a pure function of `(seed, step)`: epoch `e` is the permutation
`np.random.default_rng([seed, e])` of the examples and step `s` takes its
`s mod steps_per_epoch`-th slice (last partial batch dropped). The iterator's
position is therefore just the step, which the checkpoint stores, and a resumed
run sees exactly the data an uninterrupted one would. Each process reads only
its own rows of every global batch (`TrainIterator`). The datasets themselves
(TFDS, image folders) are contrastive_jax/sources.py's.
"""


from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
from typing import Any, Iterator, Sequence

import flax
import numpy as np

from contrastive_jax.sources import ArrayDataset, Dataset, EncodedDataset, tf_for_data


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
    tf = tf_for_data()
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


# ----------------------------------------------------------------------------- the split on the device

# `config.data.on_device="auto"` places a split on the accelerators when it takes at most this fraction
# of one device's memory, leaving the rest to the step's activations.
AUTO_ON_DEVICE_FRACTION = 0.25


@flax.struct.dataclass
class DeviceData:
  """An in-memory split placed once on every device, with the run's whole example order.

  images: uint8 [N, H, W, 3]; labels: int32 [N]; order: int32 [E, N], row e the permutation of
  epoch e (`global_batch_indices`' order), for every epoch the run reaches. All replicated.
  """
  images: Any
  labels: Any
  order: Any
  global_batch_size: int = flax.struct.field(pytree_node=False)

  @property
  def steps_per_epoch(self) -> int:
    return self.images.shape[0] // self.global_batch_size


def device_data_bytes(dataset: ArrayDataset, global_batch_size: int, total_steps: int) -> int:
  """Bytes `place_on_device` puts on each device: images, labels and the order table."""
  epochs = -(-total_steps // steps_per_epoch(len(dataset), global_batch_size))
  return dataset.images.nbytes + 4 * len(dataset) + 4 * epochs * len(dataset)


def device_memory_bytes(device: Any) -> int | None:
  """One device's memory: the allocator's limit on GPU/TPU, this host's RAM / its devices on a CPU."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  if device.platform == "cpu" and hasattr(os, "sysconf"):
    import jax  # pylint: disable=g-import-not-at-top
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // max(jax.local_device_count(), 1)
  return None


def resolve_on_device(setting: str | bool, dataset: Dataset, nbytes: int, device: Any) -> bool:
  """`config.data.on_device` ("auto", "true" or "false") for this split on this device.

  auto: on for an in-memory split on a GPU or TPU that fits in AUTO_ON_DEVICE_FRACTION of its
  memory; off on CPUs, where the host path already reads host memory. true: on, or a ValueError
  that says why it cannot be.
  """
  value = str(setting).strip().lower()
  if value not in ("auto", "true", "false"):
    raise ValueError(f"config.data.on_device is {setting!r}; expected 'auto', 'true' or 'false'.")
  if value == "false":
    return False
  fits_in_memory = isinstance(dataset, ArrayDataset)
  memory = device_memory_bytes(device)
  if value == "auto":
    return (fits_in_memory and device.platform != "cpu" and memory is not None
            and nbytes <= AUTO_ON_DEVICE_FRACTION * memory)
  if not fits_in_memory:
    raise ValueError(f"config.data.on_device=true needs a split of same-size images in memory; {dataset.name} is "
                     "cropped on the host (config.data.host_crop). Set config.data.on_device=false.")
  if memory is not None and nbytes > memory:
    raise ValueError(
        f"config.data.on_device=true: the split {dataset.name} needs {nbytes / 2**20:.0f} MiB on every device "
        f"(images, labels and the order of every epoch), more than the {memory / 2**30:.1f} GiB of "
        f"{device.device_kind}. Set config.data.on_device=false (or auto).")
  return True


def place_on_device(dataset: ArrayDataset, mesh: Any, *, global_batch_size: int, seed: int,
                    total_steps: int) -> DeviceData:
  """The split and the order of every epoch up to `total_steps`, replicated on every device of `mesh`."""
  import jax  # pylint: disable=g-import-not-at-top
  n = len(dataset)
  epochs = -(-total_steps // steps_per_epoch(n, global_batch_size))
  order = np.stack([_epoch_permutation(int(seed), e, n) for e in range(max(epochs, 1))]).astype(np.int32)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  # From each process's own copy: every process holds the whole split.
  put = lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return DeviceData(put(dataset.images), put(np.asarray(dataset.labels, np.int32)), put(order), global_batch_size)


def device_batch(data: DeviceData, step: Any) -> dict[str, Any]:
  """Global batch `step` gathered on the device: the rows, order and layout of TrainIterator's.

  image uint8 [B, H, W, 3], label int32 [B], index int32 [B] (the global rows). Traceable.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  b = data.global_batch_size
  epoch, offset = jnp.divmod(jnp.asarray(step, jnp.int32), data.steps_per_epoch)
  idx = jax.lax.dynamic_slice(data.order, (epoch, offset * b), (1, b))[0]
  return {"image": jnp.take(data.images, idx, axis=0), "label": jnp.take(data.labels, idx, axis=0),
          "index": jnp.arange(b, dtype=jnp.int32)}


class StepCounter:
  """The data position of a run whose batches are gathered on the device (`DeviceData`).

  Stands where TrainIterator stands in the loop: the host sends nothing per step but the
  preemption flag of its `rows`, and `position` is what a checkpoint stores.
  """

  def __init__(self, data: DeviceData, *, num_examples: int, seed: int, start_step: int, rows: ProcessSlice):
    self.rows = rows
    self._position = {"next_step": start_step, "seed": seed, "num_examples": num_examples,
                      "global_batch_size": data.global_batch_size}

  @property
  def position(self) -> dict[str, int]:
    return dict(self._position)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    self._position["next_step"] += 1
    return {}

  def close(self) -> None:
    pass
