"""PyTorch peer for the SimCLR CIFAR-10 throughput comparison: lightly's benchmark loop, timed.

A standalone PyTorch SimCLR training loop set up the way lightly's CIFAR-10
benchmark trains its `SimCLRModel`, so the JAX SimCLR run and this one can be
compared in epochs per second on the same GPU in the same session. It trains for
real (augmented CIFAR-10 JPEGs, NT-Xent, SGD) but only measures speed: no kNN
evaluation, no checkpoints.

Follows lightly-ai/lightly at commit e8d317fc5a87f4387a85a35e689869039ec249ee
(2026-08-21; the benchmark file last changed in 050f5264251be0f570349ac3679960172c01d131):
  docs/source/getting_started/benchmarks/cifar10_benchmark.py   (SimCLRModel, loaders, settings)
  lightly/transforms/simclr_transform.py                        (SimCLRViewTransform)
  lightly/models/resnet.py                                      (ResNetGenerator("resnet-18"))
  lightly/models/modules/heads.py                               (SimCLRProjectionHead)
  lightly/loss/ntx_ent_loss.py                                  (NTXentLoss)
What it reproduces (written with plain torch/torchvision, no lightly import):
  transforms  SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0), per view:
              RandomResizedCrop(32, scale=(0.08, 1.0)), RandomHorizontalFlip(0.5),
              RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), RandomGrayscale(0.2),
              to float tensor in [0, 1], Normalize(IMAGENET mean (0.485, 0.456, 0.406),
              std (0.229, 0.224, 0.225)); two independent views per image, in DataLoader
              workers; torchvision.transforms.v2 when present, else v1 (as lightly picks).
  backbone    lightly's ResNet-18 as the benchmark slices it: 3x3 stride-1 stem conv, BN, no
              max-pool, 4 stages of 2 BasicBlocks (64/128/256/512), global average pool, 512-d.
              Built from torchvision.models.resnet18() (the same layers), with two details of
              lightly's version: the stem has no ReLU (the benchmark keeps
              `resnet.children()[:-1]`, and lightly's stem ReLU is a functional call in
              forward(), not a child) and PyTorch's default layer init (torchvision's kaiming
              fan_out init is undone). 11,168,832 backbone parameters.
  head        SimCLRProjectionHead(512, 512, 128): Linear(512, 512, no bias) BN ReLU
              Linear(512, 128, no bias) BN.
  loss        NTXentLoss() defaults: temperature 0.5, in-batch negatives (2N - 2 per anchor),
              symmetric over both views, no memory bank.
  forward     the two views go through the model separately (BN statistics per view), as
              lightly's training_step does.
  optimizer   SGD(all parameters, lr = 0.06 * batch_size / 128 (0.24 at 512), momentum 0.9,
              weight_decay 5e-4), CosineAnnealingLR(T_max=200 epochs) stepped per epoch (so
              over a short timing run the lr is practically constant; the schedule costs
              nothing measurable).
  loader      shuffle, drop_last, batch 512 (the benchmark's results table has 128 and 512).
Differences from lightly's benchmark:
  - No PyTorch Lightning: a plain loop (zero_grad / backward / step) instead of
    Trainer.fit; no logging, no checkpoint callback, no per-epoch kNN validation
    (lightly's reported times include the kNN pass over train + test every epoch).
  - GPU: bf16 autocast, channels_last model and inputs, cudnn.benchmark, pinned memory
    with non_blocking copies, persistent workers; lightly runs fp32 (Lightning's
    default precision), NCHW, no pin_memory, workers restarted every epoch. The NT-Xent
    loss is computed in float32 outside autocast. Optional --compile (torch.compile).
  - workers default os.cpu_count() (lightly: 8).
  - Data is an ImageFolder of JPEGs (<root>/train/<class>/*.jpg) read with
    torchvision.datasets.ImageFolder; lightly's benchmark reads PNGs via LightlyDataset
    (same PIL loading, RGB). No-op augmentations of lightly's view transform (vertical
    flip p=0, rotation p=0, Gaussian blur p=0) are left out.
  - NT-Xent is written as one (2N x 2N) similarity matrix with the diagonal masked; it is
    the same loss as lightly's four-block formulation.
  - Single device only (lightly's distributed / sync-BN options are off by default there too).

Timing: epoch 1 includes warm-up (worker start, cudnn autotuning, compile), so the
headline is epochs/s over epochs 2..N; the overall figure (all epochs) is reported too.
Epoch time is wall time from asking the loader for the first batch to the device being
idle after the last step. With --steps the last epoch may be partial; rates count it as
a fraction of an epoch (steps / steps_per_epoch). data_wait_s is host time spent blocked
on the loader; when it is a large part of the epoch the loop is input-bound (the loss is
read back only once, at step 1, and per-epoch means at epoch ends, so the host otherwise
runs ahead of the GPU).

  # GPU (the comparison run)
  python tools/peer_torch_simclr.py --data /path/to/cifar10 --epochs 3 --json_out peer.json
  python tools/peer_torch_simclr.py --data /path/to/cifar10 --epochs 3 --compile
  # CPU dry run (tiny)
  python tools/peer_torch_simclr.py --data /work/shared/data/cifar10 --device cpu \\
      --limit 256 --batch_size 64 --epochs 2 --workers 2

torch is not a dependency of contrastive-jax; run this from its own environment, e.g.
  python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch torchvision pillow numpy

Readable lines first; the LAST line is one JSON object (what = "pytorch_simclr_peer").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable, Optional

import torch
from torch import nn
import torch.nn.functional as F
import torchvision
from torchvision import datasets

try:  # lightly uses transforms v2 when torchvision has it
  from torchvision.transforms import v2 as T
  _V2 = True
except ImportError:  # pragma: no cover - old torchvision
  from torchvision import transforms as T
  _V2 = False

LIGHTLY_COMMIT = "e8d317fc5a87f4387a85a35e689869039ec249ee"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- data


def view_transform(input_size: int = 32, cj_strength: float = 0.5) -> Callable[[Any], torch.Tensor]:
  """One SimCLR view, as lightly's SimCLRViewTransform with gaussian_blur=0."""
  jitter = T.ColorJitter(brightness=0.8 * cj_strength, contrast=0.8 * cj_strength,
                         saturation=0.8 * cj_strength, hue=0.2 * cj_strength)
  # v2 deprecates ToTensor; ToImage + ToDtype(scale) is the same [0, 1] float tensor.
  to_tensor = [T.ToImage(), T.ToDtype(torch.float32, scale=True)] if _V2 else [T.ToTensor()]
  return T.Compose([
      T.RandomResizedCrop(size=input_size, scale=(0.08, 1.0)),
      T.RandomHorizontalFlip(p=0.5),
      T.RandomApply([jitter], p=0.8),
      T.RandomGrayscale(p=0.2),
      *to_tensor,
      T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
  ])


