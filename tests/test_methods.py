"""Every method on the one training core: exact across device counts, exact across a SIGTERM and resume.

One parametrised test per contract runs every method (with its state: EMA targets, MoCo's queue).
SimCLR's float32 floor across device counts is tests/test_numerics.py; its resume, preemption and
multi-process runs through the command line are tests/test_train.py and tests/test_checkpoint_kill.py.
"""

import os
import pathlib
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import ELEMENTWISE_RTOL

from contrastive_jax import cli
from contrastive_jax import data as data_lib
from contrastive_jax import evaluate
from contrastive_jax import methods as methods_lib
from contrastive_jax import parallel
from contrastive_jax import train as train_lib
from contrastive_jax import views as views_lib
from contrastive_jax import writers
from contrastive_jax.checkpoint import Checkpointer
from cli_runner import free_port, launch_2x2, run_cli, wait_ok

ROOT = pathlib.Path(__file__).resolve().parents[1]
NEW_METHODS = ("supcon", "moco_v2", "moco_v3", "byol", "barlow_twins", "vicreg", "simsiam", "nnclr", "swav", "dino")
# Each method, and MoCo v3 and DINO with a ViT encoder (their `vit_test` presets).
CASES = NEW_METHODS + ("moco_v3_vit", "dino_vit")
# The step test also runs SimCLR, its DCL and DCLW losses, and multi-crop (2 x 32 px + small 16 px
# crops): SimCLR's and BYOL's. The SIGTERM test also runs DCL (SimCLR's method with `dcl_loss`).
STEP_CASES = ("simclr", "dcl", "dclw") + CASES + ("simclr_multicrop", "byol_multicrop")
SIGTERM_CASES = CASES + ("simclr_multicrop", "dcl")


def _matrix(cases, representative):
  """Every case as a `proof` (`pytest --proofs`, CI) but the representative, which the default run keeps."""
  return [pytest.param(c, marks=() if c == representative else pytest.mark.proof) for c in cases]


def _config(name: str, **overrides):
  if name in ("moco_v3_vit", "dino_vit"):
    return cli.load_config(str(ROOT / "experiments" / f"cifar10_{name[:-4]}.py") + ":vit_test", **overrides)
  if name == "simclr_multicrop":
    return cli.load_config(str(ROOT / "experiments" / "cifar10_simclr.py") + ":multicrop_test", **overrides)
  if name in ("dcl", "dclw"):
    return cli.load_config(str(ROOT / "experiments" / "cifar10_dcl.py") + ":test", loss=name, **overrides)
  if name == "byol_multicrop":
    config = _config("byol", **overrides)
    config.augment.views = (*config.augment.views, *[{"image_size": 16, "crop_area_range": (0.05, 0.14)}] * 2)
    return config
  return cli.load_config(str(ROOT / "experiments" / f"cifar10_{name}.py") + ":test", **overrides)


def _close(got, want, rtol, what):
  leaves_got, leaves_want = jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)
  assert len(leaves_got) == len(leaves_want) > 0, what
  for (path, a), b in zip(leaves_got, leaves_want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-6,
                               err_msg=f"{what} {jax.tree_util.keystr(path)}")


def _equal(got, want, what):
  leaves_got, leaves_want = jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)
  assert len(leaves_got) == len(leaves_want) > 0, what
  for (path, a), b in zip(leaves_got, leaves_want):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{what} {jax.tree_util.keystr(path)}")


def test_every_method_has_a_config_and_a_method():
  assert set(methods_lib.METHODS) == {"simclr", *NEW_METHODS}
  for name in methods_lib.METHODS:
    for preset in ("", "cpu", "test"):
      config = cli.load_config(str(ROOT / "experiments" / f"cifar10_{name}.py") + (f":{preset}" if preset else ""))
      assert config.method == name
      method = methods_lib.create(config, total_steps=10, axis_name=None)
      assert method.name == name and len(views_lib.view_configs(config)) == method.num_views


