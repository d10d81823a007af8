"""Process-wide settings a run changes for its duration and then restores: torch's thread
count and what Ctrl-C and SIGTERM do."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (None or <= 0: unchanged), restored after."""
    if n is None or n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a flag the loop checks between steps (so the
    checkpoint holds a whole step); a second one interrupts at once.

    SIGTERM (``kill``, a scheduler's time limit, a container stop) is taken over only where
    nothing else handles it (its handler is the default, which would kill the process on the
    spot): a Ray worker's own handler, or an embedding application's, is left alone.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None  # the signal that asked, once one did

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be caught on the main thread
            return
        previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous[signal.SIGTERM] = signal.SIG_DFL

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        def handler(signum: int, frame: object) -> None:
            self.requested = True
            self.signal = signum
            restore()  # the next Ctrl-C or SIGTERM acts at once

        for signum in previous:
            signal.signal(signum, handler)
        try:
            yield self
        finally:
            restore()
