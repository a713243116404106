"""Every experiment parameter has a declared type and range; a bad --set value is refused by name, exit 2."""

import pytest
from click.testing import CliRunner

from gapbench.cli import main
from gapbench.errors import ConfigError
from gapbench.experiments import EXPERIMENTS, get
from gapbench.experiments.params import Param, check_params, count, fraction, positive


def out_of_range(param: Param) -> str:
    """A --set value that parses to the parameter's type but lies outside its declared range."""
    if param.choices:
        bad = "no_such_choice"
    elif param.kind is bool:
        bad = "maybe"
    elif param.kind is dict:
        bad = "[1, 2]"
    elif param.kind is str:
        bad = ""
    elif param.low is not None:
        bad = str(param.low if param.low_open else param.low - 1)
    else:
        bad = str(param.high + 1)
    return f"1,{bad}" if param.many and param.kind in (int, float) else bad


CASES = [(exp.name, key, param) for exp in (e.obj for e in EXPERIMENTS) for key, param in exp.spec.items()]


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("experiment, key, param", CASES, ids=[f"{e}-{k}" for e, k, _ in CASES])
def test_every_parameter_refuses_out_of_range_and_nan(tmp_path, experiment, key, param):
    preset = "smoke" if "smoke" in get(experiment).presets else "quick"
    values = [out_of_range(param)] + (["nan", "inf"] if param.kind in (int, float) else [])
    for value in values:
        code, out = invoke("report", experiment, "--preset", preset, "--set", f"{key}={value}", "--out", tmp_path)
        assert code == 2, (value, out)
        assert f"'{key}'" in out and "Traceback" not in out, (value, out)
    assert not (tmp_path / "gapbench.sqlite").exists(), "validation must come before the store is opened"


def test_spec_declares_every_preset_key_and_every_preset_is_valid():
    for entry in EXPERIMENTS:
        exp = entry.obj
        keys = {key for preset in exp.presets.values() for key in preset}
        assert keys == set(exp.spec), exp.name
        for preset in exp.presets:
            exp.params(preset)


@pytest.mark.parametrize("experiment, setting, message", [
    ("kkb2017-two-phase", "alpha=0.2,1.5", "The 'alpha' parameter of experiment 'kkb2017-two-phase' must be a "
                                           "non-empty list of values, each a finite float in (0, 1]. Got [0.2, 1.5]"),
    ("kkb2017-two-phase", "alpha=0", "'alpha'"),
    ("kkb2017-two-phase", "alpha=0.001,0.5", "must leave phase 1 at least one of the n_train=300 points "
                                             "(round(alpha * n_train) >= 1). Got [0.001] instead."),
    ("nk2019-slices", "resolution=0", "The 'resolution' parameter of experiment 'nk2019-slices' must be an int >= 2."),
    ("kkb2017-deep-paths", "n_population=0", "The 'n_population' parameter of experiment 'kkb2017-deep-paths'"),
    ("nk2019-hypersphere", "r_inner=nan", "The --set value for 'r_inner' must be finite (no nan or inf). Got 'nan'"),
    ("kkb2017-linear-memorization", "c=1,nan", "The --set value for 'c' must be finite"),
    ("nk2019-linear", "noise_var_scale=inf", "The --set value for 'noise_var_scale' must be finite"),
    ("kkb2017-deep-paths", 'data_options={"dim": NaN}', "The --set value for 'data_options' must be finite"),
])
def test_issue_examples(tmp_path, experiment, setting, message):
    code, out = invoke("run", experiment, "--preset", "smoke", "--set", setting, "--out", tmp_path)
    assert code == 2 and message in out, out


def test_none_unsets_an_optional_parameter_and_is_refused_for_the_others(tmp_path):
    """--set KEY=none (or null) is the preset's "not set" for an optional parameter, whatever its type."""
    exp = get("kkb2017-two-phase")
    assert exp.presets["ablation"]["normalize"] is not None
    for raw in ("none", "null", "None"):
        assert exp.params("ablation", {"normalize": raw})["normalize"] is None
        assert exp.params("ablation", {"standard_epochs": raw})["standard_epochs"] is None
    code, out = invoke("run", "kkb2017-two-phase", "--preset", "smoke", "--set", "lr=none", "--out", tmp_path)
    assert code == 2 and "The 'lr' parameter of experiment 'kkb2017-two-phase' must be a finite float > 0. " \
                          "Got None" in out, out


def test_param_ranges():
    assert count(2).accepts(2) and not count(2).accepts(1) and not count().accepts(1.0)
    assert not count().accepts(True)
    assert fraction(low_open=True).accepts(1.0) and not fraction(low_open=True).accepts(0.0)
    assert not fraction(high_open=True).accepts(1.0)
    assert positive().accepts(3) and not positive().accepts(float("nan")) and not positive().accepts(0.0)
    assert not positive(many=True).accepts([]) and positive(many=True).accepts([1.0, 2])
    with pytest.raises(ConfigError, match="The 'lr' parameter of experiment 'x' must be a finite float > 0"):
        check_params({"lr": -1.0}, {"lr": positive()}, "x")


def test_choices_match_the_registries():
    from gapbench.models import INITS
    from gapbench.train import LOSSES
    assert set(get("nk2019-fig1").spec["loss"].choices) == set(LOSSES)
    assert set(get("nk2019-hypersphere").spec["init"].choices) == set(INITS)
    assert set(get("nk2019-slices").spec["init"].choices) == set(INITS)
