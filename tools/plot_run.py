"""Plot a training run's curves: loss, contrastive accuracy, online-probe accuracy, learning rate.

    python tools/plot_run.py WORKDIR [--out WORKDIR/curves.png]

Reads WORKDIR/metrics.jsonl (written by `python -m contrastive_jax.train`).
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("loss", "NT-Xent loss"), ("contrastive_acc", "contrastive top-1 accuracy"),
          ("probe_acc", "online linear-probe accuracy (train batches)"), ("learning_rate", "learning rate"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdir")
  parser.add_argument("--out", default=None, help="PNG path (default: WORKDIR/curves.png)")
  args = parser.parse_args()
  path = os.path.join(args.workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise SystemExit(f"error: {path} not found; is {args.workdir!r} a training workdir?")
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rows = sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])  # last write wins on resume
  fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
  for ax, (key, title) in zip(axes, PANELS):
    pts = [(r["step"], r[key]) for r in rows if key in r]
    if pts:
      ax.plot(*zip(*pts), lw=1.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  out = args.out or os.path.join(args.workdir, "curves.png")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=110)
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
