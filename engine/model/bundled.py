"""The project's own CODI models: build a fresh GPT-2 CODI module, save and load its directory.

A model directory holds `model.safetensors` (keys `codi.*` and `prj.*`, LoRA-free), the base
`config.json` (vocab_size = V, before the three extra tokens), the tokenizer files and
`codi_card.json` (training recipe, wall time, accuracies).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_model, save_model
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from engine.model.codi import CodiModel, ModelInfo, make_projection

REPO_ROOT = Path(__file__).resolve().parents[2]  # engine/model/bundled.py -> the repository
BUNDLED_DIR = REPO_ROOT / "models" / "gpt2-tiny"
CARD = "codi_card.json"
WEIGHTS = "model.safetensors"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fused_activation(name: str) -> str:
    """GPT-2's `gelu_new` is the tanh GELU written in Python ops; torch's fused kernel computes the same
    formula (to float rounding) and made the engine about 10% faster on CPU."""
    return "gelu_pytorch_tanh" if name == "gelu_new" else name


def build_gpt2_codi(
    base_config: GPT2Config,
    tokenizer: PreTrainedTokenizerBase,
    prj_dim: int,
    name: str = "gpt2-tiny",
    attn: str = "eager",
) -> CodiModel:
    """A randomly initialised GPT-2 CODI module whose embedding has V + 3 rows."""
    base_vocab = base_config.vocab_size
    config = GPT2Config.from_dict(
        {
            **base_config.to_dict(),
            "vocab_size": base_vocab + 3,
            "activation_function": fused_activation(base_config.activation_function),
        }
    )
    lm = GPT2LMHeadModel._from_config(config, attn_implementation=attn)
    info = ModelInfo(name, "gpt2", config.n_layer, config.n_head, config.n_embd)
    return CodiModel(lm, make_projection(config.n_embd, prj_dim), tokenizer, base_vocab, info)


def save_codi_dir(model: CodiModel, out_dir: str | Path, card: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / WEIGHTS))
    base = GPT2Config.from_dict({**model.codi.config.to_dict(), "vocab_size": model.base_vocab_size})
    base.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    prj_dim = model.prj[1].out_features
    card = {
        **card,
        "prj_dim": prj_dim,
        "weights_sha256": sha256_file(out / WEIGHTS),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return out


def load_codi_dir(model_dir: str | Path, name: str = "gpt2-tiny") -> CodiModel:
    """Load a directory written by `save_codi_dir` (eager attention, eval mode)."""
    model_dir = Path(model_dir)
    weights = model_dir / WEIGHTS
    card_path = model_dir / CARD
    for required in (weights, card_path, model_dir / "config.json"):
        if not required.is_file():
            raise FileNotFoundError(f"model directory {model_dir} lacks {required.name}")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as exc:
        raise ValueError(f"{card_path} is not valid JSON ({exc}); restore it or retrain the model") from exc
    sha256 = sha256_file(weights)
    if card.get("weights_sha256") not in (None, sha256):  # a truncated or bit-flipped file loads silently
        raise ValueError(
            f"{weights}: sha256 {sha256[:12]}... differs from {card['weights_sha256'][:12]}... in "
            f"{CARD}, so the file is corrupted or was replaced; restore it (for the bundled model: "
            "git checkout models/gpt2-tiny) or retrain it"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = build_gpt2_codi(GPT2Config.from_pretrained(model_dir), tokenizer, card["prj_dim"], name)
    missing, unexpected = load_model(model, str(weights), strict=False)
    missing = [k for k in missing if k != "codi.lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{weights}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    model.codi.tie_weights()
    model.info.weights_path = str(weights)
    model.info.weights_sha256 = sha256
    model.info.extra = card
    return model.eval()
