"""Writes a PNG grid of SimCLR views of real CIFAR-10 images.

Each row: the original image, then N augmented views with
`SimCLRAugment.cifar10()` (or --preset imagenet), upscaled (nearest) for
visibility.

  python tools/show_augmentations.py --out docs/augmentations.png
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from contrastive_jax import augment  # noqa: E402


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


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "cifar10")
  parser.add_argument("--out", type=pathlib.Path, default=REPO / "docs" / "augmentations.png")
  parser.add_argument("--rows", type=int, default=8)
  parser.add_argument("--views", type=int, default=8)
  parser.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscale")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  images = load_images(args.data, args.rows)
  config = augment.SimCLRAugment.cifar10()
  keys = jax.random.split(jax.random.PRNGKey(args.seed), args.views)
  views = [np.asarray(augment.simclr_augment(k, images, config)) for k in keys]
  size, pad = 32 * args.scale, 4
  grid = np.ones(((size + pad) * args.rows + pad, (size + pad) * (args.views + 1) + pad + pad, 3))
  for r in range(args.rows):
    for c, img in enumerate([images[r]] + [v[r] for v in views]):
      big = np.repeat(np.repeat(img, args.scale, 0), args.scale, 1)
      y = pad + r * (size + pad)
      x = pad + c * (size + pad) + (pad if c > 0 else 0)  # gap after the original
      grid[y:y + size, x:x + size] = big
  args.out.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray((grid * 255).round().astype(np.uint8)).save(args.out)
  print(f"wrote {args.out} ({args.rows} images x (original + {args.views} views), {config})")


if __name__ == "__main__":
  main()
