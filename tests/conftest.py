"""Test setup: eight host CPU devices, set before JAX initialises.

The distributed contracts (global negatives, synchronised BN, the 8-vs-1
device train step) need several devices; on a CPU-only machine XLA can split
the host into N logical devices. This must run before `import jax` anywhere.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags = (_flags + " --xla_force_host_platform_device_count=8").strip()
# The suite's programs are tiny, so compiling dominates: LLVM at level 0 cuts the fast tier's
# time by 40% (docs/testing.md). Values compared across programs keep their tolerances there.
if "xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _flags
# TensorFlow (tf.data, tf.image references) must not grab a GPU or spam logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Many tests compile the same train step (in-process and in CLI subprocesses):
# a persistent compilation cache shared by the whole session pays for it once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cj-jax-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

SHARED_CIFAR10 = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


def pytest_addoption(parser):
  parser.addoption("--proofs", action="store_true",
                   help="run only the tests marked `proof` (the per-method exactness matrix, multi-process and "
                        "GPU-script proofs), which the default run leaves out; CI (.ci/run) runs both")


def pytest_collection_modifyitems(config, items):
  """The default run leaves out the `proof` tests; `--proofs` runs only them (docs/testing.md)."""
  proofs = config.getoption("--proofs")
  keep, drop = [], []
  for item in items:
    (keep if (item.get_closest_marker("proof") is not None) == proofs else drop).append(item)
  if drop:
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per core, at most 4 (each holds 8 fake devices and a JAX runtime)."""
  del config
  return max(1, min(os.cpu_count() or 1, 4))


@pytest.fixture(scope="session")
def cifar10_dir() -> pathlib.Path:
  """The real CIFAR-10 image folder from ../shared, or skip with the reason."""
  if not (SHARED_CIFAR10 / "train").is_dir():
    pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR10} (../shared/data/cifar10 beside the repo)")
  return SHARED_CIFAR10


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> pathlib.Path:
  """A tiny synthetic `split/class/*.jpg` folder: 4 colour classes with noise, 16 train / 8 test each."""
  root = tmp_path_factory.mktemp("image_folder")
  rng = np.random.default_rng(0)
  colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
  for split, n in (("train", 16), ("test", 8)):
    for c, colour in enumerate(colours):
      d = root / split / f"class{c}"
      d.mkdir(parents=True)
      for i in range(n):
        img = np.clip(colour + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:03d}.jpg")
  return root


class NetworkBlocked(RuntimeError):
  """Raised by the `no_network` fixture at the first network access.

  A RuntimeError, not an OSError: urllib3 retries OSErrors ten times with backoff
  (3.5 minutes for TFDS's download); this one stops at the first attempt.
  """


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
  """Block the network at socket level (name lookup and connect); returns the hosts that were tried."""
  import socket  # pylint: disable=g-import-not-at-top
  tried: list[str] = []

  def getaddrinfo(host, *args, **kwargs):
    del args, kwargs
    tried.append(str(host))
    raise NetworkBlocked(f"network blocked by the test: getaddrinfo({host!r})")

  def connect(self, address, *args):
    del self, args
    tried.append(str(address))
    raise NetworkBlocked(f"network blocked by the test: connect({address!r})")

  monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
  monkeypatch.setattr(socket.socket, "connect", connect)
  monkeypatch.setattr(socket.socket, "connect_ex", connect)
  return tried
