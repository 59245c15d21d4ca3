"""The two kinds of failure a command reports (see DESIGN.md, Errors)."""


class InputError(Exception):
    """Bad user input (a file, a size, a model, a missing package): one line, exit status 2."""


class MissingDependencyError(InputError):
    """An optional package (TensorRT, CUDA, onnxruntime-gpu) is needed and absent; the message says what to install."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (outputs rolled back, temporaries removed)."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def add_note(exc: BaseException, text: str) -> None:
    """BaseException.add_note (Python 3.11) on 3.10 too: what a command kept, said when it stops."""
    exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]
