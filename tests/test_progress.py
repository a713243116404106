"""Progress that tells the truth: measured time left, epochs of running jobs reach the sweep, no '\r' in logs,
`measure` reports per measure."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_jobs import jobs

from gapbench import progress, sweep_progress
from gapbench.progress import Ticker, remaining_seconds
from gapbench.sweep import run_sweep
from gapbench.sweep_progress import SweepDisplay

TESTS = Path(__file__).parent


def true_remaining(durations: list[float], workers: int, now: float) -> float:
    """Time left at `now` of jobs with these durations run in order on `workers` workers (simulated)."""
    free = [0.0] * workers
    for d in durations:
        i = free.index(min(free))
        free[i] += d
    return max(free) - now


def schedule_state(duration: float, count: int, workers: int, now: float):
    """(finished durations, running (elapsed, None), pending) of `count` equal jobs on `workers` at `now`."""
    finished, running, pending = [], [], 0
    for k in range(count):
        start = (k // workers) * duration
        if start + duration <= now:
            finished.append(duration)
        elif start <= now:
            running.append((now - start, None))
        else:
            pending += 1
    return finished, running, pending


@pytest.mark.parametrize("workers, count, now", [(1, 3, 10.0), (2, 6, 10.0), (2, 6, 15.0), (3, 7, 24.0)])
def test_eta_of_equal_jobs_is_exact_once_one_finished(workers, count, now):
    finished, running, pending = schedule_state(10.0, count, workers, now)
    assert finished, "the scripted schedule must have a finished job"
    eta = remaining_seconds(finished, running, pending, workers)
    assert eta == pytest.approx(true_remaining([10.0] * count, workers, now))


def test_eta_by_hand():
    # mean finished 15 s; the running job needs 10 s more; 2 pending need 30 s; over 2 workers: 20 s
    assert remaining_seconds([10.0, 20.0], [(5.0, 0.5)], 2, 2) == pytest.approx(20.0)
    # nothing finished: 10 s for 1/4 and 30 s for 1/2 -> 40 s and 60 s a job, mean 50 s;
    # left 40 + 20 + 50 over 2 workers
    assert remaining_seconds([], [(10.0, 0.25), (30.0, 0.5)], 1, 2) == pytest.approx(55.0)
    assert remaining_seconds([], [(10.0, None)], 2, 1) is None        # nothing measured: no guess
    assert remaining_seconds([], [], 3, 1) is None
    assert remaining_seconds([10.0], [(25.0, None)], 0, 1) == 0.0     # an overrunning job: never negative
    assert [progress.clock(s) for s in (None, 59.6, 161, 3725)] == ["?", "1:00", "2:41", "1:02:05"]


def test_display_eta_at_0_of_3_comes_from_epochs(monkeypatch):
    """A bar at 0/3 after 10 s with a job at epoch 5 of 50: 100 s a job, 290 s left (not tqdm's '?')."""
    now = [1000.0]
    monkeypatch.setattr(sweep_progress.time, "perf_counter", lambda: now[0])
    stream = io.StringIO()
    labels = {"a": "job 1/3 m=1", "b": "job 2/3 m=2", "c": "job 3/3 m=3"}
    display = SweepDisplay(labels, workers=1, stream=stream)
    display.event({"kind": "start", "signature": "a"})
    now[0] += 10.0
    display.event({"kind": "epoch", "signature": "a", "epoch": 5, "max_epochs": 50, "train_error": 0.031})
    assert display.eta() == pytest.approx(290.0)
    assert "job 1/3 m=1: epoch 5/≤50, train err 0.031" in display.status()
    now[0] += 30.0
    display.finished("a", "done")                                   # took 40 s: the estimate follows
    display.event({"kind": "start", "signature": "b"})
    assert display.eta() == pytest.approx(80.0)
    display.event({"kind": "epoch", "signature": "a", "epoch": 50, "max_epochs": 50})   # late: ignored
    assert list(display.running) == ["b"]


def test_display_uses_stored_durations_before_any_finishes(monkeypatch):
    monkeypatch.setattr(sweep_progress.time, "perf_counter", lambda: 50.0)
    display = SweepDisplay({"a": "job 1/2", "b": "job 2/2"}, workers=1, stream=io.StringIO(), prior=[30.0])
    display.event({"kind": "start", "signature": "a"})
    assert display.eta() == pytest.approx(60.0)


def test_plain_display_writes_lines_without_carriage_returns():
    stream = io.StringIO()
    display = SweepDisplay({"a": "job 1/2 m=8", "b": "job 2/2 m=16"}, workers=1, stream=stream)
    for sig in ("a", "b"):
        display.event({"kind": "start", "signature": sig})
        display.event({"kind": "epoch", "signature": sig, "epoch": 1, "max_epochs": 2, "train_error": 0.5})
        display.finished(sig, "done" if sig == "a" else "failed")
    display.close()
    text = stream.getvalue()
    assert "\r" not in text
    assert "sweep 1/2: job 1/2 m=8 done in 0:00" in text
    assert "sweep 2/2: job 2/2 m=16 failed in 0:00; 1 failed" in text


def test_ticker_rate_limits_plain_lines_but_keeps_the_last():
    stream = io.StringIO()
    ticker = Ticker(5, "fit", every_s=3600.0, stream=stream)
    for epoch in range(5):
        ticker.done(f"epoch {epoch}")
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["fit 1/5 epoch 0", "fit 5/5 epoch 4"]


def test_report_without_a_sink_or_with_a_broken_one_never_raises():
    progress.report({"kind": "epoch", "epoch": 1})
    def broken(event):
        raise OSError("queue closed")
    with progress.reporting(broken):
        progress.report({"kind": "epoch", "epoch": 1})


@pytest.mark.parametrize("workers", [1, 2])
def test_epoch_events_reach_the_parent_before_the_job_ends(tmp_path, workers):
    events = []
    sweep = jobs("epochs", [1, 2], epochs=3, sleep=0.3)
    result = run_sweep(sweep, tmp_path / "s.sqlite", workers=workers, progress=False,
                       on_progress=events.append)
    assert sorted(result.trained) == sorted(j.signature for j in sweep)
    for job in sweep:
        mine = [e for e in events if e["signature"] == job.signature]
        kinds = [e["kind"] for e in mine]
        assert kinds[0] == "start" and kinds[-1] == "end", kinds
        epochs = [e["epoch"] for e in mine if e["kind"] == "epoch"]
        assert epochs == [1, 2, 3], mine                # 0.3 s apart: none throttled away


def test_killed_worker_ends_its_progress(tmp_path, capsys):
    events = []
    sweep = jobs("epochs", [1], epochs=3, sleep=0.3, die=True)
    result = run_sweep(sweep, tmp_path / "s.sqlite", workers=2, progress=True, on_progress=events.append)
    assert result.failed == [sweep[0].signature]
    assert [e["kind"] for e in events][-1] == "end" and events[-1]["status"] == "failed"
    err = capsys.readouterr().err
    assert "sweep 1/1: job 1/1 failed" in err and "\r" not in err


def _cli(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "gapbench.cli", *map(str, args)], env=env, timeout=300,
                          **kwargs)


