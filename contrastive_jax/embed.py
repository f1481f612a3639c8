"""Trained encoders as functions of images, and the `embed` command.

    embed, config = contrastive_jax.load_encoder(WORKDIR)   # latest checkpoint; step=N for another
    features = embed(images)   # uint8 [B, S, S, 3] (or float in [0, 1]) -> float32 numpy [B, D]

    python -m contrastive_jax.embed --workdir DIR (--images FOLDER | --tfds NAME:SPLIT) --out FILE.npz

`load_encoder` restores a run's online encoder from the checkpoint items `params` and
`batch_stats` alone, so it needs no optimiser (any optimiser's checkpoint restores), and
the run's config from the checkpoint's `config` item (WORKDIR/config.json for older runs).
`embed` gives the encoder's features h (not the projection z) with BN in inference mode,
jitted and split over the local devices; a batch that does not divide by the device count
is padded inside. S is the training size (`config.augment.image_size`).

The command writes an npz with `embeddings` float32 [N, D], `labels` int32 [N] (-1 where
there is none), `paths` (for --images) or `indices` (for --tfds) [N], `class_names` when
known and the checkpoint `step`. A FOLDER of `<class>/<image>` subfolders gets labels by
sorted class name (the order of `tfds.ImageFolder`, so CIFAR-10's match its TFDS labels);
images directly in FOLDER get -1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P


from contrastive_jax import models
from contrastive_jax import parallel
from contrastive_jax import resume
from contrastive_jax import sources  # pylint: disable=g-import-not-at-top
from contrastive_jax.checkpoint import Checkpointer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")  # what tf.io.decode_image reads


def check_images(images: Any, size: int) -> np.ndarray:
  """`images` as a numpy uint8 or float32 [B, size, size, 3] array, or a ValueError saying what to change."""
  x = np.asarray(images)
  want = f"[B, {size}, {size}, 3]"
  if x.ndim != 4 or x.shape[1:] != (size, size, 3):
    if x.shape == (size, size, 3):
      hint = "a single image: add a batch axis (images[None])"
    elif x.ndim == 4 and x.shape[1] == 3 and x.shape[2:] == (size, size):
      hint = "channels first: transpose to [B, H, W, 3] (images.transpose(0, 2, 3, 1))"
    elif x.ndim == 4 and x.shape[-1] != 3:
      hint = f"{x.shape[-1]} channels: convert to RGB"
    else:
      hint = f"resize or centre-crop the images to {size}x{size}, the size the encoder was trained at"
    raise ValueError(f"the encoder expects images {want} (the training size, RGB), got shape {x.shape}: {hint}.")
  if x.dtype == np.uint8:
    return x
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"the encoder expects uint8 images (0-255) or float images in [0, 1], got dtype {x.dtype}; "
                     "convert with images.astype(np.uint8) (0-255) or images / 255.0.")
  x = x.astype(np.float32)
  lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
  if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
    raise ValueError(f"float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]; divide 0-255 values by "
                     "255 or pass uint8 images.")
  return x


class Encoder:
  """A restored encoder: `encoder(images) -> features h`.

  Attributes:
    model: the `ContrastiveModel` (no `axis_name`: BN in inference mode needs none).
    variables: {"params", "batch_stats"}, replicated over `mesh`.
    image_size: S of the [B, S, S, 3] images it takes.
    feature_dim: D of the float32 [B, D] features it returns.
    step: the checkpoint step the variables come from.
    mesh: the local devices the batch is split over.
  """

  def __init__(self, model: Any, variables: dict[str, Any], image_size: int, step: int, *,
               mesh: jax.sharding.Mesh | None = None, batch_size: int = 256):
    self.model, self.variables, self.image_size, self.step = model, variables, image_size, step
    self.mesh = mesh or parallel.make_data_mesh(jax.local_devices())
    n_dev = self.mesh.size
    self.batch_size = -(-max(batch_size, 1) // n_dev) * n_dev  # a multiple of the device count

    def local(variables, images):  # one device's rows
      x = images.astype(jnp.float32)
      if images.dtype == jnp.uint8:
        x = x / 255.0
      h = model.apply(variables, x, train=False, method=lambda m, x, train: m.encoder(x, train=train))
      return h.astype(jnp.float32)

    self._fn = jax.jit(jax.shard_map(local, mesh=self.mesh, in_specs=(P(), P(parallel.DATA_AXIS)),
                                     out_specs=P(parallel.DATA_AXIS)))
    probe = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    self.feature_dim = int(jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["features"], variables, probe).shape[-1])

  def __call__(self, images: Any) -> np.ndarray:
    """Features h of `images` (uint8 [B, S, S, 3], or float in [0, 1]): numpy float32 [B, D].

    Batches of `batch_size` (the last padded to it, or a small B to the next multiple
    of the device count), so repeated calls reuse at most two compiled shapes.
    """
    x = check_images(images, self.image_size)
    n = len(x)
    chunk = min(self.batch_size, -(-max(n, 1) // self.mesh.size) * self.mesh.size)
    out = []
    for start in range(0, n, chunk):
      part = x[start:start + chunk]
      real = len(part)
      if real < chunk:  # BN in inference mode: padded rows do not change the real ones
        part = np.concatenate([part, np.zeros((chunk - real, *part.shape[1:]), part.dtype)])
      out.append(np.asarray(self._fn(self.variables, part))[:real])
    return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)


def load_run_config(workdir: str, ckpt: Checkpointer, step: int | None = None) -> ml_collections.ConfigDict:
  """The config a run was trained with: the checkpoint's `config` item, else WORKDIR/config.json, in
  today's layout (`resume.migrate_config`)."""
  config = ckpt.restore_config(step)
  if config is None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"the checkpoint in {ckpt.directory} has no `config` item (written before checkpoints held the config) "
          f"and {path} does not exist. Write the training config there, e.g. python -c \"from contrastive_jax "
          f"import cli; open('{path}', 'w').write(cli.load_config('experiments/<file>.py:<preset>').to_json())\".")
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  return ml_collections.ConfigDict(resume.migrate_config(config))


