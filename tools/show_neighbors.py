"""Nearest neighbours under learned features: test images, each with its closest training images.

    python tools/show_neighbors.py --config experiments/cifar10_simclr.py:cpu --workdir WORKDIR \
        [--data ../shared/data/cifar10] [--out WORKDIR/neighbors.png] [--queries 8] [--k 8]

Features are the encoder's h (BN in inference mode) from the latest checkpoint in
WORKDIR; similarity is cosine, as in the kNN evaluation. A green frame marks a
neighbour of the query's class, red one of another class.
"""

import argparse
import os
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
  parser.add_argument("--out", default=None)
  parser.add_argument("--queries", type=int, default=8)
  parser.add_argument("--k", type=int, default=8)
  parser.add_argument("--train_examples", type=int, default=10000, help="training images searched (0: all)")
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from contrastive_jax import cli  # pylint: disable=g-import-not-at-top
  from contrastive_jax import sources  # pylint: disable=g-import-not-at-top
  from contrastive_jax import evaluate  # pylint: disable=g-import-not-at-top

  config = cli.load_config(args.config)
  train = sources.load_dataset("", "train", image_folder=args.data, num_examples=args.train_examples)
  test = sources.load_dataset("", "test", image_folder=args.data, num_examples=args.queries * 10)
  model, variables, step = evaluate.load_model(config, args.workdir, train.num_classes, train.images.shape[1])
  fn = evaluate.encoder_feature_fn(model, variables)
  train_f = evaluate.extract_features(fn, train, batch_size=500)
  rng = np.random.default_rng(0)
  q_idx = rng.choice(len(test), args.queries, replace=False)
  sub = sources.ArrayDataset(test.images[q_idx], test.labels[q_idx], test.num_classes, test.name)
  q_f = evaluate.extract_features(fn, sub, batch_size=max(jax.device_count(), 8))
  norm = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  nn_idx = np.argsort(-(norm(q_f) @ norm(train_f).T), axis=1)[:, :args.k]

  fig, axes = plt.subplots(args.queries, args.k + 1, figsize=(1.2 * (args.k + 1), 1.25 * args.queries))
  for r in range(args.queries):
    axes[r, 0].imshow(sub.images[r], interpolation="nearest")
    for j, t in enumerate(nn_idx[r]):
      ax = axes[r, j + 1]
      ax.imshow(train.images[t], interpolation="nearest")
      colour = "tab:green" if train.labels[t] == sub.labels[r] else "tab:red"
      for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2.5)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0, 0].set_title("query", fontsize=8)
  for j in range(args.k):
    axes[0, j + 1].set_title(f"#{j + 1}", fontsize=8)
  fig.suptitle(f"nearest training images under SimCLR features (checkpoint step {step})", fontsize=9)
  fig.tight_layout()
  out = args.out or os.path.join(args.workdir, "neighbors.png")
  fig.savefig(out, dpi=110)
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