@pytest.mark.slow
@pytest.mark.parametrize("method_name", _matrix(STEP_CASES, "nnclr"))
def test_step_8_devices_equals_1_device(method_name):
  """Two steps on 8 devices with b images each == 1 device with 8b: loss, probe, params, BN, EMA target, queue
  and support set. The second step reads the state the first left: MoCo's queued keys, NNCLR's
  neighbours from the support set that the first step filled from the global batch.

With the test presets' XLA convolutions; that the Winograd convolutions (conv_impl="auto" on
CPUs) give the global kernel gradient under shard_map is
tests/test_conv_impl.py::test_winograd_kernel_gradient_is_summed_over_devices_under_shard_map.

  Labels repeat across devices, so SupCon's positives sit on other devices (solo-learn #206).
  In float64: in float32 the rounding of 8 partial sums instead of 1 flips the odd ReLU, and
  one flip moves the stem's gradient by up to 5e-3 relative (docs/performance.md, "Numerics
  across device counts"), which would hide what this test is after, a wrong gather or mask.
  """
  with jax.enable_x64(True):
    _check_step_8_devices_equals_1_device(method_name)


def _check_step_8_devices_equals_1_device(method_name):
  config = _config(method_name, batch_size=16, **{"model.dtype": "float64"})
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
           "label": np.where(np.arange(16) % 5 == 4, -1, np.arange(16) % 4).astype(np.int32),
           "index": np.arange(16, dtype=np.int32)}
  results = []
  for devices in (jax.devices()[:8], jax.devices()[:1]):
    mesh = parallel.make_data_mesh(devices)
    built = train_lib.build_step(config, mesh, num_examples=64, num_classes=4, donate=False)
    fn, method = built.step, built.method
    state0 = state = built.init(train_lib.init_key(1))
    sharded = jax.device_put(batch, parallel.data_sharding(mesh))
    for _ in range(2):
      state, metrics = fn(state, sharded, jax.random.key(7))
    results.append((state, metrics))
  (s8, m8), (s1, m1) = results
  np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
  assert np.isfinite(float(m1["loss"])) and float(m1["loss"]) != 0.0
  assert config.model.online_probe
  np.testing.assert_allclose(m8["probe_loss"], m1["probe_loss"], rtol=1e-5)
  assert int(s8.step) == int(s1.step) == 2
  _close(s8.params, s1.params, 1e-4, "params")
  # The steps moved the parameters (the comparison above is not of two untouched copies).
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(state0.params)))
  has_bn = bool(jax.tree.leaves(s1.batch_stats))  # DINO's ViT has no BN anywhere (a BN-free head)
  assert has_bn or method_name == "dino_vit"
  if has_bn:
    _close(s8.batch_stats, s1.batch_stats, 1e-4, "batch_stats")
  if method.update is not None:
    _close(s8.method_state, s1.method_state, 1e-4, "method_state")
  if method.target:  # the target moved: by the EMA, and its BN statistics by its own forward pass
    t0, t1 = state0.method_state[methods_lib.TARGET], s1.method_state[methods_lib.TARGET]
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(t0["params"]), jax.tree.leaves(t1["params"])))
    assert not has_bn or any(not np.allclose(a, b)
                             for a, b in zip(jax.tree.leaves(t0["batch_stats"]), jax.tree.leaves(t1["batch_stats"])))
  if method_name == "moco_v2":  # each step's global keys went in at the pointer, in global-batch order
    queue = np.asarray(s1.method_state["queue"])
    assert int(s1.method_state["queue_ptr"]) == 32
    np.testing.assert_allclose(np.linalg.norm(queue[:, :32], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(queue[:, 32:], np.asarray(state0.method_state["queue"])[:, 32:])
  if method_name == "nnclr":  # each step's global batch of view-1 projections and its labels, in order
    support, labels = (np.asarray(s1.method_state[k]) for k in ("support", "support_labels"))
    assert int(s1.method_state["support_ptr"]) == 32
    np.testing.assert_allclose(np.linalg.norm(support[:32], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(support[32:], np.asarray(state0.method_state["support"])[32:])
    np.testing.assert_array_equal(labels, np.concatenate([batch["label"]] * 2 + [np.full(32, -1)]))
    np.testing.assert_allclose(m8["nn_acc"], m1["nn_acc"], rtol=1e-6)
  if method_name == "swav":  # step 1 filled the one-batch queue, step 2's Sinkhorn used it; unit prototypes
    assert int(s1.method_state["queue_filled"]) == 16 and float(m1["queue_used"]) == 1.0
    np.testing.assert_allclose(np.linalg.norm(np.asarray(s1.params["prototypes"]["kernel"]), axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(s1.method_state["queue_kernel"], s1.params["prototypes"]["kernel"])
  if method_name.startswith("dino"):  # the teacher EMAs the last layer; the centre moved off zero
    assert set(s1.method_state[methods_lib.TARGET]["params"]) >= {"encoder", "head", "prototypes"}
    assert np.abs(np.asarray(s1.method_state["center"])).max() > 0


def _sigterm_at(monkeypatch, batch_number: int):
  """SIGTERM this process while the loop fetches batch `batch_number` (1-based), as a scheduler would."""
  original = data_lib.TrainIterator.__next__
  calls = {"n": 0}

  def fetch(self):
    calls["n"] += 1
    if calls["n"] == batch_number:
      os.kill(os.getpid(), signal.SIGTERM)
    return original(self)

  monkeypatch.setattr(data_lib.TrainIterator, "__next__", fetch)


def _final_state(workdir: pathlib.Path):
  ckpt = Checkpointer(str(workdir / "checkpoints"), read_only=True)
  names = [n for n in ("params", "batch_stats", "method_state") if n in ckpt.items()]
  return ckpt.latest_step(), ckpt.restore_items(names)


@pytest.mark.slow
@pytest.mark.parametrize("method_name", _matrix(SIGTERM_CASES, "byol"))
def test_sigterm_and_rerun_equals_the_uninterrupted_run(method_name, image_folder, tmp_path, monkeypatch):
  """SIGTERM after step 2, rerun the same command: the losses and the final state, EMA and queue included,
  equal a run that was never interrupted, to the bit."""
  config = _config(method_name, **{"num_steps": 5, "checkpoint_every_steps": 100,
                                   "data.image_folder": str(image_folder)})
  train_lib.train_and_evaluate(config, str(tmp_path / "straight"))
  with monkeypatch.context() as m:
    _sigterm_at(m, batch_number=3)
    summary = train_lib.train_and_evaluate(config, str(tmp_path / "stopped"))
  assert summary["preempted"] and 2 <= summary["last_step"] < 5, summary
  train_lib.train_and_evaluate(config, str(tmp_path / "stopped"))
  want = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path / "straight")}
  got = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path / "stopped")}
  assert sorted(got) == sorted(want) == [1, 2, 3, 4, 5]
  assert all(np.isfinite(m["probe_loss"]) for m in writers.read_metrics(tmp_path / "straight"))  # the online probe
  # The same program on the same machine and inputs: the same float32 arithmetic, to the bit.
  assert got == want
  (step_a, a), (step_b, b) = _final_state(tmp_path / "straight"), _final_state(tmp_path / "stopped")
  assert step_a == step_b == 5
  stateless = ("supcon", "simclr_multicrop", "dcl", "barlow_twins", "vicreg", "simsiam")  # swav's test preset has a queue
  assert set(a) == set(b) and ("method_state" in a) == (method_name not in stateless)
  _equal(b, a, "final state")
  if method_name == "byol":  # the evaluate command reads the online encoder of a method with a predictor and target
    config.eval.baselines = False
    results = evaluate.run_evaluation(config, str(tmp_path / "stopped"))
    assert results["checkpoint_step"] == 5 and 0.0 <= results["knn_top1"] <= 1.0


@pytest.mark.slow
@pytest.mark.proof
def test_moco_v2_two_processes_equal_one_process(image_folder, tmp_path):
  """2 processes x 2 devices == 1 process x 4 devices: losses, parameters, the EMA target and the queue,
  which holds the keys of every device of every process (solo-learn #229 filled it from one GPU).

  In float64, as the 8-vs-1 test: in float32 gloo's and XLA's all-reduces round differently, and
  over 3 steps a ReLU flip moved the stem's BN mean by 1e-3 relative (CI, 2026-11-30).
  """
  steps = 3
  args = [f"--config={ROOT / 'experiments' / 'cifar10_moco_v2.py'}:test", f"--config.num_steps={steps}",
          "--config.checkpoint_every_steps=100", f"--config.data.image_folder={image_folder}",
          "--config.model.dtype=float64"]
  x64 = {"JAX_ENABLE_X64": "1"}
  procs = launch_2x2(args, tmp_path / "two", free_port(), env_extra=x64)
  one = run_cli("contrastive_jax.train", args + [f"--workdir={tmp_path / 'one'}"], timeout=400,
                env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4", **x64})
  assert one.returncode == 0, one.stdout + one.stderr
  wait_ok(procs)
  want = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path / "one")}
  got = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path / "two")}
  assert sorted(got) == sorted(want) == [1, 2, 3]
  for s in want:
    np.testing.assert_allclose(got[s], want[s], rtol=1e-5, err_msg=f"step {s}")
  (step_a, a), (step_b, b) = _final_state(tmp_path / "one"), _final_state(tmp_path / "two")
  assert step_a == step_b == steps
  assert int(a["method_state"]["queue_ptr"]) == int(b["method_state"]["queue_ptr"]) == 3 * 16
  _close(b, a, 1e-4, "final state")


