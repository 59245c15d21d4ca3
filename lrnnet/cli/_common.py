"""What every console script shares: the one-line error contract, size parsing, common options."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from lrnnet.errors import InputError
from lrnnet.log import set_progress, setup_logging

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not usage + error) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(prog: str, description: str) -> Parser:
    parser = Parser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    return parser


def run_command(prog: str, body: Callable[[argparse.Namespace], int | None], parser: Parser,
                argv: Sequence[str] | None = None) -> int:
    """Parse, run, and turn every failure into one line on stderr and an exit status.

    Bad input (InputError, a missing file) exits 2; anything else is an internal failure, exit 1.
    LRNNET_DEBUG=1 shows the traceback for bug reports.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # a usage error (one line already printed) or --help
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_BAD_INPUT
    setup_logging(getattr(args, "verbose", False))
    if getattr(args, "no_progress", False):  # only ever turns bars off: LRNNET_NO_PROGRESS=1 or an outer
        set_progress(False)                   # command's --no-progress (lrnnet-demo) stays in force
    try:
        return body(args) or 0
    except InputError as exc:
        return _fail(prog, str(exc), EXIT_BAD_INPUT)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return _fail(prog, f"{exc.strerror or exc}: {exc.filename}", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail(prog, "interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
        message = " ".join(str(exc).split()) or type(exc).__name__
        return _fail(prog, f"internal error: {type(exc).__name__}: {message} "
                           "(set LRNNET_DEBUG=1 for the traceback and report it)", EXIT_INTERNAL)


def _fail(prog: str, message: str, status: int) -> int:
    if os.environ.get("LRNNET_DEBUG"):
        traceback.print_exc()
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024) as (height, width); argparse type."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH such as 512x1024, got '{text}'") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got '{text}'")
    return height, width


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got '{text}'")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value
