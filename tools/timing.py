"""The best-of-N wall time of a jitted call, shared by the benchmarks in tools/."""

from __future__ import annotations

import time
from typing import Any, Callable


def best_seconds(fn: Callable[..., Any], *args: Any, repeats: int = 3) -> float:
  """Least wall time of `fn(*args)` over `repeats` calls, after one untimed call (compilation).

  Each call is waited for with `jax.block_until_ready`. The least time is the
  one least disturbed by whatever else shares the machine.
  """
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def step_seconds(step: Callable[[], Any], *, warmup: int, steps: int) -> tuple[list[float], Any]:
  """Wall times of `steps` calls of a synchronous `step()` after `warmup` untimed ones, and its last result.

  For eager frameworks (the PyTorch anchors) whose step returns only when its work is done.
  """
  for _ in range(warmup):
    step()
  times, out = [], None
  for _ in range(steps):
    t0 = time.perf_counter()
    out = step()
    times.append(time.perf_counter() - t0)
  return times, out
