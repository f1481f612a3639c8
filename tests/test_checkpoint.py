"""Checkpoints hold each TrainState field as its own item; old single-item checkpoints still restore.

The state is a toy (two small layers, the real LARS optimiser state with its namedtuples
and masks), so nothing here compiles a model. tests/test_embed.py restores ResNets.
"""

import json
import pathlib
import shutil
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from contrastive_jax import optim
from contrastive_jax import parallel
from contrastive_jax import train as train_lib
from contrastive_jax.checkpoint import Checkpointer

FIELDS = {"step", "params", "batch_stats", "opt_state"}


def _toy_state(seed: int) -> train_lib.TrainState:
  rng = np.random.default_rng(seed)
  params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                      "bias": jnp.asarray(rng.normal(size=3), jnp.float32)},
            "probe": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}}
  stats = {"bn": {"mean": jnp.asarray(rng.normal(size=3), jnp.float32),
                  "var": jnp.asarray(rng.uniform(1, 2, size=3), jnp.float32)}}
  tx = optim.lars(0.1, weight_decay=1e-4, momentum=0.9, exclude=optim.exclude_by_name("probe"))
  opt_state = tx.init(params)
  # Non-zero momentum, so that a restore from the target's zeros would show.
  opt_state = jax.tree.map(lambda x: x + 0.5 if jnp.issubdtype(x.dtype, jnp.floating) else x, opt_state)
  return train_lib.TrainState(step=jnp.asarray(seed + 7, jnp.int32), params=params, batch_stats=stats,
                              opt_state=opt_state)


def _assert_same(got: Any, want: Any) -> None:
  assert jax.tree.structure(got) == jax.tree.structure(want)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), got, want)


def _save_old_layout(directory: pathlib.Path, step: int, state: Any, meta: dict) -> None:
  """A checkpoint as the code before separate items wrote it: the whole state (its 4 fields then) as the item `state`."""
  old = {name: getattr(state, name) for name in FIELDS}
  manager = ocp.CheckpointManager(str(directory), options=ocp.CheckpointManagerOptions(create=True))
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(old), meta=ocp.args.JsonSave(meta)),
               force=True)
  manager.wait_until_finished()
  manager.close()


def test_each_state_field_is_its_own_item(tmp_path):
  state, target = _toy_state(1), _toy_state(2)
  config = {"seed": 3, "model": {"depth": 18}, "eval": {"finetune_fractions": (0.1,)}}
  ckpt = Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(5, state, {"data": {"next_step": 5}}, config=config)
  ckpt.save(6, state, {"data": {"next_step": 6}})
  assert ckpt.items(5) == FIELDS | {"meta", "config"}
  assert ckpt.items() == FIELDS | {"meta"}
  restored, meta = ckpt.restore(target, step=5)
  _assert_same(restored, state)  # opt_state keeps LARS's namedtuples
  assert meta == {"data": {"next_step": 5}}
  leaf = jax.tree.leaves(restored.params)[0]
  assert leaf.sharding == jax.tree.leaves(target.params)[0].sharding
  assert ckpt.restore_config(5) == json.loads(json.dumps(config))  # tuples come back as lists
  assert ckpt.restore_config() is None
  ckpt.close()


def test_encoder_items_restore_without_an_optimiser(tmp_path):
  """params and batch_stats come back from the checkpoint's own shapes: no optimiser, no target."""
  state = _toy_state(1)
  ckpt = Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(3, state, {})
  shutil.rmtree(tmp_path / "3" / "opt_state")  # never read
  got = ckpt.restore_items(["step", "params", "batch_stats"])
  _assert_same(got["params"], state.params)
  _assert_same(got["batch_stats"], state.batch_stats)
  assert int(got["step"]) == 8
  replicated = parallel.replicated_sharding(parallel.make_data_mesh())  # all 8 test devices
  for leaf in jax.tree.leaves(got):
    assert leaf.sharding.is_equivalent_to(replicated, leaf.ndim)
  with pytest.raises(ValueError, match=r"has no \['opt_state'\]"):
    ckpt.restore(state)
  ckpt.close()


