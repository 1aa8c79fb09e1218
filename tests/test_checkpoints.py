"""engine.model.checkpoints against real peft modules in the official layouts (tiny random GPT-2 and
LLaMA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file, save_model
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from engine.model.checkpoints import CheckpointError, ModelNotFoundError, load_model
from engine.model.codi import CodiModel, ModelInfo, make_projection

QUESTIONS = ["Tom has 3 apples and buys 4 more. How many apples?", "What is 12 plus 7?"]
TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
D, PRJ = 64, 96


def _base_config(arch: str, tokenizer):
    ids = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if arch == "gpt2":  # tied lm_head, like GPT-2
        return GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=D, n_layer=2, n_head=4, **ids)
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=D,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        **ids,
    )


def _official_module(arch: str, tokenizer) -> nn.Module:
    """The official CODI module: peft-wrapped LM resized to V + 3, plus prj (non-zero LoRA)."""
    torch.manual_seed(1 if arch == "gpt2" else 2)
    cls = GPT2LMHeadModel if arch == "gpt2" else LlamaForCausalLM
    lm = cls._from_config(_base_config(arch, tokenizer), attn_implementation="eager")
    vocab = len(tokenizer)
    lm.resize_token_embeddings(vocab + 3)
    with torch.no_grad():  # distinct pad/bot/eot rows (resizing gives them all the mean embedding)
        lm.get_input_embeddings().weight[vocab:] = torch.randn(3, D) * 0.05
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=TARGETS[arch],
        fan_in_fan_out=arch == "gpt2",
        lora_dropout=0.0,
        init_lora_weights=False,
    )
    module = nn.Module()
    module.codi = get_peft_model(lm, lora)
    module.prj = make_projection(D, PRJ)
    return module.eval()


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def official(request, small_tokenizer):
    arch = request.param
    module = _official_module(arch, small_tokenizer)
    info = ModelInfo("reference", arch, 2, 4, D)
    reference = CodiModel(module.codi, module.prj, small_tokenizer, len(small_tokenizer), info).eval()
    return arch, module, reference


def _write_dir(
    path: Path,
    arch: str,
    module: nn.Module,
    tokenizer,
    fmt: str = "bin",
    layout: str = "base_layer",
    adapter_config: bool = True,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    _base_config(arch, tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    if adapter_config:
        module.codi.peft_config["default"].save_pretrained(path)
    state = module.state_dict()
    if layout == "no_base_layer":  # peft < 0.7 kept the base weight on the LoRA layer itself
        state = {k.replace(".base_layer.", "."): v for k, v in state.items()}
        assert not any(".base_layer." in k for k in state)
    if fmt == "bin":
        torch.save(state, path / "pytorch_model.bin")
    elif layout == "base_layer":
        save_model(module, str(path / "model.safetensors"))
    else:  # cloned, so a tied lm_head is stored under both names
        save_file({k: v.clone() for k, v in state.items()}, str(path / "model.safetensors"))
    return path


@pytest.mark.parametrize(
    "fmt,layout,adapter_config",
    [
        ("bin", "base_layer", True),
        ("safetensors", "base_layer", False),
        ("bin", "no_base_layer", False),
        ("safetensors", "no_base_layer", True),
    ],
)
def test_loaded_model_matches_peft_reference(
    tmp_path, official, small_tokenizer, fmt, layout, adapter_config
):
    arch, module, reference = official
    ckpt = _write_dir(tmp_path / "ckpt", arch, module, small_tokenizer, fmt, layout, adapter_config)
    model = load_model(arch, checkpoint=ckpt, lora_alpha=None if adapter_config else 16)

    assert model.codi.config._attn_implementation == "eager" and not model.training
    assert "lora" not in " ".join(k for k, _ in model.named_parameters())
    assert model.info.extra["lora_r"] == [8] and model.info.extra["lora_alpha"] == 16
    assert model.info.extra["lora_modules"] == {"gpt2": 8, "llama": 14}[arch]  # 2 layers
    assert Path(model.info.weights_path).parent == ckpt and len(model.info.weights_sha256) == 64
    assert (model.info.n_layers, model.info.n_heads, model.info.d_model) == (2, 4, D)

    batch_ref, batch = reference.question_batch(QUESTIONS), model.question_batch(QUESTIONS)
    assert torch.equal(batch_ref.ids, batch.ids)
    if arch == "llama":
        assert batch.ids[0, batch.mask[0].argmax()] == small_tokenizer.bos_token_id
    state_ref, logits_ref = reference.latent_loop(batch_ref)
    state, logits = model.latent_loop(batch)
    assert logits.shape == logits_ref.shape == (2, len(small_tokenizer) + 3)
    torch.testing.assert_close(logits, logits_ref, atol=1e-4, rtol=0)
    assert torch.equal(
        model.decode_greedy(state, logits, 6), reference.decode_greedy(state_ref, logits_ref, 6)
    )


def test_wrong_alpha_changes_the_model(tmp_path, official, small_tokenizer):
    """Without adapter_config.json the official alpha (32) is used, so the merge scale matters."""
    arch, module, reference = official
    ckpt = _write_dir(tmp_path / "ckpt", arch, module, small_tokenizer, adapter_config=False)
    model = load_model(arch, checkpoint=ckpt)
    assert model.info.extra["lora_alpha"] == 32
    batch = reference.question_batch(QUESTIONS[:1])
    assert not torch.allclose(model.latent_loop(batch)[1], reference.latent_loop(batch)[1], atol=1e-3)


def test_dtype_and_device(tmp_path, official, small_tokenizer):
    arch, module, _ = official
    ckpt = _write_dir(tmp_path / "ckpt", arch, module, small_tokenizer)
    model = load_model(arch, checkpoint=ckpt, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16} and model.device.type == "cpu"
    assert model.answer(QUESTIONS[:1], max_new_tokens=2)  # runs end to end


@pytest.fixture
def empty_places(tmp_path, monkeypatch):
    """CODI_HOME and the Hugging Face cache point at empty folders; the real cache is never touched."""
    monkeypatch.setenv("CODI_HOME", str(tmp_path / "codi_home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    return tmp_path


@pytest.mark.parametrize(
    "name,repo", [("gpt2", "zen-E/CODI-gpt2"), ("llama", "zen-E/CODI-llama3.2-1b-Instruct")]
)
def test_missing_model_lists_places_searched(empty_places, name, repo):
    with pytest.raises(ModelNotFoundError) as err:
        load_model(name)
    message = str(err.value)
    for expected in (
        str(empty_places / "codi_home" / name),
        str(empty_places / "hf_home" / "hub"),
        repo,
        f"hf download {repo}",
        "--checkpoint DIR",
        "CODI_HOME",
    ):
        assert expected in message
    with pytest.raises(ModelNotFoundError, match="holds no model.safetensors or pytorch_model.bin"):
        load_model(name, checkpoint=empty_places)


def test_codi_home_is_searched(empty_places, official, small_tokenizer):
    arch, module, _ = official
    ckpt = _write_dir(empty_places / "codi_home" / arch, arch, module, small_tokenizer)
    assert load_model(arch).info.weights_path == str(ckpt / "pytorch_model.bin")


def test_missing_base_config_is_reported(empty_places, official, small_tokenizer):
    arch, module, _ = official
    ckpt = empty_places / "ckpt"
    ckpt.mkdir()
    torch.save(module.state_dict(), ckpt / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="base config/tokenizer not found.*hf download"):
        load_model(arch, checkpoint=ckpt)


def test_unknown_name():
    with pytest.raises(ValueError, match="gpt2-tiny, gpt2, llama"):
        load_model("gpt3")


def test_mismatched_keys_are_named(tmp_path, official, small_tokenizer):
    arch, module, _ = official
    ckpt = _write_dir(tmp_path / "ckpt", arch, module, small_tokenizer)
    state = torch.load(ckpt / "pytorch_model.bin", weights_only=True)
    norm = next(k for k in state if k.endswith(("norm.weight", "ln_f.weight")))
    state["codi.base_model.model.extra_head.weight"] = state.pop(norm)
    state["prj.3.weight"] = state["prj.3.weight"][:, :10]
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as err:
        load_model(arch, checkpoint=ckpt)
    message = str(err.value)
    plain_norm = "codi." + norm.removeprefix("codi.base_model.model.")
    for expected in (
        "pytorch_model.bin",
        f"missing keys (1): {plain_norm}",
        "codi.extra_head.weight",
        "prj.3.weight (64, 10) vs (64, 96)",
    ):
        assert expected in message


def test_wrong_vocabulary_size_is_named(tmp_path, official, small_tokenizer):
    arch, module, _ = official
    ckpt = _write_dir(tmp_path / "ckpt", arch, module, small_tokenizer)
    config = _base_config(arch, small_tokenizer)
    config.vocab_size += 1
    config.save_pretrained(ckpt)
    with pytest.raises(
        CheckpointError,
        match=rf"config.json: vocab_size = {config.vocab_size} disagrees with the "
        r"weights: .* is \[\d+, 64\] \(V \+ 3 = \d+ rows",
    ):
        load_model(arch, checkpoint=ckpt)  # before the model is allocated


def _create_marker(path: str) -> None:
    Path(path).write_text("code ran")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return _create_marker, (str(self.marker),)


def test_malicious_pickle_is_refused(tmp_path, official, small_tokenizer):
    arch, module, _ = official
    ckpt = _write_dir(tmp_path / "ckpt", arch, module, small_tokenizer)
    marker = tmp_path / "marker"
    state = {"prj.1.weight": torch.zeros(2), "payload": _Payload(marker)}
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: refused"):
        load_model(arch, checkpoint=ckpt)
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(ckpt / "pytorch_model.bin", weights_only=False)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_truncated_file_is_refused(tmp_path, official, small_tokenizer, fmt):
    arch, module, _ = official
    ckpt = _write_dir(tmp_path / "ckpt", arch, module, small_tokenizer, fmt)
    weights = ckpt / ("model.safetensors" if fmt == "safetensors" else "pytorch_model.bin")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{weights.name}: corrupted or truncated"):
        load_model(arch, checkpoint=ckpt)


def test_bundled_format_by_name(tmp_path, random_codi):
    from engine.model.bundled import save_codi_dir

    ckpt = save_codi_dir(random_codi, tmp_path / "tiny", {"recipe": "test"})
    model = load_model("gpt2-tiny", checkpoint=ckpt)
    assert model.info.weights_sha256 == model.info.extra["weights_sha256"]
    batch = random_codi.question_batch(QUESTIONS)
    torch.testing.assert_close(
        model.latent_loop(batch)[1], random_codi.latent_loop(batch)[1], atol=1e-5, rtol=0
    )
    with pytest.raises(ModelNotFoundError, match="gpt2-tiny.*python cli.py train"):
        load_model("gpt2-tiny", checkpoint=tmp_path / "nowhere")
