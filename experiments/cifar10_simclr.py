"""SimCLR on CIFAR-10, following the published recipe.

google-research/simclr README (CIFAR-10 command): ResNet-18 with the CIFAR stem,
batch 512, 1000 epochs, LARS, learning rate 1.0 with linear scaling (2.0 at
B = 512), weight decay 1e-4, temperature 0.5, colour-jitter strength 0.5, no
blur. Reported about 91% linear top-1 (solo-learn: 90.74%).

Presets, selected as `--config experiments/cifar10_simclr.py:<preset>`:
  (none)  the published recipe above.
  cpu     about 30 minutes on a 2-core CPU: a narrow ResNet-18 (base_width 16), 3 epochs.
  test    a few steps on a handful of images, for tests and smoke runs.
  gpu200  lightly's CIFAR-10 benchmark protocol on one GPU (tools/gpu_accuracy.sh), for every method's
          config: ResNet-18 with the CIFAR stem, batch 512, 200 epochs, kNN (k 200, T 0.1) of the
          test split against the un-augmented train split, here also monitored every 10 epochs;
          bfloat16 compute with float32 parameters, the split on the device. Differences from
          lightly's benchmark (benchmarks/cifar10_benchmark.py, lightly's table in the README):
          every method keeps its own recipe (SimCLR: the recipe above, LARS with 10 warm-up
          epochs, BN in the heads, temperature 0.5; the others solo-learn's, in their configs),
          where lightly gives every method SGD (lr 0.06 x B / 128, momentum 0.9, weight decay
          5e-4, cosine) and its own heads; augmentation runs on the device (the same
          transforms, our implementation), in bfloat16 compute where lightly uses float32; the
          linear evaluation reads fixed features (no augmentation), for time.
  multicrop, multicrop_cpu, multicrop_test
          the same with multi-crop views (issue 13; SwAV's multi-crop, solo-learn's CIFAR
          numbers): 2 x 32 px crops of area (0.14, 1) and 4 x 16 px crops of area (0.05, 0.14),
          all cut on device from each source image. Every crop is a positive of the other crops
          of its image (supcon's multi-view form without labels).
"""

import ml_collections


