"""Devices, meshes and multi-process start-up.

Everything distributed in contrastive-jax runs under `jax.shard_map` over a
one-dimensional mesh whose axis (`DATA_AXIS`, "data") spans every device of
every process. The same axis name is used for the all-gather of embeddings
(global negatives), for synchronised BatchNorm and for the gradient mean.

Note on gradients under `shard_map`: parameters enter replicated (`P()`); with
JAX's varying-manual-axes checking, `jax.grad` of a replicated parameter
already sums the per-device contributions. The train step therefore
differentiates the *global* loss `lax.pmean(local_loss, "data")` and uses the
gradient as is; taking `pmean` of per-device gradients would be off by the
number of devices.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `"data"` over `devices` (default: all devices of all processes).

  The axis type is `Auto` so that `shard_map` bodies see plain local arrays
  whatever the global sharding mode.
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("make_data_mesh needs at least one device, got an empty list.")
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def varying_axes(x) -> set:
  """Manual mesh axes an array (or ShapeDtypeStruct) varies over inside shard_map; empty outside."""
  aval = x if isinstance(x, jax.ShapeDtypeStruct) else jax.typeof(x)
  vma = getattr(aval, "vma", None)  # JAX <= 0.8 spelling.
  if vma is None:
    vma = getattr(getattr(aval, "manual_axis_type", None), "varying", None)
  return set(vma or ())


def match_vma(x: jax.Array, *refs) -> jax.Array:
  """x marked as varying over the manual mesh axes any of `refs` varies over.

  Inside `jax.shard_map`, a value built from constants (a scan's initial carry,
  a conditional's other branch) must have the same varying-axes type as the
  values computed from the data.
  """
  vma = set().union(*(varying_axes(r) for r in refs)) - varying_axes(x)
  if not vma:
    return x
  return jax.lax.pcast(x, tuple(sorted(vma, key=str)), to="varying")


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  """`tree`'s arrays replicated over `mesh`; each process passes the same values (e.g. restored
  weights). Arrays already replicated over `mesh` are kept as they are."""
  sharding = replicated_sharding(mesh)

  def put(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def check_batch_divisible(global_batch_size: int, num_devices: int, what: str = "config.batch_size") -> None:
  """Raise a ValueError that says what to set when the batch does not split evenly."""
  if global_batch_size <= 0:
    raise ValueError(f"{what} must be positive, got {global_batch_size}.")
  if global_batch_size % num_devices:
    lower = (global_batch_size // num_devices) * num_devices
    upper = lower + num_devices
    raise ValueError(
        f"{what}={global_batch_size} is not divisible by the number of devices ({num_devices}). "
        f"Set {what} to a multiple of {num_devices}, e.g. --{what}={upper}"
        + (f" or --{what}={lower}" if lower > 0 else "") + ".")


def host_local_to_global(batch, mesh: Mesh):
  """Assemble each process's local batch (numpy, leading dim = local batch) into global arrays."""
  sharding = data_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def barrier(name: str, timeout_s: float = 1800) -> None:
  """Wait until every process gets here (no-op with one process).

  Uses the coordination service's barrier, not a device collective, so that it
  may wait longer than the CPU collectives' (gloo's) 30 s limit.
  """
  if jax.process_count() == 1:
    return
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed.global_state.client
  if client is None:  # started without jax.distributed (e.g. a TPU runtime): a device collective then
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)
    return
  client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Start `jax.distributed` when there are several processes.

  With explicit flags they are used as given. Without them, JAX auto-detects
  TPU pods and SLURM jobs (`SLURM_NTASKS` > 1); a plain single process does
  nothing. The gloo collectives are selected for the CPU backend, which has
  no cross-process collectives otherwise. Must run before any JAX computation.
  """
  explicit = coordinator_address is not None or (num_processes or 1) > 1
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  tpu_pod = any(v in os.environ for v in ("TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID", "MEGASCALE_COORDINATOR_ADDRESS"))
  if not (explicit or slurm or tpu_pod):
    return
  # Only affects the CPU backend, so it is harmless on GPU/TPU hosts.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  else:
    jax.distributed.initialize()
