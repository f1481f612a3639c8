"""Host input throughput for ImageNet-like data: images/s per host core, through the train loop's input path.

Makes (or reuses) a folder of variable-size JPEGs at ImageNet's sizes and file
sizes, then reads it exactly as `python -m contrastive_jax.train` does with
`config.data.host_crop=True`: `sources.load_dataset(..., image_folder=..., host_crop=True)`
and `data.TrainIterator` (decode, two random resized crops per image at the
config's size, batching, prefetch). It times `--repeats` windows of `--steps`
batches each and reports the median window.

  python tools/benchmark_input.py --cores 1                 # one core (sched_setaffinity, as taskset)
  python tools/benchmark_input.py --cores 2 --threads 2     # two cores, tf.data pool of 2 threads
  python tools/benchmark_input.py --folder /tmp/inb_jpegs   # keep the JPEGs for the next run
  python tools/benchmark_input.py --pipeline grain --grain_workers 2   # the same crops in grain worker processes

`--cores K` pins this process to K of the CPUs it may run on before TensorFlow
starts (TensorFlow sizes its thread pools from that set), so the per-core figure
counts only cores the pipeline could use. On a shared machine the wall-clock
figure also counts time other processes took from those cores; the CPU-time
figure (`images_per_cpu_second`: images over the user + system time of this
process and its children) does not.

`--pipeline grain` is the alternative a worker-process loader gives: the same
batches (checked against `TrainIterator`'s first batch), each image's two crops
computed by the same `augment.tf_two_crops` (a `tf.function`) in grain
(`pip install grain`) worker processes.

Synthetic images: 1/f amplitude spectrum (the spectrum of natural images) with
random phases and correlated colours, 400-500 x 333-375 px (20% portrait),
JPEG quality 90 with 4:2:0 chroma: about 100 KB per file, as ILSVRC-2012 train
(about 138 GB over 1.28 M files, ~110 KB each), so that decoding costs what it
costs on ImageNet.

The cores one accelerator needs are its two-view rate over two (each image gives
two views) divided by images/s per core: from a measured `tools/benchmark.py` GPU
JSON (`--anchor_json`, e.g. gpu_check_out/resnet50_224_bf16_b256.json) or, without
one, the projections of `tools/scaling_model.py` (README, "Scaling to pods").

Readable lines first; the LAST line is one JSON object (images_per_sec,
images_per_sec_per_core, images_per_cpu_second, cores, threads, cores_needed, settings).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]

# Two-view throughput per chip, ResNet-50 224 px bf16, global batch 4096, from `python tools/scaling_model.py`
# (README "Scaling to pods", 2026-11-28): projections (assumed MFU), not measurements.
PROJECTED_VIEWS_PER_SEC_PER_CHIP = {
    "H100 (scaling_model 8xH100 projection: 65,049 views/s over 8 chips, MFU 0.2 assumed)": 65049 / 8,
    "TPU v4 chip (scaling_model TPU v4-32 projection: 53,832 views/s over 16 chips, MFU 0.3 assumed)": 53832 / 16,
}
IMAGENET_TRAIN_EXAMPLES = 1_281_167
SYNTHETIC_VERSION = 1  # bump when the generator changes, so that a kept --folder is rebuilt


def natural_image(rng: Any, height: int, width: int) -> Any:
  """A uint8 [height, width, 3] image with a natural image's 1/f amplitude spectrum and correlated colours."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.rfftfreq(width)[None, :]
  f = np.sqrt(fy ** 2 + fx ** 2)
  f[0, 0] = 1.0
  amplitude = 1.0 / f
  amplitude[0, 0] = 0.0
  planes = [np.fft.irfft2(amplitude * rng.normal(1.0, 0.1, f.shape) * np.exp(2j * np.pi * rng.random(f.shape)),
                          s=(height, width)) for _ in range(3)]
  x = np.stack(planes, -1) @ (0.4 * np.eye(3) + 0.2 + rng.normal(0.0, 0.1, (3, 3)))  # correlated channels
  x = (x - x.mean((0, 1))) / x.std()
  return np.clip(128 + 50 * x + rng.uniform(-30, 30, 3), 0, 255).astype(np.uint8)


