"""Voice activity detection: the Silero VAD model that faster-whisper ships (ONNX, offline).

The model file is faster-whisper's asset (`faster_whisper.utils.get_assets_path()`); it is run
here rather than through `faster_whisper.vad`, whose scorer starts every call from a blank
state: the model is recurrent, so a stream scored piece by piece that way scores differently
from the whole recording. Here each stream keeps its state (`VadState`: the recurrent state and
the 64 samples before the next window), so scoring a stream in pieces gives the scores of the
whole. The inputs the model takes are checked when it loads. The work runs in a bounded thread
pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from providers.audio import Samples
from providers.errors import UpstreamUnavailable

__all__ = ["WINDOW", "SileroVAD", "VadBusy", "VadState", "VadUnavailable"]

WINDOW = 512
"""Samples per score: 32 ms at 16 kHz."""
_CONTEXT = 64  # samples of the previous window the model sees in front of each window


class VadBusy(UpstreamUnavailable):
    """Every VAD worker is busy and its queue is full."""

    code = "vad_busy"


class VadUnavailable(UpstreamUnavailable):
    """The VAD model cannot be loaded, or does not take the inputs expected of it."""

    code = "vad_unavailable"


class VadState:
    """Where one stream's scoring stands: the model's recurrent state, and the last samples
    scored (the next window's context). Used by one call at a time."""

    def __init__(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(_CONTEXT, dtype=np.float32)


class SileroVAD:
    """The model behind every session's scoring: `workers` threads, `queue` more jobs waiting;
    one more is refused with `VadBusy` (the caller keeps its audio and retries on its next
    frame, so a busy pool delays detection, never loses audio)."""

    name = "silero"

    def __init__(self, *, workers: int = 1, queue: int = 64) -> None:
        # Not `background_pool`: scoring is small and on the path to every turn's end, so it keeps
        # the loop's priority.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vad")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._session: Any = None
        self._load_lock = threading.Lock()

    async def scores(self, samples: npt.NDArray[Any], state: VadState) -> Samples:
        """Speech probabilities of the next `samples` of a stream (float in [-1, 1), or pcm16
        samples, converted in the pool; a multiple of `WINDOW` long), one per window; `state`
        moves on past them."""
        if not self._slots.acquire(blocking=False):
            raise VadBusy("voice activity detection is busy", provider=self.name)
        try:
            job = self._pool.submit(self._score, samples, state)
        except RuntimeError as exc:  # shut down
            self._slots.release()
            raise UpstreamUnavailable("voice activity detection is shut down") from exc
        job.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(job)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    def _score(self, samples: npt.NDArray[Any], state: VadState) -> Samples:
        session = self._load()
        if samples.dtype != np.float32:
            samples = (samples.astype(np.float32) / 32768.0).astype(np.float32)
        rows = samples.reshape(-1, WINDOW)
        context = np.concatenate([state.context[None, :], rows[:-1, -_CONTEXT:]])
        batch = np.concatenate([context, rows], axis=1).astype(np.float32, copy=False)
        out, h, c = session.run(None, {"input": batch, "h": state.h, "c": state.c})
        state.h, state.c, state.context = h, c, rows[-1, -_CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def _load(self) -> Any:
        with self._load_lock:
            if self._session is None:
                self._session = _open_model()
            return self._session


def _open_model() -> Any:
    import os

    import onnxruntime  # type: ignore[import-untyped]
    from faster_whisper.utils import get_assets_path

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = 1
    options.log_severity_level = 4
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    try:
        session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"], sess_options=options
        )
    except Exception as exc:  # onnxruntime's load errors share no base class but Exception
        raise VadUnavailable(f"cannot load the VAD model {path}") from exc
    names = {i.name for i in session.get_inputs()}
    if names != {"input", "h", "c"}:
        raise VadUnavailable(f"the VAD model takes {sorted(names)}, not input, h and c")
    return session