def test_unknown_method_names_the_known_ones():
  config = _config("byol", method="simclr_v9")
  with pytest.raises(ValueError, match=r"unknown config.method 'simclr_v9'.*'supcon', 'moco_v2', 'moco_v3', 'byol'"):
    methods_lib.create(config, total_steps=10, axis_name=None)


def test_a_queue_the_global_batch_does_not_divide_is_rejected_with_sizes_that_work():
  config = _config("moco_v2", batch_size=48, **{"moco.queue_size": 1000})
  with pytest.raises(ValueError, match=r"multiple of the global batch size 48.*\[960, 1008, 1056\]"):
    methods_lib.create(config, total_steps=10, axis_name=None)


def test_an_nnclr_support_set_smaller_than_the_global_batch_names_both_sizes():
  config = _config("nnclr", batch_size=48, **{"nnclr.queue_size": 32})
  with pytest.raises(ValueError, match=r"queue_size = 32.*config.batch_size = 48.*\[48, 96\]"):
    methods_lib.create(config, total_steps=10, axis_name=None)


def test_dcl_takes_two_views_and_known_losses():
  config = _config("dcl")
  assert (config.method, config.loss) == ("simclr", "dcl")
  config.loss = "dcl_v9"
  with pytest.raises(ValueError, match=r"unknown config.loss 'dcl_v9'.*'nt_xent', 'dcl', 'dclw'"):
    methods_lib.create(config, total_steps=10, axis_name=None)
  config = cli.load_config(str(ROOT / "experiments" / "cifar10_simclr.py") + ":multicrop_test", loss="dcl")
  with pytest.raises(ValueError, match="takes 2 views"):
    methods_lib.create(config, total_steps=10, axis_name=None)


def test_a_predictor_method_without_a_predictor_says_what_to_set():
  config = _config("byol", **{"model.predictor.num_layers": 0})
  with pytest.raises(ValueError, match="config.model.predictor.num_layers"):
    methods_lib.create(config, total_steps=10, axis_name=None)


def test_unknown_view_field_names_the_valid_ones():
  config = _config("byol")
  config.augment.views = ({}, {"solarise_p": 0.2})
  with pytest.raises(ValueError, match=r"config.augment.views\[1\] has unknown augmentation fields \['solarise_p'\]"):
    views_lib.view_configs(config)


def test_views_take_their_own_settings():
  """BYOL's second view solarizes, the first does not; everything else is the base view's."""
  first, second = views_lib.view_configs(_config("byol"))
  assert first.solarize_p == 0.0 and second.solarize_p == 0.2
  assert first.jitter == second.jitter == (0.4, 0.4, 0.2, 0.1)


def test_cosine_momentum_goes_from_base_to_final():
  got = [float(methods_lib.cosine_momentum(0.99, 1.0, jnp.asarray(s), 100)) for s in (0, 50, 100, 200)]
  np.testing.assert_allclose(got, [0.99, 0.995, 1.0, 1.0], rtol=ELEMENTWISE_RTOL)