def test_old_single_item_checkpoint_restores(tmp_path):
  """A checkpoint of the old layout resumes training (whole state) and gives its encoder alone."""
  state, target = _toy_state(1), _toy_state(2)
  _save_old_layout(tmp_path, 4, state, {"data": {"next_step": 4}})
  ckpt = Checkpointer(str(tmp_path), async_save=False)
  assert ckpt.items() == {"state", "meta"}
  restored, meta = ckpt.restore(target)
  _assert_same(restored, state)
  assert meta == {"data": {"next_step": 4}}
  got = ckpt.restore_items(["params", "batch_stats"])
  _assert_same(got["params"], state.params)
  got = ckpt.restore_items(["params"], abstract={"params": target.params})
  _assert_same(got["params"], state.params)
  assert ckpt.restore_config() is None
  # A state with a field the old checkpoint lacks: an error naming it.
  with pytest.raises(ValueError, match=r"has no \['method_state'\]"):
    ckpt.restore(_WithMethodState(**{k: getattr(target, k) for k in FIELDS}, method_state={"ema": jnp.ones(2)}))
  # Training on: the next save is in the new layout, and both steps restore.
  ckpt.save(5, restored.replace(step=jnp.asarray(5, jnp.int32)), {"data": {"next_step": 5}})
  assert ckpt.items(5) == FIELDS | {"meta"}
  assert int(ckpt.restore(target, step=4)[0].step) == 8 and int(ckpt.restore(target)[0].step) == 5
  ckpt.close()


@flax.struct.dataclass
class _WithMethodState:
  step: Any
  params: Any
  batch_stats: Any
  opt_state: Any
  method_state: Any


def test_a_field_added_later_is_saved_and_an_empty_one_skipped(tmp_path):
  base = _toy_state(1)
  fields = {k: getattr(base, k) for k in FIELDS}
  ckpt = Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(1, _WithMethodState(**fields, method_state={"queue": jnp.arange(6.0)}), {})
  ckpt.save(2, _WithMethodState(**fields, method_state={}), {})
  assert ckpt.items(1) == FIELDS | {"method_state", "meta"}
  assert ckpt.items(2) == FIELDS | {"meta"}
  target = {k: getattr(_toy_state(2), k) for k in FIELDS}
  got, _ = ckpt.restore(_WithMethodState(**target, method_state={"queue": jnp.zeros(6)}), step=1)
  np.testing.assert_array_equal(got.method_state["queue"], np.arange(6.0))
  got, _ = ckpt.restore(_WithMethodState(**target, method_state={}), step=2)
  assert got.method_state == {}
  _assert_same(got.params, base.params)
  with pytest.raises(ValueError, match="clash"):
    ckpt.save(3, _Clash(meta=jnp.zeros(1)), {})
  ckpt.close()


@flax.struct.dataclass
class _Clash:
  meta: Any


def test_missing_checkpoint_or_step_is_an_error(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "none"), async_save=False)
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    ckpt.restore_items(["params"])
  ckpt.save(1, _toy_state(1), {})
  with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 9 .* steps \[1\]"):
    ckpt.restore_config(9)
  ckpt.close()



def test_a_reader_creates_nothing_and_leaves_unfinished_saves_alone(tmp_path):
  """Evaluation may run beside a live training run: a read-only Checkpointer must not delete its save in flight."""
  writer = Checkpointer(str(tmp_path), async_save=False)
  writer.save(1, _toy_state(1), {})
  writer.close()
  in_flight = tmp_path / "2.orbax-checkpoint-tmp"
  in_flight.mkdir()
  reader = Checkpointer(str(tmp_path), read_only=True)
  _assert_same(reader.restore_items(["params"])["params"], _toy_state(1).params)
  reader.close()
  assert in_flight.is_dir()
  assert Checkpointer(str(tmp_path / "elsewhere"), read_only=True).latest_step() is None
  assert not (tmp_path / "elsewhere").exists()


def test_a_writer_deletes_unfinished_saves_before_its_constructor_returns(tmp_path):
  """No background deletion outlives the constructor, so a second writer on the folder cannot race it."""
  writer = Checkpointer(str(tmp_path), async_save=False)
  writer.save(1, _toy_state(1), {})
  writer.close()
  killed = tmp_path / "2.orbax-checkpoint-tmp" / "params"
  killed.mkdir(parents=True)
  (killed / "_sharding").write_text("{}")
  second = Checkpointer(str(tmp_path), async_save=False)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]
  second.save(2, _toy_state(2), {})
  second.close()
  assert Checkpointer(str(tmp_path), read_only=True).all_steps() == [1, 2]
