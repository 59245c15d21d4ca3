"""Fixtures of the export stage: a tiny checkpoint and its ONNX export (owned by the export engineer)."""
