"""Projection / prediction heads and the full pretraining model (encoder + heads + probe).

Head layout follows SimCLR (google-research/simclr TF2 `model.py`,
`ProjectionHead` / `LinearLayer`): every layer is Dense + BN; hidden layers
end in ReLU; the hidden width defaults to the encoder width; the output is
128-d. As in SimCLR, no Dense layer has a bias (the BN offset that follows
makes it redundant) and the last layer's BN has no offset either.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from contrastive_jax.models.resnet import ResNet, output_dtype
from contrastive_jax.models.vit import ViT

Array = Any
Dtype = Any

_BN_EPSILON = 1e-5
# SimCLR TF2 LinearLayer initialises dense kernels with N(0, 0.01^2).
dense_kernel_init = nn.initializers.normal(stddev=0.01)
# PyTorch's nn.Linear default (solo-learn's heads): kernel and bias U(+-1/sqrt(fan_in)).
torch_kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
# DINO's heads (DINOHead._init_weights): trunc_normal_(std=0.02) cuts at +-2 absolute, i.e. +-100
# standard deviations (a normal in effect); zero biases.
dino_kernel_init = nn.initializers.truncated_normal(stddev=0.02, lower=-100.0, upper=100.0)
HEAD_INITS = ("simclr", "torch", "dino")
ACTIVATIONS = {"relu": nn.relu, "gelu": lambda x: nn.gelu(x, approximate=False)}


def torch_bias_init(fan_in: int):
  """PyTorch nn.Linear's bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / fan_in ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def check_head_init(init: str) -> None:
  if init not in HEAD_INITS:
    raise ValueError(f"head init must be one of {HEAD_INITS} ('simclr': N(0, 0.01^2) kernels and zero biases, "
                     f"SimCLR TF2; 'torch': PyTorch nn.Linear's default, solo-learn; 'dino': truncated "
                     f"N(0, 0.02^2) kernels and zero biases, DINO), got {init!r}.")


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class ProjectionHead(nn.Module):
  """MLP projection head g(h) -> z (SimCLR v1: 2 layers, v2: 3 layers).

  Attributes:
    num_layers: number of Dense + BN layers (>= 1); all but the last are
      hidden layers with ReLU.
    hidden_dim: width of the hidden layers; None: the input width (SimCLR).
    out_dim: width of z (SimCLR: 128).
    axis_name: mapped axis for cross-replica BN statistics (see ResNet).
    bn_momentum: decay of the BN running averages.
    dtype: compute dtype; params are created in float32, outputs are
      `output_dtype(dtype)` (float32, float64 for float64 compute).
    bn_fast_variance: BN variance as E[x^2] - E[x]^2 (see ResNet).

    hidden_bn: BN after each hidden layer (SimCLR, BYOL, MoCo v3); False: Dense (with bias)
      + ReLU, as MoCo v2's head.
    last_bn: BN after the last layer (SimCLR, MoCo v3); False: the last Dense has a bias
      (BYOL's projector and predictor, MoCo v2).
    last_bn_scale: the last BN's learnt scale (SimCLR: yes; MoCo v3: affine=False, no).
    last_bias: without a last BN, whether the last Dense has a bias (BYOL: yes; MoCo v3's
      predictor: no).
    dense_init: the Dense layers' init. "simclr": N(0, 0.01^2) kernels, zero biases (SimCLR TF2);
      "torch": PyTorch nn.Linear's default, kernel and bias U(+-1/sqrt(fan_in)), as the
      solo-learn recipes train with. Heads without BN need "torch": from N(0, 0.01^2), SupCon's
      BN-free head gives every image nearly the same z and the loss sits at log(2B - 1).
      "dino": truncated N(0, 0.02^2) kernels, zero biases (DINO's head).
    activation: of the hidden layers, "relu" or "gelu" (exact erf form, PyTorch's nn.GELU; DINO).

  Parameter names: `dense{i}` / `bn{i}` for i in 0 .. num_layers - 1. A Dense followed by BN
  has no bias (BN's offset makes it redundant); the last BN never has an offset.
  """
  num_layers: int = 2
  hidden_dim: int | None = None
  out_dim: int = 128
  axis_name: str | None = None
  bn_momentum: float = 0.9
  dtype: Dtype = jnp.float32
  bn_fast_variance: bool = False
  hidden_bn: bool = True
  last_bn: bool = True
  last_bn_scale: bool = True
  last_bias: bool = True
  dense_init: str = "simclr"
  activation: str = "relu"

  def __post_init__(self):
    check_head_init(self.dense_init)
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"ProjectionHead activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}.")
    if not _is_int(self.num_layers) or self.num_layers < 1:
      raise ValueError(
          f"ProjectionHead num_layers must be an int >= 1 (SimCLR v1: 2, v2: 3), got {self.num_layers!r}.")
    if self.hidden_dim is not None and (not _is_int(self.hidden_dim) or self.hidden_dim < 1):
      raise ValueError(f"ProjectionHead hidden_dim must be None or a positive int, got {self.hidden_dim!r}.")
    if not _is_int(self.out_dim) or self.out_dim < 1:
      raise ValueError(f"ProjectionHead out_dim must be a positive int, got {self.out_dim!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, h: Array, train: bool = False,
               return_hidden: bool = False) -> Array | tuple[Array, list[Array]]:
    """Projects features.

    Args:
      h: encoder features [B, D].
      train: BN uses (and updates) batch statistics.
      return_hidden: also return the hidden-layer activations.

    Returns:
      z: [B, out_dim]; with return_hidden, `(z, hiddens)` where hiddens[i] is
      the [B, hidden] output (after ReLU) of hidden layer i, num_layers - 1
      entries; all in `output_dtype(dtype)`. hiddens[0] is what SimCLR v2 fine-tunes from
      ("from the first projection-head layer").
    """
    if h.ndim != 2:
      raise ValueError(f"ProjectionHead expects features of shape [B, D]; got shape {h.shape}.")
    hidden_dim = self.hidden_dim if self.hidden_dim is not None else h.shape[-1]
    x = jnp.asarray(h, self.dtype)
    out_dtype = output_dtype(self.dtype)
    hiddens = []
    for i in range(self.num_layers):
      last = i == self.num_layers - 1
      bn = self.last_bn if last else self.hidden_bn
      torch = self.dense_init == "torch"
      kernel_init = {"torch": torch_kernel_init, "dino": dino_kernel_init}.get(self.dense_init, dense_kernel_init)
      x = nn.Dense(self.out_dim if last else hidden_dim, use_bias=not bn and (self.last_bias or not last),
                   kernel_init=kernel_init,
                   bias_init=torch_bias_init(x.shape[-1]) if torch else nn.initializers.zeros,
                   dtype=self.dtype, param_dtype=jnp.float32, name=f"dense{i}")(x)
      if bn:
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         epsilon=_BN_EPSILON, axis_name=self.axis_name, use_bias=not last,
                         use_scale=self.last_bn_scale or not last,
                         dtype=self.dtype, param_dtype=jnp.float32,
                         use_fast_variance=self.bn_fast_variance, name=f"bn{i}")(x)
      if not last:
        x = ACTIVATIONS[self.activation](x)
        hiddens.append(x.astype(out_dtype))
    z = x.astype(out_dtype)
    return (z, hiddens) if return_hidden else z