def make_folder(root: pathlib.Path, num_images: int, num_classes: int, seed: int) -> dict[str, Any]:
  """Writes (or reuses) `root/train/<class>/<i>.jpg`; returns what the folder holds."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  marker = root / "synthetic.json"
  want = {"version": SYNTHETIC_VERSION, "images": num_images, "classes": num_classes, "seed": seed}
  if marker.exists():
    info = json.loads(marker.read_text())
    if {k: info.get(k) for k in want} == want:
      return info
  shutil.rmtree(root / "train", ignore_errors=True)
  rng = np.random.default_rng(seed)
  pixels, nbytes = [], []
  t0 = time.perf_counter()
  for i in range(num_images):
    h, w = int(rng.integers(333, 376)), int(rng.integers(400, 501))
    if rng.random() < 0.2:
      h, w = w, h
    encoded = tf.io.encode_jpeg(natural_image(rng, h, w), quality=90, chroma_downsampling=True).numpy()
    d = root / "train" / f"c{i % num_classes:02d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{i:05d}.jpg").write_bytes(encoded)
    pixels.append(h * w)
    nbytes.append(len(encoded))
  info = {**want, "mean_pixels": float(np.mean(pixels)), "mean_bytes": float(np.mean(nbytes)),
          "generate_s": time.perf_counter() - t0}
  marker.write_text(json.dumps(info))
  return info


def pin_cores(cores: int) -> list[int]:
  """Restricts this process to its first `cores` allowed CPUs (0: all); returns the CPUs it may use."""
  allowed = sorted(os.sched_getaffinity(0))
  if cores:
    if cores > len(allowed):
      raise ValueError(f"--cores={cores} but this process may run on only {len(allowed)} CPUs: {allowed}")
    os.sched_setaffinity(0, allowed[:cores])
  return sorted(os.sched_getaffinity(0))


def index_ms_per_step(num_examples: int, batch: int, steps: int = 20) -> tuple[float, float]:
  """ms of `data.global_batch_indices` for the first step of an epoch and the median of the next `steps`."""
  from contrastive_jax import data  # pylint: disable=g-import-not-at-top
  times = []
  for step in range(steps + 1):
    t0 = time.perf_counter()
    data.global_batch_indices(step, num_examples, batch, seed=12345)
    times.append(time.perf_counter() - t0)
  return 1e3 * times[0], 1e3 * statistics.median(times[1:])


def tree_cpu_seconds() -> float:
  """User + system CPU seconds of this process and its live descendants (Linux /proc)."""
  ticks, pids = 0, [os.getpid()]
  while pids:
    pid = pids.pop()
    try:
      stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
      fields = stat[stat.rindex(")") + 2:].split()
      ticks += int(fields[11]) + int(fields[12])
      for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    except (OSError, ValueError):
      continue  # exited meanwhile
  return ticks / os.sysconf("SC_CLK_TCK")


_CROP_FN: Any = None


def _grain_element(k: int, *, paths: Any, num_examples: int, batch: int, seed: int, crop_size: int) -> Any:
  """Two crops of element k of the batch stream, exactly as TrainIterator makes them (one process, all rows)."""
  global _CROP_FN
  if _CROP_FN is None:  # traced once per worker process (one thread each: grain_batches)
    from contrastive_jax import augment  # pylint: disable=g-import-not-at-top
    from contrastive_jax import sources  # pylint: disable=g-import-not-at-top
    tf = sources.tf_for_data()
    # A signature, so that each new path is an input, not a constant to trace again.
    _CROP_FN = tf.function(lambda path, s: tf.stack(augment.tf_two_crops(tf.io.read_file(path), s, size=crop_size)),
                           input_signature=[tf.TensorSpec((), tf.string), tf.TensorSpec((2,), tf.int64)],
                           autograph=False)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from contrastive_jax import data  # pylint: disable=g-import-not-at-top
  step, row = divmod(int(k), batch)
  index = data.global_batch_indices(step, num_examples, batch, seed)[row]
  return {"image": _CROP_FN(paths[index], np.asarray([seed, step * batch + row], np.int64)).numpy()}


def grain_batches(dataset: Any, *, batch: int, seed: int, crop_size: int, workers: int) -> Any:
  """An iterator of the train batches' images, computed in `workers` grain worker processes."""
  try:
    import grain  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit(f"--pipeline grain needs grain (pip install grain): {e}") from None
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain reads its absl flags
  element = functools.partial(_grain_element, paths=dataset.images, num_examples=len(dataset), batch=batch,
                              seed=seed, crop_size=crop_size)
  # Parallelism from the worker processes only (one thread each), and buffers of about a batch, so that
  # what a worker computed during start-up does not flatter the timed windows.
  ds = grain.MapDataset.range(0, 2**62).map(element).batch(batch).to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=batch))
  if workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=1))
  return iter(ds)