def test_run_logged_to_a_file_has_no_carriage_returns(tmp_path):
    log = tmp_path / "err.log"
    with open(log, "wb") as err:
        proc = _cli("run", "nk2019-linear", "--preset", "smoke", "--out", tmp_path / "out", stdout=subprocess.PIPE,
                    stderr=err)
    text = log.read_bytes().decode()
    assert proc.returncode == 0, text
    assert "\r" not in text
    assert "sweep 3/3: job 3/3" in text                 # one plain line per finished job


def test_measure_reports_each_measure_on_stderr_and_clean_json_on_stdout(tmp_path):
    from gapbench import checkpoint
    from gapbench.api import fit
    from gapbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    cfg = RunConfig(data=DataConfig(name="mnist", n_train=40), model=ModelConfig(depth=2, width=8),
                    train=TrainConfig(max_epochs=1))
    path = checkpoint.save(tmp_path / "run.pt", fit(cfg))
    quantities = ["spectral_product", "frobenius_product", "num_params"]
    proc = _cli("measure", path, "--json", *[a for q in quantities for a in ("-q", q)], capture_output=True,
                text=True)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == set(quantities)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("measure ")]
    assert [line.split(" (")[0] for line in lines] == [f"measure {i}/3 {q}" for i, q in enumerate(quantities, 1)]
    assert all(" s)" in line for line in lines) and "\r" not in proc.stderr


def test_fit_reports_every_recorded_epoch():
    import torch

    from gapbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from gapbench.data.types import Dataset, Split
    from gapbench.train import fit
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 5, generator=gen)
    split = Split(x, (x[:, 0] > 0).long(), torch.arange(24), "train")
    data = Dataset("toy", train=split, test=split, num_classes=2, input_shape=(5,))
    cfg = RunConfig(data=DataConfig(name="mnist"), model=ModelConfig(depth=2, width=8),
                    train=TrainConfig(max_epochs=3, batch_size=8, stop="epochs"))
    events = []
    run = fit(cfg, data, on_epoch=events.append)
    assert [e["epoch"] for e in events] == [h["epoch"] for h in run.history] == [0, 1, 2, 3]
    assert all(e["kind"] == "epoch" and e["max_epochs"] == 3 for e in events)
    assert [e["train_error"] for e in events] == [h["train_error"] for h in run.history]


def test_demo_prints_measured_times_and_promises_none(tmp_path, capsys):
    from click.testing import CliRunner

    from gapbench.cli import main
    from gapbench.config import Runtime
    from gapbench.demo import run_demo
    run_demo(out=tmp_path, runtime=Runtime(), names=("nk2019-linear",), preset="smoke")
    err = capsys.readouterr().err
    assert "demo: experiment 1/1 nk2019-linear (0:00 elapsed)" in err
    assert "demo: nk2019-linear: 3/3 claims held, 3 runs trained, 0 reused, in 0:" in err
    assert "demo: 1 experiments in 0:" in err
    help_text = CliRunner().invoke(main, ["demo", "--help"]).output
    assert "minute" not in help_text and "about" not in help_text


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_display_draws_a_bar_with_the_running_jobs():
    stream = Terminal()
    display = SweepDisplay({"a": "job 1/2 m=8", "b": "job 2/2 m=16"}, workers=1, stream=stream)
    display.event({"kind": "start", "signature": "a"})
    display.event({"kind": "epoch", "signature": "a", "epoch": 5, "max_epochs": 50, "train_error": 0.031})
    display.finished("a", "done")
    display.close()
    text = stream.getvalue()
    assert "\r" in text and "sweep: 1/2" in text
    assert "job 1/2 m=8: epoch 5/≤50, train err 0.031" in text and "eta " in text
