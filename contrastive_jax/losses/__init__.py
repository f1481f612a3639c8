"""Contrastive and self-distillation losses: NT-Xent, SupCon, InfoNCE / MoCo, BYOL, SwAV, DINO.

* ``nt_xent``, ``nt_xent_with_metrics``: SimCLR (``_nt_xent.py``).
* ``supcon``: supervised contrastive, Khosla et al. 2020 L_out (``_supcon.py``).
* ``info_nce``: one-directional InfoNCE, in-batch negatives (CLIP) or a
  queue of negatives (MoCo) (``_info_nce.py``).
* ``byol_loss``: BYOL's 2 - 2 cos (``_byol.py``).
* ``clip_loss``, ``siglip_loss``: image-text, CLIP's symmetric InfoNCE and SigLIP's
  pairwise sigmoid, with learned logit scale (and bias) (``_image_text.py``).
* ``barlow_twins_loss``: Barlow Twins' cross-correlation loss, global batch statistics (``_barlow_twins.py``).
* ``vicreg_loss``: VICReg's variance-invariance-covariance loss, global batch statistics (``_vicreg.py``).
* ``dcl_loss``: decoupled contrastive learning, NT-Xent without the positive in the denominator; DCLW's weights normalised over the global batch (``_dcl.py``).
* ``swav_loss``, ``sinkhorn``: SwAV's swapped prediction of Sinkhorn-Knopp codes, the codes computed over the global batch (plus a replicated queue, counted once) (``_swav.py``).
* ``dino_loss``, ``dino_center``: DINO's self-distillation cross-entropy between views, and the EMA of the global batch's teacher mean (``_dino.py``).
* ``negative_cosine_similarity``: SimSiam's -cos (``_negative_cosine.py``).

The contrastive losses are one computation (``_core.py``): every anchor row
is scored against a set of columns by cosine similarity / temperature, an
optional "self" column is excluded, and the loss is
``logsumexp_j(logits_ij)`` minus the positive logit (the mean of several for
SupCon).

Two evaluation paths give the same values and gradients:

* dense (``chunk_size=None``): builds the [anchors, columns] logits matrix.
* chunked (``chunk_size=int``, ``_chunked.py``): tiles of ``chunk_size`` rows
  x ``chunk_size`` columns with an online (running) log-sum-exp; the matrix is
  never built. A ``jax.custom_vjp`` recomputes the tiles in the backward pass
  (the gradient of logsumexp is the softmax, rebuilt tile by tile from the
  saved per-row lse), so memory is O(chunk_size^2 + (anchors + columns) * D).
  Single-device NT-Xent and SupCon score the batch against itself; its
  similarity matrix is symmetric, so each unordered tile pair is computed once
  (half the matmuls).

A third path, ``ring=True`` (``nt_xent``, ``clip_loss``, ``siglip_loss``; ``_ring.py``),
passes each device's block of columns around the devices of ``axis_name`` by
``ppermute`` instead of all-gathering them, with the same values and gradients.

With ``axis_name`` (inside ``jax.shard_map`` or ``jax.pmap``) the columns are
all-gathered from every device on that axis (not MoCo's queue, which is the
same on every device), and each device scores only its local anchors against
the global columns. The returned loss is the mean over the *local* anchors;
``jax.lax.pmean(loss, axis_name)`` is the global loss and its gradient equals
the single-device gradient (the all-gather's transpose, a reduce-scatter,
sums the cross-device contributions). Parameter gradients: under
``jax.shard_map`` take the grad of ``pmean(loss)`` (JAX psums the gradient of
replicated parameters itself); under ``jax.pmap`` take the grad of the local
loss and pmean the gradients. Both give the exact global gradient
(tests/test_losses.py checks both); the grad of the local loss w.r.t. local
embeddings is axis_size x the global one, because every device's loss uses
every device's embeddings.

All similarity / softmax arithmetic is float32 for float32, bfloat16 and
float16 embeddings (the loss is then float32); float64 embeddings (with
`jax_enable_x64`) are kept in float64 throughout, as a reference for the
float32 numerics. Bad shapes, dtypes and hyper-parameters raise ValueError at
trace time.
"""

from contrastive_jax.losses._barlow_twins import barlow_twins_loss
from contrastive_jax.losses._byol import byol_loss
from contrastive_jax.losses._dcl import dcl_loss
from contrastive_jax.losses._dino import dino_center, dino_loss
from contrastive_jax.losses._image_text import clip_loss, siglip_loss
from contrastive_jax.losses._info_nce import info_nce
from contrastive_jax.losses._negative_cosine import negative_cosine_similarity
from contrastive_jax.losses._nt_xent import nt_xent, nt_xent_with_metrics
from contrastive_jax.losses._supcon import supcon
from contrastive_jax.losses._swav import sinkhorn, swav_loss
from contrastive_jax.losses._vicreg import vicreg_loss

__all__ = ["nt_xent", "nt_xent_with_metrics", "supcon", "info_nce", "byol_loss", "clip_loss", "siglip_loss", "barlow_twins_loss", "vicreg_loss", "dcl_loss", "swav_loss", "sinkhorn", "dino_loss", "dino_center", "negative_cosine_similarity"]
