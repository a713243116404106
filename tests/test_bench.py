"""The bench's pairing and statistics, tested with scripted clocks (deterministic: this checks the
arithmetic, not the machine's speed), plus a tiny smoke run of the real benchmark. No timed assertions."""

import json
import statistics

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gapbench import bench_measures
from gapbench.bench import (
    FIGURES,
    TARGETS,
    BenchSizes,
    batch1_pairs,
    check_targets,
    format_bench,
    interleaved,
    mfu_pairs,
    probnet_pairs,
    run_bench,
    spectral_repeats,
    spread,
    stacked_pairs,
)
from gapbench.bench_measures import measures_pairs
from gapbench.cli import main
from gapbench.config import ModelConfig
from gapbench.errors import GapbenchError

torch.set_num_threads(1)

# A net and trials small enough that one benchmark runs in milliseconds once numba's kernel is cached.
TINY = BenchSizes(net=ModelConfig(depth=2, width=32, bias=False), matmul_size=64, matmul_calls=3, mlp_batch=8,
                  mlp_steps=2, batch1_steps=4, stacked_models=3, stacked_width=8, stacked_batch=4, stacked_steps=2,
                  pb_batch=4, pb_forwards=2, pb_cnn_batch=2, cost_depth=1, cost_width=8, cost_train=20, cost_epochs=2)
TINY_PARAMS = 784 * 32 + 32 * 32 + 32 * 10  # bias-free 784-32-32-10, counted by hand


class ScriptedClock:
    """A clock for interleaved(): each timed call lasts the next scripted duration (in call order)."""

    def __init__(self, durations):
        self.durations, self.now, self.calls = iter(durations), 0.0, 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:       # the end of a timed call
            self.now += next(self.durations)
        return self.now


def test_interleaved_warms_up_then_alternates_a_b():
    calls = []
    a_s, b_s = interleaved([lambda: calls.append("A"), lambda: calls.append("B")], 3,
                           ScriptedClock([1, 2, 3, 4, 5, 6]))
    assert calls == ["A", "B"] + ["A", "B"] * 3          # one untimed warm-up of each, then A B A B A B
    np.testing.assert_array_equal(a_s, [1, 3, 5])
    np.testing.assert_array_equal(b_s, [2, 4, 6])


def test_spread_hand_worked():
    assert spread([5, 1, 4, 2, 3]) == {"median": 3, "q1": 2, "q3": 4, "iqr": 2, "min": 1, "max": 5, "n": 5}
    # even n, linear interpolation: q1 at position 0.75 → 1.75, q3 at 2.25 → 3 + 0.25·7 = 4.75
    assert spread([10, 1, 3, 2]) == {"median": 2.5, "q1": 1.75, "q3": 4.75, "iqr": 3.0, "min": 1, "max": 10,
                                     "n": 4}
    assert spread([0.8]) == {"median": 0.8, "q1": 0.8, "q3": 0.8, "iqr": 0.0, "min": 0.8, "max": 0.8, "n": 1}


@pytest.mark.parametrize("n", [2, 3, 7, 10])
def test_spread_matches_statistics_module(n):
    values = np.random.default_rng(n).lognormal(size=n).tolist()
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    got = spread(values)
    assert got["median"] == pytest.approx(statistics.median(values)) == pytest.approx(median)
    assert (got["q1"], got["q3"]) == (pytest.approx(q1), pytest.approx(q3))


def test_batch1_speedup_is_the_median_of_per_pair_ratios():
    # plain (A) 2, 9, 4 s; fused (B) 1, 3, 1 s → ratios 2, 3, 4 → median 3 (the ratio of medians would be 4)
    r = batch1_pairs(TINY, 3, ScriptedClock([2, 1, 9, 3, 4, 1]))
    np.testing.assert_allclose(r["batch1_speedup"], [2, 3, 4])
    assert spread(r["batch1_speedup"])["median"] == 3
    np.testing.assert_allclose(r["batch1_steps_per_s"], [4, 4 / 3, 4])
    np.testing.assert_allclose(r["batch1_plain_hours_2m_steps"], [2e6 * t / 4 / 3600 for t in (2, 9, 4)])


