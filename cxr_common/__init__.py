"""Code shared by training (model_export) and serving (service): the one preprocessing
definition and the ONNX metadata contract. Imports numpy and Pillow only."""
