"""MoCo v3 (Chen, Xie, He 2021) on CIFAR-10, following solo-learn's recipe.

solo-learn `scripts/pretrain/cifar/mocov3.yaml` and `solo/methods/mocov3.py` (ResNet-18,
93.10% linear top-1 in its README): a momentum encoder (EMA of encoder + projector,
momentum 0.99 -> 1.0 on the cosine schedule, per step), temperature 0.2, the symmetric
InfoNCE over the global batch's keys scaled by 2 tau (the paper's Algorithm 1), projector
512 -> 4096 -> 256 with BN on the hidden layer and a BN without scale or offset on the
output, predictor 256 -> 4096 -> 256 with BN on the hidden layer and no bias on the output
(every Linear of solo-learn's MoCo v3 heads is bias-free), LARS lr 0.3 (x B/256), weight
decay 1e-6, trust coefficient 0.02, batch 256, 1000 epochs, 10 warmup epochs then cosine;
the asymmetric views of `augmentations/asymmetric.yaml`: jitter (0.4, 0.4, 0.2, 0.1) p 0.8,
grayscale 0.2, no blur, solarize 0 / 0.2, crops of 8-100% area. BN per view, as
solo-learn. LARS with solo-learn's clipped rate (`clip_lr`, as LARC: each layer's rate is
min(eta ||w|| / (||g|| + wd ||w||), lr)), `optim.lars(clip_lr=True)`.

Presets: (none) the recipe; cpu SimCLR's cpu encoder, batch and epochs; test a few steps.

ViT presets, MoCo v3's ViT recipe (the paper's Sec. 4 and appendix, and facebookresearch/moco-v3
`vits.py`, `main_moco.py`, README for ViT-Small): AdamW, lr 1.5e-4 x B/256, weight decay 0.1
on every parameter, 40 warmup epochs then cosine, momentum 0.99 -> 1 (cosine), temperature
0.2, a 3-layer projector (BN on the hidden layers, a BN without scale on the output) and a
2-layer predictor, fixed 2-D sine-cosine position embeddings, a class token, and a random
patch projection that is never trained ("stop-grad conv1").
  vit       ViT-Small, patch 4 at 32 px, solo-learn's CIFAR batch and length (256, 1000 epochs).
  vit_cpu   a ViT for 2 CPU cores: width 192 (ViT-Tiny's), 4 blocks, patch 8 (16 tokens + the
            class token), projector and predictor 1024 wide, SimCLR's cpu batch; AdamW lr 5e-4
            and 6 epochs instead of 1.5e-4 and SimCLR's 3 (ViTs learn slowly on small data).
            ViT-Tiny/4 costs about 10x the cpu ResNet per view; with 6 blocks and MoCo v3's
            4096-wide heads a step took 1.8x the `cpu` ResNet's, this one 1.09x (7.2 vs 6.6 s,
            `tools/benchmark.py --steps=3`, back to back on the shared 2 cores, 2026-11-30).
  vit_test  a few steps of a 2-block, width-32 ViT.
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location("_base", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     "_base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  vit = preset in _base.VIT_PRESETS
  preset = _base.VIT_PRESETS.get(preset, preset)
  config = _base.load(preset, "cifar10_moco_v3.py")
  config.method = "moco_v3"
  config.temperature = 0.2            # mocov3.yaml: method_kwargs.temperature
  config.target = _base.target(0.99, 1.0)  # momentum.base_tau, momentum.final_tau
  config.optimizer = "lars"           # optimizer.name, exclude_bias_n_norm
  config.learning_rate = 0.3          # optimizer.lr
  config.weight_decay = 1e-6          # optimizer.weight_decay
  config.trust_coefficient = 0.02     # optimizer.kwargs.eta
  config.lars_clip_lr = True          # optimizer.kwargs.clip_lr
  config.momentum = 0.9
  _base.solo_learn_schedule(config, preset)
  config.model.head.hidden_dim = 4096  # method_kwargs.proj_hidden_dim
  config.model.proj_dim = 256          # method_kwargs.proj_output_dim
  config.model.head.last_bn_scale = False  # mocov3.py: BatchNorm1d(affine=False) on the output
  # method_kwargs.pred_hidden_dim; mocov3.py: the last Linear(..., bias=False)
  config.model.predictor = _base.predictor(2, 4096, last_bias=False)
  _base.torch_heads(config)
  _base.asymmetric_views(config)
  if vit:
    _vit_recipe(config, preset)
  _base.test_heads(config, preset)
  return config


def _vit_recipe(config: ml_collections.ConfigDict, preset: str) -> None:
  config.optimizer = "adamw"          # main_moco.py: torch.optim.AdamW(model.parameters(), ...)
  config.lars_clip_lr = False         # a LARS field: no effect under AdamW
  config.learning_rate = 1.5e-4       # README (ViT-Small): --lr=1.5e-4, x B/256 (main_moco.py)
  config.lr_scaling = "linear"
  config.weight_decay = 0.1           # --weight-decay=.1
  if preset == "":
    config.warmup_epochs = 40.0       # --warmup-epochs=40
  # --arch=vit_small; vits.py: build_2d_sincos_position_embedding; --stop-grad-conv1
  _base.vit_encoder(config, preset, posemb="sincos2d", frozen_patch_embed=True)
  config.model.head.num_layers = 3          # moco/builder.py MoCo_ViT: 3-layer projector, 2-layer predictor
  if preset == "cpu":
    # Deviations for a 2-core run, measured (experiments/README.md, "Methods on CPU"): at the
    # recipe's 1.5e-4 and 3 epochs kNN beat the random-init ViT by 7.2 points; at 5e-4 and 6
    # epochs (1170 steps, about 48 min on the 2 cores) by 10.5.
    config.learning_rate = 5e-4
    config.num_epochs = 6
    config.model.head.hidden_dim = 1024
    config.model.predictor.hidden_dim = 1024
