"""Orbax checkpoints of the whole training state.

A checkpoint is one folder per step under `<workdir>/checkpoints/` holding
  state: the `TrainState` pytree (params, BN statistics, optimiser state, step);
  meta:  JSON with the RNG key data and the data-iterator position.
Orbax writes into a temporary folder and renames it when complete, so a run
killed mid-save (even with SIGKILL) leaves the previous checkpoints intact and
the next start resumes from the last complete one. In multi-process runs every
process calls `save`/`restore`; Orbax coordinates who writes what.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Save every N steps, keep the last K, restore the latest.

  Args:
    directory: the `checkpoints/` folder (created if missing).
    max_to_keep: how many recent checkpoints to keep.
    async_save: write in a background thread while training continues.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Save `state` (a pytree of arrays) and `meta` (JSON-serialisable) as step `step`."""
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restore `step` (default: the latest) onto the shapes/shardings of `abstract_state`.

    `abstract_state` is a pytree of arrays or `jax.ShapeDtypeStruct`s, e.g. the
    freshly initialised state; restored arrays get its shardings.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(
          f"no checkpoint in {self.directory}; train first (python -m contrastive_jax.train ... --workdir) "
          "or point --workdir at a finished run.")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                   meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])

  def wait(self) -> None:
    """Block until an async save has been committed to disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
