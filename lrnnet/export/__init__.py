"""PyTorch -> ONNX export of LRNNet, graph checks, metadata and verification against PyTorch."""
