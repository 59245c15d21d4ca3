"""Precision in the graph: FP16 conversion, INT8 Q/DQ from Cityscapes calibration, calibration caches.

    graph.load_source_onnx(path) -> SourceModel          the vetted FP32 export (InputError otherwise)
    graph.float_island_nodes(model)                      nodes kept in float32 (SVN power iteration, softmax)
    fp16.convert_to_fp16(source, keep_io_fp32=True)      -> onnx.ModelProto
    int8.quantize_int8(source, calib_root, Int8Options(), cache_path) -> (onnx.ModelProto, CalibrationRecord)
    reader.open_calibration_set(path, n)                 a Cityscapes root, a folder of images or a video
    reader.CalibrationReader                             ONNX Runtime CalibrationDataReader (also fed to TensorRT, modelopt)
    cache.read_cache / write_cache                       ranges + TensorRT calibration table

Submodules are imported explicitly (ONNX Runtime's quantizer is only loaded for INT8).
"""
