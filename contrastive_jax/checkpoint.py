"""Orbax checkpoints, one item per field of the training state.

A checkpoint is one folder per step under `<workdir>/checkpoints/`, one Orbax item per
subfolder:
  <field>  one per field of the `TrainState` dataclass (step, params, batch_stats,
           opt_state, and any field added later), stored as the one-key pytree
           `{<field>: value}`: Orbax's standard handler stores no bare arrays (the step),
           and `params` + `batch_stats` restored side by side form a Flax variables dict;
  meta     JSON: the RNG key data and the data-iterator position;
  config   JSON: the run's config (`ConfigDict.to_dict()`), when `save` is given one.
Separate items let a reader restore the encoder (`restore_items(["params", "batch_stats"])`)
without the optimiser whose state a whole-state restore needs as its target. A field whose
pytree has no leaves (an empty method state) is not written; `restore` takes it from the
target. A state that is not a dataclass is saved whole as the item `state`.

Checkpoints written before this layout hold the whole `TrainState` as one item `state`;
`restore` and `restore_items` read them too (an Orbax partial restore of the fields asked for).

Orbax writes into a temporary folder and renames it when complete, so a run killed mid-save
(even with SIGKILL) leaves the previous checkpoints intact and the next start resumes from the
last complete one. In multi-process runs every process calls `save`/`restore`; Orbax
coordinates who writes what.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any, Iterable

import jax
import orbax.checkpoint as ocp
from etils import epath

STATE, META, CONFIG = "state", "meta", "config"  # STATE: the whole state (the old layout)
_TMP = ".orbax-checkpoint-tmp"  # an item folder Orbax has not finished


def state_fields(state: Any) -> dict[str, Any] | None:
  """The fields of a dataclass state (`TrainState`) by name; None for any other pytree."""
  if dataclasses.is_dataclass(state) and not isinstance(state, type):
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
  return None


def _has_leaves(tree: Any) -> bool:
  return bool(jax.tree.leaves(tree))


def _abstract(tree: Any) -> Any:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _json(value: dict[str, Any], what: str) -> dict[str, Any]:
  """`value` as plain JSON (tuples become lists); fails here, not in Orbax's background thread."""
  try:
    return json.loads(json.dumps(value))
  except (TypeError, ValueError) as e:
    raise TypeError(f"the checkpoint's {what} must be JSON-serialisable (for a config: config.to_dict()); "
                    f"{e}") from None


def _remove_unfinished_saves(directory: str) -> None:
  """Delete the step folders Orbax never renamed (`N.orbax-checkpoint-tmp`), on process 0 only.

  The other processes wait for it at the barrier in Orbax's `CheckpointManager` constructor
  (create=True), which comes next.
  """
  if jax.process_index() != 0 or not os.path.isdir(directory):
    return
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    if _TMP in name and os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)


