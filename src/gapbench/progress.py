"""Progress that tells the truth: the one place that decides how long work is shown on stderr.

- On a terminal (stderr is a TTY): tqdm bars, redrawn in place.
- Anywhere else (stderr redirected to a log file, a CI log): no bars and no '\\r'; one plain line per finished
  item, and for fast-repeating steps (epochs) at most one line every :data:`PLAIN_INTERVAL_S` seconds plus the
  last one.

A job running inside a sweep reports its epochs with :func:`report`; whoever runs the job installs a sink
with :func:`reporting` (the sweep forwards events from worker processes to its display through a queue).
With no sink installed :func:`report` does nothing, and it never raises: progress must not break a job.

Estimates of time left come from measured durations only (:func:`remaining_seconds`), never from a rate
over a bar that has not moved.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

PLAIN_INTERVAL_S = 5.0      # the most often a plain (non-TTY) progress line is written for repeating steps

Event = dict[str, Any]
_sink: Callable[[Event], None] | None = None     # the running job's progress receiver (see reporting())


def interactive(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default sys.stderr) is a terminal, where bars redrawn with '\\r' belong."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):          # closed or not a real file
        return False


@contextlib.contextmanager
def reporting(sink: Callable[[Event], None] | None) -> Iterator[None]:
    """Send every :func:`report` made inside the block to `sink` (None: to nobody)."""
    global _sink
    previous, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = previous


def report(event: Event) -> None:
    """Hand a progress event to the installed sink, if any. Never raises. Kinds: 'epoch' ({'epoch': 7,
    'max_epochs': 50, 'train_error': 0.03}, from fit's on_epoch) and 'stage' ({'stage': 'measuring'})."""
    sink = _sink
    if sink is None:
        return
    try:
        sink(dict(event))
    except Exception:                            # a closed queue, a dead parent: training goes on
        pass


def remaining_seconds(finished: list[float], running: list[tuple[float, float | None]], pending: int,
                      workers: int) -> float | None:
    """Wall-clock seconds left in a sweep, estimated from measured job times; None when nothing is measured.

    Args:
        finished: durations (s) of jobs already finished (this sweep, or stored from an earlier one).
        running: (elapsed seconds, fraction done in [0, 1] or None when unknown) of each running job.
        pending: jobs not started yet.
        workers: jobs that run at once.

    A job's duration is the mean finished duration; before any job finishes, the mean of elapsed / fraction
    over running jobs that report a fraction (epochs done / max epochs: an over-estimate when a stop rule
    ends training early). Work left (each running job's expected duration minus its elapsed time, at least
    0, plus `pending` durations) is spread over min(workers, jobs left) workers.
    """
    if finished:
        per_job = sum(finished) / len(finished)
    else:
        rates = [elapsed / fraction for elapsed, fraction in running if fraction]
        if not rates:
            return None
        per_job = sum(rates) / len(rates)
    left = sum(max(per_job - elapsed, 0.0) for elapsed, _ in running) + pending * per_job
    parallel = max(1, min(workers, len(running) + pending))
    return left / parallel


def clock(seconds: float | None) -> str:
    """'1:02:03', '4:05', or '?' for an unknown duration."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def note(message: str, stream: TextIO | None = None) -> None:
    """One line on stderr that does not tear an active tqdm bar."""
    stream = sys.stderr if stream is None else stream
    if interactive(stream):
        from tqdm import tqdm
        tqdm.write(message, file=stream)
    else:
        print(message, file=stream, flush=True)


class Ticker:
    """i/N progress over items: a tqdm bar on a terminal, plain lines elsewhere (module doc).

    Call :meth:`done` as each item ends, with what to say about it. `every_s` rate-limits plain lines (0: one
    per item); the last item always gets its line.
    """

    def __init__(self, total: int | None, desc: str, *, enabled: bool = True, every_s: float = 0.0,
                 stream: TextIO | None = None, leave: bool = True):
        self.total, self.desc, self.enabled, self.every_s = total, desc, enabled, every_s
        self.stream = sys.stderr if stream is None else stream
        self.count, self.start, self.last_line = 0, time.perf_counter(), float("-inf")
        self.item_start = self.start
        self.bar = None
        if enabled and interactive(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, file=self.stream, leave=leave, dynamic_ncols=True)

    def begin(self, name: str) -> None:
        """Item `name` starts now (shown in the bar)."""
        self.item_start = time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(name, refresh=True)

    def done(self, detail: str) -> None:
        """The current item ended; `detail` says what it was and how it went."""
        self.count += 1
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(detail, refresh=False)
            self.bar.update()
        elif self.enabled and (now - self.last_line >= self.every_s or self.count == self.total):
            of = f"/{self.total}" if self.total is not None else ""
            print(f"{self.desc} {self.count}{of} {detail} ({clock(now - self.start)} elapsed)",
                  file=self.stream, flush=True)
            self.last_line = now
        self.item_start = now

    def item_seconds(self) -> float:
        return time.perf_counter() - self.item_start

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
