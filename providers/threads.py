"""Worker threads for CPU-heavy providers (speech models) that yield the CPU to the event loop.

On a small machine the model threads and the event loop share the cores; at equal priority a
transcription that takes a core for a second delays every other session's tokens. Each worker
thread lowers its own scheduling priority (Linux keeps a nice value per thread, and threads a
worker starts, such as a model's own pool, inherit it), so the loop wins the CPU when both want
it and speech only takes what text sessions leave.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["WORKER_NICENESS", "background_pool"]

WORKER_NICENESS = 10


def _lower_priority() -> None:
    # Not Linux (no per-thread nice), or not allowed: the thread runs at normal priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)


def background_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A pool of `workers` threads at a lower priority than the event loop's."""
    return ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=name, initializer=_lower_priority
    )
