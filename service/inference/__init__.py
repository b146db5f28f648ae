"""Scoring: the ONNX model (`classifier.py`), one upload's pipeline from bytes to an answer
(`pipeline.py`: decode, check, predict, heatmap), the runners that only decide where and with
whom the model runs (`runners.py`), the request's way through them with admission, deadline and
cancellation (`scoring.py`), and the heatmap drawn from the model's CAM. Failures are domain
errors (`errors.py`); this package knows nothing of HTTP."""
