"""Every experiment's job configs and their signatures are those main produced before the package was
restructured (issue 12): stored results stay valid. tests/data/job_signatures.json was captured from main
at 5890988 by expanding every preset of every registered experiment, and again from main at 813d5d8 (whose
new presets and parameters changed some configs) when it was merged into the restructured package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapbench.config import canonical_json, signature
from gapbench.experiments import EXPERIMENTS, get

FIXTURE = json.loads((Path(__file__).parent / "data" / "job_signatures.json").read_text())


def test_fixture_covers_every_experiment_and_preset():
    assert sorted(FIXTURE) == sorted(f"{e.name}/{p}" for e in EXPERIMENTS for p in e.obj.presets)


@pytest.mark.parametrize("key", sorted(FIXTURE))
def test_job_configs_and_signatures_unchanged(key):
    name, preset = key.split("/")
    exp = get(name)
    configs = exp.points(exp.params(preset))
    assert [canonical_json(c) for c in configs] == [config for _, config in FIXTURE[key]]
    assert [signature(c) for c in configs] == [sig for sig, _ in FIXTURE[key]]