def l2_normalize(x: Array, axis: int = -1) -> Array:
  """x scaled to unit L2 norm along `axis` (F.normalize: norms below 1e-12 are taken as 1e-12)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


class Prototypes(nn.Module):
  """SwAV's prototypes and DINO's last layer: scores [B, K] = unit(z) @ C, C [D, K] without a bias.

  Attributes:
    num_prototypes: K (SwAV: 3000; DINO: 4096 in solo-learn's CIFAR recipe, 65536 in the paper).
    normalize_weights: divide each prototype (a column of C) by its norm in the forward pass: DINO's
      weight-normalised last layer with the norm frozen at 1 (`norm_last_layer`, the gradient flows
      through the normalisation). False: C as stored; SwAV L2-normalises its prototypes after every
      step instead (methods/swav.py, `normalize_prototypes`).
    dtype: compute dtype of the product; the scores are `output_dtype(dtype)`.

  Parameter: `kernel` [D, K], initialised as PyTorch's nn.Linear (both papers' layers are one).
  """
  num_prototypes: int = 3000
  normalize_weights: bool = False
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    if not _is_int(self.num_prototypes) or self.num_prototypes < 2:
      raise ValueError(f"Prototypes num_prototypes must be an int >= 2 (SwAV: 3000, DINO: 4096 or 65536), "
                       f"got {self.num_prototypes!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, z: Array) -> Array:
    """z [B, D] (any norm) -> prototype scores [B, num_prototypes]."""
    if z.ndim != 2:
      raise ValueError(f"Prototypes expects projections of shape [B, D]; got shape {z.shape}.")
    out_dtype = output_dtype(self.dtype)
    kernel = self.param("kernel", torch_kernel_init, (z.shape[-1], self.num_prototypes), jnp.float32)
    kernel = kernel.astype(out_dtype)
    if self.normalize_weights:
      kernel = l2_normalize(kernel, axis=0)
    z = l2_normalize(z.astype(out_dtype))
    return jnp.dot(z.astype(self.dtype), kernel.astype(self.dtype)).astype(out_dtype)


ENCODERS = {"resnet": ResNet, "vit": ViT}
_SHARED = ("axis_name", "bn_momentum", "dtype", "bn_fast_variance")  # the model's, for every submodule that has them


def _submodule_args(cls: type, args: Mapping[str, Any], where: str) -> dict[str, Any]:
  """`args` as keyword arguments of `cls`, or a ValueError naming the unknown ones."""
  fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  unknown = sorted(set(args) - fields)
  if unknown:
    raise ValueError(f"ContrastiveModel {where} has unknown fields {unknown}; {cls.__name__} takes "
                     f"{sorted(fields - set(_SHARED) - {'out_dim'})}.")
  return dict(args)


class ContrastiveModel(nn.Module):
  """Encoder (ResNet or ViT) + projection head (+ optional predictor and online linear probe).

  One model for every method (contrastive_jax/methods/): SimCLR and SupCon use encoder +
  head; MoCo v3 and BYOL add a predictor on the online branch; their momentum targets are
  a copy of encoder + head (`project`).

  Submodules (and top-level keys of `params` / `batch_stats`): `encoder` (ResNet or ViT),
  `head` (ProjectionHead), `predictor` (ProjectionHead, if any), `prototypes` (Prototypes on the
  head's output, if any: SwAV, DINO) and `probe` (nn.Dense with bias,
  zero-initialised kernel; params only, if num_probe_classes > 0). The probe sees
  `stop_gradient(h)`, so its loss trains only the probe (SimCLR TF2 lineareval_while_pretraining).

  Attributes:
    encoder_config: the encoder's keyword arguments and its "name" ("resnet": `ResNet`, "vit":
      `ViT`), e.g. {"name": "resnet", "depth": 18, "cifar_stem": True}; the rest take the
      encoder's defaults. config.model.encoder.
    head_config: `ProjectionHead` keyword arguments (num_layers, hidden_dim, hidden_bn,
      last_bn, ...); config.model.head.
    predictor_config: the same for the predictor, None or num_layers 0 for none (BYOL, MoCo v3:
      2 layers); config.model.predictor.
    prototypes_config: `Prototypes` keyword arguments (num_prototypes, normalize_weights), None or
      num_prototypes 0 for none (SwAV, DINO); config.model.prototypes.
    proj_dim: the head's and the predictor's output width.
    num_probe_classes: the online probe's classes (0: no probe).
    axis_name, bn_momentum, dtype, bn_fast_variance: given to every submodule that has them.
  """
  encoder_config: Mapping[str, Any] | None = None  # None: ResNet-50
  head_config: Mapping[str, Any] | None = None
  predictor_config: Mapping[str, Any] | None = None
  prototypes_config: Mapping[str, Any] | None = None
  proj_dim: int = 128
  num_probe_classes: int = 0
  axis_name: str | None = None
  bn_momentum: float = 0.9
  dtype: Dtype = jnp.float32
  bn_fast_variance: bool = False

  def _encoder_args(self) -> tuple[type, dict[str, Any]]:
    args = dict(self.encoder_config or {"name": "resnet", "depth": 50})
    name = args.pop("name", "resnet")
    if name not in ENCODERS:
      raise ValueError(f"ContrastiveModel encoder_config name must be one of {sorted(ENCODERS)}; got {name!r}.")
    return ENCODERS[name], _submodule_args(ENCODERS[name], args, "encoder_config")

  def _shared(self, cls: type) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(cls)}
    return {k: getattr(self, k) for k in _SHARED if k in fields}

  @property
  def has_predictor(self) -> bool:
    return bool(self.predictor_config) and self.predictor_config.get("num_layers", ProjectionHead.num_layers) > 0

  @property
  def has_prototypes(self) -> bool:
    return bool(self.prototypes_config) and self.prototypes_config.get("num_prototypes", 1) > 0

  @property
  def head_layers(self) -> int:
    return (self.head_config or {}).get("num_layers", ProjectionHead.num_layers)

  def __post_init__(self):
    # Fail at construction rather than at init (submodules are built lazily).
    cls, args = self._encoder_args()
    cls(**args, **self._shared(cls))  # its own checks
    head = _submodule_args(ProjectionHead, self.head_config or {}, "head_config")
    ProjectionHead(**head, out_dim=self.proj_dim, **self._shared(ProjectionHead))
    if self.has_predictor:
      predictor = _submodule_args(ProjectionHead, self.predictor_config, "predictor_config")
      ProjectionHead(**predictor, out_dim=self.proj_dim, **self._shared(ProjectionHead))
    if self.has_prototypes:
      Prototypes(**_submodule_args(Prototypes, self.prototypes_config, "prototypes_config"), dtype=self.dtype)
    if not _is_int(self.num_probe_classes) or self.num_probe_classes < 0:
      raise ValueError(
          f"ContrastiveModel num_probe_classes must be an int >= 0 (0: no probe), got {self.num_probe_classes!r}.")
    super().__post_init__()

  def setup(self):
    # setup (not compact) so that methods such as
    # `model.apply(v, x, method=lambda m, x: m.head(m.encoder(x), return_hidden=True))`
    # can reach the submodules.
    cls, args = self._encoder_args()
    self.encoder = cls(**args, **self._shared(cls))
    self.head = ProjectionHead(**(self.head_config or {}), out_dim=self.proj_dim, **self._shared(ProjectionHead))
    if self.has_predictor:
      self.predictor = ProjectionHead(**self.predictor_config, out_dim=self.proj_dim,
                                      **self._shared(ProjectionHead))
    if self.has_prototypes:
      self.prototypes = Prototypes(**self.prototypes_config, dtype=self.dtype)
    if self.num_probe_classes > 0:
      self.probe = nn.Dense(self.num_probe_classes, kernel_init=nn.initializers.zeros,
                            dtype=output_dtype(self.dtype), param_dtype=jnp.float32)

  def __call__(self, images: Array, train: bool = False) -> dict[str, Array]:
    """Encodes, projects, predicts and classifies images.

    Args:
      images: [B, H, W, 3] float.
      train: BN in train mode (batch statistics; `batch_stats` must be mutable).

    Returns:
      A dict, all float32 (float64 for float64 compute, see `output_dtype`):
        features [B, feature_dim]: the encoder's h;
        projection [B, proj_dim]: the head's z (not normalised);
        prototypes [B, num_prototypes]: unit(projection)'s prototype scores (only with prototypes);
        prediction [B, proj_dim]: the predictor's output (only with a predictor);
        probe_logits [B, num_probe_classes]: from stop_gradient(h) (only with a probe).
    """
    out = self.project(images, train=train)
    if self.has_predictor:
      out["prediction"] = self.predictor(out["projection"], train=train)
    if self.num_probe_classes > 0:
      out["probe_logits"] = self.probe(jax.lax.stop_gradient(out["features"]))
    return out

  def project(self, images: Array, train: bool = False) -> dict[str, Array]:
    """Encoder + head (+ prototypes) only, a momentum target's forward pass: {features, projection[,
    prototypes]}."""
    h = self.encoder(images, train=train)
    out = {"features": h, "projection": self.head(h, train=train)}
    if self.has_prototypes:
      out["prototypes"] = self.prototypes(out["projection"])
    return out

  def finetune_features(self, images: Array, train: bool = False, from_head_layer: bool = False) -> Array:
    """What a fine-tuned classifier reads: h, or the first head layer's output (SimCLR v2).

    Returns [B, feature_dim] in `output_dtype(dtype)` either way (hidden width = encoder width).
    """
    h = self.encoder(images, train=train)
    if not from_head_layer or self.head_layers < 2:
      return h
    _, hiddens = self.head(h, train=train, return_hidden=True)
    return hiddens[0]


