"""Float32 numerics of the train step across device counts, against a float64 reference.

    python tools/numerics_check.py [--config experiments/cifar10_simclr.py:test] \\
        [--image_folder ../shared/data/cifar10] [--batch_size 32] [--steps 4] [--seed 0] [--devices 8] \\
        [--set learning_rate=0.01 ...] [--bn_fast_variance] [--gelu] [--out FILE.json]

Runs the real train step (`train.make_train_step` under `train.distribute`) on the batches the
CLI draws (`data.global_batch_indices`), one subprocess per run (each with its own XLA device
count; `jax_enable_x64` only for float64):

* f64_1dev: `config.model.dtype="float64"` on 1 device from the float32 initial parameters
  (`train.init_state` draws in float32 and casts): the reference.
* f32_1dev, f32_8dev: the float32 step on 1 and on `--devices` devices.
* f64_from_f32: float64 from f32_1dev's state after step 1: how much the training map itself
  amplifies the difference that float32 left after one step (no float32 arithmetic afterwards).

Also, per step k, one step from the reference's state k-1 cast to float32 ("local": what one step
of float32 adds, before any accumulation), and probes of the reference's forward pass.

Prints readable lines, then ONE JSON object (the last line; also written to --out):
  trajectory[k]: loss and grad_norm of step k (at the parameters after k - 1 steps) per run, their
    relative differences to f64_1dev and between f32_8dev and f32_1dev, and param_dist =
    |theta_run(k) - theta_f64(k)| / |theta_f64(k) - theta(0)| (parameters only; the error relative
    to how far training has moved).
  local[k]: per float32 run, from the reference's state k-1: grad_rel_err = |g32 - g64| / |g64|
    and update_rel_err (the same for the parameter change), both over all parameters; the update
    error of the leaves under LARS's trust ratio and their share of the error; the leaves with
    the largest errors. f64_from_cast_state: the float64 gradient at the float32-cast state
    (what storing the parameters in float32 alone changes) and how many of the forward pass's
    relu_inputs change sign.
    bn_batch_variance_f32: every BN input of the reference's forward pass, cast to float32, its
    variance by E[x^2] - E[x]^2 and by E[(x - E[x])^2] against float64 (max relative error over
    channels and layers), and kappa = E[x^2] / Var. lars_min_grad_over_decay: min over trust-ratio
    leaves of |g| / |weight_decay * w| (near 1 or below, the ratio would act on rounding).
  amplification[k]: |theta_f64_from_f32(k) - theta_f64(k)| and its growth since step 1.

--gelu replaces every ReLU by GELU (an experiment, not a model option): with a smooth activation
the gradient has no jumps, which isolates what ReLU's kinks add. The runs take 2-4 minutes each
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


# ----------------------------------------------------------------------------- worker (one run)


def _flat(tree: Any) -> tuple[list[str], list[np.ndarray]]:
  """Leaf names ('params/encoder/conv1/kernel') and float64 numpy copies of a pytree."""
  import jax  # pylint: disable=g-import-not-at-top
  from contrastive_jax import optim  # pylint: disable=g-import-not-at-top
  pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
  return (["/".join(optim.path_names(p)) for p, _ in pairs],
          [np.asarray(jax.device_get(x), np.float64) for _, x in pairs])


def _grad_tx():
  """An optax transformation with zero updates whose state is the last gradient (read it off the step)."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  return optax.GradientTransformation(
      lambda params: jax.tree.map(jax.numpy.zeros_like, params),
      lambda grads, state, params=None: (jax.tree.map(jax.numpy.zeros_like, grads), grads))


