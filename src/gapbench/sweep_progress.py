"""A sweep's progress, both halves: the reporter a job's events pass through where the job runs, and the
display in the sweep's process (jobs done, failures, running jobs' epochs, a measured time left).

Events are dicts with 'kind' ('start', 'epoch', 'stage', 'end'; 'tick' is the parent's own redraw) and the
job's 'signature' (see gapbench.local_backend for how they travel from pool workers).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .progress import PLAIN_INTERVAL_S, Event, clock, interactive, remaining_seconds

if TYPE_CHECKING:
    from .sweep_job import Job

EPOCH_EVENT_S = 0.25        # a job forwards at most one epoch event per this many seconds (and the last)


class JobReporter:
    """A job's progress sink: adds 'signature' to each event and passes it to `put`, epoch events at most
    every EPOCH_EVENT_S; the last one held back goes out before the next other event (or flush()), so the
    display always ends on the epoch where training stopped."""

    def __init__(self, signature: str, put: Callable[[dict], None]):
        self.signature, self.put = signature, put
        self.last, self.held = float("-inf"), None

    def __call__(self, event: dict) -> None:
        now = time.perf_counter()
        if event.get("kind") == "epoch":
            if now - self.last < EPOCH_EVENT_S:
                self.held = event
                return
            self.last, self.held = now, None
        else:
            self.flush()
        self._send(event)

    def flush(self) -> None:
        if self.held is not None:
            self.held, held = None, self.held
            self._send(held)

    def _send(self, event: dict) -> None:
        try:
            self.put({**event, "signature": self.signature})
        except Exception:           # progress never breaks a job (a closed queue, a full pipe)
            pass


def labels(todo: list[Job]) -> dict[str, str]:
    """'job i/N' and the job's grid point for each signature: the config['hp'] entries that differ between
    the jobs ('job 2/3 m=1024')."""
    points = [job.config.get("hp") if isinstance(job.config.get("hp"), dict) else {} for job in todo]
    varying = [k for k in dict.fromkeys(k for hp in points for k in hp)
               if len({repr(hp.get(k)) for hp in points}) > 1]
    return {job.signature: " ".join([f"job {i}/{len(todo)}", *(f"{k}={hp[k]}" for k in varying if k in hp)])
            for i, (job, hp) in enumerate(zip(todo, points, strict=True), 1)}


def forwarder(display: SweepDisplay, on_progress: Callable[[dict], None] | None) -> Callable[[dict], None]:
    """One receiver for progress events in the parent: the display, then the caller's on_progress."""
    def forward(event: dict) -> None:
        if event.get("kind") == "tick":      # the pool's parent waited POLL_S: redraw the time
            display.tick()
            return
        if event.get("kind") == "end":
            display.finished(event["signature"], event["status"])
        else:
            display.event(event)
        if on_progress is not None:
            on_progress(event)
    return forward


def drain(queue, on_event: Callable[[dict], None]) -> None:
    """Pass every event waiting in `queue` to `on_event`; a broken queue (a worker died mid-write) only
    ends progress, never the sweep."""
    try:
        while True:
            on_event(queue.get_nowait())
    except Exception:           # queue.Empty when drained; EOFError/OSError/unpickling errors when broken
        pass


class SweepDisplay:
    """A sweep's progress: jobs done of N, failures, the running jobs' epochs and a measured time left.

    Fed by the sweep: :meth:`event` with each job's 'start' and 'epoch' events (as they arrive from workers),
    :meth:`finished` as each job ends, :meth:`tick` while waiting. `labels` maps a job's signature to its
    name ('job 2/3 m=1024'); `prior` holds durations (s) of runs of the same experiment stored earlier.
    A job that never reported (or whose worker died) simply leaves the running set when it ends.
    """

    def __init__(self, labels: dict[str, str], *, workers: int, enabled: bool = True,
                 prior: list[float] | None = None, stream: TextIO | None = None):
        self.labels, self.workers, self.enabled = labels, workers, enabled
        self.stream = sys.stderr if stream is None else stream
        self.total, self.done_count, self.failed = len(labels), 0, 0
        self.durations: list[float] = []
        self.prior = list(prior or [])
        self.running: dict[str, dict[str, Any]] = {}
        self.ended: set[str] = set()
        self.last_line = float("-inf")
        self.bar = None
        if enabled and interactive(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, desc="sweep", unit="run", file=self.stream, dynamic_ncols=True,
                            bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed} elapsed, {postfix}")

    def event(self, event: Event) -> None:
        signature = event.get("signature")
        if signature not in self.labels or signature in self.ended:   # a late event of a finished job
            return
        if event.get("kind") == "start":
            self.running[signature] = {"start": time.perf_counter()}
        elif event.get("kind") in ("epoch", "stage"):
            state = self.running.setdefault(signature, {"start": time.perf_counter()})
            state.pop("stage", None)
            state.update(event)
        self.tick()

    def finished(self, signature: str, status: str) -> None:
        self.ended.add(signature)
        state = self.running.pop(signature, None)
        seconds = time.perf_counter() - state["start"] if state else None
        if seconds is not None and status == "done":
            self.durations.append(seconds)
        self.done_count += 1
        self.failed += status != "done"
        if self.bar is not None:
            self.bar.set_postfix_str(self.status(), refresh=False)
            self.bar.update()
        elif self.enabled:
            took = f" in {clock(seconds)}" if seconds is not None else ""
            self._line(f"{self.labels.get(signature, signature)} {status}{took}")

    def eta(self) -> float | None:
        """Seconds left (:func:`remaining_seconds` over this sweep's finished jobs, else the stored ones)."""
        now = time.perf_counter()
        running = [(now - s["start"], _fraction(s)) for s in self.running.values()]
        pending = self.total - self.done_count - len(running)
        return remaining_seconds(self.durations or self.prior, running, max(pending, 0), self.workers)

    def status(self) -> str:
        parts = [f"{self.failed} failed"] if self.failed else []
        parts.append(f"eta {clock(self.eta())}")
        parts += [_describe(self.labels[sig], s) for sig, s in self.running.items()]
        return ", ".join(parts)

    def tick(self) -> None:
        """Redraw the bar (terminal), or write a status line if none was written for PLAIN_INTERVAL_S."""
        if self.bar is not None:
            self.bar.set_postfix_str(self.status(), refresh=True)
        elif self.enabled and time.perf_counter() - self.last_line >= PLAIN_INTERVAL_S and self.running:
            self._line("running")

    def _line(self, what: str) -> None:
        print(f"sweep {self.done_count}/{self.total}: {what}; {self.status()}", file=self.stream, flush=True)
        self.last_line = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fraction(state: dict[str, Any]) -> float | None:
    if not state.get("max_epochs") or "epoch" not in state:
        return None
    return min(state["epoch"] / state["max_epochs"], 1.0)


def _describe(label: str, state: dict[str, Any]) -> str:
    if "epoch" not in state:
        return f"{label}: {state.get('stage', 'starting')}"
    stage = "".join(f" {key} {state[key]}" for key in ("draw", "phase") if key in state)
    text = f"{label}:{stage} epoch {state['epoch']}/≤{state.get('max_epochs', '?')}"
    if state.get("train_error") is not None:
        text += f", train err {state['train_error']:.3f}"
    return text + (f", {state['stage']}" if "stage" in state else "")
