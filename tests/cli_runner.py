"""Running the command line from tests: one process, or 2 processes x 2 CPU devices (gloo)."""

import os
import pathlib
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_cli(module, args, env_extra=None, timeout=240, **popen):
  """`python -m module args` in the repo, on the CPU, with the test session's compilation cache.

  With popen keyword arguments: a running Popen (stdout piped, text); else the finished run.
  """
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env.update({"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"})
  env.update(env_extra or {})
  cmd = [sys.executable, "-m", module, *args]
  if popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch_2x2(args, workdir, port, env_extra=None):
  """The training CLI as 2 processes with 2 CPU devices each, coordinated on 127.0.0.1:port."""
  return [run_cli("contrastive_jax.train",
                  args + [f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                          f"--process_id={i}"],
                  env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", **(env_extra or {})},
                  start_new_session=False)
          for i in range(2)]


def wait_ok(procs, timeout=300):
  for p in procs:
    out = p.communicate(timeout=timeout)[0]
    assert p.returncode == 0, out
