"""Progress as people expect it: on a terminal a bar redrawn in place, with
the rate and the time left; elsewhere (a log file, CI) a plain line now and
then, never a carriage return."""

from __future__ import annotations

import collections
import time
from typing import Callable, TextIO

BAR_WIDTH = 24
TERMINAL_INTERVAL_SECONDS = 0.5
LINE_INTERVAL_SECONDS = 10.0
# The rate shown is over this last stretch: a slow start (a JVM starting,
# the first batch filling) must not make the time left wrong all run long.
RATE_WINDOW_SECONDS = 60.0


def clock_text(seconds: float) -> str:
    """`1:02:03` or `2:03`. Pure."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_text(label: str, done: int, total: int, seconds: float, unit: str = "rows",
                  note: str = "", bar: bool = True, rate: float | None = None) -> str:
    """One line: label, bar, share, counts, the rate (default: over the whole
    run, `seconds`) and the time left at that rate; once done, the time it
    took. `total` of 0 means not known. Pure."""
    if rate is None or done >= total > 0:
        rate = done / seconds if seconds > 0 else 0.0
    parts = [label]
    if total > 0:
        share = min(done / total, 1.0)
        if bar:
            filled = int(share * BAR_WIDTH)
            parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
        parts.append(f"{share:4.0%}")
        parts.append(f"{done:,} / {total:,} {unit}")
    else:
        parts.append(f"{done:,} {unit}")
    parts.append(f"{rate:,.0f} {unit}/s")
    if total > 0 and done < total:
        parts.append(f"ETA {clock_text((total - done) / rate)}" if rate > 0 else "ETA --:--")
    elif total > 0:
        parts.append(f"in {clock_text(seconds)}")
    if note:
        parts.append(note)
    return "  ".join(parts)


class Progress:
    """Shows `progress_text` on `stream`: redrawn in place on a terminal, as a
    plain line at most every `line_interval` seconds otherwise."""

    def __init__(self, stream: TextIO, label: str, total: int, unit: str = "rows", *,
                 clock: Callable[[], float] = time.monotonic,
                 line_interval: float = LINE_INTERVAL_SECONDS) -> None:
        self._stream = stream
        self._label = label
        self._unit = unit
        self.total = total
        self._clock = clock
        self._started = clock()
        self._terminal = stream.isatty()
        self._interval = TERMINAL_INTERVAL_SECONDS if self._terminal else line_interval
        self._last = float("-inf")
        self._width = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(self._started, 0)])

    def show(self, done: int, note: str = "", *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        # A sample per line drawn is enough for the window's rate.
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_SECONDS:
            self._samples.popleft()
        then, done_then = self._samples[0]
        rate = (done - done_then) / (now - then) if now > then else None
        text = progress_text(self._label, done, self.total, now - self._started, self._unit, note,
                             bar=self._terminal, rate=rate)
        if self._terminal:
            # Pad over what a longer line before left behind.
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self, done: int, note: str = "") -> None:
        """The final figures, once, and the end of the line."""
        self.show(done, note, force=True)
        if self._terminal:
            self._stream.write("\n")
            self._stream.flush()
