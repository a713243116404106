import pytest
import torch
from torch import nn

from gapbench.errors import GapbenchError
from gapbench.layers import fold_batchnorm, weight_layers


def _bn_net():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(3 * 4 * 4, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(),
                          nn.Linear(5, 3))
    model.train()
    for _ in range(3):  # give the BN layers non-trivial running statistics
        model(torch.randn(16, 2, 8, 8, generator=gen) * 2 + 1)
    with torch.no_grad():
        for bn in (model[1], model[6]):
            bn.weight.uniform_(0.5, 2, generator=gen)
            bn.bias.uniform_(-1, 1, generator=gen)
    return model.eval()


def test_bn_folding_preserves_outputs_and_leaves_model_alone():
    model = _bn_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(7, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    folded = fold_batchnorm(model)
    assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in folded.modules())


def test_weight_layers_order_kinds_and_shapes():
    layers = weight_layers(_bn_net(), input_shape=(2, 8, 8))
    assert [layer.kind for layer in layers] == ["conv", "linear", "linear"]
    assert layers[0].input_shape == (2, 8, 8) and layers[1].input_shape == (48,)
    assert layers[1].bias is not None  # created by folding BN into a bias-free Linear


def test_unsupported_module_error_names_class_caller_and_supported():
    with pytest.raises(GapbenchError, match=r"spectral_product cannot handle module '1' of class Tanh\. "
                                            r"Supported module classes: .*Linear"):
        weight_layers(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), caller="spectral_product")