def _check_matches(expected: Any, restored: Any, workdir: str) -> None:
  """The restored variables have the shapes of the config's model, or an error naming the first difference."""
  shapes = lambda tree: {path: tuple(a.shape) for path, a in jax.tree_util.tree_flatten_with_path(tree)[0]}
  want, got = shapes(expected), shapes(restored)
  for path in sorted(set(want) | set(got), key=str):
    if want.get(path) != got.get(path):
      raise ValueError(
          f"the checkpoint in {workdir} does not match the model of its config: at "
          f"{jax.tree_util.keystr(path)} the checkpoint has {got.get(path, 'nothing')}, the config's model "
          f"{want.get(path, 'nothing')}. Is WORKDIR/config.json the config of this run?")


def load_encoder(workdir: str, step: int | None = None, *, batch_size: int = 256
                 ) -> tuple[Encoder, ml_collections.ConfigDict]:
  """The online encoder of the run in `workdir` and the config it was trained with.

  Args:
    workdir: a training run's directory (with `checkpoints/`).
    step: the checkpoint step; default the latest.
    batch_size: images per device call (rounded up to a multiple of the local device count).
  Returns:
    `(embed, config)`: `embed(images)` maps uint8 [B, S, S, 3] (or float in [0, 1]) images
    to numpy float32 features h [B, D]; `config` is the run's ConfigDict.
  Raises:
    FileNotFoundError: no checkpoint (of `step`), or no config to build the model from.
    ValueError: the checkpoint does not match its config's model.
  """
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  try:
    config = load_run_config(workdir, ckpt, step)
    mesh = parallel.make_data_mesh(jax.local_devices())
    items = ckpt.items(step)  # a BN-free model (a DINO ViT) saves no batch_stats; the old layout keeps all in "state"
    bn = ("batch_stats",) if {"batch_stats", "state"} & items else ()
    restored = ckpt.restore_items(("step", "params", *bn), step=step, sharding=parallel.replicated_sharding(mesh))
  finally:
    ckpt.close()
  variables = {"params": restored["params"], "batch_stats": restored.get("batch_stats", {})}
  probe = variables["params"].get("probe")
  model = models.create_model(config, int(probe["kernel"].shape[-1]) if probe else 0, axis_name=None)
  size = int(config.augment.image_size)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
  _check_matches(expected, variables, workdir)
  return Encoder(model, variables, size, int(restored["step"]), mesh=mesh, batch_size=batch_size), config


