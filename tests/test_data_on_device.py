"""`config.data.on_device`: the split placed once on every device, each batch gathered there.

The batches must be those of the host path (`data.TrainIterator`), bit for bit, on any mesh. That
training on them is the same run, resumed from a host-fed checkpoint, is
tests/test_train.py::test_a_run_keeps_its_last_checkpoints_resumes_exactly_and_stops_at_a_nan.
"""


import jax
import numpy as np
import pytest

from contrastive_jax import data as data_lib
from contrastive_jax import parallel
from contrastive_jax import sources

N, B = 40, 8  # 5 steps per epoch


def _dataset(n=N):
  rng = np.random.default_rng(0)
  return sources.ArrayDataset(rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8),
                              rng.integers(0, 10, (n,), dtype=np.int32), 10, "random")


@pytest.mark.parametrize("num_devices", [1, 8])
def test_device_batches_equal_the_host_batches_across_epochs(num_devices):
  dataset, steps = _dataset(), 13  # into the third epoch
  mesh = parallel.make_data_mesh(jax.devices()[:num_devices])
  data = data_lib.place_on_device(dataset, mesh, global_batch_size=B, seed=3, total_steps=steps)
  assert data.order.shape == (3, N) and data.steps_per_epoch == 5
  gather = jax.jit(lambda d, s: jax.lax.with_sharding_constraint(data_lib.device_batch(d, s),
                                                                 parallel.data_sharding(mesh)))
  host = data_lib.TrainIterator(dataset, global_batch_size=B, seed=3, prefetch=1)
  try:
    for step in range(steps):
      want, got = next(host), gather(data, step)
      assert set(got) == set(want) == {"image", "label", "index"}
      for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(np.asarray(got[name]), want[name], err_msg=f"step {step} {name}")
  finally:
    host.close()


def test_step_counter_positions_like_the_train_iterator():
  dataset = _dataset()
  mesh = parallel.make_data_mesh(jax.devices()[:1])
  data = data_lib.place_on_device(dataset, mesh, global_batch_size=B, seed=3, total_steps=7)
  counter = data_lib.StepCounter(data, num_examples=N, seed=3, start_step=2, rows=data_lib.ProcessSlice(0, B))
  host = data_lib.TrainIterator(dataset, global_batch_size=B, seed=3, start_step=2, prefetch=1)
  try:
    assert counter.position == host.position
    for _ in range(3):
      assert next(counter) == {}
      next(host)
    assert counter.position == host.position and counter.position["next_step"] == 5
  finally:
    host.close()


class _Device:
  def __init__(self, platform, memory):
    self.platform, self.device_kind, self._memory = platform, f"{platform} test device", memory

  def memory_stats(self):
    return {"bytes_limit": self._memory}


def test_on_device_setting_resolves_by_platform_and_size():
  arrays = _dataset()
  encoded = sources.EncodedDataset(np.asarray(["a.jpg"]), np.zeros(1, np.int32), 1, "folder:x/train", files=True)
  gpu = _Device("gpu", 1000)
  assert data_lib.resolve_on_device("auto", arrays, 250, gpu)
  assert not data_lib.resolve_on_device("auto", arrays, 251, gpu)  # more than a quarter of the memory
  assert not data_lib.resolve_on_device("auto", encoded, 10, gpu)
  assert not data_lib.resolve_on_device("auto", arrays, 10, jax.devices()[0])  # off on CPUs
  assert data_lib.resolve_on_device("true", arrays, 10, jax.devices()[0])
  assert not data_lib.resolve_on_device("false", arrays, 10, gpu)
  assert data_lib.resolve_on_device(True, arrays, 1000, gpu)


@pytest.mark.parametrize("setting, dataset, nbytes, match", [
    ("true", "encoded", 10, "host_crop"),
    ("true", "arrays", 2 * 2**30, r"2048 MiB .* 1\.0 GiB of gpu test device"),
    ("maybe", "arrays", 10, "'auto', 'true' or 'false'"),
])
def test_on_device_setting_errors_say_why(setting, dataset, nbytes, match):
  ds = _dataset() if dataset == "arrays" else sources.EncodedDataset(
      np.asarray(["a.jpg"]), np.zeros(1, np.int32), 1, "folder:x/train", files=True)
  with pytest.raises(ValueError, match=match):
    data_lib.resolve_on_device(setting, ds, nbytes, _Device("gpu", 2**30))
