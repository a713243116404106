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


@pytest.mark.parametrize("shape, padding, side", [((1, 28, 28), "same", 7), ((1, 28, 28), "valid", 4),
                                                  ((3, 32, 32), "same", 8), ((3, 32, 32), "valid", 5)])
def test_cnn_takes_mnist_and_cifar10_shapes(shape, padding, side):
    """Side after two (5x5 conv, 2x2 pool) blocks, by hand: same 28->14->7, 32->16->8; valid 28->24->12->8->4,
    32->28->14->10->5."""
    cfg = ModelConfig(arch="cnn", width=2, options={"fc_width": 8, "conv2_width": 3, "padding": padding})
    model = build_model(cfg, shape, 10)
    assert model[0].in_channels == shape[0] and model[7].in_features == 3 * side * side
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_bad_arch_and_init_messages():
    with pytest.raises(GapbenchError, match="Unknown architecture 'mpl'. Did you mean 'mlp'"):
        build_model(ModelConfig(arch="mpl"), (4,), 2)
    with pytest.raises(GapbenchError, match="The 'init' parameter of ModelConfig must be one of"):
        build_model(ModelConfig(init="xavier"), (4,), 2)


# PBB's CNN (pbb/models.py CNNet4l) at seed 0: parameter names and shapes that saved checkpoints carry, and
# Σ|w| per tensor as built at c401db0, before gapbench.pacbayes.pbb_cnn became a ModelConfig with layout 'pbb'.
PBB_CNN_SEED0 = {"0.weight": ((32, 1, 3, 3), 47.56093341129599), "0.bias": ((32,), 3.9336500596255064),
                 "2.weight": ((64, 32, 3, 3), 541.9706907133336), "2.bias": ((64,), 1.7821289859712124),
                 "6.weight": ((128, 9216), 6145.225663647909), "6.bias": ((128,), 0.6340182459307471),
                 "8.weight": ((10, 128), 55.35067165885994), "8.bias": ((10,), 0.4853702266700566)}


def test_pbb_layout_is_pacbayes_pbb_cnn_with_pinned_names_shapes_and_init():
    from gapbench.pacbayes import pbb_cnn
    cfg = ModelConfig(arch="cnn", width=32, options={"layout": "pbb", "conv2_width": 64, "fc_width": 128})
    built, pbb = build_model(cfg, (1, 28, 28), 10).state_dict(), pbb_cnn(seed=0).state_dict()
    assert list(built) == list(pbb) == list(PBB_CNN_SEED0)
    for name, (shape, abs_sum) in PBB_CNN_SEED0.items():
        assert torch.equal(built[name], pbb[name]) and tuple(pbb[name].shape) == shape
        assert float(pbb[name].double().abs().sum()) == pytest.approx(abs_sum, rel=1e-6)
    layers = [type(m).__name__ for m in pbb_cnn(seed=0)]
    assert layers == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]
