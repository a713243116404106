import io
import json
import math
import os

import pytest
import torch

from gapbench import checkpoint
from gapbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig, signature
from gapbench.errors import GapbenchError
from gapbench.models import build_model
from gapbench.trained import Run

MLP = RunConfig(data=DataConfig(name="mnist", n_train=20), model=ModelConfig(depth=2, width=8, init_seed=3),
                train=TrainConfig(lr=0.05, sgd_seed=7))
CNN = RunConfig(model=ModelConfig(arch="cnn", width=2, options={"fc_width": 8}))


def trained_run(cfg: RunConfig, input_shape, num_classes=3) -> Run:
    """A Run whose weights moved away from init (as after training), built without the global RNG."""
    model = build_model(cfg.model, input_shape, num_classes)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return Run(model=model, init_state=init, config=cfg, train_indices=torch.tensor([5, 1, 9, 3]),
               status="converged", reason="margin 99% >= 10 at epoch 4", epochs=4, steps=8, seconds=0.5,
               history=[{"epoch": 0, "loss": 2.3, "sgd_loss": math.nan}, {"epoch": 4, "loss": 0.1}],
               extra={"engine": "PlainEngine", "gates": torch.ones(2)})


def assert_same_run(a: Run, b: Run) -> None:
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert a.init_state.keys() == b.init_state.keys()
    assert all(torch.equal(a.init_state[k], b.init_state[k]) for k in a.init_state)
    assert a.config == b.config and b.signature == signature(a.config)
    assert torch.equal(a.train_indices, b.train_indices)
    for name in ("status", "reason", "epochs", "steps", "seconds"):
        assert getattr(a, name) == getattr(b, name)
    assert b.history[1] == a.history[1] and math.isnan(b.history[0]["sgd_loss"])
    assert b.extra["engine"] == a.extra["engine"] and torch.equal(b.extra["gates"], a.extra["gates"])


def test_round_trip_mlp(tmp_path):
    run = trained_run(MLP, (6,))
    path = checkpoint.save(tmp_path / "sub" / "run.pt", run)
    loaded = checkpoint.load(path, expected_signature=signature(MLP))
    assert_same_run(run, loaded)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run.model(x), loaded.model(x))
    # the init model rebuilds the very initial weights
    assert torch.equal(loaded.init_model()(x), run.init_model()(x))


def test_payload_is_weights_only_and_carries_provenance(tmp_path):
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (6,)))
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == checkpoint.FORMAT_VERSION
    assert json.loads(payload["config"])["train"]["lr"] == 0.05
    assert payload["input_shape"] == [6] and payload["num_classes"] == 3
    assert {"gapbench", "git_sha", "torch", "python", "hostname", "time"} <= set(payload["provenance"])


@pytest.mark.parametrize("side", [12, 13])  # 13 -> 12: 'same'-padded convs + two pools give equal shapes
def test_round_trip_cnn_infers_input_shape(tmp_path, side):
    run = trained_run(CNN, (1, side, side), num_classes=4)
    assert checkpoint.infer_shapes(run.model) == ((1, 12, 12), 4)
    loaded = checkpoint.load(checkpoint.save(tmp_path / "cnn.pt", run))
    assert_same_run(run, loaded)


def test_explicit_shapes_are_checked_against_the_model(tmp_path):
    run = trained_run(MLP, (6,))
    with pytest.raises(GapbenchError, match=r"Cannot checkpoint to .*input_shape=\(7,\).*Pass the right"):
        checkpoint.save(tmp_path / "run.pt", run, input_shape=(7,), num_classes=3)
    assert not list(tmp_path.iterdir())


def test_unreadable_extra_is_refused(tmp_path):
    run = trained_run(MLP, (6,))
    run.extra["optimizer"] = object()
    with pytest.raises(GapbenchError, match=r"run\.extra\['optimizer'\] is a object"):
        checkpoint.save(tmp_path / "run.pt", run)


def test_missing_file(tmp_path):
    with pytest.raises(GapbenchError, match=r"Checkpoint file '.*nope\.pt' does not exist\. Check the path"):
        checkpoint.load(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (6,)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GapbenchError, match=r"'.*run\.pt' is damaged: its zip archive cannot be read \(truncated"):
        checkpoint.load(path)


def test_non_checkpoint_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(GapbenchError, match="notes.pt' is not a gapbench checkpoint: .* starts with b'hell'"):
        checkpoint.load(text)
    other = tmp_path / "tensor.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(GapbenchError, match="no gapbench 'format' marker"):
        checkpoint.load(other)


