"""Image folders without TensorFlow: tfds.ImageFolder's listing and TF's decode, reproduced exactly.

The references here are the TF path: tfds.ImageFolder's examples, and
`tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")` (JPEG) / `tf.io.decode_image` (other
formats). TF's default JPEG decode (IFAST), which folders used before, is up to 5 grey levels
off the accurate DCT that Pillow uses.
"""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from contrastive_jax import sources

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tfds_examples(root: pathlib.Path) -> tuple[dict[str, tuple[list[str], list[int]]], list[str], list[str]]:
  """tfds.ImageFolder's split -> (paths, labels) sorted by path, its class names and its splits."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  sources.tf_for_data()
  builder = tfds.ImageFolder(str(root))
  names = list(builder.info.features["label"].names)
  splits = {}
  for split, examples in builder._split_examples.items():  # pylint: disable=protected-access
    examples = sorted(examples, key=lambda e: e.image_path)
    splits[split] = ([e.image_path for e in examples], [names.index(e.label) for e in examples])
  return splits, names, sorted(builder.info.splits.keys())


def _tf_decode(paths: list[str]) -> np.ndarray:
  """uint8 [N, H, W, 3]: TF's decode with libjpeg's accurate integer DCT for JPEGs."""
  tf = sources.tf_for_data()
  images = []
  for p in paths:
    data = tf.io.read_file(p)
    if tf.io.is_jpeg(data):
      images.append(tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy())
    else:
      images.append(tf.io.decode_image(data, channels=3, expand_animations=False).numpy())
  return np.stack(images)


def _save(path: pathlib.Path, image: Image.Image, **kwargs) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  image.save(path, **kwargs)


@pytest.fixture(scope="module")
def mixed_formats(tmp_path_factory) -> pathlib.Path:
  """`test/<class>/*`: 20 x 24 images as JPEG and PNG, greyscale, RGBA, LA, palette, 1- and 16-bit, CMYK."""
  root = tmp_path_factory.mktemp("mixed_formats")
  rng = np.random.default_rng(3)
  for c in range(2):
    d = root / "test" / f"class{c}"
    # A gradient with noise: JPEG blocks with real AC terms, where DCT methods differ.
    ramp = np.linspace(0, 200, 24)[None, :, None] + np.linspace(0, 50, 20)[:, None, None]
    rgb = np.clip(ramp + rng.normal(0, 25, (20, 24, 3)) + 20 * c, 0, 255).astype(np.uint8)
    alpha = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (20, 24), dtype=np.uint16)
    _save(d / "rgb.jpg", Image.fromarray(rgb), quality=90)
    _save(d / "rgb444.jpeg", Image.fromarray(rgb), quality=75, subsampling=0)
    _save(d / "progressive.jpg", Image.fromarray(rgb), progressive=True)
    _save(d / "grey.jpg", Image.fromarray(rgb[..., 0]))
    _save(d / "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    _save(d / "rgb.png", Image.fromarray(rgb))
    _save(d / "grey.png", Image.fromarray(rgb[..., 1]))
    _save(d / "grey16.png", Image.fromarray(grey16))
    _save(d / "bilevel.png", Image.fromarray(rgb[..., 2] > 100))
    _save(d / "rgba.png", Image.fromarray(np.dstack([rgb, alpha])))
    _save(d / "la.png", Image.merge("LA", [Image.fromarray(rgb[..., 0]), Image.fromarray(alpha)]))
    _save(d / "palette.png", Image.fromarray(rgb).quantize(32), transparency=3)
  return root


def test_folder_decode_equals_tf_accurate_decode_on_mixed_formats(mixed_formats):
  splits, names, _ = _tfds_examples(mixed_formats)
  paths, labels = splits["test"]
  ds = sources.load_dataset("unused", "test", image_folder=str(mixed_formats))
  assert ds.images.shape == (24, 20, 24, 3) and ds.images.dtype == np.uint8
  np.testing.assert_array_equal(ds.labels, labels)
  assert ds.num_classes == len(names) == 2
  np.testing.assert_array_equal(ds.images, _tf_decode(paths))
  # One thread or many: the same array.
  np.testing.assert_array_equal(sources._decode_files(paths, workers=1), ds.images)  # pylint: disable=protected-access


def test_cifar10_subset_equals_tf_accurate_decode(cifar10_dir):
  ds = sources.load_dataset("cifar10", "test", image_folder=str(cifar10_dir), num_examples=500)
  splits, names, _ = _tfds_examples(cifar10_dir)
  paths, labels = sources._stratified_prefix(*splits["test"], 500)  # pylint: disable=protected-access
  assert ds.images.shape == (500, 32, 32, 3) and ds.num_classes == len(names) == 10
  np.testing.assert_array_equal(ds.labels, labels)
  np.testing.assert_array_equal(ds.images, _tf_decode(paths))


@pytest.fixture
def odd_names_folder(tmp_path) -> pathlib.Path:
  """Everything tfds.ImageFolder's listing has a rule for: case, hidden names, non-images, symlinks, depth."""
  root = tmp_path / "odd"
  files = [
      "train/cat/b.JPG", "train/cat/a.jpeg", "train/cat/c.PNG", "train/cat/d.Jpg", "train/cat/e.png",
      "train/cat/.hidden.jpg",  # hidden: listed
      "train/cat/notes.txt", "train/cat/x.gif", "train/cat/y.jpg.bak", "train/cat/jpg",  # not listed
      "train/cat/deeper/f.jpg",  # deeper than a class: not listed
      "train/loose.jpg",  # directly in a split: not listed
      "train/.hiddenclass/g.png", "train/dog/i.jpg", "train/dog-x/h.jpg",  # '-' sorts before '/'
      "train/Zebra/j.png", "test/bird/k.jpg", "test/cat/l.jpg",  # bird: a class of test alone
  ]
  for f in files:
    (root / f).parent.mkdir(parents=True, exist_ok=True)
    (root / f).write_bytes(b"")  # the listing reads names only
  (root / "train" / "cat" / "folder.jpg").mkdir()  # a folder named like an image: TFDS lists it
  (root / "train" / "birdlink").symlink_to(root / "test" / "bird", target_is_directory=True)
  (root / "empty" / "owl").mkdir(parents=True)  # a split with a class but no image
  (root / "noclass").mkdir()  # no class folder: not a split
  return root