MULTICROP_VIEWS = (
    *[{"crop_area_range": (0.14, 1.0)}] * 2,
    *[{"image_size": 16, "crop_area_range": (0.05, 0.14)}] * 4,
)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  if preset.startswith("multicrop"):
    config = get_config(preset[len("multicrop"):].lstrip("_"))
    config.augment.views = MULTICROP_VIEWS
    return config
  config = ml_collections.ConfigDict()
  config.method = "simclr"           # contrastive_jax/methods/ (METHODS): simclr, supcon, moco_v2, byol, nnclr, ...
  config.seed = 0
  config.batch_size = 512            # source images per step (global); each gives two views
  config.num_epochs = 1000
  config.num_steps = 0               # > 0 overrides num_epochs
  config.warmup_epochs = 10.0
  config.optimizer = "lars"          # lars (SimCLR's masks), sgd or adamw
  config.learning_rate = 1.0         # base rate, scaled by lr_scaling
  config.lr_scaling = "linear"       # linear: base * B / 256; sqrt: base * sqrt(B)
  config.weight_decay = 1e-4
  config.momentum = 0.9
  config.trust_coefficient = 1e-3
  config.lars_clip_lr = False        # True: solo-learn's LARS, layer rate min(trust ratio, lr) (LARC's clip)
  config.predictor_fixed_lr = False  # True: the predictor at the peak rate throughout (SimSiam's "fix lr")
  config.temperature = 0.5
  config.loss = "nt_xent"            # simclr's loss: nt_xent, dcl or dclw (Yeh et al. 2022; losses.dcl_loss)
  config.dcl_sigma = 0.5             # dclw's weighting width
  config.loss_chunk_size = 0         # > 0: chunked NT-Xent, memory linear in the batch

  # Each group is its module's keyword arguments (contrastive_jax/models/); what a group leaves out
  # takes the module's default.
  config.model = ml_collections.ConfigDict()
  config.model.encoder = ml_collections.ConfigDict()
  config.model.encoder.name = "resnet"     # ResNet (models/resnet.py), or "vit": ViT (models/vit.py)
  config.model.encoder.depth = 18
  config.model.encoder.width_multiplier = 1
  config.model.encoder.base_width = 64     # channels of the first stage; 64 is the standard ResNet
  config.model.encoder.cifar_stem = True
  config.model.encoder.zero_init_residual = False
  config.model.encoder.conv_impl = "auto"  # Winograd / im2col GEMMs on CPUs (docs/performance.md), XLA convs elsewhere
  config.model.head = ml_collections.ConfigDict()  # ProjectionHead (models/heads.py)
  config.model.head.num_layers = 2         # SimCLR v1: 2, v2: 3
  config.model.head.hidden_dim = ml_collections.FieldReference(None, field_type=int)  # None: the encoder width (SimCLR)
  config.model.head.hidden_bn = True
  config.model.head.last_bn = True         # every head layer is Dense + BN (SimCLR TF2 ProjectionHead)
  config.model.head.last_bn_scale = True
  config.model.head.dense_init = "simclr"  # Dense N(0, 0.01^2) (SimCLR TF2); "torch": nn.Linear's default (solo-learn)
  config.model.predictor = ml_collections.ConfigDict()  # an online predictor MLP (BYOL, MoCo v3), a ProjectionHead
  config.model.predictor.num_layers = 0    # 0: none
  config.model.proj_dim = 128
  config.model.bn_momentum = 0.9
  config.model.dtype = "float32"           # compute dtype; bfloat16 on accelerators
  # BN batch variance E[x^2] - E[x]^2 (one all-reduce per synchronised BN, cancels in float32)
  # instead of E[(x - E[x])^2] (two); docs/performance.md, "Numerics across device counts".
  config.model.bn_fast_variance = False
  config.model.online_probe = True         # linear probe on stop_gradient(h), as SimCLR TF2

  config.augment = ml_collections.ConfigDict()
  config.augment.preset = "cifar10"  # ViewAugment.cifar10(): strength 0.5, no blur, 32 px
  config.augment.image_size = 32
  config.augment.jitter_strength = 0.5
  config.augment.blur_p = 0.0
  # One entry per view, each overriding fields of the base view above (ViewAugment's names,
  # e.g. {"solarize_p": 0.2}); SimCLR's two views are the same distribution.
  config.augment.views = ({}, {})

  config.data = ml_collections.ConfigDict()
  config.data.dataset = "cifar10"    # TFDS name
  config.data.image_folder = ""      # local <split>/<class>/<image> folder; overrides TFDS
  config.data.data_dir = ""          # TFDS data_dir ("" = TFDS default)
  config.data.host_crop = False      # crop variable-size images on the host (ImageNet-like)
  config.data.train_split = "train"
  config.data.test_split = "test"
  config.data.num_train_examples = 0  # 0 = all
  config.data.prefetch = 2
  # The uint8 split on every device, each step gathering its batch there (bit-identical batches):
  # "auto" (GPU/TPU, when it fits in a quarter of device memory), "true" or "false".
  config.data.on_device = "auto"

  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.log_every_steps = 50
  # Rerunning on a workdir resumes; a changed schedule (num_steps, num_epochs, learning_rate, ...)
  # is refused unless this is True (contrastive_jax/resume.py).
  config.allow_schedule_change = False

  config.eval = ml_collections.ConfigDict()
  config.eval.num_train_examples = 0  # 0 = all
  config.eval.num_test_examples = 0   # 0 = all
  config.eval.linear_epochs = 90
  config.eval.linear_batch_size = 512
  config.eval.linear_learning_rate = 0.1  # base, linear scaling, SGD + Nesterov
  config.eval.linear_weight_decay = 0.0
  config.eval.linear_augment = True   # crop + flip each epoch (SimCLR); False: fixed features (cheap)
  config.eval.knn_k = 200
  config.eval.knn_temperature = 0.1
  config.eval.knn_every_epochs = 0      # > 0: the kNN monitor during pretraining, every N epochs and at the end
  config.eval.feature_batch_size = 500
  config.eval.baselines = True        # also evaluate a random-init encoder and raw pixels
  # Semi-supervised fine-tuning of the whole network, SimCLR v2's recipe (contrastive_jax/finetune.py
  # cites each setting); none is shared with the linear probe.
  config.eval.finetune_fractions = ()  # e.g. (0.01, 0.1): class-balanced fractions of the labels
  config.eval.finetune_epochs = 0      # 0: SimCLR v2's, 60 for <= 1% of the labels and 30 above
  config.eval.finetune_batch_size = 1024
  config.eval.finetune_learning_rate = 0.005  # base; x sqrt(batch) = 0.16 at 1024
  config.eval.finetune_lr_scaling = "sqrt"
  config.eval.finetune_optimizer = "lars"     # LARS with pretraining's masks, or "sgd_nesterov"
  config.eval.finetune_momentum = 0.9
  config.eval.finetune_weight_decay = 0.0
  config.eval.finetune_warmup_epochs = 0.0
  config.eval.finetune_from_head_layer = False  # True: read the first head layer (v2's 3-layer head)
  config.eval.finetune_baselines = True  # also scratch_<f>_top1 and linear_<f>_top1 per fraction

  if preset == "cpu":
    # About 25 minutes of pretraining on a 2-core CPU: ResNet-18 at a quarter of the
    # channels (base_width 16), 3 epochs; linear evaluation on fixed features.
    config.batch_size = 256
    config.num_epochs = 3
    config.warmup_epochs = 0.3
    config.model.encoder.base_width = 16
    config.checkpoint_every_steps = 100
    config.log_every_steps = 10
    config.eval.linear_epochs = 50
    config.eval.linear_augment = False
    # SimCLR v2's fine-tuning recipe at batch 256 (lr 0.005 x sqrt(256) = 0.08): 30 epochs of 10%
    # of CIFAR-10 are 570 steps, about 11 minutes per run on the 2 cores.
    config.eval.finetune_batch_size = 256
  elif preset == "test":
    config.batch_size = 16
    config.num_epochs = 1
    config.num_steps = 4
    config.warmup_epochs = 0.0
    config.model.encoder.base_width = 8
    config.model.encoder.depth = 10
    # Tiny models compile fastest with XLA's convolutions; the GEMM lowerings
    # have their own tests (tests/test_conv_impl.py, including under shard_map).
    config.model.encoder.conv_impl = "xla"
    config.checkpoint_every_steps = 2
    config.log_every_steps = 1
    config.data.num_train_examples = 64
    config.eval.num_train_examples = 64
    config.eval.num_test_examples = 32
    config.eval.linear_epochs = 2
    config.eval.linear_batch_size = 32
    config.eval.knn_k = 5
    config.eval.feature_batch_size = 32
    config.eval.finetune_batch_size = 16
  elif preset == "gpu200":
    config.num_epochs = 200            # lightly's benchmark: max_epochs 200, batch 512
    config.model.dtype = "bfloat16"
    config.data.on_device = "true"
    config.log_every_steps = 97        # an epoch of 50,000 images at batch 512
    config.checkpoint_every_steps = 970  # every 10 epochs
    config.eval.knn_every_epochs = 10
    config.eval.baselines = False
    config.eval.linear_augment = False
    config.eval.feature_batch_size = 1000
  elif preset:
    raise ValueError(f"unknown preset {preset!r} for cifar10_simclr.py; use one of '', 'cpu', 'test', 'gpu200', "
                     "'multicrop', 'multicrop_cpu', 'multicrop_test'.")
  return config