def test_mfu_counts_6_n_batch_flop_per_step_against_2n3_per_matmul():
    r = mfu_pairs(TINY, 2, ScriptedClock([1, 2, 0.5, 4]))   # peak trial, MLP trial, peak, MLP
    peak = np.array([2 * 64**3 * 3 / 1, 2 * 64**3 * 3 / 0.5])
    mlp = np.array([6 * TINY_PARAMS * 8 * 2 / 2, 6 * TINY_PARAMS * 8 * 2 / 4])
    np.testing.assert_allclose(r["mlp_b128_mfu"], mlp / peak)
    np.testing.assert_allclose(r["matmul_peak_gflops"], peak / 1e9)
    np.testing.assert_allclose(r["mlp_b128_step_ms"], [1e3, 2e3])


def test_stacked_speedup_divides_sequential_by_stacked_seconds():
    r = stacked_pairs(TINY, 2, ScriptedClock([6, 2, 3, 3]))
    np.testing.assert_allclose(r["stacked32_speedup"], [3, 1])
    np.testing.assert_allclose(r["stacked32_steps_per_s"], [3 * 2 / 2, 3 * 2 / 3])


def test_spectral_repeats_times_each_repetition():
    np.testing.assert_array_equal(spectral_repeats(TINY, 3, ScriptedClock([3, 1, 2]))["spectral_s"], [3, 1, 2])


def test_probnet_ratios_divide_per_example_by_mean_network_seconds():
    # FCN rounds: mean 2, frozen 5, unfrozen 7 | 4, 6, 8; then CNN rounds: mean 1, per-example 3 | 2, 3
    r = probnet_pairs(TINY, 2, ScriptedClock([2, 5, 7, 4, 6, 8, 1, 3, 2, 3]))
    np.testing.assert_allclose(r["pbnet_fcn_ratio"], [2.5, 1.5])
    np.testing.assert_allclose(r["pbnet_fcn_unfrozen_ratio"], [3.5, 2])
    np.testing.assert_allclose(r["pbnet_fcn_ms"], [5e3 / 2, 6e3 / 2])       # pb_forwards = 2 per trial
    np.testing.assert_allclose(r["pbnet_cnn_ratio"], [3, 1.5])
    np.testing.assert_allclose(r["pbnet_cnn_ms"], [3e3, 3e3])


def test_targets_are_checked_on_the_median_at_the_boundary():
    figures = {"mlp_b128_mfu": {"median": 0.75}, "batch1_speedup": {"median": 3.99},
               "stacked32_speedup": {"median": 2.5}, "spectral_s": {"median": 2.0}, "pbnet_fcn_ratio": {"median": 3.0}}
    met = {name: t["met"] for name, t in check_targets(figures).items()}
    assert met == {"mlp_b128_mfu": True, "batch1_speedup": False, "stacked32_speedup": True, "spectral_s": False,
                   "pbnet_fcn_ratio": True}
    assert check_targets(figures)["spectral_s"]["target"] == "< 2"
    assert check_targets(figures)["pbnet_fcn_ratio"]["target"] == "<= 3"
    assert not check_targets({**figures, "pbnet_fcn_ratio": {"median": 3.01}})["pbnet_fcn_ratio"]["met"]


def test_run_bench_with_a_constant_clock_gives_exact_figures_with_zero_spread():
    result = run_bench(repeats=2, sizes=TINY, clock=ScriptedClock([1.0] * 28))   # 2 rounds × 14 timed sides
    assert result["figures"]["batch1_speedup"] == {"label": "batch-1 speed-up", "unit": "x", "median": 1.0,
                                                   "q1": 1.0, "q3": 1.0, "iqr": 0.0, "min": 1.0, "max": 1.0,
                                                   "n": 2}
    assert result["figures"]["mlp_b128_mfu"]["median"] == pytest.approx(6 * TINY_PARAMS * 16 / (2 * 64**3 * 3))
    assert result["net_params"] == TINY_PARAMS
    assert result["targets"]["batch1_speedup"] == {"target": ">= 4", "median": 1.0, "met": False}
    assert result["targets"]["spectral_s"]["met"] is True
    assert result["targets"]["pbnet_fcn_ratio"] == {"target": "<= 3", "median": 1.0, "met": True}
    assert result["targets"]["measures_ratio"] == {"target": "< 1", "median": 1.0, "met": False}


