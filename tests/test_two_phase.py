"""Two-phase protocol parameters (issue 16): each changes what it says, defaults keep stored signatures."""

import dataclasses

import pytest
import torch
from torch import nn

from gapbench.analysis.two_phase import epoch_budgets, normalized, phase2_start
from gapbench.config import ModelConfig, RunConfig, Runtime, signature
from gapbench.data.types import Dataset, Split
from gapbench.errors import GapbenchError
from gapbench.experiments import EXPERIMENTS, analysis_jobs
from gapbench.experiments.kkb2017_two_phase import ABLATION_VARIANTS
from gapbench.models import build_model

EXP = EXPERIMENTS.get("kkb2017-two-phase").obj
CFG = RunConfig(model=ModelConfig(depth=1, width=6, bias=True, init_seed=3))


def trained(seed: int = 0) -> nn.Sequential:
    """A net standing in for phase 1's result: the config's init moved away by a seeded perturbation."""
    net = build_model(CFG.model, (4,), 3)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    return net


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_warm_phase2_starts_at_phase1_weights_in_both_nets():
    phase1 = trained()
    net = phase2_start(phase1, "two_phase", "warm", CFG)
    assert states_equal(net.gate, phase1) and states_equal(net.value, phase1)


def test_fresh_phase2_restarts_the_value_net_from_the_config_init_and_keeps_the_gates():
    phase1 = trained()
    before = {k: v.clone() for k, v in phase1.state_dict().items()}
    net = phase2_start(phase1, "two_phase", "fresh", CFG)
    assert states_equal(net.gate, phase1)                          # W_σ: phase 1's weights, frozen
    assert states_equal(net.value, build_model(CFG.model, (4,), 3))  # W: a new draw of the run's init
    assert not states_equal(net.value, phase1)
    assert all(torch.equal(v, before[k]) for k, v in phase1.state_dict().items())   # phase 1 untouched


def test_fresh_last_layer_reinitializes_only_the_trainable_last_layer():
    phase1 = trained()
    net = phase2_start(phase1, "last_layer", "fresh", CFG)
    new, old = ([m for m in n if isinstance(m, nn.Linear)] for n in (net, phase1))
    for a, b in zip(new[:-1], old[:-1], strict=True):     # the frozen features: phase 1's weights
        assert torch.equal(a.weight, b.weight) and not a.weight.requires_grad
    assert not torch.equal(new[-1].weight, old[-1].weight) and new[-1].weight.requires_grad


def test_unknown_phase2_init_is_refused_with_the_choices():
    with pytest.raises(GapbenchError, match=r"phase2_init.*'warm'.*'fresh'"):
        phase2_start(trained(), "two_phase", "cold", CFG)


@pytest.mark.parametrize("hp, want", [
    ({"epochs": 5}, {"standard": 10, "phase1": 5, "phase2": 5}),
    ({"epochs": 5, "phase1_budget": "steps"}, {"standard": 10, "phase1": 50, "phase2": 5}),
    ({"epochs": 5, "standard_epochs": 7, "phase2_epochs": 3}, {"standard": 7, "phase1": 5, "phase2": 3}),
])
def test_epoch_budgets(hp, want):
    assert epoch_budgets(hp, m=1000, count=100) == want      # steps: 5 epochs over 1000 = 50 over 100 points


def test_normalized_shifts_and_scales_every_split_and_leaves_the_input_alone():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 12
    split = Split(x, torch.tensor([0, 1, 0]), torch.arange(3), "train", "train")
    data = Dataset("toy", split, dataclasses.replace(split, name="test", x=x + 1), 2, (4,))
    out = normalized(data, 0.5, 0.25)
    for got, raw in ((out.train.x, x), (out.test.x, x + 1)):
        want = torch.tensor([[(v - 0.5) / 0.25 for v in row] for row in raw.tolist()])
        assert torch.allclose(got, want)
    assert torch.equal(data.train.x, x)
    with pytest.raises(GapbenchError, match=r"'normalize'.*std > 0.*\[0\.5, 0\.0\]"):
        normalized(data, 0.5, 0.0)


@pytest.mark.parametrize("padding, conv2, feat", [("same", None, 16 * 7 * 7), ("valid", 8, 8 * 4 * 4)])
def test_cnn_second_conv_width_and_padding(padding, conv2, feat):
    options = {"fc_width": 20, "padding": padding, **({"conv2_width": conv2} if conv2 else {})}
    net = build_model(ModelConfig(arch="cnn", width=8, options=options), (1, 28, 28), 10)
    assert net[3].out_channels == (conv2 or 16) and net[7].in_features == feat
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_unknown_padding_is_refused():
    with pytest.raises(GapbenchError, match=r"padding.*'same'.*'valid'.*'full'"):
        build_model(ModelConfig(arch="cnn", width=4, options={"fc_width": 8, "padding": "full"}), (1, 28, 28), 10)


@pytest.mark.parametrize("preset", sorted(EXP.presets))
def test_every_preset_yields_valid_points(preset):
    points = EXP.points(EXP.params(preset))
    assert points and {pt["hp"]["mode"] for pt in points} >= {"standard"}


def test_paper_preset_carries_kkb_protocol():
    points = EXP.points(EXP.params("paper"))
    standard = next(pt for pt in points if pt["hp"]["mode"] == "standard")
    model, train = standard["run"]["model"], standard["run"]["train"]
    assert model["options"]["conv2_width"] == 32 and model["width"] == 32 and model["options"]["fc_width"] == 1024
    assert (train["lr"], train["momentum"]) == (0.01, 0.5) and standard["hp"]["normalize"] == [0.1307, 0.3081]
    assert standard["hp"]["standard_epochs"] == 1000


