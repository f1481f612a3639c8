"""The anchor for tools/benchmark_augment.py: torchvision's SimCLR CIFAR transform on one core.

Two-view images/s of the standard SimCLR CIFAR-10 pipeline as PyTorch users write it
(Chen et al. 2020, appendix B.9; lightly's and solo-learn's CIFAR defaults): RandomResizedCrop(32,
scale 0.08-1), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8, grayscale with
p = 0.2, ToTensor; no blur at 32 px. Each image is a 32x32 PIL image (as torchvision's CIFAR10
dataset yields them) and is transformed twice, one image at a time, in this one process with
torch.set_num_threads(1): what one DataLoader worker does per core. Run it pinned to one core
beside `tools/benchmark_augment.py` (same machine, nothing else running):

  taskset -c 0 python tools/benchmark_augment_torch.py [--images 2048] [--repeats 5] [--pipeline lightly]

--pipeline lightly times lightly's SimCLRTransform with its CIFAR-10 benchmark settings instead
(input_size 32, cj_strength 0.5, no blur; it also normalises), which returns both views per call.

Needs torch and torchvision (not project dependencies). Prints best and median over --repeats
passes over --images random images; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def simclr_cifar_transform():
  """torchvision's SimCLR CIFAR-10 view: crop, flip, jitter (p 0.8), grayscale (p 0.2), to tensor."""
  from torchvision import transforms  # pylint: disable=g-import-not-at-top
  return transforms.Compose([
      transforms.RandomResizedCrop(32, scale=(0.08, 1.0)),
      transforms.RandomHorizontalFlip(),
      transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
      transforms.RandomGrayscale(p=0.2),
      transforms.ToTensor(),
  ])


def lightly_cifar_transform():
  """lightly's SimCLRTransform as its CIFAR-10 benchmark builds it: both views per call."""
  from lightly.transforms import SimCLRTransform  # pylint: disable=g-import-not-at-top
  return SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--images", type=int, default=2048, help="images per timed pass (two views each)")
  ap.add_argument("--repeats", type=int, default=5, help="timed passes")
  ap.add_argument("--pipeline", choices=("torchvision", "lightly"), default="torchvision")
  args = ap.parse_args()

  import PIL.Image  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(1)
  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  images = [PIL.Image.fromarray(a) for a in rng.integers(0, 256, (args.images, 32, 32, 3), np.uint8)]
  if args.pipeline == "lightly":
    two_views = lightly_cifar_transform()
  else:
    one_view = simclr_cifar_transform()
    two_views = lambda image: (one_view(image), one_view(image))
  for image in images[:256]:  # warm-up
    two_views(image)
  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for image in images:
      two_views(image)
    rates.append(args.images / (time.perf_counter() - start))
  rates.sort()
  best, median = rates[-1], rates[len(rates) // 2]
  cores = len(os.sched_getaffinity(0))
  print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, 1 thread, {cores} core(s) allowed, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
  print(f"  32x32 SimCLR CIFAR transform ({args.pipeline}), two views: {best:8.0f} two-view img/s (median {median:8.0f})")
  print(json.dumps({"two_view_per_sec_best": best, "two_view_per_sec_median": median, "images": args.images,
                    "repeats": args.repeats, "pipeline": args.pipeline, "cores_allowed": cores, "torch": torch.__version__,
                    "torchvision": torchvision.__version__}))


if __name__ == "__main__":
  main()
