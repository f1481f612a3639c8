"""What the loss tests share: random inputs, a relative error, and the 8-device shard_map harness."""

import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

N_DEV = 8
AX = "data"


def rand(seed, *shape, dtype=np.float32):
  return np.random.RandomState(seed).randn(*shape).astype(dtype)


def rel_err(x, ref):
  """Max abs error relative to the largest reference entry."""
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  return np.max(np.abs(x - ref)) / max(np.max(np.abs(ref)), 1e-12)


def mesh():
  return jax.sharding.Mesh(np.array(jax.devices()[:N_DEV]), (AX,))


def needs_devices():
  if jax.device_count() < N_DEV:
    pytest.skip(f"needs {N_DEV} devices, have {jax.device_count()}")


def sharded_value_and_grad(fn, in_specs, argnums=0):
  """Jitted value_and_grad of fn (returning a replicated scalar) under shard_map on 8 devices."""
  return jax.jit(jax.value_and_grad(
      jax.shard_map(fn, mesh=mesh(), in_specs=in_specs, out_specs=P()), argnums=argnums))