def test_tampered_config_fails_signature_check(tmp_path):
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (6,)))
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    config["train"]["lr"] = 0.5
    payload["config"] = json.dumps(config)
    torch.save(payload, path)
    with pytest.raises(GapbenchError, match=r"stores signature .* but its config hashes to .*not measured"):
        checkpoint.load(path)


def test_expected_signature_mismatch(tmp_path):
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (6,)))
    with pytest.raises(GapbenchError, match=r"holds run '[0-9a-f]{16}', not the expected 'abc'"):
        checkpoint.load(path, expected_signature="abc")


def test_crash_during_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (6,)))
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[:100])     # half-written, then the process "dies"
        raise OSError("disk full")

    real_save = torch.save
    monkeypatch.setattr(torch, "save", crash)
    changed = trained_run(MLP, (6,))
    changed.reason = "a newer run"
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, changed)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.pt"]          # no temp file left behind
    assert checkpoint.load(path).reason == "margin 99% >= 10 at epoch 4"


def test_round_trip_of_a_fitted_run(tmp_path):
    """What train.fit returns (history, extra, indices) checkpoints and loads unchanged."""
    from gapbench.data.types import Dataset, Split
    from gapbench.train import fit
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 5, generator=gen), torch.randint(0, 3, (24,), generator=gen)
    train = Split(x, y, torch.arange(100, 124), "train", "train")
    data = Dataset("blobs", train, Split(x, y, torch.arange(24), "test", "test"), 3, (5,))
    cfg = RunConfig(model=ModelConfig(depth=1, width=4), train=TrainConfig(stop="epochs", max_epochs=2,
                                                                           batch_size=8))
    run = fit(cfg, data, progress=False)
    loaded = checkpoint.load(checkpoint.save(tmp_path / "fit.pt", run), expected_signature=run.signature)
    assert torch.equal(loaded.model(x), run.model(x)) and torch.equal(loaded.train_indices, train.indices)
    assert len(loaded.history) == len(run.history)
    for before, after in zip(run.history, loaded.history, strict=True):
        assert list(before) == list(after)
        assert all(before[k] == after[k] or (math.isnan(before[k]) and math.isnan(after[k])) for k in before)
    assert loaded.extra == run.extra and loaded.status == run.status


def test_init_source_round_trip_and_old_files(tmp_path):
    """A run-derived init_source (with its parent's chain) survives save/load; a file without the field
    (written before it existed) loads as kind 'unknown'."""
    from gapbench.trained import data_ancestry, seeded_source, source_from_run
    parent = trained_run(MLP, (6,))
    parent.init_source = seeded_source(3)
    child = trained_run(MLP, (6,))
    child.init_source = source_from_run(parent, "train")
    loaded = checkpoint.load(checkpoint.save(tmp_path / "child.pt", child))
    got = loaded.init_source
    assert got["kind"] == "run" and got["signature"] == parent.signature and got["source"] == "train"
    assert torch.equal(got["train_indices"], torch.tensor([5, 1, 9, 3]))
    assert got["init_source"] == {"kind": "seeded", "seed": 3}
    points, root = data_ancestry(got)
    assert root == "seeded" and [(sig, pool) for sig, pool, _ in points] == [(parent.signature, "train")]
    path = tmp_path / "old.pt"            # a format-1 file: no init_source, no checksum
    payload = torch.load(checkpoint.save(path, child), weights_only=True)
    del payload["init_source"], payload["weights_sha256"]
    payload["format_version"] = 1
    torch.save(payload, path)
    assert checkpoint.load(path).init_source == {"kind": "unknown"}


def test_unreadable_init_source_is_refused(tmp_path):
    run = trained_run(MLP, (6,))
    run.init_source = {"kind": "run", "parent": object()}
    with pytest.raises(GapbenchError, match=r"run\.init_source\['parent'\] is a object"):
        checkpoint.save(tmp_path / "run.pt", run)


def _edit_payload(path, edit):
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def _flip_first_weight(payload):
    key = sorted(payload["state_dict"])[0]
    payload["state_dict"][key].view(-1)[0] += 1e-3


@pytest.mark.parametrize("edit", [
    _flip_first_weight,
    lambda p: p["init_state"][sorted(p["init_state"])[-1]].view(-1).__setitem__(0, 7.0),
    lambda p: p["train_indices"].__setitem__(0, 10 ** 6),
    lambda p: p["state_dict"].update({k + "_renamed": v for k, v in [p["state_dict"].popitem()]}),
    lambda p: p.update(init_source={"kind": "seeded", "seed": 12345}),
], ids=["weight", "init", "train_indices", "renamed", "init_source"])
def test_tampered_tensors_fail_the_checksum(tmp_path, edit):
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (6,)))
    assert checkpoint.is_verified(path)
    _edit_payload(path, edit)
    with pytest.raises(GapbenchError, match=r"'.*run\.pt' fails its weight checksum: .* not measured"):
        checkpoint.load(path)


