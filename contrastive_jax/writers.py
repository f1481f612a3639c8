"""Where training metrics go: `metrics.jsonl` and TensorBoard, through clu's `MetricWriter`s.

clu (`metric_writers`, `periodic_actions.ReportProgress`, `parameter_overview`) is what JAX
training code (Flax examples, big_vision, scenic) uses for this. Its TensorBoard writer is
TensorFlow's summary writer, which needs the `tensorboard` package (a core dependency).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
from clu import metric_writers


class JsonlWriter(metric_writers.MetricWriter):
  """metrics.jsonl: one JSON object per step, `{"step": s, name: value, ...}`.

  Scalars written for the same step (the train loop's, then ReportProgress's
  `steps_per_sec` / `uptime`) share one row, written at `flush` or when the
  next step arrives. A resumed run appends, so steps may repeat.
  """

  def __init__(self, path: str):
    self._file = open(path, "a", encoding="utf-8")
    self._step: int | None = None
    self._row: dict[str, float] = {}

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if step != self._step:
      self._write_row()
      self._step = int(step)
    self._row.update({k: float(v) for k, v in scalars.items()})

  def _write_row(self) -> None:
    if self._row:
      self._file.write(json.dumps({"step": self._step, **self._row}) + "\n")
      self._row = {}

  def flush(self) -> None:
    self._write_row()
    self._file.flush()

  def close(self) -> None:
    self.flush()
    self._file.close()

  # metrics.jsonl holds scalars only; the other kinds go to TensorBoard.
  def write_summaries(self, step, values, metadata=None) -> None:
    del step, values, metadata

  def write_images(self, step, images) -> None:
    del step, images

  def write_videos(self, step, videos) -> None:
    del step, videos

  def write_audios(self, step, audios, *, sample_rate) -> None:
    del step, audios, sample_rate

  def write_texts(self, step, texts) -> None:
    del step, texts

  def write_histograms(self, step, arrays, num_buckets=None) -> None:
    del step, arrays, num_buckets

  def write_hparams(self, hparams) -> None:
    del hparams


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """metrics.jsonl + TensorBoard events in `workdir/tensorboard` on process 0; nothing elsewhere."""
  if jax.process_index() != 0:
    return metric_writers.MultiWriter([])
  return metric_writers.MultiWriter([
      JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
      metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard")),
  ])


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of WORKDIR/metrics.jsonl in the order written (a resumed run appends; steps may repeat)."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
