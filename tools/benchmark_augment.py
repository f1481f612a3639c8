"""Two-view throughput of `augment_batch` on this machine's CPU.

Prints two-view images/s (both SimCLR views of every image, one jitted call)
for 32x32 (batch 1024, ViewAugment.cifar10) and 224x224 (batch 128,
ViewAugment.imagenet, with the on-device crop and with crop=False as when
the host crops), first with all cores XLA uses, then pinned to one core
(`taskset -c 0`, --xla_cpu_multi_thread_eigen=false,
intra_op_parallelism_threads=1) in a subprocess.

The anchor, run beside it on the same machine: `taskset -c 0 python
tools/benchmark_augment_torch.py` (torchvision's SimCLR CIFAR transform on one
core; needs torch and torchvision). The goal is >= 10x its two-view images/s
per core at 32x32.

On Linux the process re-executes itself with GLIBC_TUNABLES=glibc.malloc.hugetlb=1
(as tools/benchmark.py), so that glibc backs XLA's large buffers with
transparent huge pages; --nohugepages measures without.

  python tools/benchmark_augment.py [--repeats 20] [--no-single] [--nohugepages]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time


import hugepages  # noqa: E402  (tools/ is this script's directory, hence on sys.path)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

SINGLE_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"




def measure(repeats: int) -> list[tuple[str, float]]:
  import jax  # pylint: disable=g-import-not-at-top
  from contrastive_jax import augment  # pylint: disable=g-import-not-at-top

  cases = [
      ("32x32   B=1024 cifar10", 1024, 32, augment.ViewAugment.cifar10()),
      ("224x224 B=128  imagenet (device crop)", 128, 224, augment.ViewAugment.imagenet()),
      ("224x224 B=128  imagenet crop=False", 128, 224, augment.ViewAugment.imagenet(crop=False)),
  ]
  results = []
  for name, batch, size, config in cases:
    images = jax.random.uniform(jax.random.PRNGKey(0), (batch, size, size, 3))

    @jax.jit
    def two_views(key, images, config=config):
      k1, k2 = jax.random.split(key)
      return augment.augment_batch(k1, images, config), augment.augment_batch(k2, images, config)

    jax.block_until_ready(two_views(jax.random.PRNGKey(0), images))  # compile
    times = []
    for i in range(repeats if size <= 32 else max(3, repeats // 4)):
      start = time.perf_counter()
      jax.block_until_ready(two_views(jax.random.PRNGKey(i + 1), images))
      times.append(time.perf_counter() - start)
    # Best and median: the machine may be shared, the best is the least disturbed.
    times.sort()
    results.append((name, batch / times[0], batch / times[len(times) // 2]))
  return results


def report(title: str, results, cores: int) -> None:
  # The load average says how shared the machine was while measuring.
  load = " ".join(f"{v:.2f}" for v in os.getloadavg())
  print(f"{title}: XLA uses {cores} core(s), load average {load}")
  for name, best, median in results:
    print(f"  {name:40s} {best:10.0f} two-view img/s (median {median:8.0f}) "
          f"= {best / cores:9.0f} per core")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--no-single", action="store_true", help="skip the 1-core run")
  parser.add_argument("--nohugepages", action="store_true",
                      help="do not re-exec with GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if not args.nohugepages and not args.child:
    hugepages.reexec_with_hugepages()

  import jax  # pylint: disable=g-import-not-at-top
  cores = len(os.sched_getaffinity(0))
  results = measure(args.repeats)
  if args.child:
    report("1 core (taskset -c 0, single-threaded XLA)", results, 1)
    return
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs visible, "
        f"GLIBC_TUNABLES='{os.environ.get('GLIBC_TUNABLES', '')}'")
  report("all cores", results, cores)
  if not args.no_single:
    sys.stdout.flush()
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + SINGLE_FLAGS).strip())
    cmd = [sys.executable, __file__, "--child", "--repeats", str(args.repeats)]
    if shutil.which("taskset"):
      cmd = ["taskset", "-c", "0"] + cmd
    subprocess.run(cmd, env=env, check=True)
  print("goal at 32x32: >= 10x the two-view img/s of `taskset -c 0 python tools/benchmark_augment_torch.py` "
        "(torchvision, one core), run beside it")


if __name__ == "__main__":
  main()
