"""DINO (Caron et al. 2021): a student matches an EMA teacher's centred, sharpened outputs on the large crops."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax import losses
from contrastive_jax.methods.common import Method, check_momentum, check_positive, momentum_target

PROTOTYPES = "prototypes"  # the model's last layer (config.model.prototypes), EMA'd into the teacher
CENTER = "center"


def teacher_temperature(step: jax.Array, *, warmup_temp: float, temp: float, warmup_epochs: int,
                        steps_per_epoch: int) -> jax.Array:
  """The teacher's temperature at `step`: per epoch, linear from warmup_temp (epoch 0) to temp (epoch
  warmup_epochs - 1), then temp (DINO's `np.linspace(warmup, temp, warmup_epochs)` schedule, indexed by
  the epoch; solo-learn's too). warmup_epochs 0: temp throughout."""
  if warmup_epochs <= 0:
    return jnp.asarray(temp, jnp.float32)
  epoch = (step // steps_per_epoch).astype(jnp.float32)
  ramp = warmup_temp + (temp - warmup_temp) * epoch / max(warmup_epochs - 1, 1)
  return jnp.where(epoch < warmup_epochs, ramp, temp).astype(jnp.float32)


def make(*, total_steps: int, steps_per_epoch: int, base_momentum: float = 0.996, final_momentum: float = 1.0,
         student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
         warmup_teacher_temp_epochs: int = 0, center_momentum: float = 0.9, num_views: int = 2,
         num_large_views: int | None = None, axis_name: str | None = None) -> Method:
  """DINO: `losses.dino_loss` of every student crop against the teacher's large crops but its own view.

  Args:
    total_steps: the run's length, for the teacher's momentum schedule.
    steps_per_epoch: the teacher temperature's schedule is per epoch.
    base_momentum, final_momentum: the teacher's EMA momentum, cosine from base to final (the
      paper: 0.996 -> 1; solo-learn CIFAR: 0.9995 -> 1).
    student_temp: the student's softmax temperature (0.1).
    teacher_temp, warmup_teacher_temp, warmup_teacher_temp_epochs: the teacher's temperature,
      linear per epoch from warmup_teacher_temp to teacher_temp over the first epochs (the
      paper's ViT recipe: 0.04 -> 0.07 over 30 epochs; solo-learn's default: no warmup, 0.07).
    center_momentum: the centre's EMA weight of the old centre (0.9).
    num_views, num_large_views: the crops; the teacher sees the large crops only (>= 2).
    axis_name: the data axis: the centre is the mean of the **global** batch of teacher outputs
      (`losses.dino_center`, psum), the same on every device.

  The teacher is the momentum target: an EMA of encoder + head + prototypes (DINO's head: an MLP
  to a bottleneck, L2-normalised, then the weight-normalised last layer, `models.Prototypes` with
  normalize_weights), in train mode with its own BN statistics. The centre is updated after the
  loss, from this step's teacher outputs, once per optimiser step (there is no gradient
  accumulation). Freezing the last layer in the first epochs is the optimiser's
  (config.freeze_prototypes_epochs); per-tensor gradient clipping too (config.clip_grad).

  Method state: target (EMA encoder, head, prototypes), center [K]. Metric `teacher_temp`.
  """
  check_positive("dino student_temp", student_temp, "DINO: 0.1.")
  check_positive("dino teacher_temp", teacher_temp, "DINO: 0.04 -> 0.07.")
  check_positive("dino warmup_teacher_temp", warmup_teacher_temp, "DINO: 0.04.")
  check_momentum("dino center_momentum", center_momentum)
  if not isinstance(warmup_teacher_temp_epochs, int) or warmup_teacher_temp_epochs < 0:
    raise ValueError(f"dino warmup_teacher_temp_epochs must be an int >= 0 (the paper: 30); "
                     f"got {warmup_teacher_temp_epochs!r}.")
  num_large = num_views if num_large_views is None else num_large_views
  if num_large < 2:
    raise ValueError(f"dino needs >= 2 large crops for its teacher; the views have {num_large}: set "
                     "config.augment.views to two large crops first, then any small ones (image_size).")
  target_init, target_update = momentum_target(base_momentum, final_momentum, total_steps)
  schedule = dict(warmup_temp=warmup_teacher_temp, temp=teacher_temp, warmup_epochs=warmup_teacher_temp_epochs,
                  steps_per_epoch=steps_per_epoch)

  def init_state(params, batch_stats, key):
    kernel = params[PROTOTYPES]["kernel"]
    return {**target_init(params, batch_stats, key), CENTER: jnp.zeros(kernel.shape[-1:], kernel.dtype)}

  def loss(online, target, state, labels, step):
    del labels
    temp = teacher_temperature(step, **schedule)
    value = losses.dino_loss(target["prototypes"], online["prototypes"], state[CENTER], teacher_temp=temp,
                             student_temp=student_temp)
    return value, {"teacher_temp": temp}

  def update(state, params, target_batch_stats, target, online, labels, step):
    new = target_update(state, params, target_batch_stats, target, online, labels, step)
    center = losses.dino_center(state[CENTER], target["prototypes"], momentum=center_momentum, axis_name=axis_name)
    return {**new, CENTER: center.astype(state[CENTER].dtype)}

  return Method(name="dino", num_views=num_views, loss=loss, init_state=init_state, update=update, target=True,
                per_view_bn=True, num_large_views=num_large_views)
