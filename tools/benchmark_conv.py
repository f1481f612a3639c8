"""Forward and forward+backward time of one convolution per `conv_impl`, at ResNet shapes.

  python tools/benchmark_conv.py                          # ResNet-18 CIFAR 3x3 convs, 128 views
  python tools/benchmark_conv.py --impls xla,winograd --batch 256 --repeats 5

Each shape is [batch, size, size, C] -> C out channels with a 3x3 kernel (stride 1,
padding 1 unless --stride 2), i.e. the 3x3 convolutions of ResNet-18's four
stages on 32 px CIFAR inputs by default. Forward+backward is `jax.grad` of
sum(conv(x, w) * r) for both x and w, with r an argument (not a constant the
compiler could fold). Times are the best of --repeats after one warm-up call.
"direct GFLOP/s" is 3 x the multiply-adds of the direct convolution over all
9 taps (zero padding included) per second: a common yardstick, not what ran
(Winograd multiplies 2.25x less, XLA skips the padding).
It also prints the largest relative difference of each lowering's outputs and
gradients from XLA's convolution. Last line: one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os


import hugepages  # noqa: E402  (tools/ is this script's directory, hence on sys.path)
import timing  # noqa: E402


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--impls", default="xla,im2col,winograd", help="comma-separated conv_impl values")
  ap.add_argument("--batch", type=int, default=128, help="images (views) per call")
  ap.add_argument("--shapes", default="32x64,16x128,8x256,4x512", help="size x channels, comma-separated")
  ap.add_argument("--stride", type=int, default=1)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--nohugepages", action="store_true", help="do not re-run with glibc huge pages")
  args = ap.parse_args()
  if not args.nohugepages:
    hugepages.reexec_with_hugepages()

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from contrastive_jax.models.conv import convolve  # pylint: disable=g-import-not-at-top

  stride, padding = (args.stride, args.stride), ((1, 1), (1, 1))

  def best_ms(f, *a):
    return 1e3 * timing.best_seconds(f, *a, repeats=args.repeats)

  results = []
  for shape in args.shapes.split(","):
    size, channels = (int(v) for v in shape.split("x"))
    kx, kw, kr = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (args.batch, size, size, channels))
    w = jax.random.normal(kw, (3, 3, channels, channels)) * (2.0 / (9 * channels)) ** 0.5
    out = size // args.stride
    r = jax.random.normal(kr, (args.batch, out, out, channels))
    gflop = 2 * args.batch * out * out * 9 * channels * channels / 1e9
    reference = None
    for impl in args.impls.split(","):
      conv = lambda x, w, impl=impl: convolve(x, w, stride, padding, impl)
      fwd = jax.jit(conv)
      grad = jax.jit(jax.grad(lambda x, w, r, conv=conv: jnp.sum(conv(x, w) * r), argnums=(0, 1)))
      values = (fwd(x, w), *grad(x, w, r))
      if reference is None:
        reference = values
      err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(values, reference))
      row = {"impl": impl, "size": size, "channels": channels, "batch": args.batch, "stride": args.stride,
             "forward_ms": best_ms(fwd, x, w), "forward_backward_ms": best_ms(grad, x, w, r),
             "direct_gflop_forward": gflop, "max_rel_diff_vs_first": err}
      results.append(row)
      print(f"{size:3d} px x {channels:3d} ch, batch {args.batch}: {impl:8s} forward {row['forward_ms']:7.1f} ms, "
            f"fwd+bwd {row['forward_backward_ms']:7.1f} ms ({3 * gflop / row['forward_backward_ms'] * 1e3:6.1f} "
            f"direct GFLOP/s), max rel. diff vs {args.impls.split(',')[0]} {err:.1e}", flush=True)
  print(json.dumps({"results": results, "backend": jax.default_backend(), "jax_version": jax.__version__,
                    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}))


if __name__ == "__main__":
  main()
