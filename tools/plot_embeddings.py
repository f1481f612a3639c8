"""A UMAP picture of learned features, one colour per class.

    python tools/plot_embeddings.py --npz FILE.npz [--out FILE.png]
    python tools/plot_embeddings.py --workdir WORKDIR [--images ../shared/data/cifar10/test] [--out FILE.png]

Reads the npz that `python -m contrastive_jax.embed` writes (`embeddings`, `labels`,
`class_names`), or embeds a folder itself with `contrastive_jax.load_encoder(WORKDIR)`
(the encoder's h of the latest checkpoint, BN in inference mode). UMAP (McInnes et al.
2018) with the cosine metric, the similarity of the kNN evaluation, and a fixed seed.
Needs the `tools` extra: pip install -e '.[tools]' (umap-learn, matplotlib).
"""

import argparse
import os
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--npz", help="embeddings written by python -m contrastive_jax.embed")
  source.add_argument("--workdir", help="a training run: embed --images with its latest checkpoint")
  parser.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "cifar10" / "test"),
                      help="with --workdir: FOLDER/<class>/<image>")
  parser.add_argument("--out", default=None, help="PNG path (default: beside the npz, or WORKDIR/umap.png)")
  parser.add_argument("--max_points", type=int, default=10000, help="a random subset of this many (0: all)")
  parser.add_argument("--n_neighbors", type=int, default=15)
  parser.add_argument("--min_dist", type=float, default=0.1)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--title", default=None)
  args = parser.parse_args()
  try:
    import umap  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("error: umap-learn is not installed; pip install -e '.[tools]'") from None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  if args.npz:
    z = np.load(args.npz)
    feats, labels = z["embeddings"], z["labels"]
    names = list(z["class_names"]) if "class_names" in z.files else []
    step = int(z["step"]) if "step" in z.files else None
    out = args.out or os.path.splitext(args.npz)[0] + "_umap.png"
  else:
    from contrastive_jax import embed as embed_lib  # pylint: disable=g-import-not-at-top
    embed, _ = embed_lib.load_encoder(args.workdir)
    fields = embed_lib.embed_folder(embed, args.images)
    feats, labels, names, step = fields["embeddings"], fields["labels"], list(fields["class_names"]), embed.step
    out = args.out or os.path.join(args.workdir, "umap.png")

  rng = np.random.default_rng(args.seed)
  if args.max_points and len(feats) > args.max_points:
    keep = np.sort(rng.choice(len(feats), args.max_points, replace=False))
    feats, labels = feats[keep], labels[keep]
  xy = umap.UMAP(n_neighbors=args.n_neighbors, min_dist=args.min_dist, metric="cosine",
                 random_state=args.seed).fit_transform(feats)

  fig, ax = plt.subplots(figsize=(7.5, 6.5))
  classes = np.unique(labels)
  cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
  order = rng.permutation(len(xy))  # no class drawn entirely on top of the others
  colours = np.asarray([cmap(int(np.searchsorted(classes, y)) % cmap.N) for y in labels])
  ax.scatter(xy[order, 0], xy[order, 1], c=colours[order], s=2, alpha=0.6, linewidths=0)
  for i, y in enumerate(classes):
    label = names[y] if 0 <= y < len(names) else ("no label" if y < 0 else str(y))
    ax.scatter([], [], color=cmap(i % cmap.N), s=20, label=label)
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9, markerscale=1.5)
  ax.set_xticks([])
  ax.set_yticks([])
  at = f", checkpoint step {step}" if step is not None else ""
  fig.suptitle(args.title or f"UMAP of encoder features h, {len(xy)} images{at}", fontsize=10)
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  print(f"wrote {out} ({len(xy)} points, {len(classes)} classes)")


if __name__ == "__main__":
  main()