# ----------------------------------------------------------------------------- the command


def list_image_folder(folder: str) -> tuple[list[str], np.ndarray, list[str]]:
  """Image paths, int32 labels and class names of FOLDER/<class>/<image> and FOLDER/<image> (label -1)."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"image folder {folder!r} does not exist.")
  is_image = lambda p: p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p)
  entries = sorted(os.listdir(folder))
  top = [os.path.join(folder, e) for e in entries if is_image(os.path.join(folder, e))]
  by_class = {}
  for e in entries:
    sub = os.path.join(folder, e)
    if os.path.isdir(sub):
      files = [os.path.join(sub, f) for f in sorted(os.listdir(sub)) if is_image(os.path.join(sub, f))]
      if files:
        by_class[e] = files
  names = sorted(by_class)
  paths = top + [p for c in names for p in by_class[c]]
  labels = [-1] * len(top) + [i for i, c in enumerate(names) for _ in by_class[c]]
  if not paths:
    raise FileNotFoundError(
        f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder!r} or its subfolders; expected FOLDER/<class>/<image> "
        "or FOLDER/<image> (for a dataset laid out as <split>/<class>/<image>, point at one split).")
  return paths, np.asarray(labels, np.int32), names


def embed_folder(embed: Encoder, folder: str, chunk: int = 4096) -> dict[str, np.ndarray]:
  """npz fields for the images of `folder`, decoded and embedded `chunk` files at a time."""
  paths, labels, names = list_image_folder(folder)
  feats = []
  for start in range(0, len(paths), chunk):
    try:
      images = sources._decode_files(paths[start:start + chunk])  # pylint: disable=protected-access
    except ValueError as e:
      raise ValueError(f"{e} (embed: the encoder takes {embed.image_size}x{embed.image_size} images)") from None
    feats.append(embed(images))
  return {"embeddings": np.concatenate(feats), "labels": labels, "paths": np.asarray(paths),
          "class_names": np.asarray(names)}


def embed_tfds(embed: Encoder, spec: str, data_dir: str | None = None) -> dict[str, np.ndarray]:
  """npz fields for the TFDS split `NAME:SPLIT` (TFDS split syntax, e.g. cifar10:test[:10%])."""
  name, _, split = spec.partition(":")
  if not name or not split:
    raise ValueError(f"--tfds expects NAME:SPLIT, e.g. cifar10:test, got {spec!r}.")
  ds = sources.load_dataset(name, split, data_dir=data_dir)
  return {"embeddings": embed(ds.images), "labels": ds.labels.astype(np.int32),
          "indices": np.arange(len(ds), dtype=np.int64)}


def run(workdir: str, out: str, *, images: str | None = None, tfds: str | None = None, step: int | None = None,
        data_dir: str | None = None, batch_size: int = 256) -> dict[str, Any]:
  """Embed a folder or a TFDS split with the encoder of `workdir`; write `out` (npz); return a summary."""
  if (images is None) == (tfds is None):
    raise ValueError("give exactly one of --images FOLDER and --tfds NAME:SPLIT.")
  embed, _ = load_encoder(workdir, step, batch_size=batch_size)
  fields = embed_folder(embed, images) if images is not None else embed_tfds(embed, tfds, data_dir)
  fields["step"] = np.asarray(embed.step)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  np.savez(out, **fields)
  n, d = fields["embeddings"].shape
  return {"out": out, "num_images": n, "feature_dim": d, "labelled": int((fields["labels"] >= 0).sum()),
          "checkpoint_step": embed.step}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m contrastive_jax.embed", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="the training run's directory")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--images", help="FOLDER/<class>/<image> or FOLDER/<image>")
  source.add_argument("--tfds", help="NAME:SPLIT, e.g. cifar10:test")
  parser.add_argument("--out", required=True, help="the .npz to write")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
  parser.add_argument("--data_dir", default=None, help="TFDS data_dir")
  parser.add_argument("--batch_size", type=int, default=256)
  args = parser.parse_args(argv)
  try:
    summary = run(args.workdir, args.out, images=args.images, tfds=args.tfds, step=args.step,
                  data_dir=args.data_dir, batch_size=args.batch_size)
  except (FileNotFoundError, ValueError, sources.DatasetUnavailableError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 1
  print(json.dumps(summary), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
