"""Load CODI models by name (SPEC 2.1, 2.2): the bundled `gpt2-tiny` and the official CODI checkpoints.

Official checkpoints hold the whole CODI module's state dict with peft LoRA adapters. We merge the
adapters into the base weights at load time, so the rest of the program (hooks, attention capture)
sees a plain transformers model. Weights are read without ever executing pickled code, files are only
looked up locally unless a download is asked for, and a model that is not found is an error, never a
silent switch to another model.
"""
from __future__ import annotations

import copy
import json
import math
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from engine.bundled import BUNDLED_DIR, fused_activation, load_codi_dir, sha256_file
from engine.model import CodiModel, ModelInfo, make_projection

MODEL_NAMES = ("gpt2-tiny", "gpt2", "llama")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # safetensors first, as the official test.py
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
DEFAULT_LORA_ALPHA = 32.0
# Buffers that older transformers versions saved with the weights; they are recomputed, never loaded.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


class ModelNotFoundError(FileNotFoundError):
    """The model's files are not on this machine (the message says where we looked and how to get them)."""


class CheckpointError(ValueError):
    """A weight file is unsafe, corrupted, or does not fit the model it is meant for."""


@dataclass(frozen=True)
class OfficialModel:
    """What differs between the official CODI checkpoints."""

    architecture: str  # the base config's model_type
    codi_repo: str
    base_repos: tuple[str, ...]  # where the base config and tokenizer come from
    embed_key: str  # input embedding inside the LM (the lm_head may be tied to it)
    fan_in_fan_out: bool  # GPT-2's Conv1D stores weights as [in, out]


OFFICIAL = {
    "gpt2": OfficialModel("gpt2", "zen-E/CODI-gpt2", ("gpt2", "openai-community/gpt2"),
                          "transformer.wte.weight", True),
    "llama": OfficialModel("llama", "zen-E/CODI-llama3.2-1b-Instruct", ("meta-llama/Llama-3.2-1B-Instruct",),
                           "model.embed_tokens.weight", False),
}


# -- locating files ----------------------------------------------------------------------------------
def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")).expanduser() / "hub"


def _hub_snapshot(repo_id: str, allow_download: bool, patterns: list[str]) -> tuple[Path | None, str]:
    """The local snapshot folder of `repo_id` (downloaded first only if allowed), or None and why not."""
    try:
        path = snapshot_download(repo_id, cache_dir=hf_hub_cache(), local_files_only=not allow_download,
                                 allow_patterns=patterns)
    except (OSError, ValueError) as exc:
        return None, "not cached" if not allow_download else f"download failed ({type(exc).__name__}: {exc})"
    return Path(path), ""


