import gzip
import json
import math
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
        expected = ho.heldout_bound(name, 500, 12, delta=0.05, family_size=10)
        assert b.value == expected.value and b.delta == 0.05 and b.value >= cert.empirical_error
        assert b.value >= cert.bounds[cert.headline].value  # the headline, chosen in advance, is the minimum
    assert "var_assumed" not in cert.bounds["heldout_bernstein"].terms  # assumption-free by default
    assert cert.headline == "heldout_binomial"
    assert cert.bounds["heldout_binomial"].value == pytest.approx(ho.heldout_binomial_value(500, 12, 0.005))


def test_certificate_as_dict_and_format():
    cert = certify(argmax_model(), heldout_split(200, 3), delta=0.1)
    d = cert.as_dict()
    json.dumps(d)
    assert d["headline"] == "heldout_binomial" and set(d["bounds"]) == set(BOUND_NAMES)
    assert d["headline_value"] == cert.bounds["heldout_binomial"].value and "tightest" not in d
    text = cert.format()
    assert "n = 200" in text and "errors k = 3" in text and "<- headline (exact binomial tail" in text
    assert all(name in text for name in BOUND_NAMES) and "note:" not in text


def test_certificate_prints_an_assumed_variance_and_a_bound_below_k_over_n():
    split = heldout_split(40, 20)
    cert = certify(argmax_model(), split, delta=0.95, assume_var=1e-4)
    kkb = cert.bounds["heldout_bernstein"]
    assert kkb.terms["var_assumed"] == 1e-4
    assert kkb.value == ho.heldout_bound("heldout_bernstein", 40, 20, delta=0.95, assume_var=1e-4).value
    assert cert.bounds["heldout_binomial"].terms["below_empirical"] == 1.0  # Bin⁻ at δ = 0.95 < k/n
    text = cert.format()
    assert "note: heldout_bernstein assumes Var ≤ 0.0001 for the 0-1 loss of f" in text
    binomial = cert.bounds["heldout_binomial"].value
    assert f"note: heldout_binomial = {binomial:.5f} is below the empirical error 0.50000" in text
    assert sum(b.terms["below_empirical"] for b in cert.bounds.values()) == 1.0
    json.dumps(cert.as_dict())


def test_certificate_refuses_a_headline_above_another_bound():
    cert = certify(argmax_model(), heldout_split(100, 5), delta=0.05)
    bounds = dict(cert.bounds)
    bounds["heldout_binomial"] = ho.heldout_bound("heldout_binomial", 100, 5, delta=0.05 / 1000)  # looser
    with pytest.raises(RuntimeError, match=r"headline heldout_binomial = .* exceeds heldout_kl"):
        Certificate(100, 5, 0.05, 0.05, 1, bounds)
    # a bound under an extra assumption may lie below the headline: reported, not checked
    bounds = dict(cert.bounds, heldout_bernstein=ho.heldout_bound(
        "heldout_bernstein", 100, 5, delta=0.05, assume_var=1e-9))
    assert Certificate(100, 5, 0.05, 0.05, 1, bounds).bounds["heldout_bernstein"].value < cert.bounds[
        "heldout_binomial"].value


def test_certify_with_an_astronomical_family():
    cert = certify(argmax_model(), heldout_split(200, 3), delta=1e-300, family_size=10**1000)
    assert all(math.isfinite(b.value) or name == "heldout_empirical_bernstein"
               for name, b in cert.bounds.items())
    assert cert.bounds["heldout_binomial"].terms["log_family_size"] == pytest.approx(1000 * math.log(10))
    assert "|F| = 10^1000.00" in cert.format()
    assert json.loads(json.dumps(cert.as_dict()))["family_size"] == 10**1000


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
    with pytest.raises(GapbenchError, match=r"The 'assume_var' parameter of certify\(\) must be None"):
        certify(argmax_model(), split, assume_var=-0.1)


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
