"""Compressed DICOM frames decoded in the worker's child process: the worker's other threads
(its event loop among them) keep running meanwhile, a decode past its time ends the child, not
the worker, and a decode whose request was answered without it is abandoned. Inputs: a real
X-ray as a 3000 px JPEG 2000 DICOM, built here."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from service.inference.errors import DeadlineExceededError
from service.inference.pipeline import decode_all
from service.inputs import frame_decoder
from service.inputs.decoding import decode_upload
from service.inputs.errors import ImageDecodeError
from service.inputs.limits import Limits
from tests.dicoms import chest_dataset, to_bytes


@pytest.fixture(scope="module")
def j2k_dicom(val_images, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("xray") / "xray.png"
    with Image.open(val_images[2]) as image:
        image.convert("L").resize((3000, 3000)).save(path)
    dataset = chest_dataset(path)
    dataset.compress(JPEG2000Lossless)
    return to_bytes(dataset)


def _longest_stall_while(work) -> float:
    """How long a thread that sleeps 1 ms at a time was kept from running while `work` ran."""
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        done.set()

    threading.Thread(target=run).start()
    longest, last = 0.0, time.monotonic()
    while not done.is_set():
        time.sleep(0.001)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    if errors:
        raise errors[0]
    return longest


def test_a_jpeg_2000_decode_leaves_the_other_threads_running(j2k_dicom):
    frame_decoder.warm_up()
    stall = _longest_stall_while(lambda: decode_upload(j2k_dicom, 224, 36_000_000))
    # in the worker itself OpenJPEG held the GIL for the whole decode: ~1 s for this frame
    assert stall < 0.3, f"{stall * 1000:.0f} ms"
    assert decode_upload(j2k_dicom, 224, 36_000_000).width == 3000


def test_a_decode_past_its_time_ends_the_child_not_the_worker(j2k_dicom, monkeypatch):
    frame_decoder.warm_up()
    monkeypatch.setattr(frame_decoder, "CHILD_TIMEOUT_S", 0.01)  # this decode takes ~1 s
    with pytest.raises(ImageDecodeError, match="ran past"):
        decode_upload(j2k_dicom, 224, 36_000_000)
    monkeypatch.undo()
    assert decode_upload(j2k_dicom, 224, 36_000_000).format == "dicom"  # a new child took over


def _decode_time(j2k_dicom) -> float:
    frame_decoder.warm_up()
    started = time.monotonic()
    decode_upload(j2k_dicom, 224, 36_000_000)
    return time.monotonic() - started


def test_a_decode_whose_request_was_answered_is_abandoned_and_its_child_ended(j2k_dicom):
    took = _decode_time(j2k_dicom)
    child = frame_decoder._get_pool()
    stop = threading.Event()
    threading.Timer(took / 4, stop.set).start()
    started = time.monotonic()
    (outcome,) = decode_all([j2k_dicom], 224, Limits(), stop=stop)
    assert isinstance(outcome, DeadlineExceededError)
    assert time.monotonic() - started < 0.8 * took  # not when the decode would have finished
    assert frame_decoder._get_pool() is not child  # it waited alone: its child was ended
    assert decode_upload(j2k_dicom, 224, 36_000_000).format == "dicom"


def test_an_abandoned_decode_costs_no_other_file_its_decode(j2k_dicom):
    took = _decode_time(j2k_dicom)
    stop, outcomes = threading.Event(), {}

    def decode(name: str, its_stop: threading.Event | None) -> None:
        outcomes[name] = decode_all([j2k_dicom], 224, Limits(), stop=its_stop)[0]

    threads = [threading.Thread(target=decode, args=("stopped", stop)),
               threading.Thread(target=decode, args=("other", None))]
    for thread in threads:
        thread.start()
    threading.Timer(took / 4, stop.set).start()
    for thread in threads:
        thread.join(timeout=60)
    assert isinstance(outcomes["stopped"], DeadlineExceededError)
    assert outcomes["other"].format == "dicom"