def test_default_protocol_values_stay_out_of_the_hp():
    hp = [pt["hp"] for pt in EXP.points(EXP.params("quick"))]
    assert not {"normalize", "standard_epochs", "phase2_epochs", "phase2_init"} & {k for h in hp for k in h}


@pytest.mark.parametrize("key, value, match", [("phase2_init", "cold", "phase2_init"),
                                               ("modes", "standard", "modes")])
def test_bad_protocol_choices_are_refused(key, value, match):
    """Refused where every --set value is checked, before any job is built (experiments/params.py)."""
    with pytest.raises(GapbenchError, match=match):
        EXP.params("smoke", {key: value})


def test_job_trains_each_phase_with_the_requested_budget_and_start(data_dir, monkeypatch, tmp_path):
    """The job wires the parameters through: a spy on fit() sees each run's epochs and phase 2's start."""
    calls, real_fit = [], analysis_jobs.fit

    def spy(cfg, data, **kw):
        run = real_fit(cfg, data, **kw)
        calls.append((cfg.train.max_epochs, len(data.train), kw.get("model"), run, float(data.train.x.min()), data))
        return run
    monkeypatch.setattr(analysis_jobs, "fit", spy)     # the fit the job calls
    params = {**EXP.params("smoke"), "seeds": 1, "alpha": [0.5], "modes": ["two_phase"], "epochs": 1,
              "standard_epochs": 2, "phase2_epochs": 3, "phase2_init": "fresh", "normalize": [0.5, 0.5]}
    runtime = Runtime(data_dir=str(data_dir))
    results = [analysis_jobs.two_phase_job({**point, "hp": {**point["hp"], "theorem8": False}}, runtime, tmp_path)
               for point in EXP.points(params)]
    (std_epochs, std_n, *_), (p1_epochs, p1_n, _, phase1, *_), (p2_epochs, p2_n, start, _, lowest, _) = calls
    assert (std_epochs, p1_epochs, p2_epochs) == (2, 1, 3) and (std_n, p1_n, p2_n) == (300, 150, 300)
    assert lowest == pytest.approx(-1.0)                                   # (0 − 0.5)/0.5: inputs normalized
    assert states_equal(start.gate, phase1.model) and not states_equal(start.value, phase1.model)
    # phase 1's train error on S_αm, recounted point by point from the phase-1 model and its training data
    phase1_data = calls[1][5]
    with torch.no_grad():
        wrong = sum(int(phase1.model(x[None]).argmax(1).item() != int(y))
                    for x, y in zip(phase1_data.train.x, phase1_data.train.y, strict=True))
    assert results[1].values["phase1_train_error"] == pytest.approx(wrong / 150)
    assert "phase1_train_error" not in results[0].values                  # the standard run has no phase 1


def cli_value(value) -> str:
    """A preset value as the string `--set KEY=...` takes."""
    return "none" if value is None else ",".join(map(str, value)) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("name", sorted(ABLATION_VARIANTS))
def test_each_ablation_variant_is_one_cli_override_of_the_ablation_preset(name):
    variant, preset = ABLATION_VARIANTS[name], EXP.presets["ablation"]
    assert len(variant) <= 1 and all(preset[k] != v for k, v in variant.items())
    got = EXP.params("ablation", {k: cli_value(v) for k, v in variant.items()})
    assert got == {**preset, **variant}


def test_ablation_variants_share_the_runs_they_leave_unchanged():
    """The phase-1/phase-2 variants reuse the kkb baseline; the baseline variant reuses the two-phase runs."""
    def signatures(name, mode):
        points = EXP.points(EXP.params("ablation", ABLATION_VARIANTS[name]))
        return {signature(pt) for pt in points if (pt["hp"]["mode"] == "standard") == (mode == "standard")}
    for name in ("phase1_steps", "phase2_fresh"):
        assert signatures(name, "standard") == signatures("kkb", "standard")
        assert not signatures(name, "two_phase") & signatures("kkb", "two_phase")
    assert signatures("standard_double", "two_phase") == signatures("kkb", "two_phase")
    assert not signatures("standard_double", "standard") & signatures("kkb", "standard")


def _table(rows):
    return type("Table", (), {"rows": rows})()


def test_ratio_claim_reports_each_alphas_median_and_seed_range():
    from gapbench.experiments.kkb2017_two_phase import _ratio_claim, ratio_samples
    rows = [{"hp.mode": "standard", "hp.seed": s, "hp.alpha": 1.0, "test_accuracy": acc}
            for s, acc in ((0, 0.80), (1, 0.50), (2, 0.40))]
    rows += [{"hp.mode": "two_phase", "hp.seed": s, "hp.alpha": 0.1, "test_accuracy": acc}
             for s, acc in ((0, 0.72), (1, 0.50), (2, 0.38))]          # ratios 0.9, 1.0, 0.95
    rows += [{"hp.mode": "two_phase", "hp.seed": 0, "hp.alpha": 0.5, "test_accuracy": 0.80}]   # ratio 1.0
    rows += [{"hp.mode": "two_phase", "hp.seed": 7, "hp.alpha": 0.5, "test_accuracy": 0.10}]   # no baseline
    assert ratio_samples(_table(rows)) == {0.1: pytest.approx([0.9, 1.0, 0.95]), 0.5: pytest.approx([1.0])}
    held, worst, detail = _ratio_claim(_table(rows), {})
    assert not held and worst == pytest.approx(0.95)
    assert "0.1: 0.9500 (0.9000–1.0000, 3 seeds)" in detail and "0.5: 1.0000 (paper" in detail
    rows_high = [r if r["hp.mode"] == "standard" else {**r, "test_accuracy": r["test_accuracy"] * 1.2}
                 for r in rows[:6]]                                     # ratios 1.08, 1.2, 1.14
    assert _ratio_claim(_table(rows_high), {})[0]