def test_run_bench_smoke_real_clock():
    result = run_bench(repeats=2, sizes=TINY)
    json.loads(json.dumps(result))                        # JSON-able as gapbench bench --json prints it
    assert list(result["figures"]) == list(FIGURES) and list(result["targets"]) == list(TARGETS)
    for name, fig in result["figures"].items():
        assert fig["n"] == 2 and fig["min"] <= fig["q1"] <= fig["median"] <= fig["q3"] <= fig["max"], name
        assert fig["min"] > 0, name
    assert result["repeats"] == 2 and result["sizes"]["matmul_size"] == 64
    assert torch.get_num_threads() == 1                   # restored after the run
    table = format_bench(result)
    assert "batch-1 speed-up (x)" in table and "2 interleaved pairs per ratio" in table
    assert table.count("met") == len(TARGETS)
    costs = result["measure_costs"]
    assert costs["computed"] == 47 and costs["n_train"] == 20 and result["notes"] == []
    assert "measure costs (each alone; 47 measures computed" in table
    everything = bench_measures.format_costs(costs, top=len(costs["rows"]))   # the top 10 depends on the timing
    assert "data/search" in everything and "data/init/search" in everything


def test_repeats_must_be_a_positive_int():
    with pytest.raises(GapbenchError, match=r"The 'repeats' parameter of run_bench\(\) must be an int >= 1\. "
                                            r"Got 0 instead\."):
        run_bench(repeats=0, sizes=TINY)
    result = CliRunner().invoke(main, ["bench", "--repeats", "0"])
    assert result.exit_code == 2 and "The 'repeats' parameter" in result.output
    assert "Traceback" not in result.output


def test_measures_ratio_is_gapbench_seconds_over_the_peer_port_per_pair():
    # peer (A) 4, 10 s; gapbench (B) 1, 2 s → ratios 0.25, 0.2
    r = measures_pairs(TINY, 2, ScriptedClock([4, 1, 10, 2]))
    np.testing.assert_allclose(r["measures_ratio"], [0.25, 0.2])
    np.testing.assert_allclose(r["measures_peer_s"], [4, 10])
    np.testing.assert_allclose(r["measures_gapbench_s"], [1, 2])


def test_the_measures_entry_runs_at_one_thread_and_the_rest_at_the_cpu_count(monkeypatch):
    import gapbench.bench as bench_module
    seen = {}

    def recording(name, fn):
        def wrapped(*args, **kwargs):
            seen[name] = torch.get_num_threads()
            return fn(*args, **kwargs)
        return wrapped
    monkeypatch.setattr(bench_module.os, "cpu_count", lambda: 3)
    monkeypatch.setattr(bench_module, "spectral_repeats", recording("spectral", spectral_repeats))
    monkeypatch.setattr(bench_measures, "measures_pairs", recording("measures", measures_pairs))
    monkeypatch.setattr(bench_measures, "cost_table", recording("costs", bench_measures.cost_table))
    result = run_bench(repeats=1, sizes=TINY, clock=ScriptedClock([1.0] * 14))
    assert seen == {"spectral": 3, "measures": 1, "costs": 1}
    assert (result["threads"], result["measures_threads"]) == (3, 1) and torch.get_num_threads() == 1
    assert "3 threads, all measures at 1, 1 interleaved pairs" in format_bench(result)


def test_without_the_peer_port_the_entry_is_left_out_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_measures, "PEER_PORT", tmp_path / "peer_measures.py")
    result = run_bench(repeats=1, sizes=TINY, clock=ScriptedClock([1.0] * 12))   # 1 round × 12 timed sides
    assert "measures_ratio" not in result["figures"] and "measures_ratio" not in result["targets"]
    assert result["measure_costs"] is None
    assert result["notes"] == [f"measures_ratio left out: the peer port {tmp_path / 'peer_measures.py'} is not "
                               f"there (it is in the repository's benchmarks/ folder, not in the installed package)"]
    assert format_bench(result).endswith(f"note: {result['notes'][0]}")


@pytest.mark.slow
def test_run_bench_quick():
    result = run_bench(quick=True)
    assert result["repeats"] == 3 and result["quick"] is True
    assert all(fig["n"] == 3 for fig in result["figures"].values())
    assert all(isinstance(t["met"], bool) for t in result["targets"].values())
    assert "batch-1 speed-up" in format_bench(result)
