import math

import pytest
import torch

from gapbench.config import ModelConfig
from gapbench.errors import GapbenchError
from gapbench.models import build_model


def test_mlp_shape_and_bias():
    model = build_model(ModelConfig(depth=5, width=32, bias=False, init="glorot_uniform"), (784,), 10)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6 and all(m.bias is None for m in linears)
    assert model(torch.zeros(3, 784)).shape == (3, 10)


def test_glorot_uniform_range_and_seed():
    cfg = ModelConfig(depth=1, width=50, init="glorot_uniform", init_seed=3)
    w = build_model(cfg, (20,), 4)[1].weight
    bound = math.sqrt(6 / (20 + 50))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert torch.equal(w, build_model(cfg, (20,), 4)[1].weight)
    other = build_model(ModelConfig(depth=1, width=50, init="glorot_uniform", init_seed=4), (20,), 4)[1].weight
    assert not torch.equal(w, other)


def test_init_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_model(ModelConfig(), (10,), 3)
    assert torch.equal(torch.rand(3), expected)


def test_cnn_forward():
    model = build_model(ModelConfig(arch="cnn", width=4, options={"fc_width": 16}), (1, 28, 28), 10)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_bad_arch_and_init_messages():
    with pytest.raises(GapbenchError, match="Unknown architecture 'mpl'. Did you mean 'mlp'"):
        build_model(ModelConfig(arch="mpl"), (4,), 2)
    with pytest.raises(GapbenchError, match="The 'init' parameter of ModelConfig must be one of"):
        build_model(ModelConfig(init="xavier"), (4,), 2)