def measure(folder: pathlib.Path, *, config_spec: str, batch: int, steps: int, warmup: int, repeats: int,
            threads: int, pipeline: str, grain_workers: int) -> dict[str, Any]:
  """Times `repeats` windows of `steps` batches of the train loop's host-crop iterator (or its grain twin)."""
  import inspect  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from contrastive_jax import cli  # pylint: disable=g-import-not-at-top
  from contrastive_jax import data  # pylint: disable=g-import-not-at-top
  from contrastive_jax import sources  # pylint: disable=g-import-not-at-top
  config = cli.load_config(config_spec, **{"data.image_folder": str(folder), "data.host_crop": True})
  dataset = sources.load_dataset(config.data.dataset, "train", image_folder=config.data.image_folder,
                              host_crop=True)
  kwargs = dict(global_batch_size=batch, seed=config.seed, start_step=0, rows=data.ProcessSlice(0, batch),
                prefetch=config.data.prefetch, crop_size=config.augment.image_size)
  if threads:
    if "threads" not in inspect.signature(data.TrainIterator).parameters:
      raise ValueError("--threads: this checkout's data.TrainIterator has no `threads` parameter.")
    kwargs["threads"] = threads
  reference = None
  if pipeline == "grain":
    train_batches = data.TrainIterator(dataset, **kwargs)
    reference = next(train_batches)["image"]
    train_batches.close()
    batches = grain_batches(dataset, batch=batch, seed=config.seed, crop_size=config.augment.image_size,
                            workers=grain_workers)
  else:
    batches = data.TrainIterator(dataset, **kwargs)
  try:
    t0 = time.perf_counter()
    for i in range(warmup):
      image = next(batches)["image"]
      if i == 0 and reference is not None and not np.array_equal(image, reference):
        raise AssertionError("the grain pipeline's first batch differs from TrainIterator's")
    startup_s = time.perf_counter() - t0
    windows = []
    for _ in range(repeats):
      load = os.getloadavg()[0]
      w0, c0 = time.perf_counter(), tree_cpu_seconds()
      for _ in range(steps):
        next(batches)
      windows.append({"wall_s": time.perf_counter() - w0, "cpu_s": tree_cpu_seconds() - c0,
                      "load_1min_at_start": load})
  finally:
    getattr(batches, "close", lambda: None)()
  assert image.shape == (batch, 2, config.augment.image_size, config.augment.image_size, 3)
  return {"windows": windows, "startup_s": startup_s, "crop_size": config.augment.image_size,
          "prefetch": config.data.prefetch, "num_examples": len(dataset)}


