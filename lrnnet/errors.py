"""The two kinds of failure a command reports (see DESIGN.md, Errors)."""


class InputError(Exception):
    """Bad user input (a file, a size, a model, a missing package): one line, exit status 2."""


class MissingDependencyError(InputError):
    """An optional package (TensorRT, CUDA, onnxruntime-gpu) is needed and absent; the message says what to install."""
