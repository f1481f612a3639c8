"""contrastive-jax: contrastive self-supervised learning (SimCLR family) in JAX/Flax."""

__version__ = "0.1.0"