def git_revision() -> str:
  try:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ""


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--cores", type=int, default=0, help="pin to this many of the allowed CPUs (0: all allowed)")
  ap.add_argument("--threads", type=int, default=0,
                  help="tf.data thread pool size (TrainIterator(threads=...)); 0: tf.data's default, one per core")
  ap.add_argument("--pipeline", choices=("train", "grain"), default="train",
                  help="train: data.TrainIterator (tf.data), as training reads; grain: the same crops in grain workers")
  ap.add_argument("--grain_workers", type=int, default=1, help="with --pipeline grain: worker processes (0: none)")
  ap.add_argument("--config", default=str(REPO / "experiments" / "imagenet_simclr.py"),
                  help="config whose crop size, seed and prefetch the iterator uses")
  ap.add_argument("--batch", type=int, default=64, help="images per batch (this process's rows)")
  ap.add_argument("--steps", type=int, default=8, help="batches per timed window")
  ap.add_argument("--repeats", type=int, default=3, help="timed windows; the median is reported")
  ap.add_argument("--warmup", type=int, default=2, help="untimed batches first (pipeline start-up)")
  ap.add_argument("--images", type=int, default=256, help="JPEGs in the synthetic folder")
  ap.add_argument("--classes", type=int, default=10)
  ap.add_argument("--folder", default="", help="keep the synthetic folder here and reuse it (default: a temp dir)")
  ap.add_argument("--index_examples", type=int, default=IMAGENET_TRAIN_EXAMPLES,
                  help="also time data.global_batch_indices per step at this dataset size (0: skip)")
  ap.add_argument("--anchor_json", default="", help="a tools/benchmark.py JSON line measured on one accelerator "
                  "(ResNet-50 224 px): its views/s per device replaces the projections")
  ap.add_argument("--json_out", default="", help="also append the JSON result to this file")
  args = ap.parse_args()

  cpus = pin_cores(args.cores)  # before TensorFlow starts: it sizes its thread pools from the allowed CPUs
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  tmp = None if args.folder else tempfile.mkdtemp(prefix="benchmark_input_")
  folder = pathlib.Path(args.folder or tmp)
  try:
    info = make_folder(folder, args.images, args.classes, seed=0)
    print(f"{info['images']} JPEGs in {folder}: mean {info['mean_pixels'] / 1e3:.0f} kpixel, "
          f"{info['mean_bytes'] / 1e3:.0f} KB", flush=True)
    r = measure(folder, config_spec=args.config, batch=args.batch, steps=args.steps, warmup=args.warmup,
                repeats=args.repeats, threads=args.threads, pipeline=args.pipeline,
                grain_workers=args.grain_workers)
  finally:
    if tmp:
      shutil.rmtree(tmp, ignore_errors=True)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from contrastive_jax import data  # pylint: disable=g-import-not-at-top

  cores = len(cpus)
  images = args.batch * args.steps
  rates = [images / w["wall_s"] for w in r["windows"]]
  cpu_rates = [images / w["cpu_s"] for w in r["windows"]]
  rate, cpu_rate = statistics.median(rates), statistics.median(cpu_rates)
  per_core = rate / cores
  if args.anchor_json:
    with open(args.anchor_json, encoding="utf-8") as f:
      anchor = json.loads(f.read().strip().splitlines()[-1])
    accelerators = {f"{anchor.get('device_kind', 'accelerator')} (measured, {args.anchor_json})":
                    anchor["views_per_sec"] / anchor["devices"]}
  else:
    accelerators = PROJECTED_VIEWS_PER_SEC_PER_CHIP
  needed = {name: {"views_per_sec": views, "images_per_sec": views / 2, "cores_needed": views / 2 / per_core,
                   "cores_needed_cpu_time": views / 2 / cpu_rate}
            for name, views in accelerators.items()}
  index_ms = index_ms_per_step(args.index_examples, 4096) if args.index_examples else (None, None)

  how = (f"grain, {args.grain_workers} worker process(es)" if args.pipeline == "grain" else
         f"TrainIterator, tf.data threads {args.threads or 'default (one per core)'}")
  print(f"tensorflow {tf.__version__}; {cores} core(s) {cpus}; {how}; batch {args.batch}, {r['crop_size']} px, "
        "two crops per image")
  for i, (w, x, c) in enumerate(zip(r["windows"], rates, cpu_rates)):
    print(f"  window {i}: {x:7.1f} images/s ({x / cores:6.1f} per core), {c:6.1f} images per CPU-second, "
          f"load {w['load_1min_at_start']:.2f}")
  print(f"median: {rate:.1f} images/s = {per_core:.1f} images/s per core; {cpu_rate:.1f} images per CPU-second "
        f"(start-up {r['startup_s']:.1f} s for {args.warmup} batches)")
  for name, n in needed.items():
    print(f"one {name}: {n['images_per_sec']:.0f} images/s -> {n['cores_needed']:.1f} cores at this per-core rate "
          f"({n['cores_needed_cpu_time']:.1f} at the CPU-time rate)")
  if args.index_examples:
    print(f"data.global_batch_indices at {args.index_examples:,} examples, global batch 4096: "
          f"{index_ms[0]:.2f} ms for an epoch's first step, {index_ms[1]:.3f} ms per step after it (median of 20)")
  result = {
      "images_per_sec": rate,
      "images_per_sec_per_core": per_core,
      "images_per_cpu_second": cpu_rate,
      "views_per_sec": 2 * rate,
      "cores": cores,
      "cpus": cpus,
      "threads": args.threads,
      "pipeline": args.pipeline,
      "grain_workers": args.grain_workers if args.pipeline == "grain" else None,
      "cores_needed": needed,
      "index_ms_first_step": index_ms[0],
      "index_ms_per_step": index_ms[1],
      "index_examples": args.index_examples,
      "windows": [{**w, "images_per_sec": x, "images_per_cpu_second": c}
                  for w, x, c in zip(r["windows"], rates, cpu_rates)],
      "startup_s": r["startup_s"],
      "batch": args.batch,
      "steps": args.steps,
      "repeats": args.repeats,
      "warmup": args.warmup,
      "crop_size": r["crop_size"],
      "prefetch": r["prefetch"],
      "config": args.config,
      "folder_images": info["images"],
      "folder_mean_pixels": info["mean_pixels"],
      "folder_mean_bytes": info["mean_bytes"],
      "load_average": list(os.getloadavg()),
      "data_module": data.__file__,
      "git_revision": git_revision(),
      "tensorflow_version": tf.__version__,
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  }
  line = json.dumps(result)
  if args.json_out:
    with open(args.json_out, "a", encoding="utf-8") as f:
      f.write(line + "\n")
  print(line, flush=True)


if __name__ == "__main__":
  main()
