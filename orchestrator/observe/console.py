"""The driver's console: one line style for everything vrft says, written above the progress bars.

    15:16:35 run dir: runs/demo-20261207-151635
    15:17:40 warning: alarm: alarms/color/empty_answer = 0.31 … crosses logging.alarms.empty_answer = 0.2

A time, then the message; warnings and errors say so. Other libraries' loggers in the driver speak
only from WARNING up, in the same style; the actors' own output is not here at all
(orchestrator/runtime/actor_logs.py).
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm


class ConsoleFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            stamp, _, message = text.partition(" ")
            text = f"{stamp} {record.levelname.lower()}: {message}"
        return text


class BarSafeHandler(logging.Handler):
    """Writes each line through tqdm, so a progress bar on the terminal is redrawn below it, not torn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


def setup_console(verbose: bool = False) -> None:
    """vrft's logger at INFO (DEBUG when `verbose`), everything else at WARNING, all in one style."""
    handler = BarSafeHandler()
    handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("vrft").setLevel(logging.DEBUG if verbose else logging.INFO)