def test_listing_equals_tfds_image_folder(odd_names_folder):
  root = odd_names_folder
  splits, names, found = _tfds_examples(root)
  assert set(splits) == {"train", "test", "empty"} and splits["train"][0]  # the folder exercises what it should
  for split in ("train", "test"):
    paths, labels, got_names = sources._folder_examples(str(root), split)  # pylint: disable=protected-access
    assert (paths, labels, got_names) == (*splits[split], names), split
  # host_crop reads the same listing.
  ds = sources.load_dataset("unused", "train", image_folder=str(root), host_crop=True)
  assert isinstance(ds, sources.EncodedDataset) and ds.files and ds.num_classes == len(names)
  assert (list(ds.images), list(ds.labels)) == splits["train"]
  for split in ("empty", "noclass", "validation"):
    with pytest.raises(sources.DatasetUnavailableError,
                       match=rf"no images for split {split!r}.*splits found: {re.escape(repr(found))}"):
      sources.load_dataset("unused", split, image_folder=str(root))
  with pytest.raises(sources.DatasetUnavailableError, match="nowhere.*does not exist"):
    sources.load_dataset("unused", "train", image_folder=str(root / "nowhere"))


def test_same_size_folder_loads_without_tensorflow(image_folder, tmp_path):
  """TensorFlow and TFDS that raise on import stand in for a machine that has neither."""
  hidden = tmp_path / "hidden"
  for package in ("tensorflow", "tensorflow_datasets"):
    (hidden / package).mkdir(parents=True)
    (hidden / package / "__init__.py").write_text('raise ImportError("hidden for the test")\n')
  code = textwrap.dedent("""
      import sys
      import numpy as np
      from contrastive_jax import sources
      ds = sources.load_dataset("unused", "test", image_folder=sys.argv[1])
      imported = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets"))
      assert not imported, imported
      try:
        import tensorflow  # noqa: F401
      except ImportError as e:
        assert "hidden for the test" in str(e), e  # the stand-in, not a real TensorFlow, is what is found
      else:
        raise AssertionError("tensorflow imported")
      np.savez(sys.argv[2], images=ds.images, labels=ds.labels)
  """)
  out = tmp_path / "loaded.npz"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(hidden), str(ROOT),
                                                                  os.environ.get("PYTHONPATH")])))
  proc = subprocess.run([sys.executable, "-c", code, str(image_folder), str(out)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  loaded = np.load(out)
  want = sources.load_dataset("unused", "test", image_folder=str(image_folder))
  assert loaded["images"].shape == (32, 32, 32, 3)
  np.testing.assert_array_equal(loaded["images"], want.images)
  np.testing.assert_array_equal(loaded["labels"], want.labels)


def _png_folder(root: pathlib.Path, sizes: dict[str, tuple[int, int]]) -> pathlib.Path:
  """`root/train/c/<name>` PNGs of the given (height, width)."""
  for name, (h, w) in sizes.items():
    _save(root / "train" / "c" / name, Image.fromarray(np.full((h, w, 3), 7, np.uint8)))
  return root


def test_unreadable_file_is_named(tmp_path):
  root = _png_folder(tmp_path, {f"{i:02d}.png": (8, 8) for i in range(12)})
  (root / "train" / "c" / "05.png").write_bytes(b"not an image")
  (root / "train" / "c" / "09.png").write_bytes(b"")  # later: the first bad file is the one named
  with pytest.raises(ValueError, match=r"cannot read image file .*05\.png"):
    sources.load_dataset("unused", "train", image_folder=str(root))


def test_differing_sizes_name_the_file_and_host_crop(tmp_path):
  root = _png_folder(tmp_path, {**{f"{i:02d}.png": (8, 8) for i in range(12)}, "07.png": (9, 8)})
  with pytest.raises(ValueError, match=r"07\.png.* is \(9, 8, 3\).*00\.png.* is \(8, 8, 3\).*host_crop=True"):
    sources.load_dataset("unused", "train", image_folder=str(root))
