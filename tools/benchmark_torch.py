"""The PyTorch anchor for tools/benchmark.py: a SimCLR step in PyTorch eager on the CPU.

Same model and batch as the JAX CIFAR benchmark: torchvision's ResNet-18 with
the CIFAR stem (3x3 stride-1 conv, no max-pool, fc removed: 11,168,832
parameters), the SimCLR v1 projection head (512 -> 512 BN ReLU -> 128 BN, no
biases), a linear probe on the detached features (as the JAX step's online
probe), NT-Xent over both views, LARS, `--pairs` source images (2x views) per
step.

What it uses is printed: lightly's `NTXentLoss` and `LARS`, and torchvision's
`resnet18`, when they import; otherwise a faithful in-file NT-Xent (lightly's
formula: cosine similarities / T, self-similarity masked, cross-entropy over
the 2N - 1 others), an in-file LARS (SimCLR's: weight decay and the trust ratio
on weights, not on BN parameters or biases) and an in-file copy of torchvision's
ResNet-18. (torchvision and lightly do not import beside the CPU build of torch
2.13.0 on this machine; a venv with torch 2.14.1 + torchvision 0.29.1 + lightly
runs the library versions.)

The inputs are random tensors: no augmentation, which favours this anchor (the
JAX step augments on-device inside its timed step).

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision lightly
  /tmp/torchenv/bin/python tools/benchmark_torch.py [--pairs 64] [--steps 10] [--threads 2] [--channels_last]

(kept out of the project's environment: torch is not a dependency of contrastive-jax).

The last line is a JSON object with pairs_per_sec.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics

import timing  # tools/ is this script's directory, hence on sys.path
import torch
from torch import nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- model


class _BasicBlock(nn.Module):
  """torchvision.models.resnet.BasicBlock."""
  expansion = 1

  def __init__(self, inplanes: int, planes: int, stride: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = None
    if stride != 1 or inplanes != planes:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)


class _ResNet18(nn.Module):
  """torchvision.models.resnet18 with its layout, minus fc (kaiming fan_out init as torchvision)."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    layers, inplanes = [], 64
    for i, planes in enumerate((64, 128, 256, 512)):
      stride = 1 if i == 0 else 2
      layers.append(nn.Sequential(_BasicBlock(inplanes, planes, stride), _BasicBlock(planes, planes)))
      inplanes = planes
    self.layer1, self.layer2, self.layer3, self.layer4 = layers
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Identity()
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet18() -> tuple[nn.Module, str]:
  """ResNet-18, CIFAR stem (3x3/1 conv, no max-pool), no fc; and where it came from."""
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
    net, source = torchvision.models.resnet18(), f"torchvision {torchvision.__version__} resnet18"
  except Exception:  # pylint: disable=broad-except
    net, source = _ResNet18(), "in-file copy of torchvision's resnet18 (torchvision does not import)"
  net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
  nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
  net.maxpool = nn.Identity()
  net.fc = nn.Identity()
  return net, source


class SimCLRNet(nn.Module):
  def __init__(self, num_classes: int = 10):
    super().__init__()
    self.encoder, self.encoder_source = cifar_resnet18()
    self.head = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                              nn.Linear(512, 128, bias=False), nn.BatchNorm1d(128))
    self.probe = nn.Linear(512, num_classes)

  def forward(self, x: torch.Tensor):
    h = self.encoder(x)
    return h, self.head(h), self.probe(h.detach())


# ----------------------------------------------------------------------------- loss and optimiser


class NTXent(nn.Module):
  """lightly's NTXentLoss (no memory bank, one process), written out."""

  def __init__(self, temperature: float = 0.5):
    super().__init__()
    self.temperature = temperature

  def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
    n = out0.shape[0]
    z = F.normalize(torch.cat([out0, out1]), dim=1)
    logits = z @ z.T / self.temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, labels)


class SimpleLARS(torch.optim.Optimizer):
  """SimCLR's LARS: momentum SGD; weights (ndim > 1) get weight decay and the trust ratio."""

  def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
               trust_coefficient: float = 1e-3):
    super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                  trust_coefficient=trust_coefficient))

  @torch.no_grad()
  def step(self, closure=None):
    for group in self.param_groups:
      for p in group["params"]:
        if p.grad is None:
          continue
        g = p.grad
        if p.ndim > 1:
          g = g.add(p, alpha=group["weight_decay"])
          w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
          ratio = torch.where((w_norm > 0) & (g_norm > 0), group["trust_coefficient"] * w_norm / g_norm,
                              torch.ones_like(w_norm))
          g = g * ratio
        state = self.state[p]
        buf = state.get("momentum")
        if buf is None:
          buf = state["momentum"] = torch.clone(g).detach()
        else:
          buf.mul_(group["momentum"]).add_(g)
        p.add_(buf, alpha=-group["lr"])


