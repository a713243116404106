import pytest
import torch

from gapbench.bench import TARGETS, format_bench, matmul_peak, run_bench, spectral_time, stacked_speed

torch.set_num_threads(1)


def test_matmul_peak_counts_2n3_flops():
    r = matmul_peak(64, 1)
    assert r["matmul_peak_flops"] == pytest.approx(2 * 64**3 / r["matmul_s"])


def test_stacked_speed_small():
    r = stacked_speed(num_models=2, batch=8, steps=2, reps=1)
    assert r["stacked32_speedup"] > 0 and r["stacked32_models"] == 2


def test_spectral_time_covers_all_six_matrices():
    assert spectral_time(1)["spectral_matrices"] == 6


@pytest.mark.slow
def test_run_bench_quick_returns_all_keys():
    result = run_bench(quick=True)
    for key in ["matmul_peak_flops", "mlp_b128_mfu", "batch1_speedup", "batch1_steps_per_s",
                "batch1_hours_2m_steps", "stacked32_speedup", "spectral_s", "threads", "torch"]:
        assert key in result
    for key in TARGETS:
        assert isinstance(result[f"{key}_met"], bool)
    assert torch.get_num_threads() == 1  # restored after the run
    assert "batch-1 speed-up" in format_bench(result)
