"""Broken and hostile weight files, through `python cli.py run` as a user meets them: refused with one
line naming the file, before any run is recorded; a pickle that would execute code never runs.

Loader-level tests of the same (and of missing models) are in tests/test_checkpoints.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from faults_helpers import cli, fetch, user_error
from transformers import GPT2Config

from engine.model.bundled import BUNDLED_DIR

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

QUICK = ["--problems", "1", "--methods", "zero", "--attention", "none"]


def no_runs(db) -> bool:
    return not db.exists() or fetch(db, "SELECT count(*) FROM runs") == [(0,)]


@pytest.fixture()
def tiny_copy(tmp_path):
    target = tmp_path / "tiny"
    shutil.copytree(BUNDLED_DIR, target)
    return target


def test_truncated_bundled_weights(tiny_copy, tmp_path):
    weights = tiny_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    db = tmp_path / "w"
    user_error(
        cli("run", "--checkpoint", tiny_copy, *QUICK, "--db", db), str(weights), "corrupted", "restore"
    )
    assert no_runs(db)


def test_bit_flipped_bundled_weights_are_caught_by_the_card_hash(tiny_copy, tmp_path):
    """Same size, valid header, wrong numbers: before, the run went ahead on garbage weights."""
    weights = tiny_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 4096, 8):
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    db = tmp_path / "w"
    user_error(
        cli("run", "--checkpoint", tiny_copy, *QUICK, "--db", db),
        str(weights),
        "differs from",
        "codi_card.json",
        "corrupted or was replaced",
    )
    assert no_runs(db)


def test_truncated_weights_without_a_recorded_hash(tiny_copy, tmp_path):
    card = json.loads((tiny_copy / "codi_card.json").read_text())
    del card["weights_sha256"]
    (tiny_copy / "codi_card.json").write_text(json.dumps(card))
    weights = tiny_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    user_error(
        cli("run", "--checkpoint", tiny_copy, *QUICK, "--db", tmp_path / "w"),
        "corrupted or truncated weight file",
        "restore it or retrain",
    )


def test_unreadable_model_card(tiny_copy, tmp_path):
    (tiny_copy / "codi_card.json").write_text("{not json")
    user_error(
        cli("run", "--checkpoint", tiny_copy, *QUICK, "--db", tmp_path / "w"),
        "codi_card.json is not valid JSON",
    )


# --- official (pickled) checkpoints --------------------------------------------------------------------
def _mark(path: str) -> None:
    with open(path, "w") as f:
        f.write("code ran")


class Payload:
    """Unpickling this calls _mark: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return _mark, (self.marker,)


@pytest.fixture()
def gpt2_dir(tmp_path, small_tokenizer):
    """A directory that looks like an official gpt2 checkpoint: base config, tokenizer, and (per test)
    weights."""
    path = tmp_path / "gpt2"
    path.mkdir()
    GPT2Config(
        vocab_size=len(small_tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2
    ).save_pretrained(path)
    small_tokenizer.save_pretrained(path)
    return path


def test_pickle_that_would_run_code_is_refused_and_never_runs(gpt2_dir, tmp_path):
    marker = tmp_path / "marker"
    torch.save({"prj.1.weight": torch.zeros(2), "payload": Payload(marker)}, gpt2_dir / "pytorch_model.bin")
    db = tmp_path / "w"
    user_error(
        cli("run", "--model", "gpt2", "--checkpoint", gpt2_dir, *QUICK, "--db", db),
        "pytorch_model.bin: refused",
        "could run code",
    )
    assert not marker.exists()
    assert no_runs(db)
    torch.load(
        gpt2_dir / "pytorch_model.bin", weights_only=False
    )  # the payload is real: unsafe loading runs it
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors"])
def test_truncated_official_checkpoint(gpt2_dir, tmp_path, name):
    weights = gpt2_dir / name
    if name.endswith(".bin"):
        torch.save({"prj.1.weight": torch.zeros(64, 32)}, weights)
    else:
        from safetensors.torch import save_file

        save_file({"prj.1.weight": torch.zeros(64, 32)}, str(weights))
    weights.write_bytes(weights.read_bytes()[:-40])
    user_error(
        cli("run", "--model", "gpt2", "--checkpoint", gpt2_dir, *QUICK, "--db", tmp_path / "w"),
        f"{name}: corrupted or truncated weight file",
    )
