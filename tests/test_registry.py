"""The one registry path: registration (direct or as a decorator, metadata required and checked) and the one
lookup-check-call of keyword parameters that measure() and bound() share."""

from __future__ import annotations

import pytest
import torch

from gapbench.bounds import bound
from gapbench.errors import GapbenchError
from gapbench.measures import measure
from gapbench.registry import Registry, check_params


def test_register_directly_or_as_a_decorator():
    reg = Registry("thing", required=("reference",), choices={"kind": ("a", "b")})
    assert reg.register("one", len, reference="r", kind="a") is len

    @reg.register("two", reference="r", kind="b")
    def two():
        return 2
    assert reg.get("two").obj is two and reg.get("one").kind == "a" and reg.names() == ["one", "two"]
    with pytest.raises(TypeError, match=r"thing 'three' is missing metadata \['reference'\]"):
        reg.register("three", len, kind="a")
    with pytest.raises(TypeError, match=r"thing 'four': kind 'c' is not one of \('a', 'b'\)"):
        reg.register("four", len, reference="r", kind="c")
    with pytest.raises(GapbenchError, match=r"thing 'one' is registered twice"):
        reg.register("one", len, reference="r", kind="a")
    with pytest.raises(GapbenchError, match=r"Unknown thing 'on'\. Did you mean 'one'\?"):
        reg.get("on")


def test_check_params_messages():
    with pytest.raises(GapbenchError, match=r"The parameter\(s\) \['z'\] of f\(\) are not accepted\. Accepted "
                                            r"parameters: a, b\. Remove or rename them\."):
        check_params({"z": 1}, {"a": None, "b": None}, "f()")
    with pytest.raises(GapbenchError, match=r"f\(\) needs the parameter\(s\) \['a'\]\. Accepted parameters: a"):
        check_params({}, {"a": None}, "f()", required=["a"])
    check_params({"z": 1}, {"a": None}, "f()", open_ended=True)


def test_measure_and_bound_share_the_checks():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    data = (torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 0, 1, 1]))
    for call, where in ((lambda **kw: measure("error", model, data, **kw), r"measure\('error'\)"),
                        (lambda **kw: bound("heldout_kl", model, data, delta=0.05, **kw), r"bound\('heldout_kl'\)")):
        with pytest.raises(GapbenchError, match=rf"The parameter\(s\) \['bogus'\] of {where} are not accepted"):
            call(bogus=1)
    for call, where in ((lambda d: measure("error", model, d), r"measure\('error'\)"),
                        (lambda d: bound("heldout_kl", model, d, delta=0.05), r"bound\('heldout_kl'\)")):
        with pytest.raises(GapbenchError, match=rf"The 'data' parameter of {where} must be a Split or an \(x, y\) "
                                                r"pair of tensors\. Got 'list' instead"):
            call([1, 2, 3])