def make_loss_and_optimizer(model: nn.Module, temperature: float, lr: float):
  try:
    from lightly.loss import NTXentLoss  # pylint: disable=g-import-not-at-top
    from lightly.utils.lars import LARS  # pylint: disable=g-import-not-at-top
    import lightly  # pylint: disable=g-import-not-at-top
    loss = NTXentLoss(temperature=temperature)
    # SimCLR's masks: lightly's LARS skips decay and the trust ratio in groups with weight_decay 0.
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    opt = LARS([{"params": weights}, {"params": others, "weight_decay": 0.0}],
               lr=lr, momentum=0.9, weight_decay=1e-4, trust_coefficient=1e-3)
    return loss, opt, f"lightly {lightly.__version__} NTXentLoss + LARS"
  except Exception as e:  # pylint: disable=broad-except
    why = f"{type(e).__name__}: {e}".splitlines()[0][:120]
    return (NTXent(temperature), SimpleLARS(model.parameters(), lr=lr),
            f"in-file NT-Xent (lightly's formula) + in-file LARS (lightly does not import: {why})")


# ----------------------------------------------------------------------------- benchmark


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--pairs", type=int, default=64, help="source images per step (2x views)")
  p.add_argument("--steps", type=int, default=10, help="timed steps")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
  p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
  p.add_argument("--channels_last", action="store_true", help="NHWC memory format for model and input")
  p.add_argument("--temperature", type=float, default=0.5)
  p.add_argument("--profile", type=int, default=0,
                 help="> 0: after timing, profile this many steps (torch.profiler) and print the top ops by self "
                      "CPU time, beside tools/profile_ops.py's table of the JAX step")
  args = p.parse_args()

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = SimCLRNet()
  memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
  model = model.to(memory_format=memory_format).train()
  criterion, opt, loss_source = make_loss_and_optimizer(model, args.temperature, lr=0.5)
  n = args.pairs
  x1 = torch.rand(n, 3, 32, 32).contiguous(memory_format=memory_format)
  x2 = torch.rand(n, 3, 32, 32).contiguous(memory_format=memory_format)
  labels = torch.randint(0, 10, (n,))
  encoder_params = sum(p.numel() for p in model.encoder.parameters())

  def step() -> float:
    opt.zero_grad(set_to_none=True)
    _, z, logits = model(torch.cat([x1, x2]))
    loss = criterion(z[:n], z[n:]) + F.cross_entropy(logits, torch.cat([labels, labels]))
    loss.backward()
    opt.step()
    return float(loss)

  times, loss = timing.step_seconds(step, warmup=args.warmup, steps=args.steps)
  median = statistics.median(times)
  result = {
      "pairs_per_sec": n / median, "views_per_sec": 2 * n / median, "step_time_s_median": median,
      "step_time_s_min": min(times), "step_time_s_mean": statistics.fmean(times), "steps": args.steps,
      "warmup": args.warmup, "pairs": n, "threads": torch.get_num_threads(), "channels_last": args.channels_last,
      "loss": loss, "torch_version": torch.__version__, "encoder": model.encoder_source,
      "encoder_params": encoder_params, "loss_and_optimizer": loss_source, "augmentation": "none (random tensors)",
      "machine": platform.machine(),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  }
  print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'channels_last' if args.channels_last else 'NCHW'}; encoder: {result['encoder']} "
        f"({encoder_params:,} params); {loss_source}")
  print(f"{n} pairs/step: step median {median * 1e3:.1f} ms (min {min(times) * 1e3:.1f}, "
        f"mean {result['step_time_s_mean'] * 1e3:.1f}) over {args.steps} steps -> "
        f"{result['pairs_per_sec']:.1f} pairs/s ({result['views_per_sec']:.1f} views/s); loss {loss:.4f}")
  if args.profile > 0:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
      for _ in range(args.profile):
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), flush=True)
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
