"""Re-execute a benchmark with glibc backing large allocations by transparent huge pages.

XLA:CPU allocates each step's temporaries anew; on this project's Linux VMs the
page faults of those fresh buffers cost up to ~10% of a train step, and
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (THP via madvise) removes most of them
(docs/performance.md). glibc reads tunables only at process start, hence the re-exec.
"""

from __future__ import annotations

import os
import sys

HUGETLB = "glibc.malloc.hugetlb=1"


def reexec_with_hugepages() -> None:
  """Re-exec this process with the THP tunable; a no-op if set, off-Linux or THP is 'never'."""
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if not sys.platform.startswith("linux") or "glibc.malloc.hugetlb" in tunables:
    return
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="utf-8") as f:
      if "[never]" in f.read():
        return
  except OSError:
    return
  env = dict(os.environ, GLIBC_TUNABLES=":".join(t for t in (tunables, HUGETLB) if t))
  os.execve(sys.executable, [sys.executable, *sys.argv], env)
