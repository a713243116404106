"""Typed quantity specs: their JSON form holds exactly the given fields (so job signatures are unchanged, see
test_job_signatures.py), reads back to the same spec, and a bad spec is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapbench.errors import ConfigError
from gapbench.experiments.quantities import (
    BoundSpec,
    DecompositionSpec,
    MeasureSpec,
    PerLayerSpec,
    from_json,
    to_json,
)

FIXTURE = json.loads((Path(__file__).parent / "data" / "job_signatures.json").read_text())


def test_json_form_holds_exactly_the_given_fields():
    assert to_json(MeasureSpec("spectral_product")) == {"measure": "spectral_product"}
    assert to_json(MeasureSpec("x", as_="y", params={"q": 0.1})) == {"measure": "x", "as": "y", "params": {"q": 0.1}}
    assert to_json(PerLayerSpec("dist_from_init_fro")) == {"per_layer": "dist_from_init_fro"}
    assert to_json(BoundSpec("heldout_kl", split="val", delta=0.05)) == {"bound": "heldout_kl", "split": "val",
                                                                          "delta": 0.05}
    assert to_json(DecompositionSpec("thm7", population="test", n_population=10)) == {
        "decomposition": "thm7", "population": "test", "n_population": 10}


def test_every_stored_quantity_reads_back_to_the_same_json():
    seen = 0
    for rows in FIXTURE.values():
        for _, config in rows:
            for q in json.loads(config).get("quantities", []):
                assert to_json(from_json(q)) == q
                seen += 1
    assert seen > 100


def test_a_bad_spec_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"Unknown field\(s\) \['needs_init'\] in the quantity spec .* Known "
                                          r"fields of a 'bound' spec: \['as', 'bound', 'delta', 'params', 'split'\]"):
        from_json({"bound": "heldout_kl", "needs_init": True})
    with pytest.raises(ConfigError, match=r"names no kind of quantity. Give one of the keys \['measure', "
                                          r"'per_layer', 'bound', 'decomposition'\]"):
        from_json({"as": "x"})


def test_specs_are_frozen():
    with pytest.raises(AttributeError):
        MeasureSpec("x").measure = "y"
