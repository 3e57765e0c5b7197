"""Preemption: SIGTERM / SIGINT ask the run to checkpoint at its next safe point, then exit 143 / 130.

docs/reliability.md P3. The handler only records the request; the training loop polls ``requested`` between
collection batches, updates and evaluation steps. A second signal of the same kind exits at once.
"""
from __future__ import annotations

import signal

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
