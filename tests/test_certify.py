import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_bounds import argmax_model
from torch import nn

from gapbench.bounds import heldout as ho
from gapbench.certificate import BOUND_NAMES, Certificate, certify
from gapbench.data.types import Split
from gapbench.errors import GapbenchError
from gapbench.overlap import check_disjoint

torch.set_num_threads(1)


def heldout_split(n: int, wrong: int, source: str = "test", offset: int = 0) -> Split:
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(n))
    y = x.argmax(1)
    y[:wrong] = 1 - y[:wrong]
    return Split(x, y, torch.arange(offset, offset + n), source, "test" if source == "test" else "val",
                 pool=f"mnist:{source}")


def test_certify_reports_every_heldout_bound():
    cert = certify(argmax_model(), heldout_split(500, 12), delta=0.05, family_size=10)
    assert isinstance(cert, Certificate)
    assert (cert.n, cert.errors, cert.empirical_error) == (500, 12, 12 / 500)
    assert tuple(cert.bounds) == BOUND_NAMES
    for name, b in cert.bounds.items():
        expected = ho.heldout_bound(
            name, 500, 12, delta=0.05, family_size=10, var=0.25 if name == "heldout_bernstein" else None
        )
        assert b.value == expected.value and b.delta == 0.05 and b.value >= cert.empirical_error
    assert cert.bounds["heldout_bernstein"].terms["var_assumed"] == 0.25
    assert cert.tightest == cert.headline == "heldout_binomial"
    assert cert.bounds["heldout_binomial"].value == pytest.approx(ho.heldout_binomial_value(500, 12, 0.005))


def test_certificate_as_dict_and_format():
    cert = certify(argmax_model(), heldout_split(200, 3), delta=0.1)
    d = cert.as_dict()
    json.dumps(d)
    assert d["tightest"] == "heldout_binomial" and set(d["bounds"]) == set(BOUND_NAMES)
    text = cert.format()
    assert "n = 200" in text and "errors k = 3" in text and "<- tightest valid bound" in text
    assert all(name in text for name in BOUND_NAMES)


def test_certify_accepts_a_tuple_and_validates():
    split = heldout_split(50, 1)
    assert certify(argmax_model(), (split.x, split.y)).bounds == certify(argmax_model(), split).bounds
    with pytest.raises(
        GapbenchError, match=r"The 'delta' parameter of certify\(\) must be a float in \(0, 1\)"
    ):
        certify(argmax_model(), split, delta=0.0)
    with pytest.raises(
        GapbenchError, match=r"The 'family_size' parameter of certify\(\) must be an int >= 1"
    ):
        certify(argmax_model(), split, family_size=0)


def test_check_disjoint_refuses_overlap():
    train_indices = torch.arange(0, 1000)
    val = heldout_split(100, 0, source="train", offset=950)  # 50 of its points are training points
    with pytest.raises(
        GapbenchError,
        match=r"shares 50 of its 100 points with the 1000 training points.*"
        r"--split test",
    ):
        check_disjoint(train_indices, val, train_pool="mnist:train")
    disjoint = heldout_split(100, 0, source="train", offset=1000)
    assert check_disjoint(train_indices, disjoint, train_pool="mnist:train") == (
        "checked: disjoint from the 1000 training points")
    other_pool = heldout_split(100, 0, source="test", offset=0)    # same positions, the test file
    assert check_disjoint(train_indices, other_pool, train_pool="mnist:train") == (
        "checked: drawn from 'mnist:test', not from 'mnist:train', the pool of the 1000 training points")


def read_idx_gz(path: Path, count: int) -> torch.Tensor:
    """The first `count` items of a gzipped IDX file (big-endian header: magic, one uint32 per dimension)."""
    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    item = int(np.prod(dims[1:])) if ndim > 1 else 1
    start = 4 + 4 * ndim
    return torch.from_numpy(np.frombuffer(raw, np.uint8, count * item, start).copy()).reshape(
        count, *dims[1:]
    )


MNIST = Path(os.environ.get("GAPBENCH_DATA", "/nonexistent")) / "mnist"


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="MNIST not found: set GAPBENCH_DATA to a folder with mnist/t10k-*-ubyte.gz",
)
def test_certify_on_mnist_test_points():
    x = read_idx_gz(MNIST / "t10k-images-idx3-ubyte.gz", 2000).float().reshape(2000, -1) / 255
    y = read_idx_gz(MNIST / "t10k-labels-idx1-ubyte.gz", 2000).long()
    x_fit, y_fit, x, y = x[1000:], y[1000:], x[:1000], y[:1000]  # fit and certify on disjoint points
    model = nn.Sequential(nn.Linear(784, 10))
    with torch.no_grad():  # a nearest-class-mean classifier: clearly better than chance
        means = torch.stack([x_fit[y_fit == c].mean(0) for c in range(10)])
        model[0].weight.copy_(means)
        model[0].bias.copy_(-0.5 * (means**2).sum(1))
    cert = certify(model, (x, y), delta=0.05)
    assert cert.n == 1000 and cert.empirical_error < 0.5
    assert (
        cert.empirical_error
        <= cert.bounds["heldout_binomial"].value
        <= cert.bounds["heldout_hoeffding"].value
    )
