"""Engines: TensorRT 10.x/11.x builder and the ONNX Runtime fallback, with the engine sidecar."""