def _probe_fn(model: Any, aug: Any, key: Any, dtype: Any) -> Callable[..., dict[str, Any]]:
  """jit((variables_a, variables_b, batch, step) -> probes) on one device, no shard_map.

  Probes of the forward pass of step `step` (the same views as the train step) at two parameter
  sets a, b: `flips`, how many ReLU inputs differ in sign between a and b, per ReLU call (summed
  per layer by the caller); and for every BatchNorm input at a [N, C] the batch variance in
  float32 by E[x^2] - E[x]^2 and by E[(x - E[x])^2], against the two-pass variance in `dtype`
  (max relative error over channels), and kappa = max over channels of E[x^2] / Var[x], the
  cancellation factor of the one-pass formula.
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from contrastive_jax import views as views_lib  # pylint: disable=g-import-not-at-top
  single = model.clone(axis_name=None)

  def forward(variables, views, relus, bns):
    def intercept(next_fun, args, kwargs, context):
      if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
        bns.append(("/".join(context.module.path), args[0]))
      return next_fun(*args, **kwargs)
    relu = nn.relu
    nn.relu = lambda x: relus.append(x) or relu(x)  # the models call nn.relu: record its inputs
    try:
      with nn.intercept_methods(intercept):
        single.apply(variables, views, train=True, mutable=["batch_stats"])
    finally:
      nn.relu = relu

  def probes(va, vb, batch, step):
    step_key = jax.random.fold_in(key, step)  # the train step's per-image keys
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(step_key, i)))(batch["index"])
    views = jnp.concatenate(views_lib.augment_views(batch, keys, (aug, aug), dtype))
    relus_a, relus_b, bns = [], [], []
    forward(va, views, relus_a, bns)
    forward(vb, views, relus_b, [])
    out = {"flips": [jnp.sum((a > 0) != (b > 0)) for a, b in zip(relus_a, relus_b)],
           "relu_inputs": sum(a.size for a in relus_a), "bn": {}}
    for name, x in bns:
      x = x.reshape(-1, x.shape[-1])
      mean = jnp.mean(x, 0)
      var = jnp.mean(jnp.square(x - mean), 0)
      x32 = x.astype(jnp.float32)
      fast = jnp.mean(jnp.square(x32), 0) - jnp.square(jnp.mean(x32, 0))
      two = jnp.mean(jnp.square(x32 - jnp.mean(x32, 0)), 0)
      rel = lambda v: jnp.max(jnp.abs(v - var) / var)
      out["bn"][name] = {"fast_rel_err": rel(fast), "two_pass_rel_err": rel(two),
                         "kappa": jnp.max((var + jnp.square(mean)) / var)}
    return out

  return jax.jit(probes)


def worker(spec: dict[str, Any]) -> None:
  """One run: `spec` names dtype, devices, the batches file, and what to record (see main)."""
  import jax  # pylint: disable=g-import-not-at-top
  if spec["dtype"] == "float64":
    jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if spec.get("gelu"):
    import flax.linen as nn  # pylint: disable=g-import-not-at-top
    nn.relu = jax.nn.gelu  # the models call nn.relu; an experiment, not a model option
  from contrastive_jax import cli, methods, models, optim, parallel  # pylint: disable=g-import-not-at-top
  from contrastive_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  from contrastive_jax import views as views_lib  # pylint: disable=g-import-not-at-top

  config = cli.load_config(spec["config"], **{**spec["overrides"], "model.dtype": spec["dtype"]})
  data = np.load(spec["batches"])
  model = models.create_model(config, int(data["num_classes"])).clone(bn_fast_variance=spec["bn_fast_variance"])
  tx, schedule = optim.create_optimizer(config, int(data["num_examples"]), frozen=models.frozen_params(config))
  augs = views_lib.view_configs(config)
  aug = augs[0]
  mesh = parallel.make_data_mesh(jax.devices()[:spec["devices"]])
  rep, dat = parallel.replicated_sharding(mesh), parallel.data_sharding(mesh)
  method = methods.create(config, total_steps=optim.total_steps(config, int(data["num_examples"])),
                          axis_name=parallel.DATA_AXIS, views=augs)
  # The train step with the run's optimiser, and with one that returns the gradients (`_grad_tx`).
  step_fn = train_lib.distribute(train_lib.make_train_step(model, tx, schedule, augs, method), mesh, donate=False)
  grad_fn = train_lib.distribute(train_lib.make_train_step(model, _grad_tx(), schedule, augs, method), mesh,
                                 donate=False)
  key = jax.random.key(config.seed)
  image_shape = (aug.image_size, aug.image_size, 3)
  template = jax.jit(lambda k: train_lib.init_state(model, tx, k, image_shape))(train_lib.init_key(config.seed))
  treedef = jax.tree.structure(template)
  dtype = train_lib.state_dtype(model)

  def load_state(path: str) -> Any:
    saved = np.load(path)
    leaves = [jnp.asarray(saved[f"l{i}"], x.dtype) for i, x in enumerate(jax.tree.leaves(template))]
    return jax.tree.unflatten(treedef, leaves)

  def batch(k: int) -> dict[str, jax.Array]:
    return jax.device_put({n: data[f"{n}{k}"] for n in ("image", "label", "index")}, dat)

  def cast(s: Any) -> Any:
    """The state as float32 stores it (then back in this run's dtype)."""
    return jax.tree.map(lambda x: x.astype(jnp.float32).astype(x.dtype) if x.dtype == dtype else x, s)

  out: dict[str, Any] = {}
  probes = spec.get("probes") and _probe_fn(model, aug, key, dtype)
  state = jax.device_put(load_state(spec["start"]) if spec.get("start") else template, rep)
  names, leaves = _flat(state)
  param_idx = [i for i, n in enumerate(names) if n.startswith("params/")]  # where grads go in the state

  def gradients(state: Any, k: int) -> dict[int, np.ndarray]:
    gstate = state.replace(opt_state=_grad_tx().init(state.params))
    return dict(zip(param_idx, _flat(grad_fn(gstate, batch(k), key)[0].opt_state)[1]))

  out["names"] = np.asarray(names)
  for i, x in enumerate(leaves):
    out[f"s{spec['first_step'] - 1}_l{i}"] = x
  t0 = time.time()
  for k in range(spec["first_step"], spec["steps"] + 1):
    if spec.get("record_grads"):
      for i, g in gradients(state, k).items():
        out[f"g{k}_l{i}"] = g
    if probes:
      # What storing the state in float32 alone does: float64 arithmetic from the cast state.
      for i, g in gradients(cast(state), k).items():
        out[f"cg{k}_l{i}"] = g
      variables = lambda s: {"params": s.params, "batch_stats": s.batch_stats}
      p = jax.device_get(probes(variables(state), variables(cast(state)), batch(k), state.step))
      out[f"flips{k}"] = np.asarray([int(f) for f in p["flips"]])
      out[f"relu_inputs{k}"] = np.int64(p["relu_inputs"])
      out[f"bn{k}"] = np.asarray(json.dumps({n: {m: float(v) for m, v in d.items()} for n, d in p["bn"].items()}))
    state, metrics = step_fn(state, batch(k), key)
    for n in ("loss", "grad_norm", "probe_loss"):
      out[f"{n}{k}"] = np.float64(metrics[n])
    for i, x in enumerate(_flat(state)[1]):
      out[f"s{k}_l{i}"] = x
  # One step from each reference state k - 1, cast to this run's dtype.
  ref = np.load(spec["local_from"]) if spec.get("local_from") else None
  for k in range(1, spec["steps"] + 1) if ref is not None else ():
    leaves = [jnp.asarray(ref[f"s{k - 1}_l{i}"], x.dtype) for i, x in enumerate(jax.tree.leaves(template))]
    s = jax.device_put(jax.tree.unflatten(treedef, leaves), rep)
    for i, g in gradients(s, k).items():
      out[f"lg{k}_l{i}"] = g
    for i, x in enumerate(_flat(step_fn(s, batch(k), key)[0])[1]):
      out[f"ls{k}_l{i}"] = x
  out["seconds"] = np.float64(time.time() - t0)
  out["dtype"] = np.asarray(str(dtype))
  np.savez(spec["out"], **out)


# ----------------------------------------------------------------------------- parent


def _run_worker(spec: dict[str, Any], tmp: str, reuse: bool = False) -> dict[str, np.ndarray]:
  if reuse:
    return dict(np.load(spec["out"]))
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={spec['devices']}").strip()
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  spec_path = os.path.join(tmp, f"{spec['name']}.json")
  with open(spec_path, "w", encoding="utf-8") as f:
    json.dump(spec, f)
  t = time.time()
  subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", spec_path], env=env, check=True, cwd=ROOT)
  print(f"  {spec['name']}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)
  return dict(np.load(spec["out"]))


def _norm(xs: list[np.ndarray]) -> float:
  return float(np.sqrt(sum(float(np.sum(x * x)) for x in xs)))


def _leaves(run: dict[str, np.ndarray], prefix: str, idx: list[int]) -> list[np.ndarray]:
  return [run[f"{prefix}_l{i}"] for i in idx]


def _rel(a: float, b: float) -> float:
  return abs(a - b) / max(abs(b), 1e-300)


def analyse(runs: dict[str, dict[str, np.ndarray]], steps: int, weight_decay: float, top: int = 3
            ) -> dict[str, Any]:
  """The JSON summary from the runs' recordings (see the module docstring)."""
  ref = runs["f64_1dev"]
  names = [str(n) for n in ref["names"]]
  params = [i for i, n in enumerate(names) if n.startswith("params/")]
  state_idx = list(range(len(names)))
  theta0 = _leaves(ref, "s0", params)
  traj = []
  for k in range(1, steps + 1):
    row: dict[str, Any] = {"step": k}
    ref_k = _leaves(ref, f"s{k}", params)
    moved = _norm([a - b for a, b in zip(ref_k, theta0)])
    for name, run in runs.items():
      if f"loss{k}" not in run:
        continue
      row.setdefault("loss", {})[name] = float(run[f"loss{k}"])
      row.setdefault("grad_norm", {})[name] = float(run[f"grad_norm{k}"])
      if name != "f64_1dev":
        row.setdefault("loss_rel_diff", {})[name] = _rel(float(run[f"loss{k}"]), float(ref[f"loss{k}"]))
        row.setdefault("grad_norm_rel_diff", {})[name] = _rel(float(run[f"grad_norm{k}"]),
                                                              float(ref[f"grad_norm{k}"]))
        row.setdefault("param_dist", {})[name] = _norm(
            [a - b for a, b in zip(_leaves(run, f"s{k}", params), ref_k)]) / moved
    if "f32_8dev" in runs and "f32_1dev" in runs:
      a, b = runs["f32_8dev"], runs["f32_1dev"]
      row["f32_8dev_vs_1dev"] = {
          "loss_rel_diff": _rel(float(a[f"loss{k}"]), float(b[f"loss{k}"])),
          "grad_norm_rel_diff": _rel(float(a[f"grad_norm{k}"]), float(b[f"grad_norm{k}"])),
          "param_dist": _norm([x - y for x, y in zip(_leaves(a, f"s{k}", params), _leaves(b, f"s{k}", params))])
                        / moved}
    traj.append(row)

  # LARS's trust ratio applies to these (SimCLR's masks: ndim > 1, not the probe).
  trust = [i for i in params if ref[f"s0_l{i}"].ndim > 1 and "/probe/" not in names[i]]
  local = []
  for k in range(1, steps + 1):
    row = {"step": k}
    g64 = {i: ref[f"g{k}_l{i}"] for i in params}
    g_norm = _norm(list(g64.values()))
    if f"flips{k}" in ref:
      bn = json.loads(str(ref[f"bn{k}"]))
      worst = max(bn, key=lambda n: bn[n]["fast_rel_err"])
      row["f64_from_cast_state"] = {
          "grad_rel_err": _norm([ref[f"cg{k}_l{i}"] - g64[i] for i in params]) / g_norm,
          "relu_flips": int(np.sum(ref[f"flips{k}"])), "relu_inputs": int(ref[f"relu_inputs{k}"])}
      row["bn_batch_variance_f32"] = {
          "fast_max_rel_err": bn[worst]["fast_rel_err"], "fast_worst_layer": worst,
          "two_pass_max_rel_err": max(d["two_pass_rel_err"] for d in bn.values()),
          "max_kappa": max(d["kappa"] for d in bn.values()),
          "kappa_of_worst_layer": bn[worst]["kappa"]}
    row["lars_min_grad_over_decay"] = min(
        _norm([g64[i]]) / max(_norm([weight_decay * ref[f"s{k - 1}_l{i}"]]), 1e-300) for i in trust)
    old = {i: ref[f"s{k - 1}_l{i}"] for i in state_idx}
    new64 = {i: ref[f"s{k}_l{i}"] for i in state_idx}
    for name in ("f32_1dev", "f32_8dev"):
      run = runs.get(name)
      if run is None or f"lg{k}_l{params[0]}" not in run:
        continue
      g32 = {i: run[f"lg{k}_l{i}"] for i in params}
      gp = [(g32[i] - g64[i]) for i in params]
      new32 = {i: run[f"ls{k}_l{i}"] for i in state_idx}
      start = {i: old[i].astype(np.float32).astype(np.float64) for i in state_idx}
      d32 = {i: new32[i] - start[i] for i in params}
      d64 = {i: new64[i] - old[i] for i in params}
      leaf_rows = []
      upd_err_total = _norm([d32[i] - d64[i] for i in params])
      for i in params:
        leaf_rows.append({
            "leaf": names[i], "grad_norm": _norm([g64[i]]),
            "grad_rel_err": _norm([g32[i] - g64[i]]) / max(_norm([g64[i]]), 1e-300),
            "update_norm": _norm([d64[i]]),
            "update_rel_err": _norm([d32[i] - d64[i]]) / max(_norm([d64[i]]), 1e-300),
            "share_of_update_err": (_norm([d32[i] - d64[i]]) / upd_err_total) ** 2})
      leaf_rows.sort(key=lambda r: -r["share_of_update_err"])
      row[name] = {
          "grad_rel_err": _norm(gp) / _norm([g64[i] for i in params]),
          "update_rel_err": upd_err_total / _norm([d64[i] for i in params]),
          "update_rel_err_trust_ratio_leaves": _norm([d32[i] - d64[i] for i in trust]) / _norm([d64[i] for i in trust]),
          "trust_ratio_leaves_share_of_update_err": _norm([d32[i] - d64[i] for i in trust]) ** 2 / upd_err_total ** 2,
          "worst_leaves": leaf_rows[:top]}
    local.append(row)

  amp = []
  if "f64_from_f32" in runs:
    run = runs["f64_from_f32"]
    d1 = _norm([a - b for a, b in zip(_leaves(run, "s1", params), _leaves(ref, "s1", params))])
    for k in range(1, steps + 1):
      dk = _norm([a - b for a, b in zip(_leaves(run, f"s{k}", params), _leaves(ref, f"s{k}", params))])
      amp.append({"step": k, "dist": dk, "growth_since_step1": dk / d1 if d1 else None})
  return {"trajectory": traj, "local": local, "amplification": amp}


def _load_batches(args: argparse.Namespace, config: Any, path: str) -> None:
  from contrastive_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from contrastive_jax import sources  # pylint: disable=g-import-not-at-top
  ds = sources.load_train_data(config)
  out = {"num_examples": len(ds), "num_classes": ds.num_classes}
  for k in range(1, args.steps + 1):
    b = ds.take(data_lib.global_batch_indices(k - 1, len(ds), config.batch_size, config.seed))
    out[f"image{k}"], out[f"label{k}"] = b["image"], b["label"]
    out[f"index{k}"] = np.arange(config.batch_size, dtype=np.int32)
  np.savez(path, **out)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default=os.path.join(ROOT, "experiments", "cifar10_simclr.py") + ":test")
  parser.add_argument("--image_folder", default=os.path.join(ROOT, "..", "shared", "data", "cifar10"))
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override, e.g. learning_rate=0.01 (repeatable)")
  parser.add_argument("--bn_fast_variance", action="store_true",
                      help="BN variance as E[x^2] - E[x]^2 (Flax's default; the code before issue 17)")
  parser.add_argument("--gelu", action="store_true",
                      help="experiment: every ReLU replaced by GELU (smooth), to measure what ReLU's kinks amplify")
  parser.add_argument("--no_amplification", action="store_true", help="skip the f64_from_f32 run")
  parser.add_argument("--out", default="")
  parser.add_argument("--workdir", default="", help="keep the runs' recordings here (default: a temporary folder)")
  parser.add_argument("--analyse_only", action="store_true", help="re-read the recordings in --workdir")
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    with open(args.worker, encoding="utf-8") as f:
      worker(json.load(f))
    return

  from contrastive_jax import cli  # pylint: disable=g-import-not-at-top
  overrides: dict[str, Any] = {"batch_size": args.batch_size, "seed": args.seed,
                               "data.image_folder": os.path.abspath(args.image_folder)}
  for kv in args.set:
    k, v = kv.split("=", 1)
    try:
      overrides[k] = json.loads(v)
    except json.JSONDecodeError:
      overrides[k] = v
  config = cli.load_config(args.config, **overrides)
  t0 = time.time()
  with tempfile.TemporaryDirectory(prefix="numerics-") as tmp:
    tmp = args.workdir or tmp
    os.makedirs(tmp, exist_ok=True)
    batches = os.path.join(tmp, "batches.npz")
    if not args.analyse_only:
      _load_batches(args, config, batches)
    base = dict(config=args.config, overrides=overrides, batches=batches, steps=args.steps,
                bn_fast_variance=args.bn_fast_variance, gelu=args.gelu, first_step=1)
    spec = lambda name, **kw: {**base, "name": name, "out": os.path.join(tmp, name + ".npz"), **kw}
    run = lambda sp: _run_worker(sp, tmp, reuse=args.analyse_only)
    runs = {"f64_1dev": run(spec("f64_1dev", dtype="float64", devices=1, record_grads=True, probes=True))}
    ref_path = os.path.join(tmp, "f64_1dev.npz")
    for name, n in (("f32_1dev", 1), ("f32_8dev", args.devices)):
      runs[name] = run(spec(name, dtype="float32", devices=n, local_from=ref_path))
    if not args.no_amplification and args.steps > 1:
      start = os.path.join(tmp, "f32_step1.npz")
      names = runs["f32_1dev"]["names"]
      np.savez(start, **{f"l{i}": runs["f32_1dev"][f"s1_l{i}"] for i in range(len(names))})
      runs["f64_from_f32"] = run(spec("f64_from_f32", dtype="float64", devices=1, start=start, first_step=2))
  result = analyse(runs, args.steps, float(config.weight_decay))
  result.update({
      "command": "python tools/numerics_check.py " + " ".join(sys.argv[1:]),
      "config": args.config, "overrides": overrides, "bn_fast_variance": args.bn_fast_variance, "gelu": args.gelu,
      "devices": args.devices, "seconds": round(time.time() - t0, 1),
      "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
  for row in result["trajectory"]:
    rd = row.get("loss_rel_diff", {})
    pd = row.get("param_dist", {})
    print(f"step {row['step']}: loss f64 {row['loss']['f64_1dev']:.7f}  rel diff f32_1dev "
          f"{rd.get('f32_1dev', float('nan')):.1e} f32_8dev {rd.get('f32_8dev', float('nan')):.1e}  "
          f"param_dist f32_1dev {pd.get('f32_1dev', float('nan')):.1e} f32_8dev {pd.get('f32_8dev', float('nan')):.1e}")
  for row in result["local"]:
    parts = [f"{n}: grad {row[n]['grad_rel_err']:.1e} update {row[n]['update_rel_err']:.1e}"
             for n in ("f32_1dev", "f32_8dev") if n in row]
    c, bn = row.get("f64_from_cast_state"), row.get("bn_batch_variance_f32")
    if c:
      parts.append(f"f64 from the f32-cast state: grad {c['grad_rel_err']:.1e}, {c['relu_flips']} ReLU flips")
      parts.append(f"BN var in f32: one-pass {bn['fast_max_rel_err']:.1e} (kappa {bn['kappa_of_worst_layer']:.0f}, "
                   f"{bn['fast_worst_layer']}), two-pass {bn['two_pass_max_rel_err']:.1e}")
    print(f"local step {row['step']}: " + "; ".join(parts))
  for row in result["amplification"]:
    print(f"f64 from f32 step 1: step {row['step']} dist {row['dist']:.2e} growth {row['growth_since_step1']:.1f}")
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
