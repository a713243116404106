"""ProbLinear / ProbConv2d outputs pinned for fixed generators, in every mode, with and without bias: the
numbers the layers gave before their shared forward moved into one base class (a change of draw order or of
the local reparameterisation would change them). Float64, so the pins hold to 1e-12."""

import pytest
import torch

from gapbench.errors import GapbenchError
from gapbench.pacbayes import GaussianWeights, ProbConv2d, ProbLinear
from gapbench.pacbayes.layers import MODES

# (layer, bias, mode) -> (Σ out, Σ_k (k + 1)·out_k over the flattened output): computed at c401db0, before the
# refactor. The second number moves when entries swap places.
PINNED = {
    "linear-bias-per_example": (0.9993224069595597, -3.7725823601307096),
    "linear-bias-shared": (-0.05943103042563136, 1.0059836093707677),
    "linear-bias-mean": (1.7411666915069035, 4.414065035932808),
    "linear-nobias-per_example": (-0.7879734665802343, -7.5524330957870225),
    "linear-nobias-shared": (-1.5003398575878237, -4.442657299450534),
    "linear-nobias-mean": (-0.23874036469373516, -1.316259834103219),
    "conv-bias-per_example": (30.643479781895202, 699.114999272221),
    "conv-bias-shared": (24.705111999188038, 646.4062155911678),
    "conv-bias-mean": (33.90965813338825, 766.5948456678246),
    "conv-nobias-per_example": (17.093288130492734, 517.9268979284835),
    "conv-nobias-shared": (15.262603214028523, 485.4948406899873),
    "conv-nobias-mean": (17.20068527585476, 489.4275217389679),
}


def _gaussian(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=gen, dtype=torch.float64)
    posterior_std = 0.1 + torch.rand(shape, generator=gen, dtype=torch.float64)
    prior_mean = torch.randn(shape, generator=gen, dtype=torch.float64)
    return GaussianWeights(mean, posterior_std, prior_mean, 0.5)


def layer_and_input(kind: str, bias: bool):
    if kind == "linear":
        layer = ProbLinear(_gaussian((3, 4), 0), _gaussian((3,), 1) if bias else None)
        shape = (2, 4)
    else:
        layer = ProbConv2d(_gaussian((2, 3, 2, 2), 0), _gaussian((2,), 1) if bias else None, stride=2, padding=1,
                           dilation=1)
        shape = (2, 3, 4, 4)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return layer, x


def summary(out: torch.Tensor) -> tuple[float, float]:
    flat = out.detach().reshape(-1)
    weights = torch.arange(1, flat.numel() + 1, dtype=flat.dtype)
    return float(flat.sum()), float((flat * weights).sum())


def output(kind: str, bias: bool, mode: str, grad: bool) -> torch.Tensor:
    layer, x = layer_and_input(kind, bias)
    with torch.set_grad_enabled(grad):
        return layer(x, mode, torch.Generator().manual_seed(3))


CASES = [(kind, bias, mode) for kind in ("linear", "conv") for bias in (True, False) for mode in MODES]


@pytest.mark.parametrize("kind, bias, mode", CASES)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
def test_outputs_are_pinned(kind, bias, mode, grad):
    expected = PINNED[f"{kind}-{'bias' if bias else 'nobias'}-{mode}"]
    assert summary(output(kind, bias, mode, grad)) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_the_draws_come_from_the_generator():
    """Another generator seed gives other outputs in the stochastic modes, and the same in 'mean'."""
    for kind in ("linear", "conv"):
        layer, x = layer_and_input(kind, True)
        for mode in MODES:
            a = layer(x, mode, torch.Generator().manual_seed(3))
            b = layer(x, mode, torch.Generator().manual_seed(4))
            assert torch.equal(a, b) == (mode == "mean")


def test_wrong_weight_dimensions_are_refused_and_the_base_is_abstract():
    with pytest.raises(GapbenchError, match=r"ProbLinear needs a 2-D weight \(out, in\); got shape \(2, 3, 1, 1\)\."):
        ProbLinear(_gaussian((2, 3, 1, 1), 0))
    with pytest.raises(GapbenchError, match=r"ProbConv2d needs a 4-D kernel \(out, in, kh, kw\); got shape \(2, 3\)\."):
        ProbConv2d(_gaussian((2, 3), 0))
    from gapbench.pacbayes.layers import ProbLayer
    with pytest.raises(TypeError, match="abstract"):
        ProbLayer(_gaussian((2, 3), 0), None, 2, "weight (out, in)")
