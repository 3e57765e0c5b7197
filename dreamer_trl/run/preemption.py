"""Preemption: SIGTERM / SIGINT ask the run to checkpoint at its next safe point, then exit 143 / 130.

docs/reliability.md P3. The handler only records the request; the training loop polls ``requested`` between
collection batches, updates and evaluation steps. The first signal is acknowledged on stderr; a second signal of
the same kind exits at once.
"""
from __future__ import annotations

import signal
import sys

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


class Preemption:
    """Context manager installing the handlers; ``requested`` is the first signal received, or None."""

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested == signum:
            raise SystemExit(EXIT_CODES[signum])
        self.requested = signum
        again = "Ctrl-C" if signum == signal.SIGINT else "the signal"
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint at the next safe point, then stopping; "
              f"{again} again to quit now (losing what came after the last checkpoint)", file=sys.stderr, flush=True)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.requested] if self.requested is not None else 0

    def __enter__(self) -> "Preemption":
        for sig in EXIT_CODES:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
