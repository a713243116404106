"""Checkpoint checksums pinned: the SHA-256 that checkpoint.weights_digest and pacbayes.store's digest give for
fixed payloads, as computed by the code that wrote the checkpoints already on disk (before the two digest loops
were merged into gapbench.digest). A change here makes every saved checkpoint fail its checksum on load."""

import hashlib

import pytest
import torch

from gapbench import checkpoint
from gapbench.pacbayes import store

# Hex digests computed with gapbench at c401db0 (checkpoint.weights_digest, pacbayes.store._digest), before
# the refactor; they must never change.
PINNED_CHECKPOINT = {
    "seeded": "011d017702755363ce4b2e014b74df41e2eaf739686ac7efdb85826c19401505",
    "no_init_source": "4bae397ac19350d823fc08b4fd2c3d70b410c335e958c4d6933e3344e53ad979",
}
PINNED_PACBAYES = {
    "trained": "d14f0eb91970c3234e6228866fd1fcd4b5bdf128202aa9ed79114667d54c3018",
    "data-free": "bb94245c627554965574d8ffd43a6ee44fdf0bb969de43d7766b5a62caa5e9ea",
}


def _state(offset: float) -> dict[str, torch.Tensor]:
    """Every dtype and layout a state_dict may hold: float32/64/16, int64, bool, 0-d, non-contiguous."""
    return {
        "b.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7 + offset,
        "a.bias": torch.tensor([1, -2], dtype=torch.int64),
        "c.running_mean": torch.linspace(-1.0, 1.0, 3, dtype=torch.float64) * (1 + offset),
        "d.transposed": (torch.arange(6, dtype=torch.float32).reshape(2, 3) - offset).T,   # non-contiguous
        "e.mask": torch.tensor([True, False, True]),
        "f.scalar": torch.tensor(3.5 + offset, dtype=torch.float16),
    }


def checkpoint_payload(kind: str) -> dict:
    payload = {"state_dict": _state(0.25), "init_state": _state(0.0), "train_indices": [4, 0, 7]}
    if kind == "seeded":
        payload["init_source"] = {"kind": "seeded", "seed": 3, "t": torch.tensor([1.0, 2.0]),
                                  "nested": {"z": [1, 2.5, None], "a": "x", 10: True}}
    return payload


def pacbayes_payload(kind: str) -> dict:
    if kind == "trained":
        record = {"kind": "trained", "train_indices": torch.tensor([3, 1, 2]), "pool": "train",
                  "source": "prior-abc.pt", "init_source": {"kind": "seeded", "seed": 0}}
    else:
        record = {"kind": "data-free", "init_source": {"kind": "seeded", "seed": 5}}
    return {"kind": "posterior", "model_config": '{"arch": "mlp", "depth": 1}', "input_shape": [1, 28, 28],
            "num_classes": 10, "prior_std": 0.03, "state_dict": _state(0.5),
            "split_spec": '{"prior_fraction": 0.5}', "prior_record": record,
            "bound_indices": torch.tensor([0, 5, 6], dtype=torch.int64), "training": '{"objective": "fquad"}',
            "history": [{"epoch": 0}], "provenance": {"git_sha": None}}


@pytest.mark.parametrize("kind", sorted(PINNED_CHECKPOINT))
def test_checkpoint_digest_is_pinned(kind):
    assert checkpoint.weights_digest(checkpoint_payload(kind)) == PINNED_CHECKPOINT[kind]


@pytest.mark.parametrize("kind", sorted(PINNED_PACBAYES))
def test_pacbayes_digest_is_pinned(kind):
    assert store._digest(pacbayes_payload(kind)) == PINNED_PACBAYES[kind]


def test_pacbayes_digest_matches_an_independent_digest():
    """The documented order recomputed with hashlib and numpy bytes directly (json.dumps for non-tensors)."""
    import json
    payload = pacbayes_payload("trained")
    digest = hashlib.sha256()

    def update(name, value):
        if isinstance(value, torch.Tensor):
            array = value.contiguous().numpy()
            digest.update(f"{name}:{value.dtype}:{list(array.shape)}\n".encode())
            digest.update(array.tobytes())
        else:
            digest.update(f"{name}={json.dumps(value, sort_keys=True, default=repr)}\n".encode())
    for key in sorted(payload["state_dict"]):
        update(f"state_dict/{key}", payload["state_dict"][key])
    update("bound_indices", payload["bound_indices"])
    for key in sorted(payload["prior_record"]):
        update(f"prior_record/{key}", payload["prior_record"][key])
    for key in ("model_config", "split_spec", "training", "kind", "prior_std", "input_shape", "num_classes"):
        update(key, payload[key])
    assert store._digest(payload) == digest.hexdigest()


@pytest.mark.parametrize("edit", [
    lambda p: p["state_dict"]["d.transposed"].__setitem__((0, 1), 9.0),
    lambda p: p["state_dict"].update({"e.mask": torch.tensor([True, True, True])}),
    lambda p: p["state_dict"].update({"f.scalar": p["state_dict"]["f.scalar"].reshape(1)}),      # shape only
    lambda p: p["state_dict"].update({"a.bias": p["state_dict"]["a.bias"].to(torch.int32)}),     # dtype only
    lambda p: p["init_source"]["nested"]["z"].__setitem__(2, 0),
], ids=["value", "bool", "shape", "dtype", "init_source_leaf"])
def test_checkpoint_digest_sees_every_change(edit):
    payload = checkpoint_payload("seeded")
    edit(payload)
    assert checkpoint.weights_digest(payload) != PINNED_CHECKPOINT["seeded"]


def test_named_sha256_against_hashlib_by_hand():
    """gapbench.digest's byte stream written out for two items: a non-contiguous int32 tensor, then a string."""
    from gapbench.digest import named_sha256
    tensor = torch.tensor([[1, 2], [3, 4]], dtype=torch.int32).T           # values in C order: 1, 3, 2, 4
    expected = hashlib.sha256(b"w:torch.int32:[2, 2]\n" + bytes([1, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0])
                              + b"tag=<'a'>\n").hexdigest()
    assert named_sha256([("w", tensor), ("tag", "a")], lambda value: f"<{value!r}>") == expected
    assert named_sha256([("tag", "a"), ("w", tensor)], lambda value: f"<{value!r}>") != expected     # order counts
