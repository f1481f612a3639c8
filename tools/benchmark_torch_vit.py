"""The PyTorch anchor for a ViT MoCo v3 step (tools/benchmark.py with a `vit` config), eager, on the CPU.

The same step as `python tools/benchmark.py --config experiments/cifar10_moco_v3.py:vit_cpu`, on
ready tensors (no augmentation, which favours this anchor): timm's `VisionTransformer` of the
same size (class token, no classifier; its position embeddings are learned where ours are fixed
sine-cosine, the same cost), MoCo v3's heads (`moco/builder.py` MoCo_ViT: a 3-layer projector
with BN on the hidden layers and a BN without affine on the output, a 2-layer predictor), the
online forward and backward on 2 views, the momentum encoder's forward on 2 views without
gradient, MoCo v3's symmetric loss x 2T, AdamW, and the EMA update of the momentum encoder.
The patch projection is frozen (`--stop-grad-conv1`), as in the preset.

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch timm
  /tmp/torchenv/bin/python tools/benchmark_torch_vit.py [--pairs 256] [--width 192 --depth 4 --heads 3
      --patch 8 --image 32 --head_hidden 1024] [--steps 3] [--threads 2]

(kept out of the project's environment: torch is not a dependency of contrastive-jax). The last
line is a JSON object with views_per_sec.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics

import timing  # tools/ is this script's directory, hence on sys.path
import torch
from torch import nn
import torch.nn.functional as F


def _mlp(num_layers: int, in_dim: int, hidden: int, out_dim: int, last_bn: bool) -> nn.Sequential:
  """moco/builder.py `_build_mlp`: Linear (no bias) + BN + ReLU, the last BN without affine."""
  layers = []
  for i in range(num_layers):
    d_in = in_dim if i == 0 else hidden
    d_out = out_dim if i == num_layers - 1 else hidden
    layers.append(nn.Linear(d_in, d_out, bias=False))
    if i < num_layers - 1:
      layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    elif last_bn:
      layers.append(nn.BatchNorm1d(d_out, affine=False))
  return nn.Sequential(*layers)


class MoCoViT(nn.Module):
  def __init__(self, args: argparse.Namespace):
    super().__init__()
    import timm  # pylint: disable=g-import-not-at-top
    self.timm_version = timm.__version__
    self.encoder = timm.models.vision_transformer.VisionTransformer(
        img_size=args.image, patch_size=args.patch, embed_dim=args.width, depth=args.depth, num_heads=args.heads,
        num_classes=0)
    self.encoder.patch_embed.proj.weight.requires_grad = False  # --stop-grad-conv1
    self.encoder.patch_embed.proj.bias.requires_grad = False
    self.projector = _mlp(3, args.width, args.head_hidden, args.out_dim, last_bn=True)
    self.predictor = _mlp(2, args.out_dim, args.head_hidden, args.out_dim, last_bn=False)
    self.momentum_encoder = copy.deepcopy(self.encoder)
    self.momentum_projector = copy.deepcopy(self.projector)
    for p in list(self.momentum_encoder.parameters()) + list(self.momentum_projector.parameters()):
      p.requires_grad = False

  def online(self, x):
    return self.predictor(self.projector(self.encoder(x)))

  @torch.no_grad()
  def target(self, x):
    return self.momentum_projector(self.momentum_encoder(x))

  @torch.no_grad()
  def ema(self, m: float):
    for online, target in ((self.encoder, self.momentum_encoder), (self.projector, self.momentum_projector)):
      for p, q in zip(online.parameters(), target.parameters()):
        q.mul_(m).add_(p.detach(), alpha=1 - m)


def contrastive(q, k, t: float):
  """moco/builder.py `contrastive_loss` (one process): CE over the batch's keys, x 2T."""
  q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
  logits = q @ k.T / t
  return F.cross_entropy(logits, torch.arange(q.shape[0])) * (2 * t)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--pairs", type=int, default=256)
  p.add_argument("--image", type=int, default=32)
  p.add_argument("--patch", type=int, default=8)
  p.add_argument("--width", type=int, default=192)
  p.add_argument("--depth", type=int, default=4)
  p.add_argument("--heads", type=int, default=3)
  p.add_argument("--head_hidden", type=int, default=1024)
  p.add_argument("--out_dim", type=int, default=256)
  p.add_argument("--temperature", type=float, default=0.2)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--threads", type=int, default=2)
  args = p.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = MoCoViT(args)
  opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1.5e-4, weight_decay=0.1)
  x1 = torch.randn(args.pairs, 3, args.image, args.image)
  x2 = torch.randn(args.pairs, 3, args.image, args.image)

  def step():
    q1, q2 = model.online(x1), model.online(x2)
    k1, k2 = model.target(x1), model.target(x2)
    loss = contrastive(q1, k2, args.temperature) + contrastive(q2, k1, args.temperature)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    model.ema(0.99)
    return float(loss)

  times, loss = timing.step_seconds(step, warmup=args.warmup, steps=args.steps)
  median = statistics.median(times)
  encoder_params = sum(q.numel() for q in model.encoder.parameters())
  print(f"torch {torch.__version__}, timm {model.timm_version}, {args.threads} threads: ViT width {args.width}, "
        f"depth {args.depth}, patch {args.patch} at {args.image} px ({encoder_params:,} encoder parameters), "
        f"batch {args.pairs}; step median {median * 1e3:.1f} ms over {args.steps} steps; loss {loss:.4f}")
  print(json.dumps({
      "pairs_per_sec": args.pairs / median, "views_per_sec": 2 * args.pairs / median,
      "step_time_s_median": median, "step_times_s": times, "loss": loss, "torch_version": torch.__version__,
      "timm_version": model.timm_version, "threads": args.threads, "encoder_parameters": encoder_params,
      "machine": platform.machine(),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **vars(args)}))


if __name__ == "__main__":
  main()
