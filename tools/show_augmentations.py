"""Writes a PNG grid of the views of real CIFAR-10 images, one row per view config.

For each image, one row per view config: the original, then N augmented views
with that view's settings. The view configs are those of a config's view list
(`--config experiments/cifar10_byol.py:cpu`: `views.view_configs`, so per-view
settings such as BYOL's asymmetric blur / solarize, a rotation or multi-crop
sizes show as they train), or else one `ViewAugment` preset (`--preset`).
Each view is drawn at its own size (a multi-crop's small crops smaller), all
upscaled by one nearest-neighbour factor. A legend at the top lists each
view's settings.

  python tools/show_augmentations.py --out docs/augmentations.png
  python tools/show_augmentations.py --config experiments/imagenet_byol.py --out /tmp/byol.png
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from contrastive_jax import augment  # noqa: E402
from contrastive_jax import views as views_lib  # noqa: E402

PAD = 4         # px between cells
MARGIN = 28     # px left of each row for its view label
LINE = 12       # px per legend line
TARGET = 128    # px: the auto scale makes the largest view about this big


def load_images(data: pathlib.Path, n: int, split: str = "test") -> np.ndarray:
  """One image from each of the first n classes: float32 [n, 32, 32, 3]."""
  classes = sorted(p for p in (data / split).iterdir() if p.is_dir())
  if not classes:
    raise SystemExit(f"no class folders under {data / split}")
  images = []
  for i in range(n):
    path = sorted((classes[i % len(classes)]).glob("*.jpg"))[i // len(classes)]
    images.append(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)
  return np.stack(images)


def view_list(spec: str | None, preset: str) -> tuple[augment.ViewAugment, ...]:
  """The view configs of `path.py[:preset]` (views.view_configs), else one preset view."""
  if spec is None:
    return ({"cifar10": augment.ViewAugment.cifar10,
             "imagenet": augment.ViewAugment.imagenet}[preset](),)
  from contrastive_jax.cli import load_config  # pylint: disable=g-import-not-at-top
  # A host-crop view (crop=False) expects images cropped in tf.data; these are whole
  # images, so the device crop runs instead, with the view's area and aspect ranges.
  return tuple(dataclasses.replace(v, crop=True) for v in views_lib.view_configs(load_config(spec)))


def describe(i: int, view: augment.ViewAugment) -> str:
  """One legend line: the settings that tell views apart."""
  lo, hi = view.crop_area_range
  text = (f"v{i}: {view.image_size}px crop {lo:g}-{hi:g} flip {view.flip_p:g} "
          f"jitter {view.jitter_p:g} gray {view.grayscale_p:g} blur {view.blur_p:g} "
          f"solarize {view.solarize_p:g}")
  if view.rotate_p > 0:
    text += f" rotate {view.rotate_p:g} +-{view.rotate_max_degrees:g} deg"
  return text


def draw_grid(images: np.ndarray, views: list[list[np.ndarray]], labels: list[str],
              scale: int) -> Image.Image:
  """The grid: per image, one row per view config [original | its views].

  Args:
    images: [R, H, W, 3] originals.
    views: views[v][k] is the k-th draw of view config v, [R, S_v, S_v, 3]
      (each view config its own size).
    labels: one legend line per view config.
    scale: nearest-neighbour upscale factor.

  Returns:
    the RGB image.
  """
  num_images, num_views, num_draws = len(images), len(views), len(views[0])
  sides = [max(images.shape[1:3])] + [max(draws[0].shape[1:3]) for draws in views]
  cell = max(sides) * scale
  top = PAD + LINE * len(labels)
  height = top + (cell + PAD) * num_images * num_views + PAD * (num_images - 1)
  legend = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(t) for t in labels)
  width = max(MARGIN + (cell + PAD) * (num_draws + 1) + PAD + PAD, int(legend) + 2 * PAD)
  grid = np.ones((height, width, 3), np.float32)
  text_rows = []
  for r in range(num_images):
    for v, draws in enumerate(views):
      y = top + (r * num_views + v) * (cell + PAD) + r * PAD  # a gap between images
      text_rows.append((y, f"v{v}"))
      for c, img in enumerate([images[r]] + [d[r] for d in draws]):
        big = np.repeat(np.repeat(np.clip(img, 0, 1), scale, 0), scale, 1)
        x = MARGIN + c * (cell + PAD) + (PAD if c > 0 else 0)  # a gap after the original
        oy, ox = (cell - big.shape[0]) // 2, (cell - big.shape[1]) // 2  # centred in its cell
        grid[y + oy:y + oy + big.shape[0], x + ox:x + ox + big.shape[1]] = big
  out = Image.fromarray((grid * 255).round().astype(np.uint8))
  draw = ImageDraw.Draw(out)
  for i, label in enumerate(labels):
    draw.text((PAD, PAD + i * LINE), label, fill=(0, 0, 0))
  for y, text in text_rows:
    draw.text((PAD, y + cell // 2 - 5), text, fill=(0, 0, 0))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "cifar10")
  parser.add_argument("--out", type=pathlib.Path, default=REPO / "docs" / "augmentations.png")
  parser.add_argument("--config", default=None,
                      help="path.py[:preset]: draw its view list (config.augment.views)")
  parser.add_argument("--preset", choices=("cifar10", "imagenet"), default="cifar10",
                      help="the one view config without --config")
  parser.add_argument("--rows", type=int, default=8, help="images")
  parser.add_argument("--views", type=int, default=8, help="draws per view config")
  parser.add_argument("--scale", type=int, default=None,
                      help=f"nearest-neighbour upscale (default: largest view about {TARGET} px)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  images = load_images(args.data, args.rows)
  configs = view_list(args.config, args.preset)
  key = jax.random.PRNGKey(args.seed)
  views = [[np.asarray(augment.augment_batch(jax.random.fold_in(jax.random.fold_in(key, v), k),
                                              images, config))
            for k in range(args.views)] for v, config in enumerate(configs)]
  largest = max([max(images.shape[1:3])] + [c.image_size for c in configs])
  scale = args.scale or max(1, round(TARGET / largest))
  labels = [describe(i, c) for i, c in enumerate(configs)]
  args.out.parent.mkdir(parents=True, exist_ok=True)
  draw_grid(images, views, labels, scale).save(args.out)
  print(f"wrote {args.out} ({args.rows} images x {len(configs)} view configs x "
        f"(original + {args.views} views))")
  for label in labels:
    print(" ", label)


if __name__ == "__main__":
  main()
