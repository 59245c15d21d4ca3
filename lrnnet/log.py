"""The one logger, timed steps and progress bars used by every stage."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

logger = logging.getLogger("lrnnet")
T = TypeVar("T")

# Commands set this from --no-progress; LRNNET_NO_PROGRESS=1 turns bars off everywhere (CI logs).
_progress_enabled = os.environ.get("LRNNET_NO_PROGRESS", "") in ("", "0")


def _bars_shown() -> bool:
    """Bars only on a terminal: in a file or a pipe their carriage returns make the log unreadable,
    and each stage logs its own line anyway (tqdm's disable=None, decided per bar: stderr may change)."""
    if not _progress_enabled:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class _StderrHandler(logging.StreamHandler):
    """Writes to the sys.stderr of the moment, not of setup time (pytest's capture swaps it per test)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(verbose: bool = False) -> None:
    if logger.handlers:
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def set_progress(enabled: bool) -> None:
    global _progress_enabled
    _progress_enabled = enabled


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A tqdm bar on stderr when it is a terminal, unless progress is turned off."""
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=not _bars_shown(),
                    dynamic_ncols=True, leave=False)


def progress_bar(desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    """A manually updated bar (for loops that are not a single iterable, such as the video pipeline)."""
    return tqdm(desc=desc, total=total, unit=unit, disable=not _bars_shown(), dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def timed_step(what: str) -> Iterator[None]:
    """Announce a long step and how long it took."""
    logger.info("%s ...", what)
    start = time.perf_counter()
    yield
    logger.info("%s: done in %.1f s", what, time.perf_counter() - start)
