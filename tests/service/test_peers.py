"""Worker processes see each other's load: a worker whose peers are idle uses a helper thread
(and the multi-threaded session for a lone request); a worker whose peers are busy does not."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.inference.classifier import Classifier
from service.inference.runners import DirectRunner
from service.inputs.limits import Limits
from service.metrics import ServiceMetrics
from service.process.peers import PeerLoad, shared_counts


def test_each_worker_sees_whether_the_others_have_requests_in_flight():
    counts = shared_counts(3)
    first, second, third = (PeerLoad(counts, slot) for slot in range(3))
    assert first.others_idle() and second.others_idle()
    second.add(2)
    assert not first.others_idle() and not third.others_idle()
    assert second.others_idle()  # its own requests do not count
    second.add(-2)
    assert first.others_idle()
    third.add(1)
    PeerLoad(counts, 2)  # a worker started in slot 2 again (the old one died): nothing in flight
    assert first.others_idle()


class RecordingClassifier(Classifier):
    """The real model; notes which thread ran each prediction, and whether the runner said that
    it had the whole service to itself (what the runner decides, seen from outside)."""

    def predict(self, pixels, alone=False, cam=False):
        self.threads.append(threading.current_thread().name)
        self.alone.append(alone)
        return super().predict(pixels, alone=alone, cam=cam)


@pytest.fixture(scope="module")
def loaded(bundled_model):
    return RecordingClassifier(bundled_model, intra_op_threads=1, solo_threads=2)


@pytest.fixture
def classifier(loaded):
    loaded.threads, loaded.alone = [], []
    return loaded


def _score_together(runner: DirectRunner, uploads: list[bytes]) -> list:
    async def main():
        await runner.start()
        try:
            return await asyncio.gather(*(runner.score([data], False) for data in uploads))
        finally:
            await runner.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("peer_busy", [False, True])
def test_a_helper_thread_takes_requests_only_while_the_other_workers_are_idle(classifier, val_images, peer_busy):
    counts = shared_counts(2)
    peer = PeerLoad(counts, 1)
    if peer_busy:
        peer.add(1)
    runner = DirectRunner(classifier, ServiceMetrics(), threads=1, limits=Limits(), peers=PeerLoad(counts, 0))
    _score_together(runner, [path.read_bytes() for path in val_images[:6]])
    helped = sum(name.startswith("cxr-help") for name in classifier.threads)
    assert len(classifier.threads) == 6
    if peer_busy:
        assert helped == 0
        assert not any(classifier.alone)  # the other worker's core is taken: one thread for the model
    else:
        # all six arrive before any finishes, and each goes to the thread with fewer pending:
        # scoring, helper, scoring, helper... whatever the timing of the work itself
        assert helped == 3
    assert counts[0] == 0  # nothing left in flight


def test_a_lone_request_with_idle_peers_runs_alone(classifier, normal_jpeg):
    runner = DirectRunner(classifier, ServiceMetrics(), threads=1, limits=Limits(), peers=PeerLoad(shared_counts(2), 0))
    _score_together(runner, [normal_jpeg.read_bytes()])
    assert classifier.threads == ["cxr-score-0"] and classifier.alone == [True]