def weights_in(directory: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def locate_weights(name: str, checkpoint: str | Path | None, allow_download: bool) -> Path:
    """The weight file of an official model: --checkpoint DIR, else $CODI_HOME/<name>, else the HF cache."""
    official = OFFICIAL[name]
    wanted = " or ".join(WEIGHT_FILES)
    if checkpoint is not None:
        found = weights_in(Path(checkpoint))
        if found:
            return found
        raise ModelNotFoundError(f"model '{name}': checkpoint directory {checkpoint} holds no {wanted}")
    searched = []
    codi_home = os.environ.get("CODI_HOME")
    if codi_home:
        found = weights_in(Path(codi_home) / name)
        if found:
            return found
        searched.append(f"$CODI_HOME/{name} = {Path(codi_home) / name} (no {wanted})")
    else:
        searched.append("$CODI_HOME (not set)")
    snapshot, why = _hub_snapshot(official.codi_repo, allow_download, ["*.json", "*.safetensors", "*.bin"])
    found = weights_in(snapshot) if snapshot else None
    if found:
        return found
    searched.append(f"Hugging Face cache {hf_hub_cache()}: {official.codi_repo} ({why or f'no {wanted}'})")
    raise ModelNotFoundError(
        f"model '{name}' not found; searched: --checkpoint (not given); {'; '.join(searched)}. "
        f"To get it, run `hf download {official.codi_repo}` (older huggingface_hub: `huggingface-cli "
        f"download {official.codi_repo}`) on a machine with internet and copy the cache here, or put "
        f"its files in a directory and pass --checkpoint DIR or set CODI_HOME so $CODI_HOME/{name} holds them.")


def locate_base(name: str, model_dir: Path, allow_download: bool) -> tuple[PretrainedConfig, object, dict]:
    """Base config and tokenizer: from the checkpoint directory when it holds them, else the HF cache."""
    official = OFFICIAL[name]
    has_config = (model_dir / "config.json").is_file()
    has_tokenizer = any((model_dir / f).is_file() for f in TOKENIZER_FILES)
    base_dir, searched = None, []
    if not (has_config and has_tokenizer):
        for repo in official.base_repos:
            snapshot, why = _hub_snapshot(repo, allow_download, ["*.json", "*.txt", "*.model"])
            if snapshot and (snapshot / "config.json").is_file():
                base_dir = snapshot
                break
            searched.append(f"{repo} ({why or 'no config.json'})")
        if base_dir is None:
            raise ModelNotFoundError(
                f"model '{name}': base config/tokenizer not found; {model_dir} lacks "
                f"{'config.json' if not has_config else 'tokenizer files'} and the Hugging Face cache "
                f"{hf_hub_cache()} has none of: {', '.join(searched)}. Run `hf download {official.base_repos[0]}` "
                f"on a machine with internet, or copy config.json and the tokenizer files into {model_dir}.")
    config_dir = model_dir if has_config else base_dir
    tokenizer_dir = model_dir if has_tokenizer else base_dir
    config = AutoConfig.from_pretrained(config_dir, local_files_only=True)
    if config.model_type != official.architecture:
        raise CheckpointError(f"{config_dir / 'config.json'}: model_type '{config.model_type}', "
                              f"but model '{name}' is '{official.architecture}'")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    return config, tokenizer, {"config_source": str(config_dir), "tokenizer_source": str(tokenizer_dir)}


# -- reading a state dict safely ---------------------------------------------------------------------
def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file; a pickle is read with weights_only=True so it cannot run code."""
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused, the pickle holds more than tensors "
                              f"(loading it could run code): {str(exc).splitlines()[0]}") from exc
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupted or truncated weight file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


# -- key layouts and LoRA ----------------------------------------------------------------------------
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def lora_settings(model_dir: Path, lora_alpha: float | None) -> tuple[float, bool]:
    """LoRA alpha (argument, else adapter_config.json, else 32) and whether rank-stabilised scaling is used."""
    adapter, path = {}, model_dir / "adapter_config.json"
    if path.is_file():
        try:
            adapter = json.loads(path.read_text())
        except ValueError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
        if adapter.get("rank_pattern") or adapter.get("alpha_pattern"):
            raise CheckpointError(f"{path}: per-module rank_pattern/alpha_pattern is not supported")
    alpha = lora_alpha if lora_alpha is not None else adapter.get("lora_alpha", DEFAULT_LORA_ALPHA)
    return float(alpha), bool(adapter.get("use_rslora", False))


def normalize_state_dict(state: dict[str, torch.Tensor], fan_in_fan_out: bool, alpha: float,
                         rslora: bool = False, dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """Official peft keys (with or without `base_layer`) or plain keys -> plain `codi.*` keys, LoRA merged.

    peft computes W x + (alpha / r) B A x, so merging adds (alpha / r) B @ A to W (transposed for
    GPT-2's Conv1D, whose weight is [in, out]). The merge is done in float32, then cast to `dtype`.
    """
    plain, lora = {}, {}
    peft_layout = base_layer = False
    for key, value in state.items():
        if key.startswith("codi.base_model.model."):
            peft_layout = True
            key = "codi." + key[len("codi.base_model.model."):]
        base_layer |= ".base_layer." in key
        key = key.replace(".base_layer.", ".")
        match = _LORA_KEY.match(key)
        if match:
            pair = lora.setdefault(match["module"], {})
            if match["ab"] in pair:
                raise CheckpointError(f"more than one LoRA adapter for {match['module']}")
            pair[match["ab"]] = value
        elif not key.endswith(IGNORED_SUFFIXES):
            plain[key] = value
    ranks = set()
    for module, pair in lora.items():
        weight_key = f"{module}.weight"
        if set(pair) != {"A", "B"} or weight_key not in plain:
            raise CheckpointError(f"incomplete LoRA for {module}: has {sorted(pair)}, "
                                  f"base weight {'present' if weight_key in plain else 'missing'}")
        a, b = pair["A"].float(), pair["B"].float()
        rank = a.shape[0]
        ranks.add(rank)
        delta = (b @ a) * (alpha / (math.sqrt(rank) if rslora else rank))
        if fan_in_fan_out:
            delta = delta.T
        if delta.shape != plain[weight_key].shape:
            raise CheckpointError(f"LoRA for {module} gives {tuple(delta.shape)}, "
                                  f"base weight is {tuple(plain[weight_key].shape)}")
        plain[weight_key] = (plain[weight_key].float() + delta).to(dtype)
    layout = ("peft, base_layer" if base_layer else "peft, no base_layer") if peft_layout else "plain"
    info = {"layout": layout, "lora_modules": len(lora), "lora_r": sorted(ranks), "lora_alpha": alpha,
            "lora_rslora": rslora}
    return plain, info


# -- building the module -----------------------------------------------------------------------------
def build_codi_model(name: str, config: PretrainedConfig, tokenizer, state: dict[str, torch.Tensor],
                     dtype: torch.dtype) -> CodiModel:
    """A CODI module with V + 3 embedding rows (eager attention) holding `state` exactly.

    Every parameter must come from `state` with its exact shape; only a tied lm_head may be absent.
    """
    official = OFFICIAL[name]
    if "prj.1.weight" not in state:
        raise CheckpointError("checkpoint has no projection (prj.1.weight): not a CODI checkpoint with prj")
    prj_dim = state["prj.1.weight"].shape[0]
    base_vocab = config.vocab_size
    lm_config = copy.deepcopy(config)
    lm_config.vocab_size = base_vocab + 3
    if hasattr(lm_config, "activation_function"):  # GPT-2
        lm_config.activation_function = fused_activation(lm_config.activation_function)
    lm = AutoModelForCausalLM.from_config(lm_config, attn_implementation="eager", dtype=dtype)
    info = ModelInfo(name, official.architecture, lm_config.num_hidden_layers, lm_config.num_attention_heads,
                     lm_config.hidden_size)
    model = CodiModel(lm, make_projection(lm_config.hidden_size, prj_dim), tokenizer, base_vocab, info)

    embed_key, head_key = f"codi.{official.embed_key}", "codi.lm_head.weight"
    tied = lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    if tied:  # one tensor under two names; safetensors keeps only one of them
        head = state.pop(head_key, None)
        if embed_key not in state and head is not None:
            state[embed_key] = head
    expected = {k: v for k, v in model.state_dict().items() if not (tied and k == head_key)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("wrong shapes (checkpoint vs model)", wrong)) if keys]
        raise CheckpointError(f"checkpoint does not fit model '{name}' (embedding must have V+3 = "
                              f"{base_vocab + 3} rows, d = {lm_config.hidden_size}): {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)
    lm.tie_weights()
    model.info.extra = {"prj_dim": prj_dim, "base_vocab_size": base_vocab}
    return model


def finalize(model: CodiModel, device: str, dtype: torch.dtype | None) -> CodiModel:
    """Eval mode on the requested device/dtype; eager attention is required (SPEC 15: sdpa drops attentions)."""
    impl = model.codi.config._attn_implementation
    if impl != "eager":
        raise RuntimeError(f"model '{model.info.name}' uses {impl} attention; eager is required")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    model.info.extra["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return model.eval()


def load_model(name: str, checkpoint: str | Path | None = None, device: str = "cpu",
               dtype: torch.dtype | None = None, allow_download: bool = False,
               lora_alpha: float | None = None) -> CodiModel:
    """A CODI model by name: `gpt2-tiny` (bundled), `gpt2` or `llama` (official CODI checkpoints).

    `checkpoint` is a directory to take the weights (and config/tokenizer, when present) from;
    `lora_alpha` overrides adapter_config.json / the official 32. Nothing is downloaded unless
    `allow_download`.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model '{name}'; valid names: {', '.join(MODEL_NAMES)}")
    if name == "gpt2-tiny":
        model_dir = Path(checkpoint) if checkpoint is not None else BUNDLED_DIR
        try:
            model = load_codi_dir(model_dir, name)
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"model 'gpt2-tiny': {exc}; train it with `python cli.py train "
                                     f"--out {model_dir}` or pass --checkpoint DIR") from exc
        except (SafetensorError, ValueError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(text if text.startswith(str(model_dir)) else
                                  f"{model_dir / 'model.safetensors'}: corrupted or truncated weight file ({text}); "
                                  "restore it or retrain the model") from exc
        return finalize(model, device, dtype)

    weights = locate_weights(name, checkpoint, allow_download)
    config, tokenizer, sources = locate_base(name, weights.parent, allow_download)
    alpha, rslora = lora_settings(weights.parent, lora_alpha)
    state = read_state_dict(weights)
    try:
        state, layout = normalize_state_dict(state, OFFICIAL[name].fan_in_fan_out, alpha, rslora,
                                             dtype or torch.float32)
        model = build_codi_model(name, config, tokenizer, state, dtype or torch.float32)
    except CheckpointError as exc:
        raise CheckpointError(f"{weights}: {exc}") from exc
    model.info.weights_path = str(weights)
    model.info.weights_sha256 = sha256_file(weights)
    model.info.extra.update(layout, **sources)
    return finalize(model, device, dtype)
