"""glibc's memory allocator on a CPU: keep freed tensor memory in the process instead of handing it back.

glibc serves every allocation above 32 MB with a fresh ``mmap`` and returns it with ``munmap`` when it
is freed. A training step of the fast net at batch 1,000 allocates activations of about 250 MB each,
so every step maps new pages, and the kernel zeroes each page on its first touch. On a 2-core AMD
EPYC a third of the step was system time spent on those page faults. With ``mmap`` off
(``glibc.malloc.mmap_max=0``) and no trimming, freed memory stays in the heap and the next step reuses
it: the same kernels and the same arithmetic, bit for bit, but faster (``python -m benchmarks.run
--only malloc`` measures by how much on your CPU). The price: the process keeps its peak memory
until it exits.

glibc reads ``GLIBC_TUNABLES`` only when a process starts, so ``train.py`` re-executes itself once
with it set. ``COURSE_MALLOC_TUNING=0``, or a ``GLIBC_TUNABLES`` of your own, leaves the process as
it is.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"  # no mmap; trim only above 64 GiB
OPT_OUT = "COURSE_MALLOC_TUNING"


def should_keep_freed_memory(environ=None) -> bool:
    """Whether to re-execute with ``TUNABLES``: on glibc, unless opted out or tunables are already set."""
    environ = os.environ if environ is None else environ
    return (platform.libc_ver()[0] == "glibc" and "GLIBC_TUNABLES" not in environ
            and environ.get(OPT_OUT, "1") != "0")


def keep_freed_memory() -> None:
    """Re-execute this process (same interpreter, options and arguments) with ``TUNABLES`` set, once.

    Call it first thing in a script's ``__main__``: the process is replaced, so nothing done before
    the call survives (its PID does, so torchrun and job schedulers see the same process).
    """
    if should_keep_freed_memory():
        os.execve(sys.executable, sys.orig_argv, {**os.environ, "GLIBC_TUNABLES": TUNABLES})