def test_checksum_matches_an_independent_digest(tmp_path):
    """Recompute SHA-256 with numpy bytes and hashlib directly, in the documented order."""
    import hashlib
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (6,)))
    payload = torch.load(path, weights_only=True)
    digest = hashlib.sha256()
    for section in ("state_dict", "init_state"):
        for key in sorted(payload[section]):
            array = payload[section][key].numpy()
            digest.update(f"{section}/{key}:{payload[section][key].dtype}:{list(array.shape)}\n".encode())
            digest.update(array.tobytes())
    indices = payload["train_indices"].numpy()
    digest.update(f"train_indices/:{payload['train_indices'].dtype}:{list(indices.shape)}\n".encode())
    digest.update(indices.tobytes())
    assert payload["init_source"]["kind"] in ("seeded", "unknown")     # a flat dict of plain values here
    for key in sorted(payload["init_source"]):          # init_source's leaves, in sorted key order
        value = payload["init_source"][key]
        digest.update(f"init_source/{key}={type(value).__name__}:{value!r}\n".encode())
    assert payload["weights_sha256"] == digest.hexdigest()
    assert payload["format_version"] == checkpoint.FORMAT_VERSION == 2


def test_format_1_files_load_unverified(tmp_path):
    run = trained_run(MLP, (6,))
    path = checkpoint.save(tmp_path / "run.pt", run)

    def to_format_1(payload):
        del payload["weights_sha256"]
        payload["format_version"] = 1
    _edit_payload(path, to_format_1)
    assert_same_run(checkpoint.load(path), run)
    assert not checkpoint.is_verified(path)
    _edit_payload(path, lambda p: p.update(format_version=2))
    with pytest.raises(GapbenchError, match="checksum 'weights_sha256' is missing"):
        checkpoint.load(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def _foreign_files(tmp_path):
    """(file, words the message must contain) for every kind of file that is not a checkpoint."""
    import pickle
    good = checkpoint.save(tmp_path / "good.pt", trained_run(MLP, (6,)))
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:300])
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 4)
    torch.save({"x": _RunsCode()}, tmp_path / "code.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "tensor.pt")
    (tmp_path / "README.md").write_text("# notes\n")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    return [("truncated.pt", "is damaged"), ("random.pt", "starts with b'\\x00\\x01\\x02\\x03'"),
            ("code.pt", "holds pickled Python objects"), ("tensor.pt", "no gapbench 'format' marker"),
            ("README.md", "starts with b'# no'"), ("plain.pkl", "is not a gapbench checkpoint")]


def test_unreadable_files_get_gapbench_words_and_no_warning(tmp_path, recwarn):
    for name, words in _foreign_files(tmp_path):
        with pytest.raises(GapbenchError) as info:
            checkpoint.load(tmp_path / name)
        message = str(info.value)
        assert words in message, message
        assert not any(text in message for text in ("weights_only", "PyTorch", "miniz", "delete it")), message
        if "is not a gapbench checkpoint" in message:              # no advice to retrain a README
            assert "retrain" not in message.lower(), message
    assert not [w for w in recwarn if not issubclass(w.category, ResourceWarning)]


def test_measure_cli_refuses_bad_files_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from gapbench.cli import main
    for name, words in _foreign_files(tmp_path):
        result = CliRunner().invoke(main, ["measure", str(tmp_path / name)])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and words in text, text
        assert "Traceback" not in text and "Warning" not in text and "weights_only" not in text
        assert text.startswith("error:") and text.count("error:") == 1
    path = tmp_path / "good.pt"
    _edit_payload(path, _flip_first_weight)
    result = CliRunner().invoke(main, ["measure", str(path)])
    assert result.exit_code == 2 and "fails its weight checksum" in " ".join(result.output.split())


def test_measure_marks_format_1_checkpoints_unverified(tmp_path, data_dir):
    from click.testing import CliRunner

    from gapbench.cli import main
    path = checkpoint.save(tmp_path / "run.pt", trained_run(MLP, (784,), num_classes=10))
    args = ["measure", str(path), "-q", "frobenius_product", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "unverified" not in result.output

    def to_format_1(payload):
        del payload["weights_sha256"]
        payload["format_version"] = 1
    _edit_payload(path, to_format_1)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "predates weight checksums" in result.stderr