class TwoViews:
  """Two independently augmented views of one image (picklable for workers)."""

  def __init__(self, transform: Callable[[Any], torch.Tensor]):
    self.transform = transform

  def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return self.transform(image), self.transform(image)


def make_loader(root: str, batch_size: int, workers: int, limit: Optional[int],
                pin_memory: bool, seed: int) -> torch.utils.data.DataLoader:
  train_dir = os.path.join(root, "train")
  dataset: torch.utils.data.Dataset = datasets.ImageFolder(train_dir, transform=TwoViews(view_transform()))
  if limit is not None:
    dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
  if len(dataset) < batch_size:
    raise SystemExit(f"{len(dataset)} images < batch size {batch_size}: with drop_last there is no step")
  return torch.utils.data.DataLoader(
      dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
      pin_memory=pin_memory, persistent_workers=workers > 0,
      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- model


def lightly_resnet18_backbone() -> nn.Module:
  """lightly's ResNetGenerator('resnet-18') as the benchmark uses it, from torchvision's layers.

  Output: (B, 512) features. Same layers and shapes; see the module docstring for the stem
  ReLU and init details.
  """
  net = torchvision.models.resnet18()
  net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
  net.maxpool = nn.Identity()
  net.relu = nn.Identity()  # only the stem uses net.relu; blocks have their own ReLUs
  net.fc = nn.Identity()
  for m in net.modules():
    # lightly keeps PyTorch's default init; torchvision re-inits convs (kaiming fan_out).
    if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
      m.reset_parameters()
  return net


class SimCLRNet(nn.Module):

  def __init__(self, hidden_dim: int = 512, out_dim: int = 128):
    super().__init__()
    self.backbone = lightly_resnet18_backbone()
    # SimCLRProjectionHead(512, 512, 128): no Linear biases where BN follows.
    self.head = nn.Sequential(
        nn.Linear(512, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.head(self.backbone(x))


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float) -> torch.Tensor:
  """NT-Xent over both views: each of the 2N embeddings against the other 2N - 1."""
  n = z0.shape[0]
  z = F.normalize(torch.cat([z0, z1]), dim=1)
  logits = z @ z.T / temperature
  logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
  # Built on the device: a host tensor's .to(cuda) is a pageable copy, which syncs every step.
  labels = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
  return F.cross_entropy(logits, labels)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--data", required=True, help="folder holding train/<class>/*.jpg")
  p.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
  p.add_argument("--batch_size", type=int, default=512)
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--steps", type=int, default=None,
                 help="stop after this many steps in total (overrides --epochs; the last epoch may be partial)")
  p.add_argument("--limit", type=int, default=None, help="use only the first N images (dry runs)")
  p.add_argument("--amp", choices=("auto", "bf16", "none"), default="auto",
                 help="auto: bf16 autocast on cuda, none on cpu")
  p.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                 help="default: on for cuda, off for cpu")
  p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
  p.add_argument("--temperature", type=float, default=0.5, help="lightly NTXentLoss default")
  p.add_argument("--base_lr", type=float, default=0.06, help="lr = base_lr * batch_size / 128")
  p.add_argument("--schedule_epochs", type=int, default=200, help="cosine T_max (lightly max_epochs)")
  p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (cpu)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json_out", default=None)
  return p.parse_args(argv)


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "cpu"


def _finite(x: Optional[float]) -> Optional[float]:
  return x if x is not None and math.isfinite(x) else None


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
  args = parse_args(argv)
  device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
  cuda = device.type == "cuda"
  amp = args.amp if args.amp != "auto" else ("bf16" if cuda else "none")
  channels_last = args.channels_last if args.channels_last is not None else cuda
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  if cuda:
    torch.backends.cudnn.benchmark = True
  device_name = torch.cuda.get_device_name(device) if cuda else cpu_name()

  loader = make_loader(args.data, args.batch_size, args.workers, args.limit, pin_memory=cuda, seed=args.seed)
  steps_per_epoch = len(loader)
  total_steps = args.epochs * steps_per_epoch if args.steps is None else args.steps
  n_epochs = math.ceil(total_steps / steps_per_epoch)

  model = SimCLRNet().to(device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  n_params = sum(p.numel() for p in model.backbone.parameters())
  lr = args.base_lr * args.batch_size / 128
  optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
  scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.schedule_epochs)
  fwd = torch.compile(model) if args.compile else model
  autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp == "bf16" else contextlib.nullcontext
  mem = torch.channels_last if channels_last else torch.contiguous_format

  print(f"device {device_name} | torch {torch.__version__} torchvision {torchvision.__version__} "
        f"(transforms {'v2' if _V2 else 'v1'}) | images {len(loader.dataset)} batch {args.batch_size} "
        f"steps/epoch {steps_per_epoch} workers {args.workers}")
  print(f"model: lightly ResNet-18 backbone ({n_params:,} params) + head 512-512-128 | NT-Xent T={args.temperature} "
        f"| SGD lr {lr:g} m 0.9 wd 5e-4, cosine over {args.schedule_epochs} epochs | amp {amp} "
        f"channels_last {channels_last} compile {args.compile}", flush=True)

  def sync() -> None:
    if cuda:
      torch.cuda.synchronize(device)

  epoch_times, epoch_steps, data_waits, epoch_losses = [], [], [], []
  loss_first: Optional[float] = None
  last_loss = torch.zeros((), device=device)
  step = 0
  model.train()
  for epoch in range(n_epochs):
    loss_sum = torch.zeros((), device=device)
    n = 0
    wait = 0.0
    t0 = time.perf_counter()
    it = iter(loader)
    while step < total_steps:
      tw = time.perf_counter()
      try:
        (x0, x1), _ = next(it)
      except StopIteration:
        break
      wait += time.perf_counter() - tw
      x0 = x0.to(device, non_blocking=True, memory_format=mem)
      x1 = x1.to(device, non_blocking=True, memory_format=mem)
      with autocast():
        # Separate forwards, as lightly: BN normalises each view's batch on its own.
        z0, z1 = fwd(x0), fwd(x1)
      loss = nt_xent(z0.float(), z1.float(), args.temperature)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
      last_loss = loss.detach()
      loss_sum += last_loss
      if loss_first is None:
        loss_first = last_loss.item()  # one sync, inside the warm-up epoch
      n += 1
      step += 1
    sync()
    dt = time.perf_counter() - t0
    scheduler.step()
    del it
    epoch_times.append(dt)
    epoch_steps.append(n)
    data_waits.append(wait)
    epoch_losses.append(loss_sum.item() / max(n, 1))
    print(f"epoch {epoch + 1}/{n_epochs}: {n} steps {dt:.2f} s ({n * args.batch_size / dt:.0f} img/s, "
          f"data wait {wait:.2f} s) mean loss {epoch_losses[-1]:.4f}", flush=True)
    if step >= total_steps:
      break

  def rate(times: list[float], steps: list[int]) -> tuple[Optional[float], Optional[float]]:
    """(epochs/s, images/s) over these epochs; partial epochs count as fractions."""
    t, s = sum(times), sum(steps)
    if t <= 0 or s == 0:
      return None, None
    return s / steps_per_epoch / t, s * args.batch_size / t

  eps_after, ips_after = rate(epoch_times[1:], epoch_steps[1:])
  eps_all, ips_all = rate(epoch_times, epoch_steps)
  loss_last = last_loss.item()
  result: dict[str, Any] = {
      "what": "pytorch_simclr_peer",
      "device": device_name,
      "torch": torch.__version__,
      "torchvision": torchvision.__version__,
      "batch_size": args.batch_size,
      "workers": args.workers,
      "epochs": len(epoch_times),
      "steps_per_epoch": steps_per_epoch,
      "steps": step,
      "images": len(loader.dataset),
      "epoch_times_s": [round(t, 4) for t in epoch_times],
      "epoch_steps": epoch_steps,
      "data_wait_s": [round(t, 4) for t in data_waits],
      "epochs_per_sec_after_first": eps_after,
      "images_per_sec_after_first": ips_after,
      "views_per_sec_after_first": None if ips_after is None else 2 * ips_after,
      "epochs_per_sec_overall": eps_all,
      "images_per_sec_overall": ips_all,
      "views_per_sec_overall": None if ips_all is None else 2 * ips_all,
      "loss_first": _finite(loss_first),
      "loss_last": _finite(loss_last),
      "epoch_mean_losses": [_finite(x) for x in epoch_losses],
      "amp": amp,
      "channels_last": channels_last,
      "compile": args.compile,
      "lr": lr,
      "temperature": args.temperature,
      "backbone_params": n_params,
      "transforms": "v2" if _V2 else "v1",
      "limit": args.limit,
      "lightly_commit": LIGHTLY_COMMIT,
      "python": platform.python_version(),
  }
  if eps_after is not None:
    print(f"after epoch 1 (epochs 2..{len(epoch_times)}): {eps_after:.4f} epochs/s, {ips_after:.0f} images/s, "
          f"{2 * ips_after:.0f} views/s")
  else:
    print("after epoch 1: no full epoch after the first (warm-up) one; see overall")
  print(f"overall (incl. warm-up): {eps_all:.4f} epochs/s, {ips_all:.0f} images/s, {2 * ips_all:.0f} views/s | "
        f"loss {loss_first:.4f} -> {loss_last:.4f}")
  line = json.dumps(result)
  if args.json_out:
    with open(args.json_out, "w") as f:
      f.write(line + "\n")
  print(line, flush=True)
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