class Checkpointer:
  """Save every N steps, keep the last K, restore the latest.

  Args:
    directory: the `checkpoints/` folder (created if missing).
    max_to_keep: how many recent checkpoints to keep.
    async_save: write in a background thread while training continues.
    read_only: for readers (evaluation, embedding, inspection): create nothing, save nothing,
      and leave unfinished saves alone (they may be a live run's).

  A writer deletes the unfinished saves of a killed run before its constructor returns.
  (Orbax's own cleanup runs in a background thread that outlives the constructor, so two
  writers on one folder, such as a run and a script that opened it to look, raced to
  delete the same files.)
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self._name_format = ocp.step.standard_name_format()  # step N in the folder `N`
    # Orbax's read_only overrides (and warns about) the writer's options, so they are set to match.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, create=not read_only, read_only=read_only,
        save_interval_steps=0 if read_only else 1, enable_async_checkpointing=async_save and not read_only,
        cleanup_tmp_directories=False, step_name_format=self._name_format)
    if not read_only:
      _remove_unfinished_saves(self.directory)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def items(self, step: int | None = None) -> set[str]:
    """Names of the complete items of `step` (default: the latest)."""
    path = self._name_format.find_step(epath.Path(self.directory), self._step(step)).path
    return {p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("_") and _TMP not in p.name}

  def save(self, step: int, state: Any, meta: dict[str, Any], config: dict[str, Any] | None = None) -> None:
    """Save `state` (a `TrainState` or any pytree of arrays), `meta` and `config` (JSON) as step `step`."""
    fields = state_fields(state)
    if fields is None:
      items = {STATE: ocp.args.StandardSave(state)}
    else:
      clash = sorted(set(fields) & {STATE, META, CONFIG})
      if clash:
        raise ValueError(f"state fields {clash} clash with the checkpoint's own items {STATE!r}, {META!r}, "
                         f"{CONFIG!r}; rename the fields of {type(state).__name__}.")
      items = {name: ocp.args.StandardSave({name: value}) for name, value in fields.items() if _has_leaves(value)}
    items[META] = ocp.args.JsonSave(_json(meta, "meta"))
    if config is not None:
      items[CONFIG] = ocp.args.JsonSave(_json(config, "config"))
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restore `step` (default: the latest) onto the shapes/shardings of `abstract_state`.

    `abstract_state` is a pytree of arrays or `jax.ShapeDtypeStruct`s, e.g. the
    freshly initialised state; restored arrays get its shardings. Reads both layouts.
    """
    step = self._step(step)
    fields = state_fields(abstract_state)
    if fields is None:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          **{STATE: ocp.args.StandardRestore(_abstract(abstract_state)), META: ocp.args.JsonRestore()}))
      return restored[STATE], dict(restored[META])
    wanted = {name: _abstract(value) for name, value in fields.items() if _has_leaves(value)}
    restored = self._read(step, wanted, json_items=(META,))
    meta = dict(restored.pop(META))
    return dataclasses.replace(abstract_state, **restored), meta

  def restore_items(self, names: Iterable[str], abstract: dict[str, Any] | None = None, step: int | None = None,
                    sharding: jax.sharding.Sharding | None = None) -> dict[str, Any]:
    """Only the state fields `names` of `step` (default: the latest), from either layout.

    Args:
      names: field names, e.g. ("params", "batch_stats"): no optimiser is needed for these.
      abstract: optional targets by name (arrays or ShapeDtypeStructs): the restored
        trees get their structure and shardings. Without it the structure is the
        saved one (dicts and lists) and shapes and dtypes come from the checkpoint.
      sharding: without `abstract`, every array's sharding (default: replicated over
        all devices).
    Returns:
      {name: pytree of jax.Array}.
    """
    step = self._step(step)
    names = list(names)
    if abstract is not None:
      missing = [n for n in names if n not in abstract]
      if missing:
        raise ValueError(f"restore_items: `abstract` has no target for {missing}; give one for each of {names} "
                         "or pass abstract=None to take the shapes from the checkpoint.")
      empty = {n: abstract[n] for n in names if not _has_leaves(abstract[n])}
      targets = {n: _abstract(abstract[n]) for n in names if n not in empty}
    else:
      if sharding is None:
        from contrastive_jax import parallel  # pylint: disable=g-import-not-at-top
        sharding = parallel.replicated_sharding(parallel.make_data_mesh())
      empty, targets = {}, self._targets_from_metadata(step, names, sharding)
    return {**empty, **self._read(step, targets)}

  def restore_config(self, step: int | None = None) -> dict[str, Any] | None:
    """The `config` item of `step` (default: the latest) as a dict; None if it has none."""
    step = self._step(step)
    if CONFIG not in self.items(step):
      return None
    return dict(self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[CONFIG])

  def wait(self) -> None:
    """Block until an async save has been committed to disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  # --------------------------------------------------------------------------- internals

  def _step(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(
          f"no checkpoint in {self.directory}; train first (python -m contrastive_jax.train ... --workdir) "
          "or point --workdir at a finished run.")
    if step not in self.all_steps():
      raise FileNotFoundError(f"no checkpoint of step {step} in {self.directory}; it has steps {self.all_steps()}.")
    return step

  def _legacy(self, step: int, present: set[str], names: Iterable[str]) -> bool:
    """Whether `step` is in the old layout (the whole state as the item `state`) for `names`."""
    return STATE in present and not any(n in present for n in names)

  def _check_present(self, step: int, present: set[str], names: Iterable[str], legacy_fields: set[str] | None):
    have = legacy_fields if legacy_fields is not None else present
    missing = [n for n in names if n not in have]
    if missing:
      where = f"its item {STATE!r} has fields {sorted(have)}" if legacy_fields is not None else \
          f"it has items {sorted(present)}"
      raise ValueError(f"checkpoint step {step} in {self.directory} has no {missing}: {where}. Restore a step "
                       "written by the same code, or pass targets only for the fields it has.")

  def _item_tree(self, step: int, item: str) -> Any:
    """The saved tree of `item` as Orbax metadata (shapes, dtypes; no data read)."""
    path = self._name_format.find_step(epath.Path(self.directory), step).path / item
    return ocp.StandardCheckpointHandler().metadata(path).tree

  def _targets_from_metadata(self, step: int, names: list[str], sharding: jax.sharding.Sharding) -> dict[str, Any]:
    present = self.items(step)
    legacy = self._legacy(step, present, names)
    trees = self._item_tree(step, STATE) if legacy else None
    self._check_present(step, present, names, set(trees) if legacy else None)
    as_struct = lambda m: (jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding)
                           if hasattr(m, "shape") and hasattr(m, "dtype") else m)
    return {n: jax.tree.map(as_struct, trees[n] if legacy else self._item_tree(step, n)[n]) for n in names}

  def _read(self, step: int, targets: dict[str, Any], json_items: tuple[str, ...] = ()) -> dict[str, Any]:
    """Restore the fields `targets` ({name: abstract pytree}) of `step`, plus the JSON items `json_items`."""
    present = self.items(step)
    args: dict[str, Any] = {n: ocp.args.JsonRestore() for n in json_items}
    if self._legacy(step, present, targets):
      self._check_present(step, present, targets, set(self._item_tree(step, STATE)))
      # Partial restore reads only the fields asked for (no optimiser state unless asked).
      args[STATE] = ocp.args.PyTreeRestore(item=targets, partial_restore=True,
                                           restore_args=ocp.checkpoint_utils.construct_restore_args(targets))
      restored = dict(self._manager.restore(step, args=ocp.args.Composite(**args)))
      return {**{n: restored[n] for n in json_items}, **restored[STATE]}
    self._check_present(step, present, [*targets, *json_items], None)
    args.update({n: ocp.args.StandardRestore({n: t}) for n, t in targets.items()})
    restored = self._manager.restore(step, args=ocp.args.Composite(**args))
    return {n: restored[n] if n in json_items else restored[n][n] for n in [*json_items, *targets]}
