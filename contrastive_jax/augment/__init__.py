"""The views' data augmentation (SimCLR's ops and order): on-device (JAX) and host-side (tf.data).

Where each step runs
--------------------
* Fixed-size datasets (CIFAR-10/100, STL-10 at a fixed size, ...): everything
  runs on device in one jitted call, `augment_batch(key, images, config)`:
  random resized crop -> horizontal flip -> colour jitter -> grayscale ->
  Gaussian blur -> solarize (the order of google-research/simclr, blur last as
  in its `batch_random_blur`), with an optional rotation after the flip
  (`rotate_p`, off in the presets).
* Variable-size datasets (ImageNet-like): the crop must happen while each image
  still has its own size, so it runs on the host in tf.data
  (`tf_decode_and_random_crop` / `tf_two_crops`, fused with JPEG decoding via
  `decode_and_crop_jpeg`, uint8 output). The device then runs the rest with
  `ViewAugment(crop=False, ...)`. Eval uses `tf_decode_and_center_crop` on
  the host or `center_crop` on device.

Conventions
-----------
* Images are float32 in [0, 1], NHWC, 3 channels. One call handles one batch.
  float64 images (with `jax_enable_x64`) stay float64, with the same random
  draws (always float32 uniforms): a float64 reference for numerics checks.
* Every image gets its own independent random draw. Random ops take either one
  PRNG key (split into one key per image) or a batch of B keys (one per image,
  e.g. derived from (seed, step, global image index) so that results do not
  depend on the device count). Old-style uint32[2] keys and typed keys from
  `jax.random.key` are both accepted.
* All functions are pure, jit- and vmap-safe, and branchless across the batch
  (per-image choices are selects, not Python or `lax.cond` control flow; the
  one data-dependent `lax.cond`, extra crop attempts, decides for the whole
  batch and gives every image the same result either way).

Modules
-------
* `keys`: input checks, per-image keys and draws.
* `ops`: the per-op functions (`adjust_*`, `color_jitter`, `random_*`, ...),
  the reference the fused pipeline is tested against.
* `crop`: crop boxes, the crop + resize kernels, `random_resized_crop`,
  `center_crop`.
* `rotation`: `rotate` and `random_rotate`, bilinear about the centre with
  constant corners (scipy.ndimage.rotate's angle sign and numbers).
* `color`: the RGB <-> (hue, min, max) pair and the fused colour-jitter program.
* `pipeline`: `ViewAugment`, `augment_batch`, `random_crop_and_flip`.
* `fusion`: XLA:CPU fusion barriers and the chunk loop (speed only).
* `host`: the tf.data host crops (`tf_*`); TensorFlow is imported lazily.

How the CPU time is spent and what each speed trick gained:
docs/performance.md, "Augmentation: where the time goes".
"""

from contrastive_jax.augment.color import _jitter_params, _jitter_planar
from contrastive_jax.augment.crop import (_crop_resize, _planar_crop, center_crop,
                                          random_resized_crop, sample_crop_boxes)
from contrastive_jax.augment.fusion import _cpu_token
from contrastive_jax.augment.host import (tf_decode_and_center_crop, tf_decode_and_random_crop,
                                          tf_random_crops, tf_two_crops)
from contrastive_jax.augment.keys import _uniforms, per_image_keys
from contrastive_jax.augment.ops import (adjust_brightness, adjust_brightness_multiplicative,
                                         adjust_contrast, adjust_hue, adjust_saturation,
                                         blur_kernel_size, color_jitter, random_flip_left_right,
                                         random_gaussian_blur, random_grayscale, random_solarize,
                                         solarize, to_grayscale)
from contrastive_jax.augment.pipeline import (ViewAugment, augment_batch, augment_image,
                                              random_crop_and_flip)
from contrastive_jax.augment.rotation import random_rotate, rotate

# Private helpers that tests/test_augment.py checks directly.
_TESTED_INTERNALS = (_cpu_token, _crop_resize, _jitter_params, _jitter_planar, _planar_crop,
                     _uniforms)

__all__ = [
    "ViewAugment", "adjust_brightness", "adjust_brightness_multiplicative", "adjust_contrast",
    "adjust_hue", "adjust_saturation", "augment_batch", "augment_image", "blur_kernel_size",
    "center_crop", "color_jitter", "per_image_keys", "random_crop_and_flip",
    "random_flip_left_right", "random_gaussian_blur", "random_grayscale", "random_resized_crop",
    "random_rotate", "random_solarize", "rotate", "sample_crop_boxes", "solarize",
    "tf_decode_and_center_crop", "tf_decode_and_random_crop", "tf_random_crops", "tf_two_crops",
    "to_grayscale",
]
