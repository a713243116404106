import pytest

from gapbench.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    Runtime,
    TrainConfig,
    canonical,
    from_dict,
    replace_path,
    signature,
    to_dict,
)
from gapbench.errors import ConfigError


def test_signature_ignores_defaults_and_is_stable():
    assert signature(RunConfig()) == signature(RunConfig(train=TrainConfig(lr=0.1)))
    assert canonical(RunConfig()) == {}


def test_signature_changes_with_results_fields():
    base = signature(RunConfig())
    assert signature(RunConfig(train=TrainConfig(sgd_seed=1))) != base
    assert signature(RunConfig(data=DataConfig(subset_seed=1))) != base
    assert signature(RunConfig(model=ModelConfig(init_seed=1))) != base


def test_runtime_is_not_a_results_field():
    assert "device" not in to_dict(RunConfig())
    assert Runtime(device="cuda", workers=8).device == "cuda"


def test_dict_round_trip():
    cfg = RunConfig(data=DataConfig(n_train=128, options={"dim": 5}), model=ModelConfig(depth=3, bias=False))
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
    assert signature(from_dict(RunConfig, to_dict(cfg))) == signature(cfg)


def test_from_dict_unknown_field_names_it():
    with pytest.raises(ConfigError, match=r"Unknown field\(s\) \['lrr'\] for TrainConfig"):
        from_dict(RunConfig, {"train": {"lrr": 0.1}})


def test_replace_path():
    cfg = replace_path(RunConfig(), "train.lr", 0.5)
    assert cfg.train.lr == 0.5
    cfg = replace_path(cfg, "data.options.dim", 7)
    assert cfg.data.options == {"dim": 7}
    with pytest.raises(ConfigError, match="Unknown config key 'trian'"):
        replace_path(cfg, "trian.lr", 1)
