"""Process-wide settings a run changes for its duration and then restores: torch's thread
count and what Ctrl-C does."""

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
    """Turns the first Ctrl-C into a flag the loop checks between steps (so the checkpoint
    holds a whole step); a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be caught on the main thread
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: object) -> None:
            self.requested = True
            signal.signal(signal.SIGINT, previous)

        signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
