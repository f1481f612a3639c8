"""Where training metrics go: metrics.jsonl always, TensorBoard events where TensorFlow is installed.

The TensorBoard writer is clu's `SummaryWriter` (TensorFlow's summary writer, as in the Flax examples
and big_vision); clu's writer module imports TensorFlow, so machines without it (our GPU image)
write metrics.jsonl alone. `Progress` is the steps/s and ETA line of every log step.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping, Sequence

import jax


class JsonlWriter:
  """metrics.jsonl: one JSON object per step, `{"step": s, name: value, ...}`.

  Scalars written for the same step (the train loop's, then Progress's
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



class MultiWriter:
  """Writes to each of `writers` (none on processes other than 0)."""

  def __init__(self, writers: Sequence[Any]):
    self.writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for w in self.writers:
      w.write_scalars(step, scalars)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    for w in self.writers:
      w.close()


def create_writer(workdir: str) -> MultiWriter:
  """metrics.jsonl, and TensorBoard events in `workdir/tensorboard` if TensorFlow is installed, on process 0."""
  if jax.process_index() != 0:
    return MultiWriter([])
  out: list[Any] = [JsonlWriter(os.path.join(workdir, "metrics.jsonl"))]
  try:
    from clu.metric_writers import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f"no TensorBoard events ({type(e).__name__}: {e}); the metrics go to metrics.jsonl.", flush=True)
  else:
    out.append(SummaryWriter(os.path.join(workdir, "tensorboard")))
  return MultiWriter(out)


class Progress:
  """At each call (a log step): steps/s since the last call, % done and the ETA, printed on process 0
  and written as `steps_per_sec` and `uptime` beside the step's metrics."""

  def __init__(self, writer: MultiWriter, *, start_step: int, total_steps: int):
    self.writer, self.total_steps = writer, total_steps
    self._start = self._last_time = time.time()
    self._last_step = start_step

  def __call__(self, step: int) -> None:
    now = time.time()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    self.writer.write_scalars(step, {"steps_per_sec": rate, "uptime": now - self._start})
    if jax.process_index() == 0:
      eta = (self.total_steps - step) / max(rate, 1e-9)
      print(f"{rate:.2f} steps/s, {100 * step / self.total_steps:.1f}% ({step}/{self.total_steps}), "
            f"ETA {eta / 60:.1f} min", flush=True)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of WORKDIR/metrics.jsonl in the order written (a resumed run appends; steps may repeat)."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
