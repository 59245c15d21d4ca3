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
    # Our own handler, whatever else is attached: another handler (a library's, a test's log capture)
    # must not silence a command's messages.
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


# Notes of a running command (see `deferred_notes`); None outside one.
_pending_notes: list[str] | None = None


def note(message: str) -> None:
    """A remark the user should read (e.g. a file nothing vouches for), said once the command succeeds.

    A failing command prints only its one error line, so inside a command (`deferred_notes`) notes
    wait for success; outside one (library use) they are logged at once.
    """
    if _pending_notes is None:
        logger.info("note: %s", message)
    elif message not in _pending_notes:
        _pending_notes.append(message)


@contextlib.contextmanager
def deferred_notes() -> Iterator[None]:
    """Collect `note`s while a command runs; log them if it succeeds, drop them if it fails."""
    global _pending_notes
    outer, _pending_notes = _pending_notes, []
    try:
        yield
        notes = _pending_notes
    finally:
        _pending_notes = outer
    for message in notes:
        note(message)


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
