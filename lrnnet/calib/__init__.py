"""Precision in the graph: FP16 conversion, INT8 Q/DQ from Cityscapes calibration, calibration caches."""
