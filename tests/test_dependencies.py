"""A fresh `pip install -e .` has everything the main command imports, and TFDS's download path gets to the network."""

import importlib
import importlib.metadata as md

import pytest
from conftest import NetworkBlocked
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


from contrastive_jax import sources  # pylint: disable=g-import-not-at-top

# Imported lazily somewhere on `python -m contrastive_jax.train` / `.evaluate` / `.embed`:
# TFDS's download path (importlib_resources), its array_record sources and image decoding (PIL),
# the metric writers (clu, tensorboard), the input pipeline (tensorflow).
MAIN_PATH_MODULES = ("importlib_resources", "PIL", "array_record", "tensorflow_datasets", "tensorflow",
                     "clu.metric_writers", "clu.periodic_actions", "clu.parameter_overview", "tensorboard",
                     "orbax.checkpoint", "dm_pix", "ml_collections")


def _core_dependency_closure(dist: str = "contrastive-jax") -> set[str]:
  """Distributions a plain `pip install` of `dist` brings in (no extras), markers evaluated here."""
  seen, todo = set(), [dist]
  while todo:
    name = canonicalize_name(todo.pop())
    if name in seen:
      continue
    seen.add(name)
    for spec in md.requires(name) or ():
      req = Requirement(spec)
      if req.marker is None or req.marker.evaluate({"extra": ""}):
        todo.append(req.name)
  return seen


def test_main_path_imports_come_from_core_dependencies():
  """Each module is importable and is provided by a core requirement, not by an extra or by chance."""
  closure = _core_dependency_closure()
  providers = md.packages_distributions()
  for module in MAIN_PATH_MODULES:
    importlib.import_module(module)
    dists = {canonicalize_name(d) for d in providers.get(module.split(".")[0], ())}
    assert dists & closure, (f"{module} (from {sorted(dists)}) is not in the core dependency closure of "
                             "contrastive-jax: add it to [project].dependencies in pyproject.toml")


def _chain(error: BaseException) -> list[BaseException]:
  out = []
  while error is not None and error not in out:
    out.append(error)
    error = error.__cause__ or error.__context__
  return out


def test_tfds_cifar10_download_fails_only_at_the_network(no_network, tmp_path):
  """TFDS resolves the builder, its checksums and the download manager, then stops at the first socket."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder("cifar10", data_dir=str(tmp_path))
  with pytest.raises(Exception) as info:
    builder.download_and_prepare()
  kinds = [type(e).__name__ for e in _chain(info.value)]
  assert any(isinstance(e, NetworkBlocked) for e in _chain(info.value)), kinds
  assert not any(isinstance(e, ImportError) for e in _chain(info.value)), kinds
  assert "www.cs.toronto.edu" in no_network  # CIFAR-10's download URL


def test_tfds_without_network_names_the_image_folder_flag(no_network, tmp_path):
  with pytest.raises(sources.DatasetUnavailableError) as info:
    sources.load_dataset("cifar10", "train", data_dir=str(tmp_path))
  message = str(info.value)
  assert "NetworkBlocked" in message and "--config.data.image_folder" in message, message
  assert "ModuleNotFound" not in message
