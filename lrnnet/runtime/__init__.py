"""One Runner interface over TensorRT, ONNX Runtime and PyTorch; the video pipeline; latency statistics."""
