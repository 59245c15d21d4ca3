"""Engines: TensorRT 10.x/11.x builder and the ONNX Runtime fallback, with the engine sidecar.

    build.build_engine(BuildOptions(...)) -> BuildResult        what lrnnet-build-engine runs
    sidecar.read_sidecar / write_sidecar / check_sidecar_compatible / find_newest_engine
    device.tensorrt_version() / current_gpu()                   what this machine offers (None when absent)
    tensorrt_builder.build_tensorrt_engine(...)                 TensorRT only, imported lazily

Submodules are imported explicitly, so that the runtime's sidecar checks load neither ONNX nor TensorRT.
"""
