"""onnxruntime's names for the execution providers the service runs on. Apart from
service.inference.classifier so that planning (service.process.plan) needs no onnxruntime: the
supervisor plans, and never imports it."""

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
