"""What ?heatmap=true costs: CPU time per request with and without, in one run, on the same
images (the 16 official val JPEGs at full resolution and a chest DICOM), through the service's
own decode + score path in one thread (service.inference.runners.DirectRunner's work, without HTTP).

    python -m benchmarks.heatmap_cost [--rounds 5]

Rounds alternate without and with, so that the machine's drift falls on both alike; the
ratio of the medians is the headline. Also prints the answer's size with the heatmap.
"""

from __future__ import annotations

import json
import statistics
import time

from benchmarks.serve import benchmark_parser, load_bodies
from service.inference.classifier import Classifier
from service.inference.heatmap import make_heatmap
from service.inference.pipeline import Outcome, Scored, score_uploads
from service.inputs.limits import Limits


def _one_request(classifier: Classifier, body: bytes, heatmap: bool) -> list[Outcome]:
    return score_uploads([body], heatmap, classifier, Limits(),
                         lambda pixels, cam: classifier.predict(pixels, cam=cam))


def cpu_ms_per_request(classifier: Classifier, bodies: list[bytes], heatmap: bool) -> float:
    started = time.process_time()
    for body in bodies:
        _one_request(classifier, body, heatmap)
    return (time.process_time() - started) / len(bodies) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    classifier = Classifier(args.model, intra_op_threads=1)  # one thread: CPU time is then one core's
    bodies = [body for body, _ in load_bodies(args.data)]
    for heatmap in (False, True):  # warm-up
        cpu_ms_per_request(classifier, bodies[:2], heatmap)
    without, with_map = [], []
    for _ in range(args.rounds):
        without.append(cpu_ms_per_request(classifier, bodies, False))
        with_map.append(cpu_ms_per_request(classifier, bodies, True))
    scored = _one_request(classifier, bodies[-2], True)[0]
    assert isinstance(scored, Scored) and scored.heatmap is not None
    extra = len(json.dumps({"values": scored.heatmap.values, "png": scored.heatmap.png,
                            "xray_png": scored.heatmap.xray_png}))
    started = time.process_time()
    for _ in range(20):
        make_heatmap(scored.prediction.cam, scored.decoded.preview)  # type: ignore[arg-type]
    drawing = (time.process_time() - started) / 20 * 1000
    a, b = statistics.median(without), statistics.median(with_map)
    print(f"{len(bodies)} images, {args.rounds} alternating rounds, one thread")
    print(f"CPU per request without the heatmap: {a:.2f} ms (rounds {', '.join(f'{x:.2f}' for x in without)})")
    print(f"CPU per request with the heatmap:    {b:.2f} ms (rounds {', '.join(f'{x:.2f}' for x in with_map)})")
    print(f"with / without: {b / a:.2f}x (+{b - a:.2f} ms); drawing the two PNGs alone: {drawing:.2f} ms")
    print(f"answer size added by the heatmap (a {scored.decoded.width}x{scored.decoded.height} JPEG): "
          f"{extra / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
