"""Compressed DICOM pixel data decoded in a child process, one per worker process.

The decoders hold the GIL while they run: a 6000 px JPEG 2000 frame (OpenJPEG, through
pylibjpeg-openjpeg) stalled its worker process for 5.5 s (a thread sleeping 1 ms woke 5,475 ms
later), its event loop and every other request with it; for a 3000 px frame, JPEG 2000 held the
GIL 1,030 ms, JPEG-LS 386 ms, RLE 183 ms. In a child process a decode takes a core, not the
worker. One child per worker: its compressed DICOMs are decoded one at a time there. The child
is started with the worker's first compressed DICOM (0.4 s; 72 MB resident, which a worker that
never sees one does not pay) by 'spawn' (the worker has threads, which 'fork' would copy mid-state),
and it can be killed: a decode that runs past CHILD_TIMEOUT_S, or a decoder that crashes on
hostile data, ends the child (a new one is started for the next file) and the file is refused
(undecodable_image), where a crash in the worker itself would have ended every request it held.
A decode whose request was answered without it (its deadline passed, its client left: the
`request_stop` event the scoring pipeline sets for the file) is abandoned at once, and the child
ended too when no other file waits on it; a file that was waiting on a child another file's
decode ended is sent to the next child.

The child parses the bytes itself and sends back the first frame's stored values, reduced as
service.inputs.dicom reduces them when that is asked (so what comes back is small).
"""

from __future__ import annotations

import atexit
import io
import multiprocessing
import threading
import time
import warnings
from contextvars import ContextVar
from multiprocessing.pool import AsyncResult, Pool

import numpy as np

from service.inputs.errors import ImageDecodeError

CHILD_TIMEOUT_S = 30.0  # above the request deadline: by then the request was answered (deadline_exceeded) anyway
STOP_POLL_S = 0.05  # how often a waiting decode looks at its request's stop event

# set by the scoring pipeline around each file: the request's stop event (None: nothing stops it)
request_stop: ContextVar[threading.Event | None] = ContextVar("request_stop", default=None)

_lock = threading.Lock()
_pool: Pool | None = None
_waiting = 0  # files handed to the current child and not back yet


class DecodeStoppedError(ImageDecodeError):
    """The file's request was answered without it; its decode was abandoned."""


def _get_pool() -> Pool:
    with _lock:
        return _current_pool()


def _current_pool() -> Pool:
    """The child, started when there is none; called with _lock held."""
    global _pool
    if _pool is None:
        _pool = multiprocessing.get_context("spawn").Pool(1)
        atexit.register(_pool.terminate)  # before the interpreter tears its modules down
    return _pool


def _kill_pool(pool: Pool) -> None:
    global _pool, _waiting
    with _lock:
        if _pool is pool:
            _pool, _waiting = None, 0
    pool.terminate()


def _submit(data: bytes, min_side: int | None, reduce: bool) -> tuple[Pool, AsyncResult[np.ndarray]]:
    global _waiting
    with _lock:  # so that the child cannot be ended between being found and being given the file
        pool = _current_pool()
        _waiting += 1
        return pool, pool.apply_async(_decode_in_child, (data, min_side, reduce))


def _settle(pool: Pool, abandoned: bool) -> None:
    """This file is no longer waiting on `pool`; an abandoned decode ends the child when no
    other file waits on it (ending it otherwise would cost those files their decodes)."""
    global _waiting
    with _lock:
        if _pool is not pool:
            return
        _waiting -= 1
        alone = _waiting == 0
    if abandoned and alone:
        _kill_pool(pool)


def _is_current(pool: Pool) -> bool:
    with _lock:
        return _pool is pool


def warm_up() -> None:
    """Start the child and load its decoders now (a few seconds), not on the first DICOM."""
    _get_pool().apply(_load_decoders)


def _load_decoders() -> None:
    import openjpeg  # noqa: F401 - imported for its start-up cost
    import pydicom.pixels  # noqa: F401


def decode_first_frame(data: bytes, min_side: int | None, reduce: bool) -> np.ndarray:
    """The first frame's stored values (reduced towards `min_side` when `reduce`), decoded in
    the child. Raises ImageDecodeError when the child fails, crashes or runs past CHILD_TIMEOUT_S,
    DecodeStoppedError once the request's stop event is set; a decoder's own exception comes
    back as itself."""
    stop = request_stop.get()
    give_up_at = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        pool, pending = _submit(data, min_side, reduce)
        abandoned = False
        try:
            while not pending.ready():
                if stop is not None and stop.is_set():
                    abandoned = True
                    raise DecodeStoppedError("decoding stopped: the request was answered without it")
                if time.monotonic() >= give_up_at:
                    _kill_pool(pool)  # a crashed child never answers either: both end here
                    raise ImageDecodeError(f"cannot decode DICOM pixel data (the decoder ran past "
                                           f"{CHILD_TIMEOUT_S:g} s or crashed)")
                if not _is_current(pool):
                    break  # another file's decode ended this child: this file goes to the next one
                pending.wait(STOP_POLL_S)
            else:
                pixels: np.ndarray = pending.get()
                return pixels
        finally:
            _settle(pool, abandoned)


def _decode_in_child(data: bytes, min_side: int | None, reduce: bool) -> np.ndarray:
    import pydicom

    from service.inputs.dicom import reduce_stored

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # they can quote element values; the parent decides
        dataset = pydicom.dcmread(io.BytesIO(data))
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            dataset.pixel_array_options(index=0)
        pixels: np.ndarray = dataset.pixel_array
    return reduce_stored(pixels, min_side) if reduce else pixels
